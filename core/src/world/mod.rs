//! The deterministic world: vCPU actors (a guest program, and on the same vCPU thread the host's
//! fault path after a TD exit), host actors running a script (conversions, punch holes,
//! prefetch), interrupts that can land during a 2M accept, kicks and TLB epochs — over one TDX
//! module model and one KVM state.
//!
//! `enabled` lists the possible next choices and `step(choice)` advances exactly one actor by
//! one atomic step, deterministically, so a fuzzer, a random or PCT scheduler and an exhaustive
//! explorer all drive the same transitions. A step that has to wait (mmu_lock, a kick) says so. The state is `Clone + Eq + Hash`; counters live in [`Metrics`],
//! outside it, so equal states compare equal.

mod schedule;
mod support;

pub use schedule::{
    Limits, MAX_PCT_DEPTH, PctScheduler, PriorityScheduler, RandomScheduler, Rng, Scheduler,
};
pub use support::{Unsupported, supports};

use crate::abi::{Gfn, Gpa, PageLevel};
use crate::guest::{Guest, GuestEnd, GuestEvent, GuestOp, GuestStep};
use crate::kvm::{
    FaultCtx, FaultEnd, FaultPath, FaultStats, FaultStep, HostOpEnd, HostOpKind, HostOperation,
    HostStep, Kvm, KvmError, KvmStorage,
};
use crate::policy::{Policy, PolicyId, VcpuPolicyState};
use crate::sept::{
    AcceptOp, AcceptOutcome, AcceptStart, AccessOutcome, EpochTicket, OpState, Sept, SeptStorage,
};

/// vCPUs a world holds at most.
pub const MAX_VCPUS: usize = 4;
/// Host actors a world holds at most.
pub const MAX_HOSTS: usize = 2;
/// Actions in one host script at most.
pub const MAX_SCRIPT: usize = 8;
/// Choices enabled at once at most: each vCPU's step and interrupt, each host actor's step.
pub const MAX_CHOICES: usize = MAX_VCPUS * 2 + MAX_HOSTS;
// Every actor can hold an operation in flight at once.
const _: () = assert!(crate::sept::MAX_IN_FLIGHT >= MAX_VCPUS + MAX_HOSTS);

/// Parts of a world outside its regions, for hashing part by part ([`World::hash_part`]).
pub const PARTS: usize = 3 + MAX_VCPUS + MAX_HOSTS;
/// Stages (guest programs run one after another, e.g. firmware then kernel) per vCPU at most.
pub const MAX_STAGES: usize = 3;
/// 2 MiB units the lazy-accept bitmap tracks (from the window's base).
pub const MAX_LAZY_UNITS: usize = 256;
const LAZY_WORDS: usize = MAX_LAZY_UNITS / 64;
/// 4K pages a 2M accept zeroes before an interrupt it was given lands.
pub const INTERRUPT_AFTER_PAGES: u32 = 128;

/// One action of a host script.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostAction {
    /// A host operation over [start, end).
    Operation {
        /// Which.
        kind: HostOpKind,
        /// First GFN.
        start: Gfn,
        /// One past the last.
        end: Gfn,
    },
    /// KVM_PRE_FAULT_MEMORY of one GFN.
    Prefetch(Gfn),
    /// KVM_TDX_INIT_MEM_REGION over [start, end) at build time: each page mapped at 4K and
    /// added (TDH.MEM.PAGE.ADD) with the image's content.
    InitMemRegion {
        /// First GFN.
        start: Gfn,
        /// One past the last.
        end: Gfn,
    },
    /// KVM_TDX_FINALIZE_VM (TDH.MR.FINALIZE): the TD becomes runnable and its vCPUs start.
    Finalize,
    /// Wait until every vCPU has finished its first `n` stages (e.g. the firmware).
    AwaitStage(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum HostRun {
    Idle,
    Operation(HostOperation),
    Prefetch(FaultPath),
    InitMem {
        path: FaultPath,
        next: Gfn,
        end: Gfn,
    },
    Await(u8),
}

/// The EFI unaccepted-memory bitmap Linux lazy accept keeps (drivers/firmware/efi/
/// unaccepted_memory.c): one bit per 2 MiB unit still to accept, and the units a vCPU has
/// claimed and is accepting (the kernel's `accepting_list`, taken under its spinlock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct UnitBitmap {
    unaccepted: [u64; LAZY_WORDS],
    claimed: [u64; LAZY_WORDS],
}

impl UnitBitmap {
    fn slot(base: Gpa, unit: Gpa) -> Option<(usize, u64)> {
        let idx = unit.raw().checked_sub(base.raw())? >> 21;
        let idx = usize::try_from(idx).ok()?;
        (idx < MAX_LAZY_UNITS).then_some((idx / 64, 1u64 << (idx % 64)))
    }

    fn get(words: &[u64; LAZY_WORDS], slot: Option<(usize, u64)>) -> bool {
        slot.and_then(|(w, b)| words.get(w).map(|x| x & b != 0))
            .unwrap_or(false)
    }

    fn set(words: &mut [u64; LAZY_WORDS], slot: Option<(usize, u64)>, on: bool) {
        if let Some((w, b)) = slot
            && let Some(x) = words.get_mut(w)
        {
            if on {
                *x |= b;
            } else {
                *x &= !b;
            }
        }
    }

    /// Units still to accept.
    pub fn unaccepted_units(&self) -> u32 {
        self.unaccepted.iter().map(|w| w.count_ones()).sum()
    }
}

/// A host actor: a script run action by action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostActor {
    script: [Option<HostAction>; MAX_SCRIPT],
    next: u8,
    run: HostRun,
    prefetch_state: VcpuPolicyState,
}

/// What a host actor is doing, for traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostActivity {
    /// Between actions (or done).
    Idle,
    /// A conversion, punch hole or split in this phase.
    Operation(HostOperation),
    /// A prefetch or an init-mem-region page in the fault path.
    Fault(FaultPath),
    /// Waiting for the vCPUs to finish this many stages.
    Await(u8),
}

impl HostActor {
    /// An actor running `script` in order.
    pub fn new(script: &[HostAction]) -> HostActor {
        let mut s = [None; MAX_SCRIPT];
        for (slot, a) in s.iter_mut().zip(script) {
            *slot = Some(*a);
        }
        HostActor {
            script: s,
            next: 0,
            run: HostRun::Idle,
            prefetch_state: VcpuPolicyState::default(),
        }
    }

    /// What it is doing.
    pub fn activity(&self) -> HostActivity {
        match self.run {
            HostRun::Idle => HostActivity::Idle,
            HostRun::Operation(op) => HostActivity::Operation(op),
            HostRun::Prefetch(p) | HostRun::InitMem { path: p, .. } => HostActivity::Fault(p),
            HostRun::Await(n) => HostActivity::Await(n),
        }
    }

