//! The deterministic world: vCPU actors (a guest program, and on the same vCPU thread the host's
//! fault path after a TD exit), host actors running a script (conversions, punch holes,
//! prefetch), interrupts that can land during a 2M accept, kicks and TLB epochs — over one TDX
//! module model and one KVM state.
//!
//! `enabled` lists the possible next choices and `step(choice)` advances exactly one actor by
//! one atomic step, deterministically, so a fuzzer, a random or PCT scheduler and an exhaustive
//! explorer all drive the same transitions. A step that has to wait (mmu_lock, a kick) says so. The state is `Clone + Eq + Hash`; counters live in [`Metrics`],
//! outside it, so equal states compare equal.

mod actors;
mod check;
mod display;
mod error;
mod host;
mod independence;
mod lazy;
mod run;
mod schedule;
mod snapshot;
mod step;
mod support;
mod verdict;

pub use actors::{HostAction, HostActivity, HostActor, VcpuActor, VcpuState};
pub use error::WorldError;
pub use lazy::{LAZY_WORDS, UnitBitmap};
pub use run::Observer;
pub use schedule::{
    Limits, MAX_PCT_DEPTH, PctScheduler, PriorityScheduler, RandomScheduler, Rng, Scheduler,
    first_host_actor,
};
pub use snapshot::Changes;
pub use support::{Unsupported, retries_busy_without_limit, supports};
pub use verdict::{Metrics, PerVcpu, ScheduleError, StepNote, Verdict, Violation};

use crate::abi::{Gfn, Gpa, PageLevel};
use crate::guest::{Guest, GuestEnd};
use crate::kvm::{FaultEnd, Kvm, KvmStorage};
use crate::policy::{Policy, PolicyId, VcpuPolicyState};
use crate::sept::{MAX_IN_FLIGHT, OpState, Sept, SeptStorage};

use actors::HostRun;
use snapshot::Touched;

/// vCPUs a world holds by default ([`World::new`]; the exhaustive explorer's worlds): the
/// capacity `V` of [`World`] unless a larger one is named.
pub const MAX_VCPUS: usize = 4;
/// vCPUs a world of any capacity holds at most: every vCPU and host actor has an in-flight
/// slot numbered by a byte ([`crate::sept::MAX_SLOTS`]). Per-vCPU metrics are this wide.
pub const MAX_WORLD_VCPUS: usize = crate::sept::MAX_SLOTS - MAX_HOSTS;
/// Host actors a world holds at most.
pub const MAX_HOSTS: usize = 2;
/// Actions in one host script at most.
pub const MAX_SCRIPT: usize = 8;
/// Choices enabled at once at most in a world of the default capacity: each vCPU's step and
/// interrupt, each host actor's step ([`choices_for`] for other capacities).
pub const MAX_CHOICES: usize = choices_for(MAX_VCPUS);
/// Choices enabled at once at most in a world of any capacity.
pub const MAX_WORLD_CHOICES: usize = choices_for(MAX_WORLD_VCPUS);

/// Choices enabled at once at most in a world of `vcpus` vCPUs.
pub const fn choices_for(vcpus: usize) -> usize {
    vcpus.saturating_mul(2).saturating_add(MAX_HOSTS)
}
// Every actor can hold an operation in flight at once.
const _: () = assert!(MAX_IN_FLIGHT >= MAX_VCPUS + MAX_HOSTS);

/// Parts of a world of the default capacity outside its regions, for hashing part by part
/// ([`World::hash_part`]).
pub const PARTS: usize = 3 + MAX_VCPUS + MAX_HOSTS;
/// Stages (guest programs run one after another, e.g. firmware then kernel) per vCPU at most.
pub const MAX_STAGES: usize = 3;
/// 2 MiB units the lazy-accept bitmap of a world of the default size tracks (from the
/// window's base; [`UnitBitmap::UNITS`] for others).
pub const MAX_LAZY_UNITS: usize = 256;
/// 4K pages a 2M accept zeroes before an interrupt it was given lands.
pub const INTERRUPT_AFTER_PAGES: u32 = 128;

/// A possible next step. Ordered by kind (vCPU steps, interrupts, host steps), then index: an
/// explorer picks among equally short traces by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Choice {
    /// vCPU `i` takes its next step.
    Vcpu(u8),
    /// An interrupt lands on vCPU `i`: while it zeroes a 2M page, the ACCEPT returns without
    /// retiring, progress kept; while KVM handles its exit, a host event is pending and the
    /// fault path's local retry loop stops at it.
    Interrupt(u8),
    /// Host actor `i` takes its next step.
    Host(u8),
}

