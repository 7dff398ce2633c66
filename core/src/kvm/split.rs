//! Splitting (or removing) a leaf, mirror and S-EPT together: the step machine shared by the
//! GUEST_INHIBIT pre-split (under the write lock), fault-path demotion (under the read lock) and
//! the host operations (conversions, punch holes).
//!
//! With the current module a split is BLOCK → TRACK → kick every vCPU out of the guest (so the
//! blocking epoch drains) → DEMOTE; no UNBLOCK is needed after a successful DEMOTE
//! (shared/reference/tdx-module.md, "The usual sequences in KVM"). On a non-blocking-resize
//! module it is a plain DEMOTE. Under the write lock, BUSY means "kick and retry once" and any
//! other error is KVM_BUG_ON; under the read lock (fault-path demotion) a failed DEMOTE is
//! rolled back with UNBLOCK and the fault retries.
//!
//! Two corrections from the v5 review of the huge-page series
//! (20260129011517.3545883-1-seanjc@google.com; kvm-fault-path.md, "State of the field") hold
//! here by construction:
//! - The split acts on the mirror, the VM's private tree, not on the faulting vCPU's root
//!   (whose `root.hpa` is the shared one): KVM's corrected `kvm_tdp_mmu_mirrors_split_huge_pages`
//!   loops over the mirror roots, of which a TD has one valid root, and the model keeps that
//!   one mirror (host-kvm/tests/statements.rs: a page one vCPU's fault split is not split
//!   again by another's).
//! - One split serves every caller: the GUEST_INHIBIT pre-split, fault-path demotion,
//!   private-to-shared conversion and guest_memfd punch hole (Yan Zhao on 44/45: KVM's
//!   `gmem_split_private_mapping`); the model has no memory-error path
//!   (`kvm_gmem_error_folio`), the third caller KVM routes through it.

use crate::abi::{Gpa, PageLevel, StatusCode, TdxStatus};
use crate::sept::{HostCall, HostOp, HostStart, Sept, SeptStorage};

use super::{Kvm, KvmError, KvmStorage, Spte};

/// Where a split stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum SplitPhase {
    Block,
    Track,
    WaitTracked,
    Demote {
        busy_retried: bool,
    },
    DemoteEnd {
        op: HostOp,
        busy_retried: bool,
    },
    /// Read-lock rollback after a failed DEMOTE.
    Unblock,
}

/// One step's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SplitStep {
    /// Something changed; step again.
    Progress,
    /// Waiting for vCPUs to leave the guest (or for an operation in the way); step again later.
    Blocked,
    /// The leaf is split: the mirror entry is a table of 512 leaves.
    Done,
    /// The split failed and was undone as far as the design can (read lock: UNBLOCK done); the
    /// mirror SPTE is unfrozen. The fault retries.
    Failed,
    /// An error KVM does not expect: KVM_BUG_ON.
    Bug(TdxStatus),
}

/// What the sequence ends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Finish {
    /// PAGE.DEMOTE: the leaf becomes a table of 512 leaves.
    Demote,
    /// PAGE.REMOVE: the leaf is gone (remove = BLOCK → TRACK → kick → REMOVE).
    Remove,
}

/// A split (or removal) of the leaf at `level` covering `gpa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Split {
    gpa: Gpa,
    level: PageLevel,
    finish: Finish,
    under_write_lock: bool,
    phase: SplitPhase,
    /// SEAMCALLs issued, for the metrics.
    seamcalls: u8,
}

impl Split {
    /// A split of the leaf at `level` over `gpa`; the caller holds mmu_lock (`under_write_lock`
    /// says which way) and has frozen the mirror SPTE (a read-lock split) or excludes everyone
    /// (write lock).
    pub fn new<SS: SeptStorage, const F: usize>(
        sept: &Sept<SS, F>,
        gpa: Gpa,
        level: PageLevel,
        under_write_lock: bool,
    ) -> Split {
        Self::with_finish(sept, gpa, level, under_write_lock, Finish::Demote)
    }

    /// A removal of the leaf at `level` over `gpa`, under the write lock.
    pub fn remove<SS: SeptStorage, const F: usize>(
        sept: &Sept<SS, F>,
        gpa: Gpa,
        level: PageLevel,
    ) -> Split {
        Self::with_finish(sept, gpa, level, true, Finish::Remove)
    }

    fn with_finish<SS: SeptStorage, const F: usize>(
        sept: &Sept<SS, F>,
        gpa: Gpa,
        level: PageLevel,
        under_write_lock: bool,
        finish: Finish,
    ) -> Split {
        // Before finalization BLOCK and TRACK are not required (op_state_is_tlb_tracking_required
        // is 0 in INITIALIZED); a non-blocking-resize module demotes without them.
        let skip_block = (finish == Finish::Demote
            && (sept.profile().non_blocking_resize
                || crate::broken::active(crate::broken::Variant::SplitWithoutBlock)))
            || sept.op_state() == crate::sept::OpState::BuildTime;
        let phase = if skip_block {
            SplitPhase::Demote {
                busy_retried: false,
            }
        } else {
            SplitPhase::Block
        };
        Split {
            gpa: gpa.align_down(level),
            level,
            finish,
            under_write_lock,
            phase,
            seamcalls: 0,
        }
    }