    /// The range of guest memory its current operation may remove pages from.
    fn removing(&self) -> Option<(Gfn, Gfn)> {
        match self.run {
            HostRun::Operation(op) => op.removes(),
            _ => None,
        }
    }

    /// Whether its script is done.
    pub fn done(&self) -> bool {
        self.run == HostRun::Idle
            && self
                .script
                .get(usize::from(self.next))
                .copied()
                .flatten()
                .is_none()
    }
}

/// Where a vCPU is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VcpuState {
    /// Inside the guest, about to run the guest's next operation; `kicked` means it leaves the
    /// guest first (an IPI from a kick).
    InGuest {
        /// The TLB epoch it entered in.
        ticket: EpochTicket,
        /// A kick is pending for it.
        kicked: bool,
    },
    /// Inside an ACCEPT TDCALL that holds its entry lock.
    InTdcall {
        /// The TLB epoch it entered in.
        ticket: EpochTicket,
        /// The TDCALL between its phases.
        op: AcceptOp,
        /// A kick is pending for it.
        kicked: bool,
    },
    /// Outside the guest, in the host's fault path.
    InHost(FaultPath),
    /// The guest program ended.
    Finished(GuestEnd),
    /// The VM ended under it.
    Stopped(FaultEnd),
}

/// A world's change record: the regions each model changed since it was cleared
/// ([`World::changes`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Changes {
    sept: crate::sept::Dirty,
    kvm: crate::sept::Dirty,
    touched: Touched,
}

/// One vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VcpuActor {
    guest: Guest,
    stage: u8,
    /// How many stages its program has (the world keeps the programs of the later ones).
    stages: u8,
    state: VcpuState,
    policy: VcpuPolicyState,
    interrupts_left: u8,
    /// A host event (timer tick, signal) is pending while the vCPU is in KVM: the fault path's
    /// local retry loop stops at it and the vCPU re-enters the guest.
    event: bool,
}

impl VcpuActor {
    /// Hashes what changes as it runs: its guest program's progress, its stage (which names
    /// the program; the programs are fixed when the world is built), where it is, its policy
    /// state, its interrupt budget and its pending host event. Its stage count is fixed too.
    /// The small fields share one word (with a bit saying the slot holds a vCPU).
    fn hash_progress<H: core::hash::Hasher>(&self, h: &mut H) {
        use core::hash::Hash;
        let VcpuActor {
            guest,
            stage,
            stages: _,
            state,
            policy,
            interrupts_left,
            event,
        } = self;
        let VcpuPolicyState {
            window_start,
            window_end,
            request_level,
        } = *policy;
        h.write_u64(
            u64::from(*stage)
                | (u64::from(*interrupts_left) << 8)
                | (u64::from(*event) << 16)
                | (request_level.map_or(0, |l| (l as u64).wrapping_add(1)) << 24)
                | (1 << 32),
        );
        h.write_u64(window_start.0);
        h.write_u64(window_end.0);
        guest.hash_progress(h);
        state.hash(h);
    }

    /// The stage it runs (from 0).
    pub fn stage(&self) -> u8 {
        self.stage
    }

    /// Its policy state (per-vCPU request windows).
    pub fn policy_state(&self) -> VcpuPolicyState {
        self.policy
    }

    fn stage_count(&self) -> u8 {
        self.stages
    }

    /// How many of its stages are done (a guest that ended badly counts as done with all).
    fn stages_done(&self) -> u8 {
        match self.state {
            VcpuState::Finished(_) | VcpuState::Stopped(_) => self.stage_count(),
            _ if self.guest.ended() == Some(GuestEnd::Done) => self.stage.saturating_add(1),
            _ => self.stage,
        }
    }

    /// Where it is.
    pub fn state(&self) -> VcpuState {
        self.state
    }

    /// Its guest program.
    pub fn guest(&self) -> &Guest {
        &self.guest
    }

    fn live(&self) -> bool {
        !matches!(self.state, VcpuState::Finished(_) | VcpuState::Stopped(_))
    }
}

/// A possible next step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// How a world ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Every guest finished with its markers intact.
    Ok,
    /// A guest reached its fatal path.
    GuestPanic,
    /// A guest's marker is gone.
    DataLoss,
    /// KVM_BUG_ON.
    VmBugged,
    /// The VM was killed (a touch of unaccepted memory with #VE disabled, or a memory fault
    /// the model's userspace does not resolve).
    VmKilled,
    /// Some vCPU cannot complete under fair scheduling (decided by the explorer or scheduler).
    Livelock,
}

impl Verdict {
    /// Lower-case name, as scenario files spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::GuestPanic => "guest-panic",
            Verdict::DataLoss => "data-loss",
            Verdict::VmBugged => "vm-bugged",
            Verdict::VmKilled => "vm-killed",
            Verdict::Livelock => "livelock",
        }
    }
}

/// The counters a run reports (design.md, "Metrics").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Metrics {
    /// ACCEPT TDCALLs issued (each execution).
    pub tdcalls: u32,
    /// ACCEPTs that retired with success.
    pub accept_success: u32,
    /// ACCEPTs that retired with a warning or an error.
    pub accept_failed: u32,
    /// TD exits with accept information.
    pub exits_accept: u32,
    /// TD exits without it (touches).
    pub exits_other: u32,
    /// TD entries after an exit whose operation then exited again without retiring (the
    /// zero-step risk).
    pub entries_without_progress: u32,
    /// Kick bounces (a vCPU leaving and re-entering the guest).
    pub kicks: u32,
    /// The fault paths' counters, summed.
    pub fault: FaultStats,
    /// SEAMCALLs issued by host operations.
    pub host_seamcalls: u32,
    /// Demotions by host operations.
    pub host_demotions: u32,
    /// What the last step did (for traces; not a counter).
    pub note: StepNote,
}

impl Metrics {
    /// Adds `o`'s counters to these (the note is left as it is).
    pub fn add(&mut self, o: &Metrics) {
        for (a, b) in [
            (&mut self.tdcalls, o.tdcalls),
            (&mut self.accept_success, o.accept_success),
            (&mut self.accept_failed, o.accept_failed),
            (&mut self.exits_accept, o.exits_accept),
            (&mut self.exits_other, o.exits_other),
            (
                &mut self.entries_without_progress,
                o.entries_without_progress,
            ),
            (&mut self.kicks, o.kicks),
            (&mut self.host_seamcalls, o.host_seamcalls),
            (&mut self.host_demotions, o.host_demotions),
        ] {
            *a = a.saturating_add(b);
        }
        self.fault.add(&o.fault);
    }
}