/// What a step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stepped {
    /// The state changed; `progress` says a guest operation completed (the liveness measure).
    Moved {
        /// A guest operation retired.
        progress: bool,
    },
    /// The actor has to wait (for mmu_lock, for vCPUs to leave the guest); at most what it waits
    /// on changed (a kick requested, a TRACK issued).
    Blocked,
    /// The choice names nothing that can move.
    Invalid,
}

/// The world, with room for `V` vCPUs (at most [`MAX_WORLD_VCPUS`]), `F` S-EPT in-flight
/// slots (at least `V` + [`MAX_HOSTS`], one per actor) and `64 * L` units in the lazy-accept
/// bitmap. Two worlds are equal (and hash alike) when they differ at most in what only
/// metrics read: `reentered`, which feeds [`Metrics::entries_without_progress`] and nothing a
/// step does, so an explorer does not tell apart states that behave alike.
#[derive(Clone, Debug)]
pub struct World<
    SS,
    KS,
    const V: usize = MAX_VCPUS,
    const F: usize = MAX_IN_FLIGHT,
    const L: usize = LAZY_WORDS,
> {
    sept: Sept<SS, F>,
    kvm: Kvm<KS>,
    policy: PolicyId,
    vcpus: [Option<VcpuActor>; V],
    hosts: [Option<HostActor>; MAX_HOSTS],
    /// Whether the last entry of each vCPU followed an exit (for the zero-step count, a
    /// metric: no step reads it, and worlds that differ only here are equal).
    reentered: [bool; V],
    lazy: UnitBitmap<L>,
    /// Each vCPU's program after its first stage, fixed when the world is built (the actor
    /// counts its stages and knows which one it runs).
    stages: [[Option<Guest>; MAX_STAGES - 1]; V],
    /// The actors steps ran or kicked since the change record was cleared (not state).
    touched: Touched,
}

impl<SS: PartialEq, KS: PartialEq, const V: usize, const F: usize, const L: usize> PartialEq
    for World<SS, KS, V, F, L>
{
    fn eq(&self, o: &Self) -> bool {
        // Every field but `reentered` (metrics only) and `touched` (bookkeeping).
        self.sept == o.sept
            && self.kvm == o.kvm
            && self.policy == o.policy
            && self.vcpus == o.vcpus
            && self.hosts == o.hosts
            && self.lazy == o.lazy
            && self.stages == o.stages
    }
}

impl<SS: Eq, KS: Eq, const V: usize, const F: usize, const L: usize> Eq for World<SS, KS, V, F, L> {}

impl<SS: core::hash::Hash, KS: core::hash::Hash, const V: usize, const F: usize, const L: usize>
    core::hash::Hash for World<SS, KS, V, F, L>
{
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        // What `eq` compares, in its order.
        self.sept.hash(h);
        self.kvm.hash(h);
        self.policy.hash(h);
        self.vcpus.hash(h);
        self.hosts.hash(h);
        self.lazy.hash(h);
        self.stages.hash(h);
    }
}

impl<SS: SeptStorage, KS: KvmStorage> World<SS, KS> {
    /// A world over `sept` and `kvm` (their windows must match) with one vCPU per guest, each
    /// entering the guest, and one host actor per script. `interrupts` is how many interrupts
    /// each vCPU may receive during 2M accepts (bounded, so the world stays finite).
    pub fn new(
        sept: Sept<SS>,
        kvm: Kvm<KS>,
        policy: PolicyId,
        guests: &[Guest],
        scripts: &[&[HostAction]],
        interrupts: u8,
    ) -> Result<Self, WorldError> {
        let mut programs: [&[Guest]; MAX_VCPUS] = [&[]; MAX_VCPUS];
        if guests.len() > MAX_VCPUS {
            return Err(WorldError::TooLarge);
        }
        for (p, g) in programs.iter_mut().zip(guests) {
            *p = core::slice::from_ref(g);
        }
        let n = guests.len();
        Self::with_programs(
            sept,
            kvm,
            policy,
            programs.get(..n).unwrap_or(&[]),
            scripts,
            interrupts,
        )
    }

    /// Like [`World::new`], with a program of up to [`MAX_STAGES`] guests per vCPU, run one
    /// after another: stage k+1 starts on any vCPU only once every vCPU has finished its
    /// stages up to k (firmware hands over to the kernel on all CPUs). A vCPU whose program is
    /// empty is refused. Before the TD is finalized (a host script's `Finalize`), vCPUs wait.
    pub fn with_programs(
        sept: Sept<SS>,
        kvm: Kvm<KS>,
        policy: PolicyId,
        programs: &[&[Guest]],
        scripts: &[&[HostAction]],
        interrupts: u8,
    ) -> Result<Self, WorldError> {
        Self::with_capacity(sept, kvm, policy, programs, scripts, interrupts)
    }
}