    /// SEAMCALLs issued so far.
    pub fn seamcalls(&self) -> u8 {
        self.seamcalls
    }

    fn count(&mut self) {
        self.seamcalls = self.seamcalls.saturating_add(1);
    }

    /// One step.
    pub fn step<KS: KvmStorage, SS: SeptStorage, const F: usize>(
        &mut self,
        kvm: &mut Kvm<KS>,
        sept: &mut Sept<SS, F>,
    ) -> Result<SplitStep, KvmError> {
        if self.seamcalls == 0
            && self.finish == Finish::Demote
            && self.level == PageLevel::Size2M
            && (!kvm.can_split(self.gpa.gfn()) || !sept.can_demote_2m(self.gpa))
        {
            // KVM allocates the table pages before it starts; the model's pools are its memory.
            return Err(KvmError::TablePoolExhausted);
        }
        match self.phase {
            SplitPhase::Block => self.block(kvm, sept),
            SplitPhase::Track => self.track(kvm, sept),
            SplitPhase::WaitTracked => self.wait_tracked(kvm, sept),
            SplitPhase::Demote { busy_retried } => self.demote(kvm, sept, busy_retried),
            SplitPhase::DemoteEnd { op, busy_retried } => {
                self.demote_end(kvm, sept, op, busy_retried)
            }
            SplitPhase::Unblock => self.unblock(kvm, sept),
        }
    }

    /// TDH.MEM.RANGE.BLOCK (already blocked counts as done).
    fn block<KS: KvmStorage, SS: SeptStorage, const F: usize>(
        &mut self,
        kvm: &mut Kvm<KS>,
        sept: &mut Sept<SS, F>,
    ) -> Result<SplitStep, KvmError> {
        self.count();
        let s = sept.seamcall(HostCall::block(self.gpa, self.level))?;
        if s == TdxStatus::SUCCESS || s.code() == StatusCode::GpaRangeAlreadyBlocked {
            self.phase = if self.finish == Finish::Remove
                && crate::broken::active(crate::broken::Variant::RemoveWithoutTrack)
            {
                SplitPhase::Demote {
                    busy_retried: false,
                }
            } else {
                SplitPhase::Track
            };
            Ok(SplitStep::Progress)
        } else if busy(s) {
            // A guest ACCEPT holds the entry: kick and retry.
            kvm.kick_pending = true;
            Ok(SplitStep::Blocked)
        } else {
            self.fail(kvm, sept, s)
        }
    }

    /// TDH.MEM.TRACK, then a kick of every vCPU.
    fn track<KS: KvmStorage, SS: SeptStorage, const F: usize>(
        &mut self,
        kvm: &mut Kvm<KS>,
        sept: &mut Sept<SS, F>,
    ) -> Result<SplitStep, KvmError> {
        self.count();
        let s = sept.track()?;
        kvm.kick_pending = true;
        if s == TdxStatus::SUCCESS {
            self.phase = SplitPhase::WaitTracked;
            Ok(SplitStep::Progress)
        } else if s.code() == StatusCode::PreviousTlbEpochBusy {
            Ok(SplitStep::Blocked)
        } else {
            self.fail(kvm, sept, s)
        }
    }

    /// Waits, kicking, until the blocking epoch has drained.
    fn wait_tracked<KS: KvmStorage, SS: SeptStorage, const F: usize>(
        &mut self,
        kvm: &mut Kvm<KS>,
        sept: &Sept<SS, F>,
    ) -> Result<SplitStep, KvmError> {
        let entry = sept
            .entry(self.gpa, self.level)?
            .ok_or(KvmError::Inconsistent)?;
        if sept.epochs().is_tracked(entry.bepoch) {
            self.phase = SplitPhase::Demote {
                busy_retried: false,
            };
            Ok(SplitStep::Progress)
        } else {
            kvm.kick_pending = true;
            Ok(SplitStep::Blocked)
        }
    }

    /// The first phase of TDH.MEM.PAGE.DEMOTE (or PAGE.REMOVE).
    fn demote<KS: KvmStorage, SS: SeptStorage, const F: usize>(
        &mut self,
        kvm: &mut Kvm<KS>,
        sept: &mut Sept<SS, F>,
        busy_retried: bool,
    ) -> Result<SplitStep, KvmError> {
        self.count();
        let call = match self.finish {
            Finish::Demote => HostCall::demote(self.gpa, self.level),
            Finish::Remove => HostCall::remove(self.gpa, self.level),
        };
        match sept.host_begin(call)? {
            HostStart::Started(op) => {
                self.phase = SplitPhase::DemoteEnd { op, busy_retried };
                Ok(SplitStep::Progress)
            }
            HostStart::Done(s) => self.demote_failed(kvm, sept, s, busy_retried),
        }
    }

