//! KVM's private EPT-violation path as a step machine that a vCPU runs after a TD exit.
//!
//! Follows shared/reference/kvm-fault-path.md ("The fault path, step by step"; Linux
//! arch/x86/kvm/vmx/tdx.c `tdx_handle_ept_violation`, mmu/mmu.c, mmu/tdp_mmu.c):
//! 1. decode the exit: a PENDING_EPT_VIOLATION with no permission bits is a guest touching
//!    unaccepted memory with #VE disabled → the VM is killed;
//! 2. the policy's accept-exit handling (RFC v1's window; GUEST_INHIBIT's pre-split under the
//!    write lock);
//! 3. the local retry loop: while the fault returns RET_PF_RETRY, retry inside KVM unless an
//!    event is pending, the VM is dead or the memslot is gone;
//! 4. fault-in: no guest_memfd, or a private fault on a shared GFN → KVM_EXIT_MEMORY_FAULT;
//!    an invalidation in progress over the GFN → RET_PF_RETRY;
//! 5. under the read lock, the max level: the fault's max level, capped by the folio, the
//!    lpage_info walk and the policy's hook (`kvm_mmu_hugepage_adjust` runs inside
//!    `kvm_tdp_mmu_map`, under mmu_lock);
//! 6. the map under the read lock: no promotion over an existing table, frozen → RETRY, an
//!    identical SPTE → SPURIOUS, SEPT.ADD for missing tables, AUG (PAGE.ADD before runnable),
//!    BUSY → RETRY, a huge leaf above the goal → the policy's split decision.
//!
//! This file holds the path's types, steps 1 to 5 and the local retry loop; step 6, the map
//! under the read lock, is in tdp_map.rs.
//!
//! Every step that touches shared state (mmu_lock, the mirror, a SEAMCALL phase) is its own
//! step, so a scheduler can run another vCPU in between.

use crate::abi::{
    AbiError, ExitQualification, ExtendedExitQualification, Gfn, Gpa, Gpaw, PageLevel, TdxStatus,
};
use crate::policy::{AcceptPlan, Decision, MaxLevelQuery, Policy, PrivateExit, VcpuPolicyState};
use crate::sept::{EptViolationExit, HostOp, MAX_IN_FLIGHT, OpState, Sept, SeptStorage};

use super::split::{Split, SplitStep};
use super::{Kvm, KvmError, KvmStorage, Spte};

/// KVM's RET_PF_* values that apply to private memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetPf {
    /// Fault again (locally, for private GPAs).
    Retry,
    /// The mapping was installed.
    Fixed,
    /// Already fixed, e.g. by another vCPU; the guest re-executes.
    Spurious,
}

/// How a run of the fault path ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultEnd {
    /// Back into the guest with this result of the last fault.
    Resume(RetPf),
    /// KVM_EXIT_MEMORY_FAULT to userspace (no guest_memfd, or private/shared mismatch).
    ExitToUserspace,
    /// The VM is killed ("Guest access before accepting").
    VmKilled,
    /// KVM_BUG_ON: an unexpected SEAMCALL status, or a design that bugs the VM.
    VmBugged(Option<TdxStatus>),
}

/// The result of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultStep {
    /// Something happened; step again.
    Progress,
    /// Waiting (for mmu_lock, for vCPUs to leave the guest); step again later.
    Blocked,
    /// The path has ended.
    Done(FaultEnd),
}

/// Counters a fault path adds to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FaultStats {
    /// Faults run (each pass of the local retry loop).
    pub faults: u32,
    /// Passes that returned RET_PF_RETRY and were retried locally.
    pub local_retries: u32,
    /// RET_PF_SPURIOUS results.
    pub spurious: u32,
    /// RET_PF_FIXED results.
    pub fixed: u32,
    /// mmu_lock write acquisitions.
    pub write_locks: u32,
    /// SEAMCALLs issued (each phase pair counts once).
    pub seamcalls: u32,
    /// SEAMCALLs that returned TDX_OPERAND_BUSY.
    pub seamcall_busy: u32,
    /// Walks that met a frozen SPTE (another thread mid-update) and retried.
    pub frozen: u32,
    /// Successful demotions.
    pub demotions: u32,
    /// Steps that waited for mmu_lock (for read, or for write under GUEST_INHIBIT).
    pub mmu_lock_waits: u32,
    /// Steps a split waited for the guests: a BLOCK or DEMOTE refused with BUSY while an ACCEPT
    /// held the entry, or a TRACK whose previous epoch had not drained (each kicks the vCPUs).
    pub split_waits: u32,
}

