//! What a run reports: its verdict, its counters and per-step notes, and why a run stopped
//! early (a broken invariant, a model error).

use crate::abi::Gpa;
use crate::guest::{GuestEvent, GuestOp};
use crate::kvm::{FaultEnd, FaultStats, HostOpEnd, KvmError};

use super::{Choice, MAX_WORLD_VCPUS};

/// One counter per vCPU.
pub type PerVcpu = [u32; MAX_WORLD_VCPUS];

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

/// The counters a run reports (design.md, "Metrics"). The per-vCPU counters have room for
/// the largest world ([`MAX_WORLD_VCPUS`]); vCPUs a world does not have count zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// ACCEPTs that retired with TDX_OPERAND_BUSY: the entry lock held by another ACCEPT or a
    /// SEAMCALL, or its host-priority bit set.
    pub accept_busy: u32,
    /// Host actors' steps that had to wait (for mmu_lock, for the guests to leave an entry or
    /// an epoch).
    pub host_waits: u32,
    /// Each vCPU's steps that moved or waited (its share of the run).
    pub vcpu_steps: PerVcpu,
    /// Each vCPU's steps that had to wait (for mmu_lock, for the guests, for the TD to be
    /// finalized, for the other vCPUs to finish a stage, for a lazy-accept unit).
    pub vcpu_waits: PerVcpu,
    /// Each vCPU's ACCEPT TDCALLs.
    pub vcpu_tdcalls: PerVcpu,
    /// Each vCPU's TD exits (to its fault path).
    pub vcpu_exits: PerVcpu,
    /// The SEAMCALLs each vCPU's fault path issued.
    pub vcpu_seamcalls: PerVcpu,
    /// The 4K pages each vCPU's successful ACCEPTs initialised (512 for a 2M page).
    pub vcpu_pages: PerVcpu,
    /// What the last step did (for traces; not a counter).
    pub note: StepNote,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            tdcalls: 0,
            accept_success: 0,
            accept_failed: 0,
            exits_accept: 0,
            exits_other: 0,
            entries_without_progress: 0,
            kicks: 0,
            fault: FaultStats::default(),
            host_seamcalls: 0,
            host_demotions: 0,
            accept_busy: 0,
            host_waits: 0,
            vcpu_steps: [0; MAX_WORLD_VCPUS],
            vcpu_waits: [0; MAX_WORLD_VCPUS],
            vcpu_tdcalls: [0; MAX_WORLD_VCPUS],
            vcpu_exits: [0; MAX_WORLD_VCPUS],
            vcpu_seamcalls: [0; MAX_WORLD_VCPUS],
            vcpu_pages: [0; MAX_WORLD_VCPUS],
            note: StepNote::default(),
        }
    }
}

impl Metrics {
    /// The most steps one vCPU took, and the most waits one vCPU had (the run's longest
    /// vCPU, as far as counts tell).
    pub fn busiest_vcpu(&self) -> (u32, u32) {
        (
            self.vcpu_steps.iter().copied().max().unwrap_or(0),
            self.vcpu_waits.iter().copied().max().unwrap_or(0),
        )
    }

    /// The most TD exits one vCPU took (the exits on the longest vCPU's path, as far as
    /// counts tell: every exit is a round trip through KVM).
    pub fn most_exits_on_one_vcpu(&self) -> u32 {
        self.vcpu_exits.iter().copied().max().unwrap_or(0)
    }

    /// These counters without the ones every step or every wait adds to (each vCPU's steps and
    /// waits, host actors' waits, the fault paths' waits for mmu_lock and for the guests) and
    /// without the note: equal for two runs that differ only in how often an actor asked again
    /// while it waited.
    pub fn without_waits(&self) -> Metrics {
        let mut m = *self;
        m.vcpu_steps = [0; MAX_WORLD_VCPUS];
        m.vcpu_waits = [0; MAX_WORLD_VCPUS];
        m.host_waits = 0;
        m.fault.mmu_lock_waits = 0;
        m.fault.split_waits = 0;
        m.note = StepNote::default();
        m
    }

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
            (&mut self.accept_busy, o.accept_busy),
            (&mut self.host_waits, o.host_waits),
        ] {
            *a = a.saturating_add(b);
        }
        for (mine, theirs) in [
            (&mut self.vcpu_steps, &o.vcpu_steps),
            (&mut self.vcpu_waits, &o.vcpu_waits),
            (&mut self.vcpu_tdcalls, &o.vcpu_tdcalls),
            (&mut self.vcpu_exits, &o.vcpu_exits),
            (&mut self.vcpu_seamcalls, &o.vcpu_seamcalls),
            (&mut self.vcpu_pages, &o.vcpu_pages),
        ] {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a = a.saturating_add(*b);
            }
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
    /// The design's decision the step took on a fault path (shown with the design's name).
    pub decision: Option<crate::policy::Decision>,
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
    /// The schedule took its whole step budget (`Limits::bound`) without the world ending and
    /// without going `Limits::patience` steps without progress: no verdict. Not a livelock —
    /// a livelock needs steps without progress — but a world too large for the budget.
    BudgetExhausted {
        /// The steps taken (the budget).
        steps: u32,
    },
    /// The observer asked to stop ([`super::Observer::keep_going`]): no verdict.
    Stopped {
        /// The steps taken.
        steps: u32,
    },
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
