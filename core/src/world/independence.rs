//! Steps that commute with everything the other actors can still do: the explorer's
//! partial-order reduction takes such a step alone (a persistent set of one step) instead of
//! every enabled choice.
//!
//! A vCPU's next step qualifies when it stays inside the guest and touches only a 4K page no
//! other actor can reach, in a region nothing left can restructure:
//! - the step: a read, write or read-back of a 4K page the S-EPT maps (no exit, no #VE), or
//!   either phase of a 4K ACCEPT on a PENDING or MAPPED entry whose lock is free (or is its own,
//!   between the phases). It reads the walk to the page, the page's entry and content, the
//!   vCPU's own state and its own in-flight slot ([`crate::sept::Sept::set_caller`]), the kick
//!   flag and the TD's op state; it writes the page's entry lock, state and content, its slot
//!   and its own state. It touches nothing of KVM's;
//! - the page's 2M region is a table in the S-EPT (NL_MAPPED under an NL_MAPPED 1G entry) and
//!   in KVM's mirror (present, not frozen). The models never merge a table back into a leaf
//!   (no PROMOTE, no zap of a table on the fault path), so only a host actor could change the
//!   walk to the page (tdx-module: BLOCK, REMOVE of a table need a SEAMCALL the fault path never
//!   issues on a table; kvm-fault-path.md step 6: "no promotion over an existing table");
//! - no host actor is left to run (they convert, punch, prefetch and finalize anywhere), no kick
//!   is pending, and the TD is runnable;
//! - every other live vCPU is in its last stage (a stage change reads every vCPU's progress),
//!   its program's reach ([`crate::guest::Guest::reach`], its later stages' and the page its
//!   fault path or ACCEPT is on) leaves the page out, and every region that reach touches is a
//!   table in both models: its fault paths then install 4K leaves and never split, so they never
//!   kick (kicks come only from splits, kvm/split.rs) nor TRACK.
//!
//! The invariants an explorer checks on each transition stay visible: the only SEAMCALL such a
//! step starts is its own 4K AUG, and while that is in flight (the S-EPT's mirror check waits
//! for no SEAMCALL to be in flight) its vCPU stays the first independent one, since nothing it
//! changes is read by another vCPU's classification, so no other actor steps in between in the
//! reduced search. A step allowed to start any other SEAMCALL would need that argument again.
//!
//! Such a step is never disabled by another actor's step (only a kick or a host could), commutes
//! with every step the others can take from here on, and each one retires a guest operation or
//! starts a 4K ACCEPT whose second phase retires it, so the guests' programs advance and no cycle
//! is made of such steps alone. What the reduction keeps, and how the explorer checks it: see
//! host-kvm's explore module (`verify` mode).

use crate::abi::{Gpa, PAGE_SIZE_2M, PageLevel, SeptEntryState};
use crate::guest::{GuestOp, GuestStep};
use crate::kvm::KvmStorage;
use crate::sept::SeptStorage;

use super::{VcpuActor, VcpuState, World};

/// GPAs [start, end) an actor can still touch; `None`: anywhere.
type Reach = Option<(Gpa, Gpa)>;

/// What a vCPU's independent step touches besides the vCPU itself.
#[derive(Clone, Copy)]
enum Touch {
    /// The counts of vCPUs inside the guest per TLB epoch (an exit or entry): they commute
    /// with every exit and entry, and only TRACK reads them.
    Epochs,
    /// The 4K page, from inside the guest (and, on an exit, the epoch counts).
    Page(Gpa),
    /// The 4K page, from the fault path: also mmu_lock's readers and the tree lock's shared
    /// holders.
    FaultPath(Gpa),
}