impl FaultStats {
    /// Adds `o`'s counters to these.
    pub fn add(&mut self, o: &FaultStats) {
        for (a, b) in [
            (&mut self.faults, o.faults),
            (&mut self.local_retries, o.local_retries),
            (&mut self.spurious, o.spurious),
            (&mut self.fixed, o.fixed),
            (&mut self.write_locks, o.write_locks),
            (&mut self.seamcalls, o.seamcalls),
            (&mut self.seamcall_busy, o.seamcall_busy),
            (&mut self.frozen, o.frozen),
            (&mut self.demotions, o.demotions),
            (&mut self.mmu_lock_waits, o.mmu_lock_waits),
            (&mut self.split_waits, o.split_waits),
        ] {
            *a = a.saturating_add(b);
        }
    }
}

impl FaultStats {
    /// Counts a split sequence that ended (`demoted`: with a successful DEMOTE).
    pub(super) fn add_split(&mut self, split: &Split, demoted: bool) {
        self.seamcalls = self.seamcalls.saturating_add(u32::from(split.seamcalls()));
        if demoted {
            self.demotions = self.demotions.saturating_add(1);
        }
    }
}

/// What the vCPU thread gives the fault path for one step.
pub struct FaultCtx<'a, KS, SS, P, const F: usize = MAX_IN_FLIGHT> {
    /// KVM's per-VM state.
    pub kvm: &'a mut Kvm<KS>,
    /// The TDX module.
    pub sept: &'a mut Sept<SS, F>,
    /// The host design.
    pub policy: &'a P,
    /// This vCPU's policy state.
    pub vcpu: &'a mut VcpuPolicyState,
    /// An event (interrupt, kick, signal) is pending for this vCPU: the local retry loop stops.
    pub event_pending: bool,
    /// Counters.
    pub stats: &'a mut FaultStats,
    /// Where the policy's decisions go, for traces (the last one of a step stays).
    pub decision: &'a mut Option<Decision>,
}

/// The fault being handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Fault {
    pub(super) gfn: Gfn,
    /// The fault's own max level (KVM starts at 1G; fault-max-level carries the accept level).
    pub(super) max_level: PageLevel,
    pub(super) prefetch: bool,
}

/// Where the path stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Phase {
    Start(EptViolationExit),
    InhibitCheck {
        level: PageLevel,
        precheck: bool,
    },
    InhibitLock {
        level: PageLevel,
    },
    InhibitSplit {
        level: PageLevel,
        split: Option<Split>,
    },
    FaultIn,
    AcquireRead,
    Walk {
        goal: PageLevel,
    },
    LinkTable {
        level: PageLevel,
        goal: PageLevel,
        op: HostOp,
    },
    Install {
        level: PageLevel,
        op: HostOp,
    },
    SplitInPlace {
        level: PageLevel,
        goal: PageLevel,
        split: Split,
    },
    ReleaseRead(RetPf),
    Ended(FaultEnd),
}

/// The private fault path of one vCPU, from a TD exit to the next TD entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultPath {
    pub(super) fault: Fault,
    pub(super) phase: Phase,
}

impl<KS: KvmStorage> Kvm<KS> {
    /// The level a private fault on `gfn` may map at: the fault's own max level, capped by the
    /// guest_memfd folio, then by the lpage_info walk (any non-zero `disallow_lpage` forbids a
    /// level), then by the policy's `private_max_mapping_level` hook
    /// (mmu.c `kvm_mmu_max_mapping_level`, `__kvm_mmu_max_mapping_level`).
    pub fn max_mapping_level<P: Policy>(
        &self,
        policy: &P,
        vcpu: &VcpuPolicyState,
        gfn: Gfn,
        fault_max: PageLevel,
        prefetch: bool,
        runnable: bool,
    ) -> PageLevel {
        // One lookup of each record the walk reads.
        let region = self.region_of(gfn);
        let folio = region.map_or(PageLevel::Size4K, |r| r.folio);
        let mut max = fault_max.min(folio);
        if max == PageLevel::Size1G && self.gig_of(gfn).is_none_or(|g| g.lpage.disallows()) {
            max = PageLevel::Size2M;
        }
        if max == PageLevel::Size2M && region.is_none_or(|r| r.lpage.disallows()) {
            max = PageLevel::Size4K;
        }
        let q = MaxLevelQuery {
            gfn,
            prefetch,
            runnable,
        };
        max.min(policy.max_mapping_level(vcpu, &q))
    }
}