/// What one step did that the state after it no longer shows, for traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct StepNote {
    /// The guest operation that retired, and what came back.
    pub retired: Option<(GuestOp, GuestEvent)>,
    /// How a fault path ended (RET_PF_* back into the guest, or the VM's end).
    pub fault_end: Option<FaultEnd>,
    /// How a host operation ended.
    pub host_end: Option<HostOpEnd>,
}

/// Why a seeded schedule stopped before a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScheduleError {
    /// A safety invariant broke after the `step`-th step, taking `choice`.
    Invariant {
        /// The step number (from 0).
        step: u32,
        /// The choice taken.
        choice: Choice,
        /// What broke.
        violation: Violation,
    },
    /// The model failed.
    Model(KvmError),
}

/// A broken safety invariant (design.md): a bug in a model or a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Violation {
    /// The S-EPT model's storage is inconsistent.
    SeptInconsistent,
    /// Mirror and S-EPT disagree on a leaf or table.
    MirrorMismatch(crate::kvm::MirrorMismatch),
    /// A mapping above 4K before the TD is runnable.
    HugeBeforeRunnable(Gpa),
    /// The model failed (capacity or misuse).
    Model(KvmError),
    /// A GUEST_INHIBIT bit was cleared (it is one-way).
    InhibitCleared(Gpa),
    /// Accepted content vanished from a page no conversion or punch hole in progress names.
    RemovedOutsideRange(Gpa),
    /// A leaf larger than the guest_memfd folio, or over a range whose attributes are mixed.
    LeafTooLarge(Gpa),
    /// A vCPU holds a per-vCPU request window that no fault of its own recorded (it outlived
    /// its fault or names memory the vCPU never faulted on).
    StrayPolicyState(u8),
}

/// The world.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct World<SS, KS> {
    sept: Sept<SS>,
    kvm: Kvm<KS>,
    policy: PolicyId,
    vcpus: [Option<VcpuActor>; MAX_VCPUS],
    hosts: [Option<HostActor>; MAX_HOSTS],
    /// Whether the last entry of each vCPU followed an exit (for the zero-step count).
    reentered: [bool; MAX_VCPUS],
    lazy: UnitBitmap,
    /// Each vCPU's program after its first stage, fixed when the world is built (the actor
    /// counts its stages and knows which one it runs).
    stages: [[Option<Guest>; MAX_STAGES - 1]; MAX_VCPUS],
    /// The actors steps ran or kicked since the change record was cleared (not state).
    touched: Touched,
}

/// Actor slots a world's steps touched, as parts ([`World::hash_part`]) bits. Bookkeeping, not
/// state: it compares equal and hashes to nothing, as the models' change records do.
#[derive(Clone, Copy, Debug, Default)]
struct Touched(u32);

impl PartialEq for Touched {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Touched {}

impl core::hash::Hash for Touched {
    fn hash<H: core::hash::Hasher>(&self, _: &mut H) {}
}

impl Touched {
    /// Everything.
    const ALL: Touched = Touched(u32::MAX);

    fn vcpu(&mut self, i: usize) {
        self.part(i.saturating_add(3));
    }

    fn host(&mut self, i: usize) {
        self.part(i.saturating_add(3 + MAX_VCPUS));
    }

    fn part(&mut self, k: usize) {
        self.0 |= Self::bit(k);
    }

    fn has(self, k: usize) -> bool {
        self.0 & Self::bit(k) != 0
    }