impl<SS: SeptStorage, KS: KvmStorage, const V: usize, const F: usize, const L: usize>
    World<SS, KS, V, F, L>
{
    /// The first vCPU whose every enabled choice is independent of every step any other actor
    /// can still take (see the module's description), if any: an explorer may take its choices
    /// alone.
    pub fn independent_vcpu(&self) -> Option<u8> {
        if self.hosts.iter().flatten().any(|h| !h.done())
            || self.kvm.kick_pending
            || !self.runnable()
            || self.ended().is_some()
        {
            return None;
        }
        // Whether the fault paths' shared counts commute now and from here on: no writer
        // holds or waits for mmu_lock, no SEAMCALL holds the tree exclusively.
        let (_, tree_exclusive) = self.sept.tree_lock();
        let locks_quiet = !self.kvm.mmu_lock.write_held()
            && self.kvm.mmu_lock.writers_waiting() == 0
            && !tree_exclusive;
        for (i, v) in self.vcpus.iter().enumerate() {
            let Some(v) = v else { continue };
            let Some(touch) = self.local_touch(v) else {
                continue;
            };
            let page = match touch {
                Touch::Epochs => None,
                Touch::Page(p) => Some(p),
                Touch::FaultPath(p) => {
                    if !locks_quiet {
                        continue;
                    }
                    Some(p)
                }
            };
            if page.is_some_and(|p| !self.region_settled(p)) {
                continue;
            }
            let others_keep_off = self.vcpus.iter().enumerate().all(|(j, o)| {
                j == i
                    || o.as_ref().is_none_or(|o| {
                        self.keeps_off(o, page)
                            && (!matches!(touch, Touch::FaultPath(_)) || !self.may_write_lock(o))
                    })
            });
            if others_keep_off {
                return u8::try_from(i).ok();
            }
        }
        None
    }

    /// What `v`'s next step (and its interrupt, when one is enabled) touches beyond the vCPU
    /// itself, when that is a 4K page (and, for its fault path, counts that commute) or only
    /// the TLB epochs' counts of vCPUs inside the guest; `None` when it may touch more.
    fn local_touch(&self, v: &VcpuActor) -> Option<Touch> {
        match v.state {
            // The kick's bounce: an exit and an entry.
            VcpuState::InGuest { kicked: true, .. } => Some(Touch::Epochs),
            VcpuState::InGuest { kicked: false, .. } => {
                let mut guest = v.guest;
                let GuestStep::Op(op) = guest.next_op() else {
                    return None;
                };
                match op {
                    // A page the S-EPT maps is read or written in place; a FREE one exits to
                    // the fault path (the exit counts out of the epoch).
                    GuestOp::Read(p)
                    | GuestOp::Write {
                        gpa: p,
                        level: PageLevel::Size4K,
                        ..
                    } => {
                        let m = self.sept.mapping(p).ok()?;
                        (m.level == PageLevel::Size4K
                            && matches!(m.state, SeptEntryState::Mapped | SeptEntryState::Free))
                        .then_some(Touch::Page(p))
                    }
                    // The read-back compares content only.
                    GuestOp::Verify {
                        gpa: p,
                        level: PageLevel::Size4K,
                        ..
                    } => Some(Touch::Page(p)),
                    // A 4K ACCEPT takes the entry lock whatever the entry holds; FREE, PENDING
                    // and MAPPED are the states a settled region's entry can be in.
                    GuestOp::Accept(a) if a.level == PageLevel::Size4K => {
                        let e = self.sept.entry(a.gpa, PageLevel::Size4K).ok()??;
                        (matches!(
                            e.state,
                            SeptEntryState::Free | SeptEntryState::Pending | SeptEntryState::Mapped
                        ) && !e.lock.is_locked()
                            && !e.lock.host_priority())
                        .then_some(Touch::Page(a.gpa))
                    }
                    _ => None,
                }
            }
            VcpuState::InTdcall { op, .. } if op.level() == PageLevel::Size4K => {
                Some(Touch::Page(op.gpa()))
            }
            VcpuState::InHost(path) => {
                let page = path.gfn().gpa().ok()?;
                if path.resumes() {
                    // Re-entry counts into the epoch.
                    return Some(Touch::Epochs);
                }
                path.next_step_is_local(&self.kvm, &self.sept)
                    .then_some(Touch::FaultPath(page))
            }
            _ => None,
        }
    }

    /// Whether vCPU `o` may still take mmu_lock for write: under GUEST_INHIBIT on an ACCEPT
    /// exit whose bit is not set yet (pre-check) or on every one (no pre-check); no other
    /// design takes it on the fault path.
    fn may_write_lock(&self, o: &VcpuActor) -> bool {
        if !o.live() {
            return false;
        }
        match self.policy {
            crate::policy::PolicyId::GuestInhibitNoCheck => true,
            crate::policy::PolicyId::GuestInhibit => {
                let Some((start, end)) = o.guest.reach() else {
                    return true;
                };
                // Every region it can reach has both bits (2M and 1G) set.
                let set = |r: Gpa, level| {
                    self.kvm
                        .lpage(r.gfn(), level)
                        .is_some_and(|l| l.guest_inhibit())
                };
                !every_region(start, end, |r| {
                    set(r, PageLevel::Size2M) && set(r, PageLevel::Size1G)
                })
            }
            _ => false,
        }
    }

    /// Whether the 2M region of `gpa` is a table in the S-EPT (under a 1G table, both
    /// NL_MAPPED) and in KVM's mirror (present, not frozen): nothing but a host actor changes it.
    fn region_settled(&self, gpa: Gpa) -> bool {
        let base = gpa.align_down(PageLevel::Size2M);
        let walkable = |level| {
            self.sept
                .entry(base, level)
                .ok()
                .flatten()
                .is_some_and(|e| e.state == SeptEntryState::NlMapped && !e.lock.is_locked())
        };
        walkable(PageLevel::Size1G)
            && walkable(PageLevel::Size2M)
            && [PageLevel::Size1G, PageLevel::Size2M].iter().all(|&level| {
                self.kvm
                    .mirror(base.gfn(), level)
                    .is_some_and(|s| s.is_table() && !s.is_frozen())
            })
    }

    /// Whether vCPU `o` can no longer touch `page` nor split (so neither kick nor TRACK): it is
    /// done, or it is in its last stage and everything it can reach lies outside `page`, in
    /// settled regions.
    fn keeps_off(&self, o: &VcpuActor, page: Option<Gpa>) -> bool {
        if !o.live() {
            return true;
        }
        // A stage change reads every vCPU's progress, which the step may change.
        if o.stage.saturating_add(1) < o.stages {
            return false;
        }
        self.reaches(o).iter().all(|r| match *r {
            Some((start, end)) => {
                page.is_none_or(|p| p < start || p >= end) && self.settled_between(start, end)
            }
            None => false,
        })
    }

    /// What `o` (in its last stage) can reach: its program's range, and the page its fault path
    /// or ACCEPT in flight is on (the range again when it holds none).
    fn reaches(&self, o: &VcpuActor) -> [Reach; 2] {
        let program = o.guest.reach();
        let held = match o.state {
            VcpuState::InHost(path) => path.gfn().gpa().ok().map(|g| (g, PageLevel::Size4K)),
            VcpuState::InTdcall { op, .. } => Some((op.gpa(), op.level())),
            _ => None,
        };
        let held = held.map_or(program, |(g, level)| {
            let start = g.align_down(level);
            Some((start, Gpa(start.raw().saturating_add(level.bytes()))))
        });
        [program, held]
    }

    /// Whether every 2M region of [start, end) is settled ([`World::region_settled`]).
    fn settled_between(&self, start: Gpa, end: Gpa) -> bool {
        every_region(start, end, |r| self.region_settled(r))
    }
}

/// Whether `f` holds for every 2M region of [start, end) (false past the top of the GPA
/// space).
fn every_region(start: Gpa, end: Gpa, mut f: impl FnMut(Gpa) -> bool) -> bool {
    let mut r = start.align_down(PageLevel::Size2M);
    while r < end {
        if !f(r) {
            return false;
        }
        let Some(next) = r.raw().checked_add(PAGE_SIZE_2M) else {
            return false;
        };
        r = Gpa(next);
    }
    true
}