impl<SS: SeptStorage, KS: KvmStorage, const V: usize, const F: usize, const L: usize>
    World<SS, KS, V, F, L>
{
    /// [`World::with_programs`] in a world with room for `V` vCPUs and `F` in-flight slots:
    /// refused as too large unless `V` is at most [`MAX_WORLD_VCPUS`] and `F` at least `V` +
    /// [`MAX_HOSTS`] (every actor holds its own slot, [`Sept::set_caller`]).
    pub fn with_capacity(
        mut sept: Sept<SS, F>,
        kvm: Kvm<KS>,
        policy: PolicyId,
        programs: &[&[Guest]],
        scripts: &[&[HostAction]],
        interrupts: u8,
    ) -> Result<Self, WorldError> {
        if V > MAX_WORLD_VCPUS || F < V.saturating_add(MAX_HOSTS) {
            return Err(WorldError::TooLarge);
        }
        policy
            .check_profile(sept.profile())
            .map_err(WorldError::Policy)?;
        if programs.len() > V
            || programs
                .iter()
                .any(|p| p.is_empty() || p.len() > MAX_STAGES)
            || scripts.len() > MAX_HOSTS
            || scripts.iter().any(|s| s.len() > MAX_SCRIPT)
        {
            return Err(WorldError::TooLarge);
        }
        let mut vcpus = [None; V];
        let mut stages = [[None; MAX_STAGES - 1]; V];
        for ((slot, program), later_stages) in vcpus.iter_mut().zip(programs).zip(&mut stages) {
            let Some((first, rest)) = program.split_first() else {
                return Err(WorldError::TooLarge);
            };
            for (l, g) in later_stages.iter_mut().zip(rest) {
                *l = Some(*g);
            }
            let ticket = sept.vcpu_enter()?;
            *slot = Some(VcpuActor {
                guest: *first,
                stage: 0,
                stages: u8::try_from(program.len()).unwrap_or(u8::MAX),
                state: VcpuState::InGuest {
                    ticket,
                    kicked: false,
                },
                policy: VcpuPolicyState::default(),
                interrupts_left: interrupts,
                event: false,
            });
        }
        let mut hosts = [None; MAX_HOSTS];
        for (slot, s) in hosts.iter_mut().zip(scripts) {
            *slot = Some(HostActor::new(s));
        }
        Ok(World {
            sept,
            kvm,
            policy,
            vcpus,
            hosts,
            reentered: [false; V],
            lazy: UnitBitmap::default(),
            stages,
            touched: Touched::ALL,
        })
    }
}

