//! Host-initiated operations on private memory, as step machines under mmu_lock for write:
//! private↔shared conversion (KVM_SET_MEMORY_ATTRIBUTES), guest_memfd punch hole, and their
//! parts (split across a range's boundaries, remove exactly a range).
//!
//! shared/reference/kvm-fault-path.md, "Rules every design shares": split across the range
//! boundaries first (this may fail for lack of memory, failing the ioctl), then remove exactly
//! the range's 4K pages; removing accepted private memory outside the range is data loss. A
//! converted page sets MIXED on its 2M range. Faults inside the range retry while the operation
//! runs (mmu_invalidate_in_progress).

use crate::abi::{Gfn, PageLevel, TdxStatus};
use crate::sept::{Sept, SeptStorage};

use super::split::{Split, SplitStep};
use super::{Kvm, KvmError, KvmStorage};

/// Which operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostOpKind {
    /// Private → shared: split across the boundaries, remove the range's private mappings, mark
    /// the range shared.
    ConvertToShared,
    /// Shared → private: mark the range private (the S-EPT is untouched; the guest accepts later).
    ConvertToPrivate,
    /// guest_memfd punch hole: split across the boundaries and remove the range's mappings.
    PunchHole,
    /// Only split across the range's boundaries.
    SplitBoundaries,
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostOpEnd {
    /// Done.
    Done,
    /// The ioctl failed for lack of memory (no table for a split); nothing was removed.
    OutOfMemory,
    /// KVM_BUG_ON: a SEAMCALL under the write lock failed unexpectedly.
    VmBugged(Option<TdxStatus>),
}

/// One step's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostStep {
    /// Something changed.
    Progress,
    /// Waiting for the lock or for vCPUs to leave the guest.
    Blocked,
    /// Ended.
    Done(HostOpEnd),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Queue,
    Lock,
    /// Split the huge leaves crossing boundary `at` (0: start, 1: end).
    Split {
        at: u8,
        split: Option<Split>,
    },
    Remove {
        cursor: Gfn,
        zap: Option<Split>,
    },
    Attributes,
    Unlock(HostOpEnd),
    Ended(HostOpEnd),
}

/// A host operation over [start, end) in GFNs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostOperation {
    kind: HostOpKind,
    start: Gfn,
    end: Gfn,
    phase: Phase,
    /// SEAMCALLs issued.
    seamcalls: u32,
    /// Demotions done.
    demotions: u32,
    /// Leaves removed.
    removals: u32,
}

impl HostOperation {
    /// An operation of `kind` over [start, end).
    pub fn new(kind: HostOpKind, start: Gfn, end: Gfn) -> HostOperation {
        HostOperation {
            kind,
            start,
            end,
            phase: Phase::Queue,
            seamcalls: 0,
            demotions: 0,
            removals: 0,
        }
    }

    /// The operation.
    pub fn kind(&self) -> HostOpKind {
        self.kind
    }

    /// The range [start, end) the operation names.
    pub fn range(&self) -> (Gfn, Gfn) {
        (self.start, self.end)
    }

    /// The range whose private pages the operation removes (conversions to shared and punch
    /// holes), if any.
    pub fn removes(&self) -> Option<(Gfn, Gfn)> {
        match self.kind {
            HostOpKind::ConvertToShared | HostOpKind::PunchHole => Some((self.start, self.end)),
            HostOpKind::ConvertToPrivate | HostOpKind::SplitBoundaries => None,
        }
    }

