//! The actors of a world: vCPUs (a guest program, and on the same vCPU thread the host's
//! fault path after a TD exit) and host actors running a script, and what each is doing.

use crate::abi::Gfn;
use crate::guest::{Guest, GuestEnd};
use crate::kvm::{FaultEnd, FaultPath, HostOpKind, HostOperation};
use crate::policy::VcpuPolicyState;
use crate::sept::{AcceptOp, EpochTicket};

use super::MAX_SCRIPT;

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
pub(super) enum HostRun {
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

/// A host actor: a script run action by action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostActor {
    pub(super) script: [Option<HostAction>; MAX_SCRIPT],
    pub(super) next: u8,
    pub(super) run: HostRun,
    pub(super) prefetch_state: VcpuPolicyState,
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
    pub(super) fn removing(&self) -> Option<(Gfn, Gfn)> {
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

/// One vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VcpuActor {
    pub(super) guest: Guest,
    pub(super) stage: u8,
    /// How many stages its program has (the world keeps the programs of the later ones).
    pub(super) stages: u8,
    pub(super) state: VcpuState,
    pub(super) policy: VcpuPolicyState,
    pub(super) interrupts_left: u8,
    /// A host event (timer tick, signal) is pending while the vCPU is in KVM: the fault path's
    /// local retry loop stops at it and the vCPU re-enters the guest.
    pub(super) event: bool,
}

impl VcpuActor {
    /// Hashes what changes as it runs: its guest program's progress, its stage (which names
    /// the program; the programs are fixed when the world is built), where it is, its policy
    /// state, its interrupt budget and its pending host event. Its stage count is fixed too.
    /// The small fields share one word (with a bit saying the slot holds a vCPU).
    pub(super) fn hash_progress<H: core::hash::Hasher>(&self, h: &mut H) {
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

    pub(super) fn stage_count(&self) -> u8 {
        self.stages
    }

    /// How many of its stages are done (a guest that ended badly counts as done with all).
    pub(super) fn stages_done(&self) -> u8 {
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

    pub(super) fn live(&self) -> bool {
        !matches!(self.state, VcpuState::Finished(_) | VcpuState::Stopped(_))
    }
}