impl FaultPath {
    /// The fault path for an EPT-violation exit on a private GPA.
    pub fn new(exit: EptViolationExit) -> FaultPath {
        FaultPath {
            fault: Fault {
                gfn: exit.gpa.gfn(),
                max_level: PageLevel::Size1G,
                prefetch: false,
            },
            phase: Phase::Start(exit),
        }
    }

    /// The fault path for the raw exit registers: RCX (exit qualification), RDX (extended exit
    /// qualification) and R8 (GPA), decoded with core::abi. A shared GPA is not this path's
    /// (KVM handles it as an ordinary EPT violation): [`AbiError::SharedGpa`].
    pub fn from_registers(rcx: u64, rdx: u64, r8: u64, gpaw: Gpaw) -> Result<FaultPath, AbiError> {
        let gpa = Gpa(r8);
        if gpa.is_shared(gpaw) {
            return Err(AbiError::SharedGpa);
        }
        if !gpa.is_within(gpaw) {
            return Err(AbiError::BeyondGpaw);
        }
        Ok(FaultPath::new(EptViolationExit {
            exit_qualification: ExitQualification::from_bits_retain(rcx),
            eeq: ExtendedExitQualification::decode(rdx)?,
            gpa: gpa.align_down(PageLevel::Size4K),
        }))
    }

    /// KVM_PRE_FAULT_MEMORY for `gfn`: the fault path from fault-in, as a prefetch fault (no
    /// exit, no accept level). Only once the TD is runnable; before, the ioctl fails (None).
    pub fn prefetch(gfn: Gfn, op_state: OpState) -> Option<FaultPath> {
        (op_state == OpState::Runnable).then_some(FaultPath {
            fault: Fault {
                gfn,
                max_level: PageLevel::Size1G,
                prefetch: true,
            },
            phase: Phase::FaultIn,
        })
    }

    /// KVM_TDX_INIT_MEM_REGION for `gfn`: the initial image page mapped at 4K and added with
    /// TDH.MEM.PAGE.ADD (tdx_gmem_post_populate → kvm_tdp_map_page). Only before
    /// finalization; after, the ioctl fails (None).
    pub fn init_mem_region(gfn: Gfn, op_state: OpState) -> Option<FaultPath> {
        (op_state == OpState::BuildTime).then_some(FaultPath {
            fault: Fault {
                gfn,
                max_level: PageLevel::Size4K,
                prefetch: true,
            },
            phase: Phase::FaultIn,
        })
    }

    /// The GFN the path faults on.
    pub fn gfn(&self) -> Gfn {
        self.fault.gfn
    }