    /// The second phase of DEMOTE (or REMOVE); the mirror follows.
    fn demote_end<KS: KvmStorage, SS: SeptStorage, const F: usize>(
        &mut self,
        kvm: &mut Kvm<KS>,
        sept: &mut Sept<SS, F>,
        op: HostOp,
        busy_retried: bool,
    ) -> Result<SplitStep, KvmError> {
        let s = sept.host_end(op, false)?;
        if s != TdxStatus::SUCCESS {
            return self.demote_failed(kvm, sept, s, busy_retried);
        }
        match self.finish {
            // The mirror follows: a table of 512 leaves one level down...
            Finish::Demote => kvm.set_mirror_split(self.gpa, self.level)?,
            // ...or nothing.
            Finish::Remove => kvm.set_mirror(self.gpa.gfn(), self.level, Spte::NOT_PRESENT)?,
        }
        Ok(SplitStep::Done)
    }

    /// TDH.MEM.RANGE.UNBLOCK, the read-lock rollback after a failed DEMOTE.
    fn unblock<KS: KvmStorage, SS: SeptStorage, const F: usize>(
        &mut self,
        kvm: &mut Kvm<KS>,
        sept: &mut Sept<SS, F>,
    ) -> Result<SplitStep, KvmError> {
        self.count();
        let s = sept.seamcall(HostCall::unblock(self.gpa, self.level))?;
        if s == TdxStatus::SUCCESS {
            kvm.set_mirror_frozen(self.gpa, self.level, false)?;
            Ok(SplitStep::Failed)
        } else if s.code() == StatusCode::TlbTrackingNotDone || busy(s) {
            // fault-path-demote's kicks exist so that UNBLOCK cannot fail
            // (kvm-fault-path.md): a guest ACCEPT holding the entry finishes and the
            // vCPU leaves; then UNBLOCK runs again.
            kvm.kick_pending = true;
            Ok(SplitStep::Blocked)
        } else {
            Ok(SplitStep::Bug(s))
        }
    }

    fn demote_failed<KS: KvmStorage, SS: SeptStorage, const F: usize>(
        &mut self,
        kvm: &mut Kvm<KS>,
        sept: &mut Sept<SS, F>,
        s: TdxStatus,
        busy_retried: bool,
    ) -> Result<SplitStep, KvmError> {
        if self.under_write_lock && busy(s) && !busy_retried {
            // Under the write lock: BUSY → kick all vCPUs out and retry once.
            kvm.kick_pending = true;
            self.phase = SplitPhase::Demote { busy_retried: true };
            return Ok(SplitStep::Blocked);
        }
        self.fail(kvm, sept, s)
    }

    fn fail<KS: KvmStorage, SS: SeptStorage, const F: usize>(
        &mut self,
        kvm: &mut Kvm<KS>,
        sept: &Sept<SS, F>,
        s: TdxStatus,
    ) -> Result<SplitStep, KvmError> {
        if self.under_write_lock {
            return Ok(SplitStep::Bug(s));
        }
        // Read lock: undo a BLOCK if one happened, then give up.
        let blocked = sept
            .entry(self.gpa, self.level)?
            .is_some_and(|e| e.state.is_blocked());
        if blocked {
            self.phase = SplitPhase::Unblock;
            Ok(SplitStep::Progress)
        } else {
            kvm.set_mirror_frozen(self.gpa, self.level, false)?;
            Ok(SplitStep::Failed)
        }
    }
}

fn busy(s: TdxStatus) -> bool {
    s.code() == StatusCode::OperandBusy
}

impl<KS: KvmStorage> Kvm<KS> {
    /// The mirror after a successful DEMOTE of the leaf at `level`: a table of 512 leaves.
    pub(crate) fn set_mirror_split(&mut self, gpa: Gpa, level: PageLevel) -> Result<(), KvmError> {
        let gfn = gpa.gfn();
        match level {
            PageLevel::Size2M => {
                let r = self.region_index(gfn).ok_or(KvmError::OutsideModel)?;
                self.region_mut(r)?.mirror = Spte::TABLE_SPTE;
                let t = self.ensure_table(r)?;
                for e in self.table_mut(t)?.entries.iter_mut() {
                    *e = e.with_kind(Spte::LEAF_SPTE);
                }
                Ok(())
            }
            PageLevel::Size1G => {
                let g = self.gig_index(gfn).ok_or(KvmError::OutsideModel)?;
                self.gig_mut(g)?.mirror = Spte::TABLE_SPTE;
                let first = gfn.round_for_level(PageLevel::Size1G);
                for i in 0..512u64 {
                    let g2 = crate::abi::Gfn(first.raw().saturating_add(i << 9));
                    if let Some(r) = self.region_index(g2) {
                        self.region_mut(r)?.mirror = Spte::LEAF_SPTE;
                    }
                }
                Ok(())
            }
            PageLevel::Size4K => Err(KvmError::Inconsistent),
        }
    }

    /// Freezes or thaws the mirror SPTE at `level` for `gpa`.
    pub(crate) fn set_mirror_frozen(
        &mut self,
        gpa: Gpa,
        level: PageLevel,
        frozen: bool,
    ) -> Result<(), KvmError> {
        let gfn = gpa.gfn();
        let spte = self.mirror(gfn, level).ok_or(KvmError::Inconsistent)?;
        self.set_mirror(gfn, level, spte.frozen(frozen))
    }
}