    /// Part `k`'s bit (every bit past the last).
    fn bit(k: usize) -> u32 {
        u32::try_from(k)
            .ok()
            .and_then(|k| 1u32.checked_shl(k))
            .unwrap_or(u32::MAX)
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
    ) -> Result<Self, KvmError> {
        let mut programs: [&[Guest]; MAX_VCPUS] = [&[]; MAX_VCPUS];
        if guests.len() > MAX_VCPUS {
            return Err(KvmError::WorldTooLarge);
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
        mut sept: Sept<SS>,
        kvm: Kvm<KS>,
        policy: PolicyId,
        programs: &[&[Guest]],
        scripts: &[&[HostAction]],
        interrupts: u8,
    ) -> Result<Self, KvmError> {
        policy
            .check_profile(sept.profile())
            .map_err(KvmError::Policy)?;
        if programs.len() > MAX_VCPUS
            || programs
                .iter()
                .any(|p| p.is_empty() || p.len() > MAX_STAGES)
            || scripts.len() > MAX_HOSTS
            || scripts.iter().any(|s| s.len() > MAX_SCRIPT)
        {
            return Err(KvmError::WorldTooLarge);
        }
        let mut vcpus = [None; MAX_VCPUS];
        let mut stages = [[None; MAX_STAGES - 1]; MAX_VCPUS];
        for ((slot, program), later_stages) in vcpus.iter_mut().zip(programs).zip(&mut stages) {
            let Some((first, rest)) = program.split_first() else {
                return Err(KvmError::WorldTooLarge);
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
            reentered: [false; MAX_VCPUS],
            lazy: UnitBitmap::default(),
            stages,
            touched: Touched::ALL,
        })
    }

    /// Marks the 2 MiB units of [start, end) (2 MiB aligned, inside the first
    /// [`MAX_LAZY_UNITS`] units of the window) as unaccepted in the lazy-accept bitmap: the
    /// memory the firmware left for the kernel to accept on demand.
    pub fn set_unaccepted(&mut self, start: Gpa, end: Gpa) -> Result<(), KvmError> {
        let base = self.sept.config().base;
        if !start.is_aligned(PageLevel::Size2M) || !end.is_aligned(PageLevel::Size2M) {
            return Err(KvmError::BadRange);
        }
        let mut unit = start;
        while unit < end {
            let slot = UnitBitmap::slot(base, unit).ok_or(KvmError::BadRange)?;
            if !self.sept.contains(unit) {
                return Err(KvmError::BadRange);
            }
            UnitBitmap::set(&mut self.lazy.unaccepted, Some(slot), true);
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
    pub fn unit_bitmap(&self) -> &UnitBitmap {
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
    pub fn sept(&self) -> &Sept<SS> {
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
    pub fn enabled(&self, out: &mut [Choice; MAX_CHOICES]) -> usize {
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

    /// Checks the safety invariants that hold after every step (shared/design.md): no mapping
    /// above 4K before the TD is runnable, no 2M leaf above a 4K folio or over mixed
    /// attributes, per-vCPU policy state only for the fault that recorded it, the S-EPT model
    /// consistent, the mirror agreeing with the S-EPT.
    pub fn check(&self) -> Result<(), Violation> {
        let config = self.sept.config();
        for r in 0..u64::from(config.regions) {
            let gpa = Gpa(config.base.raw().saturating_add(r << 21));
            if let Some(region) = self.kvm.region_of(gpa.gfn())
                && region.mirror.is_leaf()
                && (region.folio == PageLevel::Size4K || region.attrs == crate::kvm::Attrs::Mixed)
            {
                return Err(Violation::LeafTooLarge(gpa));
            }
        }
        self.check_vcpu_policy_state()?;
        if !self.runnable() {
            let config = self.sept.config();
            for r in 0..u64::from(config.regions) {
                let gpa = Gpa(config.base.raw().saturating_add(r << 21));
                if self
                    .kvm
                    .mirror(gpa.gfn(), PageLevel::Size2M)
                    .is_some_and(|s| s.is_leaf())
                {
                    return Err(Violation::HugeBeforeRunnable(gpa));
                }
            }
        }
        self.sept
            .check_consistency(false)
            .map_err(|_| Violation::SeptInconsistent)?;
        if !self.kvm.digests_current() {
            return Err(Violation::Model(KvmError::Inconsistent));
        }
        if self.sept.in_flight_count() == 0 {
            self.kvm
                .check_against_sept(&self.sept)
                .map_err(Violation::MirrorMismatch)?;
        }
        Ok(())
    }

    /// Starts a new record of what the next steps change (see [`World::check_step`]).
    pub fn clear_dirty(&mut self) {
        self.sept.clear_dirty();
        self.kvm.clear_dirty();
        self.touched = Touched::default();
    }

    /// The parts ([`World::hash_part`]) that may differ from the state the change record was
    /// cleared in, as bits: the S-EPT model's fields when its record says so, KVM's fields and
    /// the shared guest state always (they are not tracked), and each actor a step ran or
    /// kicked (every part after [`World::canonicalize`] renumbered, or when nothing was
    /// cleared yet). An explorer rehashes only these.
    pub fn touched_parts(&self) -> u32 {
        self.touched.0 | 0b110 | u32::from(self.sept.small_changed())
    }

    /// What its change record names (both models).
    pub fn changes(&self) -> Changes {
        Changes {
            sept: self.sept.dirty(),
            kvm: self.kvm.dirty(),
            touched: self.touched,
        }
    }

    /// Adds `changes` to its change record. An explorer keeping one copy of each state on a
    /// path uses it to widen what a later [`World::revert_to`] or [`World::sync_from`]
    /// copies: a copy that differs from another only where its record says can be brought
    /// back by a revert to it.
    pub fn absorb_changes(&mut self, changes: &Changes) {
        self.sept.absorb_dirty(&changes.sept);
        self.kvm.absorb_dirty(&changes.kvm);
        self.touched.0 |= changes.touched.0;
    }

    /// [`World::check`] and [`World::check_transition`] from `before` to this state, looking
    /// only at the regions changed since the record was cleared in `before`'s state (all of
    /// them when a model could not place a change): the same answers for the cost of a step.
    pub fn check_step(&self, before: &Self) -> Result<(), Violation> {
        self.check_step_state()?;
        self.check_step_transition(before)
    }

    /// The state half of [`World::check_step`]: [`World::check`] over the regions changed
    /// since the record was cleared (everything when it says everything). A function of the
    /// state: an explorer that reaches a state it has checked already can skip it.
    pub fn check_step_state(&self) -> Result<(), Violation> {
        self.check_step_state_in(&self.changed_regions())
    }

    /// [`World::check_step_state`] given the step's [`World::changed_regions`] (an explorer
    /// that has them already).
    pub fn check_step_state_in(&self, d: &crate::sept::Dirty) -> Result<(), Violation> {
        if d.is_all() {
            return self.check();
        }
        let config = self.sept.config();
        let runnable = self.runnable();
        for &r in d.regions() {
            let gpa = Gpa(config.base.raw().saturating_add(u64::from(r) << 21));
            if let Some(region) = self.kvm.region_of(gpa.gfn())
                && region.mirror.is_leaf()
            {
                if !runnable {
                    return Err(Violation::HugeBeforeRunnable(gpa));
                }
                if region.folio == PageLevel::Size4K || region.attrs == crate::kvm::Attrs::Mixed {
                    return Err(Violation::LeafTooLarge(gpa));
                }
            }
        }
        self.check_vcpu_policy_state()?;
        self.sept
            .check_changed_consistency()
            .map_err(|_| Violation::SeptInconsistent)?;
        if self.sept.in_flight_count() == 0 {
            self.kvm
                .check_changed_against_sept_in(&self.sept, d)
                .map_err(Violation::MirrorMismatch)?;
        }
        Ok(())
    }

    /// The transition half of [`World::check_step`]: [`World::check_transition`] from
    /// `before`, over the regions changed since the record was cleared in `before`'s state.
    pub fn check_step_transition(&self, before: &Self) -> Result<(), Violation> {
        self.check_step_transition_in(before, &self.changed_regions())
    }

    /// [`World::check_step_transition`] given the step's [`World::changed_regions`].
    pub fn check_step_transition_in(
        &self,
        before: &Self,
        d: &crate::sept::Dirty,
    ) -> Result<(), Violation> {
        if d.is_all() {
            return Self::check_transition(before, self);
        }
        let config = self.sept.config();
        for &r in d.regions() {
            let gpa = Gpa(config.base.raw().saturating_add(u64::from(r) << 21));
            Self::inhibit_kept(before, self, gpa, PageLevel::Size2M)?;
        }
        if d.gigs() {
            for r in 0..u64::from(config.regions) {
                let gpa = Gpa(config.base.raw().saturating_add(r << 21));
                if r != 0 && !gpa.is_aligned(PageLevel::Size1G) {
                    continue;
                }
                Self::inhibit_kept(before, self, gpa, PageLevel::Size1G)?;
            }
        }
        let ranges = Self::removal_ranges(before, self);
        let lost = before
            .sept
            .first_lost_content_changed(&self.sept, |gpa| Self::allowed(&ranges, gpa))
            .map_err(|e| Violation::Model(KvmError::Sept(e)))?;
        match lost {
            Some(gpa) => Err(Violation::RemovedOutsideRange(gpa)),
            None => Ok(()),
        }
    }

    /// Makes this world equal to `other`, given that it equals what `other` was when its
    /// change record was last cleared: copies only what changed.
    pub fn sync_from(&mut self, other: &Self)
    where
        SS: Clone,
        KS: Clone,
    {
        self.sept.sync_from(&other.sept);
        self.kvm.sync_from(&other.kvm);
        self.copy_actors(other, other.touched);
    }

    /// Copies everything outside the two models: the shared guest state, and the actors
    /// `touched` names (the others are equal, as the change record says); takes `other`'s
    /// record of touched actors, as the models take its change records.
    fn copy_actors(&mut self, other: &Self, touched: Touched) {
        self.policy = other.policy;
        self.reentered = other.reentered;
        self.lazy = other.lazy;
        if touched.0 == Touched::ALL.0 {
            self.vcpus = other.vcpus;
            self.hosts = other.hosts;
        } else {
            for (k, (v, o)) in self.vcpus.iter_mut().zip(&other.vcpus).enumerate() {
                if touched.has(k.saturating_add(3)) {
                    *v = *o;
                }
            }
            for (k, (h, o)) in self.hosts.iter_mut().zip(&other.hosts).enumerate() {
                if touched.has(k.saturating_add(3 + MAX_VCPUS)) {
                    *h = *o;
                }
            }
        }
        self.touched = other.touched;
    }

    /// Hashes everything but the regions' records and tables: with [`World::hash_region`] of
    /// every region, the whole state — so an explorer can update a fingerprint by the regions
    /// a step changed ([`World::changed_regions`]). It is [`World::hash_part`] of every part
    /// in order.
    pub fn hash_small<H: core::hash::Hasher>(&self, h: &mut H) {
        for k in 0..PARTS {
            self.hash_part(k, h);
        }
    }

    /// Hashes part `k` of what lies outside the regions: 0 the S-EPT model's fields and 1G
    /// records, 1 KVM's, 2 the design and the guests' shared state, then each actor slot
    /// (vCPUs, then host actors); nothing past them. What is fixed when the world is built is
    /// in no part: the states of one world share the vCPUs' later stage programs, the S-EPT
    /// model's configuration and KVM's window.
    pub fn hash_part<H: core::hash::Hasher>(&self, k: usize, h: &mut H) {
        use core::hash::Hash;
        match k {
            0 => self.sept.hash_small(h),
            1 => self.kvm.hash_small(h),
            2 => {
                self.policy.hash(h);
                self.reentered.hash(h);
                self.lazy.hash(h);
            }
            _ => match k.saturating_sub(3).checked_sub(MAX_VCPUS) {
                None => match self.vcpus.get(k.saturating_sub(3)) {
                    Some(Some(v)) => v.hash_progress(h),
                    Some(None) => 0u8.hash(h),
                    None => {}
                },
                Some(j) => self.hosts.get(j).hash(h),
            },
        }
    }

    /// Whether part `k` (as in [`World::hash_part`]) is the same in both worlds: an explorer
    /// keeps a state's part hashes and rehashes only the parts a step changed.
    pub fn same_part(&self, other: &Self, k: usize) -> bool {
        match k {
            0 => self.sept.small_eq(&other.sept),
            1 => self.kvm.small_eq(&other.kvm),
            2 => {
                self.policy == other.policy
                    && self.reentered == other.reentered
                    && self.lazy == other.lazy
            }
            _ => match k.saturating_sub(3).checked_sub(MAX_VCPUS) {
                None => self.vcpus.get(k.saturating_sub(3)) == other.vcpus.get(k.saturating_sub(3)),
                Some(j) => self.hosts.get(j) == other.hosts.get(j),
            },
        }
    }

    /// Hashes region `r` in both models.
    pub fn hash_region<H: core::hash::Hasher>(&self, r: usize, h: &mut H) {
        use core::hash::Hash;
        r.hash(h);
        self.sept.hash_region(r, h);
        self.kvm.hash_region(r, h);
    }

    /// The regions either model changed since the record was cleared.
    pub fn changed_regions(&self) -> crate::sept::Dirty {
        self.kvm.dirty().union(&self.sept.dirty())
    }

    /// Regions in the window.
    pub fn regions(&self) -> usize {
        self.sept.config().regions as usize
    }

    /// Undoes what changed since the change record was cleared, given that `original` is the
    /// state from then (an explorer stepping one scratch world through every choice).
    pub fn revert_to(&mut self, original: &Self)
    where
        SS: Clone,
        KS: Clone,
    {
        self.sept.revert_to(&original.sept);
        self.kvm.revert_to(&original.kvm);
        let touched = self.touched;
        self.copy_actors(original, touched);
    }

    /// GUEST_INHIBIT at `level` over `gpa`, set before, is still set after.
    fn inhibit_kept(
        before: &Self,
        after: &Self,
        gpa: Gpa,
        level: PageLevel,
    ) -> Result<(), Violation> {
        let set = |w: &Self| {
            w.kvm
                .lpage(gpa.gfn(), level)
                .is_some_and(|l| l.guest_inhibit())
        };
        if set(before) && !set(after) {
            return Err(Violation::InhibitCleared(gpa.align_down(level)));
        }
        Ok(())
    }

    fn removal_ranges(before: &Self, after: &Self) -> [Option<(Gfn, Gfn)>; MAX_HOSTS * 2] {
        let mut ranges = [None; MAX_HOSTS * 2];
        for (slot, h) in ranges
            .iter_mut()
            .zip(before.hosts.iter().chain(after.hosts.iter()))
        {
            *slot = h.as_ref().and_then(HostActor::removing);
        }
        ranges
    }

    fn allowed(ranges: &[Option<(Gfn, Gfn)>], gpa: Gpa) -> bool {
        let g = gpa.gfn();
        ranges
            .iter()
            .flatten()
            .any(|&(s, e)| g.raw() >= s.raw() && g.raw() < e.raw())
    }

    fn check_vcpu_policy_state(&self) -> Result<(), Violation> {
        for (i, v) in self.vcpus.iter().enumerate() {
            let Some(v) = v else { continue };
            // rfc-v1's window is set for the fault being handled; the next exit resets it
            // before anything consults it. While a decoded fault is in flight, a window must
            // cover its GFN.
            if let VcpuState::InHost(path) = v.state
                && path.decoded()
                && v.policy.request_level.is_some()
                && !v.policy.in_window(path.gfn())
            {
                return Err(Violation::StrayPolicyState(
                    u8::try_from(i).unwrap_or(u8::MAX),
                ));
            }
        }
        Ok(())
    }

    /// Checks the invariants that relate a state to the next: GUEST_INHIBIT never clears;
    /// accepted content disappears only inside the range of a conversion to shared or a punch
    /// hole in progress (before or after the step).
    pub fn check_transition(before: &Self, after: &Self) -> Result<(), Violation> {
        let config = before.sept.config();

        for r in 0..u64::from(config.regions) {
            let gpa = Gpa(config.base.raw().saturating_add(r << 21));
            for level in [PageLevel::Size2M, PageLevel::Size1G] {
                Self::inhibit_kept(before, after, gpa, level)?;
            }
        }
        let ranges = Self::removal_ranges(before, after);
        let lost = before
            .sept
            .first_lost_content(&after.sept, |gpa| Self::allowed(&ranges, gpa))
            .map_err(|e| Violation::Model(KvmError::Sept(e)))?;
        if let Some(gpa) = lost {
            return Err(Violation::RemovedOutsideRange(gpa));
        }
        Ok(())
    }

    /// Runs one schedule chosen by `seed` from this state: uniformly among the enabled choices
    /// (xorshift64), the invariants checked after every step, until the world ends or `bound`
    /// steps have passed (then: livelock). Adds the steps taken to `steps`.
    pub fn run_seeded(
        &self,
        seed: u64,
        bound: u32,
        metrics: &mut Metrics,
        steps: &mut u64,
    ) -> Result<Verdict, ScheduleError>
    where
        SS: Clone,
        KS: Clone,
    {
        self.run_schedule(
            &mut RandomScheduler::new(seed),
            Limits::steps(bound),
            metrics,
            steps,
            |_, _| {},
        )
    }

    /// Runs one schedule from this state, `scheduler` picking each choice: the invariants
    /// checked after every step, `on_step` told every choice taken (the trace), until the
    /// world ends — or it is a livelock: no choice enabled, `limits.patience` steps in a row
    /// without progress, or `limits.bound` steps in all. Adds the steps taken to `steps`.
    pub fn run_schedule<Sch: Scheduler>(
        &self,
        scheduler: &mut Sch,
        limits: Limits,
        metrics: &mut Metrics,
        steps: &mut u64,
        on_step: impl FnMut(Choice, Stepped),
    ) -> Result<Verdict, ScheduleError>
    where
        SS: Clone,
        KS: Clone,
    {
        self.clone()
            .advance_schedule(scheduler, limits, metrics, steps, on_step)
    }

    /// [`World::run_schedule`] on this world itself: it is left in the state the schedule
    /// ended in (for the final mapping histogram, or to look at).
    pub fn advance_schedule<Sch: Scheduler>(
        &mut self,
        scheduler: &mut Sch,
        limits: Limits,
        metrics: &mut Metrics,
        steps: &mut u64,
        mut on_step: impl FnMut(Choice, Stepped),
    ) -> Result<Verdict, ScheduleError>
    where
        SS: Clone,
        KS: Clone,
    {
        let w = self;
        let mut before = w.clone();
        let mut idle = 0u32;
        w.clear_dirty();
        for step in 0..limits.bound {
            if let Some(v) = w.ended() {
                return Ok(v);
            }
            let mut choices = [Choice::Vcpu(0); MAX_CHOICES];
            let n = w.enabled(&mut choices);
            let Some(enabled) = choices.get(..n).filter(|c| !c.is_empty()) else {
                return Ok(Verdict::Livelock);
            };
            let pick = scheduler.pick(step, enabled);
            let choice = enabled.get(pick).copied().unwrap_or(Choice::Vcpu(0));
            let stepped = w.step(choice, metrics).map_err(ScheduleError::Model)?;
            scheduler.feedback(choice, stepped);
            on_step(choice, stepped);
            *steps = steps.saturating_add(1);
            w.check_step(&before)
                .map_err(|violation| ScheduleError::Invariant {
                    step,
                    choice,
                    violation,
                })?;
            // `before` follows by copying what changed; then a fresh record.
            before.sync_from(w);
            w.clear_dirty();
            idle = match stepped {
                Stepped::Moved { progress: true } => 0,
                _ => idle.saturating_add(1),
            };
            if idle >= limits.patience {
                return Ok(Verdict::Livelock);
            }
        }
        Ok(w.ended().unwrap_or(Verdict::Livelock))
    }

    /// Whether `choice` is enabled now.
    pub fn is_enabled(&self, choice: Choice) -> bool {
        let mut choices = [Choice::Vcpu(0); MAX_CHOICES];
        let n = self.enabled(&mut choices);
        choices.get(..n).is_some_and(|c| c.contains(&choice))
    }

    /// Takes one step.
    pub fn step(&mut self, choice: Choice, m: &mut Metrics) -> Result<Stepped, KvmError> {
        m.note = StepNote::default();
        // A pending kick reaches every vCPU in the guest.
        if self.kvm.kick_pending {
            self.kvm.kick_pending = false;
            for (i, v) in self.vcpus.iter_mut().enumerate() {
                if let Some(v) = v {
                    match &mut v.state {
                        VcpuState::InGuest { kicked, .. } | VcpuState::InTdcall { kicked, .. } => {
                            *kicked = true;
                            self.touched.vcpu(i);
                        }
                        _ => {}
                    }
                }
            }
        }
        match choice {
            Choice::Vcpu(i) | Choice::Interrupt(i) => self.touched.vcpu(usize::from(i)),
            Choice::Host(i) => self.touched.host(usize::from(i)),
        }
        match choice {
            Choice::Vcpu(i) => self.step_vcpu(usize::from(i), None, m),
            Choice::Interrupt(i) => self.step_vcpu(usize::from(i), Some(INTERRUPT_AFTER_PAGES), m),
            Choice::Host(i) => self.step_host(usize::from(i), m),
        }
    }

    fn step_host(&mut self, i: usize, m: &mut Metrics) -> Result<Stepped, KvmError> {
        let Some(Some(h)) = self.hosts.get(i).copied() else {
            return Ok(Stepped::Invalid);
        };
        let mut h = h;
        let r = match h.run {
            HostRun::Idle => {
                let Some(action) = h.script.get(usize::from(h.next)).copied().flatten() else {
                    return Ok(Stepped::Invalid);
                };
                h.next = h.next.saturating_add(1);
                h.run = match action {
                    HostAction::Operation { kind, start, end } => {
                        HostRun::Operation(HostOperation::new(kind, start, end))
                    }
                    HostAction::Prefetch(gfn) => {
                        match FaultPath::prefetch(gfn, self.sept.op_state()) {
                            Some(p) => HostRun::Prefetch(p),
                            // The ioctl is refused before finalization.
                            None => HostRun::Idle,
                        }
                    }
                    HostAction::InitMemRegion { start, end } => {
                        match FaultPath::init_mem_region(start, self.sept.op_state()) {
                            Some(path) if start < end => HostRun::InitMem {
                                path,
                                next: Gfn(start.raw().saturating_add(1)),
                                end,
                            },
                            // Refused after finalization (or an empty range).
                            _ => HostRun::Idle,
                        }
                    }
                    HostAction::Finalize => {
                        // TDH.MR.FINALIZE; KVM_TDX_FINALIZE_VM refuses a second time.
                        let _ = self.sept.finalize();
                        HostRun::Idle
                    }
                    HostAction::AwaitStage(n) => HostRun::Await(n),
                };
                Stepped::Moved { progress: false }
            }
            HostRun::Await(n) => {
                if !self.stages_reached(n) {
                    return Ok(Stepped::Blocked);
                }
                h.run = HostRun::Idle;
                Stepped::Moved { progress: true }
            }
            HostRun::InitMem {
                mut path,
                next,
                end,
            } => {
                let mut ctx = FaultCtx {
                    kvm: &mut self.kvm,
                    sept: &mut self.sept,
                    policy: &self.policy,
                    vcpu: &mut h.prefetch_state,
                    event_pending: true,
                    stats: &mut m.fault,
                };
                match path.step(&mut ctx)? {
                    FaultStep::Progress => {
                        h.run = HostRun::InitMem { path, next, end };
                        Stepped::Moved { progress: false }
                    }
                    FaultStep::Blocked => return Ok(Stepped::Blocked),
                    FaultStep::Done(_) => {
                        h.run = match FaultPath::init_mem_region(next, self.sept.op_state()) {
                            Some(path) if next < end => HostRun::InitMem {
                                path,
                                next: Gfn(next.raw().saturating_add(1)),
                                end,
                            },
                            _ => HostRun::Idle,
                        };
                        Stepped::Moved { progress: true }
                    }
                }
            }
            HostRun::Operation(mut op) => match op.step(&mut self.kvm, &mut self.sept)? {
                HostStep::Progress => {
                    h.run = HostRun::Operation(op);
                    Stepped::Moved { progress: false }
                }
                HostStep::Blocked => return Ok(Stepped::Blocked),
                HostStep::Done(end) => {
                    m.note.host_end = Some(end);
                    let (seamcalls, demotions, _) = op.counts();
                    m.host_seamcalls = m.host_seamcalls.saturating_add(seamcalls);
                    m.host_demotions = m.host_demotions.saturating_add(demotions);
                    if let HostOpEnd::VmBugged(_) = end {
                        self.kvm.bugged = true;
                    }
                    h.run = HostRun::Idle;
                    Stepped::Moved { progress: true }
                }
            },
            HostRun::Prefetch(mut p) => {
                let mut ctx = FaultCtx {
                    kvm: &mut self.kvm,
                    sept: &mut self.sept,
                    policy: &self.policy,
                    vcpu: &mut h.prefetch_state,
                    event_pending: true,
                    stats: &mut m.fault,
                };
                match p.step(&mut ctx)? {
                    FaultStep::Progress => {
                        h.run = HostRun::Prefetch(p);
                        Stepped::Moved { progress: false }
                    }
                    FaultStep::Blocked => return Ok(Stepped::Blocked),
                    FaultStep::Done(_) => {
                        h.run = HostRun::Idle;
                        Stepped::Moved { progress: true }
                    }
                }
            }
        };
        if let Some(slot) = self.hosts.get_mut(i) {
            *slot = Some(h);
        }
        Ok(r)
    }

    fn step_vcpu(
        &mut self,
        i: usize,
        interrupt: Option<u32>,
        m: &mut Metrics,
    ) -> Result<Stepped, KvmError> {
        let Some(Some(mut v)) = self.vcpus.get(i).copied() else {
            return Ok(Stepped::Invalid);
        };
        let r = self.vcpu_step(&mut v, i, interrupt, m)?;
        // A blocked step may still have changed what it waits on (a kick requested, a TRACK
        // issued, a BUSY retry counted): keep it.
        if !matches!(r, Stepped::Invalid)
            && let Some(slot) = self.vcpus.get_mut(i)
        {
            *slot = Some(v);
        }
        Ok(r)
    }

    fn enter(&mut self, v: &mut VcpuActor) -> Result<(), KvmError> {
        let ticket = self.sept.vcpu_enter()?;
        v.state = VcpuState::InGuest {
            ticket,
            kicked: false,
        };
        Ok(())
    }

    /// The guest's TDCALL or access exited: to the host's fault path.
    fn exit_to_host(
        &mut self,
        v: &mut VcpuActor,
        i: usize,
        ticket: EpochTicket,
        path: FaultPath,
        m: &mut Metrics,
    ) -> Result<(), KvmError> {
        self.sept.vcpu_exit(ticket)?;
        if self.reentered.get(i).copied().unwrap_or(false) {
            m.entries_without_progress = m.entries_without_progress.saturating_add(1);
        }
        v.state = VcpuState::InHost(path);
        Ok(())
    }

    fn retired(&mut self, v: &mut VcpuActor, i: usize, ev: GuestEvent, m: &mut Metrics) {
        if let GuestStep::Op(op) = v.guest.next_op() {
            m.note.retired = Some((op, ev));
        }
        v.guest.complete(ev);
        if let Some(r) = self.reentered.get_mut(i) {
            *r = false;
        }
    }

    fn vcpu_step(
        &mut self,
        v: &mut VcpuActor,
        i: usize,
        interrupt: Option<u32>,
        m: &mut Metrics,
    ) -> Result<Stepped, KvmError> {
        match v.state {
            VcpuState::Finished(_) | VcpuState::Stopped(_) => Ok(Stepped::Invalid),
            VcpuState::InGuest {
                ticket,
                kicked: true,
            } => {
                self.sept.vcpu_exit(ticket)?;
                m.kicks = m.kicks.saturating_add(1);
                self.enter(v)?;
                Ok(Stepped::Moved { progress: false })
            }
            VcpuState::InGuest { ticket, .. } => {
                if interrupt.is_some() {
                    return Ok(Stepped::Invalid);
                }
                // TDH.VP.ENTER needs a finalized TD: until then the vCPU thread waits.
                if !self.runnable() {
                    return Ok(Stepped::Blocked);
                }
                self.guest_op(v, i, ticket, m)
            }
            VcpuState::InTdcall { ticket, op, kicked } => {
                if interrupt.is_some() {
                    if v.interrupts_left == 0 {
                        return Ok(Stepped::Invalid);
                    }
                    v.interrupts_left = v.interrupts_left.saturating_sub(1);
                }
                let out = self.sept.accept_finish(op, interrupt)?;
                v.state = VcpuState::InGuest { ticket, kicked };
                self.accept_outcome(v, i, ticket, out, m)
            }
            VcpuState::InHost(mut path) => {
                if interrupt.is_some() {
                    if v.event {
                        return Ok(Stepped::Invalid);
                    }
                    v.event = true;
                    return Ok(Stepped::Moved { progress: false });
                }
                let mut ctx = FaultCtx {
                    kvm: &mut self.kvm,
                    sept: &mut self.sept,
                    policy: &self.policy,
                    vcpu: &mut v.policy,
                    event_pending: v.event,
                    stats: &mut m.fault,
                };
                let r = path.step(&mut ctx)?;
                if let FaultStep::Done(end) = r {
                    m.note.fault_end = Some(end);
                    // Back in the guest, the event is delivered there.
                    v.event = false;
                }
                match r {
                    FaultStep::Progress => {
                        v.state = VcpuState::InHost(path);
                        Ok(Stepped::Moved { progress: false })
                    }
                    FaultStep::Blocked => Ok(Stepped::Blocked),
                    FaultStep::Done(FaultEnd::Resume(_)) => {
                        self.enter(v)?;
                        if let Some(r) = self.reentered.get_mut(i) {
                            *r = true;
                        }
                        Ok(Stepped::Moved { progress: false })
                    }
                    FaultStep::Done(FaultEnd::ExitToUserspace) => {
                        // The model's userspace does not resolve memory faults: the VM ends.
                        self.kvm.killed = true;
                        v.state = VcpuState::Stopped(FaultEnd::ExitToUserspace);
                        Ok(Stepped::Moved { progress: false })
                    }
                    FaultStep::Done(end) => {
                        v.state = VcpuState::Stopped(end);
                        Ok(Stepped::Moved { progress: false })
                    }
                }
            }
        }
    }

    fn accept_outcome(
        &mut self,
        v: &mut VcpuActor,
        i: usize,
        ticket: EpochTicket,
        out: AcceptOutcome,
        m: &mut Metrics,
    ) -> Result<Stepped, KvmError> {
        match out {
            AcceptOutcome::Completed(s) => {
                if s.is_error() || s.code() != crate::abi::StatusCode::Success {
                    m.accept_failed = m.accept_failed.saturating_add(1);
                } else {
                    m.accept_success = m.accept_success.saturating_add(1);
                }
                self.retired(v, i, GuestEvent::Status(s), m);
                Ok(Stepped::Moved { progress: true })
            }
            AcceptOutcome::Exit(e) => {
                m.exits_accept = m.exits_accept.saturating_add(1);
                self.exit_to_host(v, i, ticket, FaultPath::new(e), m)?;
                Ok(Stepped::Moved { progress: false })
            }
            // Not retired: the guest re-executes the TDCALL.
            AcceptOutcome::Interrupted => Ok(Stepped::Moved { progress: false }),
        }
    }

    fn guest_op(
        &mut self,
        v: &mut VcpuActor,
        i: usize,
        ticket: EpochTicket,
        m: &mut Metrics,
    ) -> Result<Stepped, KvmError> {
        let op = match v.guest.next_op() {
            GuestStep::End(GuestEnd::Done) if v.stage.saturating_add(1) < v.stages => {
                // The next stage starts once every vCPU is through this one.
                if !self.stages_reached(v.stage.saturating_add(1)) {
                    return Ok(Stepped::Blocked);
                }
                let next = self
                    .stages
                    .get(i)
                    .and_then(|s| s.get(usize::from(v.stage)))
                    .copied()
                    .flatten();
                let Some(g) = next else {
                    return Err(KvmError::Inconsistent);
                };
                v.guest = g;
                v.stage = v.stage.saturating_add(1);
                return Ok(Stepped::Moved { progress: true });
            }
            GuestStep::End(e) => {
                self.sept.vcpu_exit(ticket)?;
                v.state = VcpuState::Finished(e);
                return Ok(Stepped::Moved { progress: true });
            }
            GuestStep::Op(op) => op,
        };
        let access = match op {
            GuestOp::Accept(_) | GuestOp::AcceptRaw(_) => {
                let rcx = match op {
                    GuestOp::Accept(a) => a.encode(),
                    GuestOp::AcceptRaw(r) => r,
                    _ => 0,
                };
                m.tdcalls = m.tdcalls.saturating_add(1);
                return match self.sept.accept_begin(rcx)? {
                    AcceptStart::Done(out) => self.accept_outcome(v, i, ticket, out, m),
                    AcceptStart::Zeroing(op) | AcceptStart::Checking(op) => {
                        v.state = VcpuState::InTdcall {
                            ticket,
                            op,
                            kicked: false,
                        };
                        Ok(Stepped::Moved { progress: false })
                    }
                };
            }
            GuestOp::ClaimUnit(unit) => {
                // unaccepted_memory.c accept_memory: under the lock, a unit another CPU is
                // accepting makes this one spin (retry); a set bit is claimed; a clear one is
                // done.
                let slot = UnitBitmap::slot(self.sept.config().base, unit);
                if UnitBitmap::get(&self.lazy.claimed, slot) {
                    return Ok(Stepped::Blocked);
                }
                let ev = if UnitBitmap::get(&self.lazy.unaccepted, slot) {
                    UnitBitmap::set(&mut self.lazy.claimed, slot, true);
                    GuestEvent::UnitClaimed
                } else {
                    GuestEvent::UnitAccepted
                };
                self.retired(v, i, ev, m);
                return Ok(Stepped::Moved { progress: true });
            }
            GuestOp::ReleaseUnit(unit) => {
                let slot = UnitBitmap::slot(self.sept.config().base, unit);
                UnitBitmap::set(&mut self.lazy.unaccepted, slot, false);
                UnitBitmap::set(&mut self.lazy.claimed, slot, false);
                self.retired(v, i, GuestEvent::UnitReleased, m);
                return Ok(Stepped::Moved { progress: true });
            }
            GuestOp::Read(gpa) => self.sept.guest_read(gpa)?,
            GuestOp::Write {
                gpa,
                level,
                content,
            } => self.sept.guest_write(gpa, level, content)?,
            GuestOp::Verify {
                gpa,
                level,
                content,
            } => {
                let mut ev = GuestEvent::Verified;
                for p in 0..level.pages_4k() {
                    let page = Gpa(gpa.raw().saturating_add(u64::from(p) << 12));
                    let found = self.sept.content(page)?;
                    if found != content {
                        ev = GuestEvent::Mismatch { gpa: page, found };
                        break;
                    }
                }
                self.retired(v, i, ev, m);
                return Ok(Stepped::Moved { progress: true });
            }
        };
        match access {
            AccessOutcome::Accessible(c) => {
                let ev = match op {
                    GuestOp::Read(_) => GuestEvent::Read(c),
                    _ => GuestEvent::Wrote,
                };
                self.retired(v, i, ev, m);
                Ok(Stepped::Moved { progress: true })
            }
            AccessOutcome::VirtualizationException => {
                self.retired(v, i, GuestEvent::VirtualizationException, m);
                Ok(Stepped::Moved { progress: true })
            }
            AccessOutcome::Exit(e) => {
                m.exits_other = m.exits_other.saturating_add(1);
                self.exit_to_host(v, i, ticket, FaultPath::new(e), m)?;
                Ok(Stepped::Moved { progress: false })
            }
        }
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