    /// The exit the path was started for, until it is decoded.
    pub fn exit(&self) -> Option<EptViolationExit> {
        match self.phase {
            Phase::Start(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the exit has been decoded (the policy has seen it).
    pub fn decoded(&self) -> bool {
        !matches!(self.phase, Phase::Start(_))
    }

    /// Whether the path has ended, and how.
    pub fn ended(&self) -> Option<FaultEnd> {
        match self.phase {
            Phase::Ended(e) => Some(e),
            _ => None,
        }
    }

    /// A short name of the phase, for traces.
    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Start(_) => "decode exit",
            Phase::InhibitCheck { .. } => "guest-inhibit pre-check",
            Phase::InhibitLock { .. } => "take mmu_lock for write",
            Phase::InhibitSplit { .. } => "split for guest-inhibit",
            Phase::FaultIn => "fault-in",
            Phase::AcquireRead => "take mmu_lock for read",
            Phase::Walk { .. } => "walk the mirror",
            Phase::LinkTable { .. } => "SEPT.ADD in flight",
            Phase::Install { .. } => "AUG in flight",
            Phase::SplitInPlace { .. } => "split under the read lock",
            Phase::ReleaseRead(_) => "release mmu_lock",
            Phase::Ended(_) => "ended",
        }
    }

    /// Whether the path's next step (on a GFN whose 2M region is a table in both models, with
    /// no host actor left, no writer holding or waiting for mmu_lock and no SEAMCALL holding the
    /// S-EPT tree exclusively) touches nothing but the path itself, its GFN's 4K entry in the
    /// mirror and the S-EPT, its caller's SEAMCALL slot, and counts that commute (mmu_lock's
    /// readers, the tree lock's shared holders, the GUEST_INHIBIT bits it only reads when
    /// they are set), and does not end the VM. The world's partial-order reduction
    /// (world/independence.rs) takes such a step alone.
    ///
    /// Per phase: decoding an exit that does not kill the VM; GUEST_INHIBIT's pre-check when
    /// the bit is set (bits are never cleared); fault-in on a private guest_memfd GFN outside
    /// any invalidation; taking mmu_lock for read (in a table region the goal it computes
    /// changes nothing the walk does); the walk, when it ends in SPURIOUS (a 4K leaf) or in AUG
    /// of a FREE, unlocked 4K entry; AUG's second phase; releasing the lock. Not: anything
    /// under the write lock, SEPT.ADD, splits, PAGE.ADD, and the end of the path (the vCPU's
    /// re-entry is the world's to judge).
    pub fn next_step_is_local<KS: KvmStorage, SS: SeptStorage, const F: usize>(
        &self,
        kvm: &Kvm<KS>,
        sept: &Sept<SS, F>,
    ) -> bool {
        let gfn = self.fault.gfn;
        match self.phase {
            Phase::Start(exit) => {
                exit.eeq != ExtendedExitQualification::PendingEptViolation
                    || exit.exit_qualification.has_permission_bits()
            }
            Phase::InhibitCheck { level, precheck } => {
                let above = level.larger().unwrap_or(PageLevel::Size1G);
                precheck && kvm.lpage(gfn, above).is_some_and(|l| l.guest_inhibit())
            }
            Phase::FaultIn => {
                kvm.memslot(gfn).is_some_and(|s| s.guest_memfd)
                    && kvm.is_private(gfn)
                    && kvm
                        .invalidation
                        .is_none_or(|(a, b)| gfn.raw() < a.raw() || gfn.raw() >= b.raw())
            }
            Phase::AcquireRead => sept.op_state() == OpState::Runnable,
            Phase::Walk { .. } => match kvm.mirror(gfn, PageLevel::Size4K) {
                Some(s) if s.is_frozen() => false,
                Some(s) if s.is_leaf() => true,
                Some(s) if !s.is_present() => {
                    let Ok(gpa) = gfn.gpa() else {
                        return false;
                    };
                    sept.op_state() == OpState::Runnable
                        && sept
                            .entry(gpa, PageLevel::Size4K)
                            .ok()
                            .flatten()
                            .is_some_and(|e| {
                                e.state == crate::abi::SeptEntryState::Free
                                    && !e.lock.is_locked()
                                    && !e.lock.host_priority()
                            })
                }
                _ => false,
            },
            Phase::Install { level, .. } => level == PageLevel::Size4K,
            Phase::ReleaseRead(_) => true,
            Phase::InhibitLock { .. }
            | Phase::InhibitSplit { .. }
            | Phase::LinkTable { .. }
            | Phase::SplitInPlace { .. }
            | Phase::Ended(_) => false,
        }
    }

    /// Whether the path has ended with the vCPU going back into the guest.
    pub fn resumes(&self) -> bool {
        matches!(self.phase, Phase::Ended(FaultEnd::Resume(_)))
    }

    pub(super) fn end(&mut self, e: FaultEnd) -> Result<FaultStep, KvmError> {
        self.phase = Phase::Ended(e);
        Ok(FaultStep::Done(e))
    }

    pub(super) fn go(&mut self, p: Phase) -> Result<FaultStep, KvmError> {
        self.phase = p;
        Ok(FaultStep::Progress)
    }

    pub(super) fn gpa(&self, level: PageLevel) -> Result<Gpa, KvmError> {
        Ok(self
            .fault
            .gfn
            .gpa()
            .map_err(|_| KvmError::OutsideModel)?
            .align_down(level))
    }

    /// One step.
    pub fn step<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
    ) -> Result<FaultStep, KvmError> {
        if !ctx.kvm.alive() {
            return self.vm_dead(ctx.kvm.killed);
        }
        match self.phase {
            Phase::Ended(e) => Ok(FaultStep::Done(e)),
            Phase::Start(exit) => self.start(ctx, exit),
            Phase::InhibitCheck { level, precheck } => self.inhibit_check(ctx, level, precheck),
            Phase::InhibitLock { level } => self.inhibit_lock(ctx, level),
            Phase::InhibitSplit { level, split } => self.inhibit_split(ctx, level, split),
            Phase::FaultIn => self.fault_in(ctx),
            Phase::AcquireRead => {
                if !ctx.kvm.mmu_lock.try_read() {
                    ctx.stats.mmu_lock_waits = ctx.stats.mmu_lock_waits.saturating_add(1);
                    return Ok(FaultStep::Blocked);
                }
                // kvm_tdp_mmu_map → kvm_mmu_hugepage_adjust: the lpage_info walk and the hook run
                // under mmu_lock, so a GUEST_INHIBIT set under the write lock before is seen, and
                // one set after waits for this fault to finish.
                let goal = ctx.kvm.max_mapping_level(
                    ctx.policy,
                    ctx.vcpu,
                    self.fault.gfn,
                    self.fault.max_level,
                    self.fault.prefetch,
                    ctx.sept.op_state() == OpState::Runnable,
                );
                *ctx.decision = Some(Decision::MaxLevel {
                    gfn: self.fault.gfn,
                    level: goal,
                });
                self.go(Phase::Walk { goal })
            }
            Phase::Walk { goal } => self.walk(ctx, goal),
            Phase::LinkTable { level, goal, op } => self.link_table_end(ctx, level, goal, op),
            Phase::Install { level, op } => self.install_end(ctx, level, op),
            Phase::SplitInPlace { level, goal, split } => {
                self.split_in_place(ctx, level, goal, split)
            }
            Phase::ReleaseRead(ret) => self.release_read(ctx, ret),
        }
    }