impl<SS: SeptStorage, KS: KvmStorage, const V: usize, const F: usize, const L: usize>
    World<SS, KS, V, F, L>
{
    /// Marks the 2 MiB units of [start, end) (2 MiB aligned, inside the first
    /// [`UnitBitmap::UNITS`] units of the window) as unaccepted in the lazy-accept bitmap: the
    /// memory the firmware left for the kernel to accept on demand.
    pub fn set_unaccepted(&mut self, start: Gpa, end: Gpa) -> Result<(), WorldError> {
        let base = self.sept.config().base;
        if !start.is_aligned(PageLevel::Size2M) || !end.is_aligned(PageLevel::Size2M) {
            return Err(WorldError::BadRange);
        }
        self.touched.part(snapshot::LAZY_PART);
        let mut unit = start;
        while unit < end {
            if !self.sept.contains(unit) {
                return Err(WorldError::BadRange);
            }
            self.lazy
                .mark_unaccepted(base, unit)
                .ok_or(WorldError::BadRange)?;
            unit = Gpa(unit.raw().saturating_add(crate::abi::PAGE_SIZE_2M));
        }
        Ok(())
    }

    /// Renumbers the TLB epochs (module and vCPU tickets) so that states that differ only in
    /// how many TRACKs happened become equal ([`Sept::rebase_epochs`]); behaviour is unchanged.
    pub fn canonicalize(&mut self) {
        let before = *self.sept.epochs();
        let offset = self.sept.rebase_epochs();
        if offset == 0 {
            return;
        }
        for v in self.vcpus.iter_mut().flatten() {
            match &mut v.state {
                VcpuState::InGuest { ticket, .. } | VcpuState::InTdcall { ticket, .. } => {
                    ticket.0 = before.rebased(ticket.0, offset);
                }
                _ => {}
            }
        }
        self.touched = Touched::ALL;
    }

    /// The lazy-accept bitmap.
    pub fn unit_bitmap(&self) -> &UnitBitmap<L> {
        &self.lazy
    }

    /// The host actors.
    pub fn hosts(&self) -> impl Iterator<Item = &HostActor> {
        self.hosts.iter().flatten()
    }

    /// The policy.
    pub fn policy(&self) -> PolicyId {
        self.policy
    }

    /// Whether every vCPU has finished its first `n` stages (or all it has).
    fn stages_reached(&self, n: u8) -> bool {
        self.vcpus
            .iter()
            .flatten()
            .all(|v| v.stages_done() >= n.min(v.stage_count()))
    }

    /// The TDX module model.
    pub fn sept(&self) -> &Sept<SS, F> {
        &self.sept
    }

    /// KVM's state.
    pub fn kvm(&self) -> &Kvm<KS> {
        &self.kvm
    }

    /// KVM's state, to arrange a state by hand (tests and tools); nothing checks the change
    /// until [`World::check`] runs.
    pub fn kvm_mut(&mut self) -> &mut Kvm<KS> {
        &mut self.kvm
    }

    /// The vCPUs.
    pub fn vcpus(&self) -> impl Iterator<Item = &VcpuActor> {
        self.vcpus.iter().flatten()
    }

    /// The choices that can be taken now (some may turn out blocked). Returns how many were
    /// written to `out`.
    /// `out` needs room for [`choices_for`]`(V)` choices (an array of [`MAX_CHOICES`] for the
    /// default capacity); what does not fit is left out.
    pub fn enabled(&self, out: &mut [Choice]) -> usize {
        let mut n = 0usize;
        let mut push = |c: Choice| {
            if let Some(slot) = out.get_mut(n) {
                *slot = c;
                n = n.saturating_add(1);
            }
        };
        if self.ended().is_some() {
            return 0;
        }
        for (i, v) in self.vcpus.iter().enumerate() {
            let (Some(v), Ok(i)) = (v, u8::try_from(i)) else {
                continue;
            };
            if v.live() {
                push(Choice::Vcpu(i));
                let interruptible = match v.state {
                    // An interrupt during a 2M accept (bounded: it changes the accept's progress).
                    VcpuState::InTdcall { op, .. } => {
                        op.level() != PageLevel::Size4K && v.interrupts_left > 0
                    }
                    // A host event while KVM handles the exit (unbounded: host timers always
                    // tick again; the fault path's local retry loop stops at it).
                    VcpuState::InHost(_) => !v.event,
                    _ => false,
                };
                if interruptible {
                    push(Choice::Interrupt(i));
                }
            }
        }
        for (i, h) in self.hosts.iter().enumerate() {
            if let (Some(h), Ok(i)) = (h, u8::try_from(i))
                && !h.done()
            {
                push(Choice::Host(i));
            }
        }
        n
    }

    /// The verdict, once every actor is done or the VM has ended.
    pub fn ended(&self) -> Option<Verdict> {
        if self.kvm.bugged {
            return Some(Verdict::VmBugged);
        }
        if self.kvm.killed {
            return Some(Verdict::VmKilled);
        }
        let mut verdict = Verdict::Ok;
        for v in self.vcpus.iter().flatten() {
            match v.state {
                VcpuState::Finished(GuestEnd::Done) => {}
                VcpuState::Finished(GuestEnd::Panic { .. }) => verdict = Verdict::GuestPanic,
                VcpuState::Finished(GuestEnd::DataLoss { .. }) => return Some(Verdict::DataLoss),
                VcpuState::Finished(GuestEnd::Confused) => verdict = Verdict::GuestPanic,
                VcpuState::Stopped(FaultEnd::VmBugged(_)) => return Some(Verdict::VmBugged),
                VcpuState::Stopped(_) => return Some(Verdict::VmKilled),
                _ => return None,
            }
        }
        if self.hosts.iter().flatten().any(|h| !h.done()) {
            return None;
        }
        Some(verdict)
    }

    /// Bytes of private memory mapped at 2M and at 4K in the mirror, over the window.
    pub fn mapping_histogram(&self) -> (u64, u64) {
        let mut two_m = 0u64;
        let mut four_k = 0u64;
        let regions = self.sept.config().regions;
        let base = self.sept.config().base;
        for r in 0..u64::from(regions) {
            let g = Gpa(base.raw().saturating_add(r << 21)).gfn();
            match self.kvm.mirror(g, PageLevel::Size2M) {
                Some(s) if s.is_leaf() => two_m = two_m.saturating_add(1 << 21),
                Some(s) if s.is_table() => {
                    for p in 0..512u64 {
                        if self
                            .kvm
                            .mirror(Gfn(g.raw().saturating_add(p)), PageLevel::Size4K)
                            .is_some_and(|s| s.is_leaf())
                        {
                            four_k = four_k.saturating_add(1 << 12);
                        }
                    }
                }
                _ => {}
            }
        }
        (two_m, four_k)
    }

    /// Whether the TD is runnable.
    pub fn runnable(&self) -> bool {
        self.sept.op_state() == OpState::Runnable
    }
}