    /// A short name of the phase, for traces.
    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Queue => "queued",
            Phase::Lock => "take mmu_lock for write",
            Phase::Split { .. } => "split across a boundary",
            Phase::Remove { .. } => "remove private leaves",
            Phase::Attributes => "set attributes",
            Phase::Unlock(_) => "release mmu_lock",
            Phase::Ended(_) => "ended",
        }
    }

    /// SEAMCALLs issued, demotions, and leaves removed so far.
    pub fn counts(&self) -> (u32, u32, u32) {
        (self.seamcalls, self.demotions, self.removals)
    }

    fn go(&mut self, p: Phase) -> Result<HostStep, KvmError> {
        self.phase = p;
        Ok(HostStep::Progress)
    }

    /// One step.
    pub fn step<KS: KvmStorage, SS: SeptStorage, const F: usize>(
        &mut self,
        kvm: &mut Kvm<KS>,
        sept: &mut Sept<SS, F>,
    ) -> Result<HostStep, KvmError> {
        match self.phase {
            Phase::Ended(e) => Ok(HostStep::Done(e)),
            Phase::Queue => {
                kvm.mmu_lock.queue_writer();
                self.go(Phase::Lock)
            }
            Phase::Lock => {
                if !kvm.mmu_lock.try_write() {
                    return Ok(HostStep::Blocked);
                }
                kvm.invalidation = Some((self.start, self.end));
                let next = match self.kind {
                    HostOpKind::ConvertToPrivate => Phase::Attributes,
                    _ => Phase::Split { at: 0, split: None },
                };
                self.go(next)
            }
            Phase::Split { at, split } => self.split_boundary(kvm, sept, at, split),
            Phase::Remove { cursor, zap } => self.remove(kvm, sept, cursor, zap),
            Phase::Attributes => {
                match self.kind {
                    HostOpKind::ConvertToShared => kvm.set_private(self.start, self.end, false)?,
                    HostOpKind::ConvertToPrivate => kvm.set_private(self.start, self.end, true)?,
                    HostOpKind::PunchHole | HostOpKind::SplitBoundaries => {}
                }
                self.go(Phase::Unlock(HostOpEnd::Done))
            }
            Phase::Unlock(end) => {
                kvm.invalidation = None;
                kvm.mmu_lock
                    .release_write()
                    .map_err(|_| KvmError::Inconsistent)?;
                self.phase = Phase::Ended(end);
                Ok(HostStep::Done(end))
            }
        }
    }

    fn split_boundary<KS: KvmStorage, SS: SeptStorage, const F: usize>(
        &mut self,
        kvm: &mut Kvm<KS>,
        sept: &mut Sept<SS, F>,
        at: u8,
        split: Option<Split>,
    ) -> Result<HostStep, KvmError> {
        if let Some(mut sp) = split {
            let r = sp.step(kvm, sept)?;
            self.phase = Phase::Split {
                at,
                split: Some(sp),
            };
            return match r {
                SplitStep::Progress => Ok(HostStep::Progress),
                SplitStep::Blocked => Ok(HostStep::Blocked),
                SplitStep::Done => {
                    self.seamcalls = self.seamcalls.saturating_add(u32::from(sp.seamcalls()));
                    self.demotions = self.demotions.saturating_add(1);
                    self.go(Phase::Split { at, split: None })
                }
                SplitStep::Failed => self.go(Phase::Unlock(HostOpEnd::VmBugged(None))),
                SplitStep::Bug(s) => {
                    kvm.bugged = true;
                    self.go(Phase::Unlock(HostOpEnd::VmBugged(Some(s))))
                }
            };
        }
        let boundary = if at == 0 { self.start } else { self.end };
        // A huge leaf covering both sides of the boundary, largest first.
        for level in [PageLevel::Size1G, PageLevel::Size2M] {
            let aligned = boundary.round_for_level(level) == boundary;
            if aligned || crate::broken::active(crate::broken::Variant::ConversionRemoves2M) {
                continue;
            }
            if kvm.mirror(boundary, level).is_some_and(|s| s.is_leaf()) {
                // KVM allocates the page for the new table first; without one the ioctl fails
                // before anything changes.
                let gpa = boundary.gpa().map_err(|_| KvmError::OutsideModel)?;
                if level == PageLevel::Size2M
                    && (!kvm.can_split(boundary) || !sept.can_demote_2m(gpa))
                {
                    return self.go(Phase::Unlock(HostOpEnd::OutOfMemory));
                }
                let sp = Split::new(sept, gpa, level, true);
                return self.go(Phase::Split {
                    at,
                    split: Some(sp),
                });
            }
        }
        let next = match (at, self.kind) {
            (0, _) => Phase::Split { at: 1, split: None },
            (_, HostOpKind::SplitBoundaries) => Phase::Attributes,
            _ => Phase::Remove {
                cursor: self.start,
                zap: None,
            },
        };
        self.go(next)
    }

    fn remove<KS: KvmStorage, SS: SeptStorage, const F: usize>(
        &mut self,
        kvm: &mut Kvm<KS>,
        sept: &mut Sept<SS, F>,
        cursor: Gfn,
        zap: Option<Split>,
    ) -> Result<HostStep, KvmError> {
        if let Some(mut z) = zap {
            let r = z.step(kvm, sept)?;
            self.phase = Phase::Remove {
                cursor,
                zap: Some(z),
            };
            return match r {
                SplitStep::Progress => Ok(HostStep::Progress),
                SplitStep::Blocked => Ok(HostStep::Blocked),
                SplitStep::Done => {
                    self.seamcalls = self.seamcalls.saturating_add(u32::from(z.seamcalls()));
                    self.removals = self.removals.saturating_add(1);
                    self.go(Phase::Remove { cursor, zap: None })
                }
                SplitStep::Failed => self.go(Phase::Unlock(HostOpEnd::VmBugged(None))),
                SplitStep::Bug(s) => {
                    kvm.bugged = true;
                    self.go(Phase::Unlock(HostOpEnd::VmBugged(Some(s))))
                }
            };
        }
        // The next leaf at or after the cursor inside the range.
        let mut gfn = cursor;
        while gfn.raw() < self.end.raw() {
            let (level, next) = kvm.leaf_at(gfn);
            match level {
                Some(level) => {
                    // After the boundary splits, every leaf here lies wholly inside the range.
                    let gpa = gfn
                        .round_for_level(level)
                        .gpa()
                        .map_err(|_| KvmError::OutsideModel)?;
                    let z = Split::remove(sept, gpa, level);
                    return self.go(Phase::Remove {
                        cursor: next,
                        zap: Some(z),
                    });
                }
                None => gfn = next,
            }
        }
        let after = if self.kind == HostOpKind::ConvertToShared {
            Phase::Attributes
        } else {
            Phase::Unlock(HostOpEnd::Done)
        };
        self.go(after)
    }
}

impl<KS: KvmStorage> Kvm<KS> {
    /// The mirror leaf mapping `gfn`, if any, and the first GFN after the entry that was looked
    /// at (the leaf, or the empty range).
    pub(crate) fn leaf_at(&self, gfn: Gfn) -> (Option<PageLevel>, Gfn) {
        let after = |l: PageLevel| {
            Gfn(gfn
                .round_for_level(l)
                .raw()
                .saturating_add(u64::from(l.pages_4k())))
        };
        for level in [PageLevel::Size1G, PageLevel::Size2M, PageLevel::Size4K] {
            match self.mirror(gfn, level) {
                Some(s) if s.is_leaf() => return (Some(level), after(level)),
                Some(s) if s.is_table() => continue,
                _ => return (None, after(level)),
            }
        }
        (None, after(PageLevel::Size4K))
    }
}