    /// Another vCPU bugged or killed the VM (`killed`: killed it); nothing more runs (locks
    /// held are moot).
    fn vm_dead(&mut self, killed: bool) -> Result<FaultStep, KvmError> {
        if let Phase::Ended(e) = self.phase {
            return Ok(FaultStep::Done(e));
        }
        let end = if killed {
            FaultEnd::VmKilled
        } else {
            FaultEnd::VmBugged(None)
        };
        self.end(end)
    }

    pub(super) fn bug<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
        s: Option<TdxStatus>,
    ) -> Result<FaultStep, KvmError> {
        ctx.kvm.bugged = true;
        self.end(FaultEnd::VmBugged(s))
    }

    fn start<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
        exit: EptViolationExit,
    ) -> Result<FaultStep, KvmError> {
        // A design that needs a module capability refuses to run without it.
        ctx.policy
            .check_profile(ctx.sept.profile())
            .map_err(KvmError::Policy)?;
        // tdx.c: a PENDING_EPT_VIOLATION without permission bits is an access to unaccepted
        // memory with #VE disabled: the VM is killed.
        if exit.eeq == ExtendedExitQualification::PendingEptViolation
            && !exit.exit_qualification.has_permission_bits()
        {
            ctx.kvm.killed = true;
            return self.end(FaultEnd::VmKilled);
        }
        let pexit = PrivateExit {
            gfn: self.fault.gfn,
            accept_level: exit.eeq.accept_level(),
        };
        self.fault.max_level = ctx.policy.fault_max_level(&pexit);
        let plan = ctx.policy.on_private_exit(ctx.vcpu, &pexit);
        *ctx.decision = Some(Decision::Exit { exit: pexit, plan });
        match plan {
            AcceptPlan::Nothing => self.go(Phase::FaultIn),
            AcceptPlan::GuestInhibit { level, precheck } => {
                self.go(Phase::InhibitCheck { level, precheck })
            }
        }
    }

    /// GUEST_INHIBIT's lock-free pre-check (with `precheck`): the bit already set above
    /// `level` goes straight to fault-in; otherwise queue for the write lock.
    fn inhibit_check<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
        level: PageLevel,
        precheck: bool,
    ) -> Result<FaultStep, KvmError> {
        let above = level.larger().unwrap_or(PageLevel::Size1G);
        let set = ctx
            .kvm
            .lpage(self.fault.gfn, above)
            .is_some_and(|l| l.guest_inhibit());
        if precheck && set {
            return self.go(Phase::FaultIn);
        }
        ctx.kvm.mmu_lock.queue_writer();
        self.go(Phase::InhibitLock { level })
    }

    /// Takes mmu_lock for write for GUEST_INHIBIT's split, or waits.
    fn inhibit_lock<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
        level: PageLevel,
    ) -> Result<FaultStep, KvmError> {
        if !ctx.kvm.mmu_lock.try_write() {
            ctx.stats.mmu_lock_waits = ctx.stats.mmu_lock_waits.saturating_add(1);
            return Ok(FaultStep::Blocked);
        }
        ctx.stats.write_locks = ctx.stats.write_locks.saturating_add(1);
        self.go(Phase::InhibitSplit { level, split: None })
    }

    /// Under the write lock: split every mapping above `level` in the `level`-aligned range,
    /// then set GUEST_INHIBIT at `level`+1 (and `level`+2 for 4K), then release the lock.
    fn inhibit_split<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
        level: PageLevel,
        split: Option<Split>,
    ) -> Result<FaultStep, KvmError> {
        if let Some(mut sp) = split {
            let r = sp.step(ctx.kvm, ctx.sept)?;
            self.phase = Phase::InhibitSplit {
                level,
                split: Some(sp),
            };
            return match r {
                SplitStep::Progress => Ok(FaultStep::Progress),
                SplitStep::Blocked => {
                    ctx.stats.split_waits = ctx.stats.split_waits.saturating_add(1);
                    Ok(FaultStep::Blocked)
                }
                SplitStep::Done => {
                    ctx.stats.add_split(&sp, true);
                    self.go(Phase::InhibitSplit { level, split: None })
                }
                SplitStep::Failed | SplitStep::Bug(_) => {
                    let s = if let SplitStep::Bug(s) = r {
                        Some(s)
                    } else {
                        None
                    };
                    self.bug(ctx, s)
                }
            };
        }
        // The next huge leaf above `level` covering the GFN, largest first.
        let gfn = self.fault.gfn;
        for leaf in [PageLevel::Size1G, PageLevel::Size2M] {
            if leaf <= level {
                continue;
            }
            if ctx.kvm.mirror(gfn, leaf).is_some_and(Spte::is_leaf) {
                let sp = Split::new(ctx.sept, self.gpa(leaf)?, leaf, true);
                return self.go(Phase::InhibitSplit {
                    level,
                    split: Some(sp),
                });
            }
        }
        // Nothing huge left: set the bits, then release (the order matters: a lock-free reader
        // that sees the bit knows no huge leaf remains).
        let inhibit: &[PageLevel] = match level {
            PageLevel::Size4K => &[PageLevel::Size2M, PageLevel::Size1G],
            PageLevel::Size2M => &[PageLevel::Size1G],
            PageLevel::Size1G => &[],
        };
        for &up in inhibit {
            ctx.kvm.set_guest_inhibit(gfn, up);
        }
        ctx.kvm
            .mmu_lock
            .release_write()
            .map_err(|_| KvmError::Inconsistent)?;
        self.go(Phase::FaultIn)
    }

    fn fault_in<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
    ) -> Result<FaultStep, KvmError> {
        ctx.stats.faults = ctx.stats.faults.saturating_add(1);
        let gfn = self.fault.gfn;
        let slot = ctx.kvm.memslot(gfn);
        if !slot.is_some_and(|s| s.guest_memfd) || !ctx.kvm.is_private(gfn) {
            return self.end(FaultEnd::ExitToUserspace);
        }
        if let Some((start, end)) = ctx.kvm.invalidation
            && gfn.raw() >= start.raw()
            && gfn.raw() < end.raw()
        {
            return self.finish_pass(ctx, RetPf::Retry);
        }
        self.go(Phase::AcquireRead)
    }

    /// One pass of the fault has produced `ret`: the local retry loop goes on, or the vCPU goes
    /// back into the guest.
    pub(super) fn finish_pass<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
        ret: RetPf,
    ) -> Result<FaultStep, KvmError> {
        match ret {
            RetPf::Fixed => ctx.stats.fixed = ctx.stats.fixed.saturating_add(1),
            RetPf::Spurious => ctx.stats.spurious = ctx.stats.spurious.saturating_add(1),
            RetPf::Retry => {}
        }
        if ret == RetPf::Retry && !ctx.event_pending && ctx.kvm.alive() {
            ctx.stats.local_retries = ctx.stats.local_retries.saturating_add(1);
            return self.go(Phase::FaultIn);
        }
        self.end(FaultEnd::Resume(ret))
    }
}
