//! The host policies: the decision points where the KVM TDX huge-page designs argued on the kvm
//! list differ, as small pure functions plus the per-vCPU state a design keeps.
//!
//! A policy never reaches into the models: the fault path (core::kvm) asks it questions and
//! acts on the answers. The decision points (shared/reference/kvm-fault-path.md):
//! - the fault's own max level, from the exit (`fault_max_level`: the fault-max-level design
//!   carries the accept level in the fault itself);
//! - what to do on a private EPT violation before the fault runs (`on_private_exit`): nothing,
//!   record per-vCPU state, or pre-split a range under the write lock and set GUEST_INHIBIT;
//! - the TDX `private_max_mapping_level` hook (`max_mapping_level`);
//! - what to do when mapping meets a huge leaf above the goal under the read lock
//!   (`on_huge_leaf`): refuse and retry (possibly widening the request), split in place with
//!   the read-lock demote sequence, keep the huge leaf, or bug the VM.

mod designs;
mod display;

use core::fmt;

use crate::abi::{Gfn, PageLevel};
use crate::sept::ModuleProfile;

pub use designs::{
    ExplicitDemotion, FaultMaxLevel, FaultPathDemote, GuestInhibit, RfcV1, UpstreamFourK,
};

/// What the fault path knows about a private EPT violation when it asks a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrivateExit {
    /// The faulting GFN (shared bit clear).
    pub gfn: Gfn,
    /// The accept level, for an ACCEPT exit (EEQ type ACCEPT: `info[2:0] + 1` in KVM's terms).
    pub accept_level: Option<PageLevel>,
}

/// The question of the `private_max_mapping_level` hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaxLevelQuery {
    /// The GFN being mapped.
    pub gfn: Gfn,
    /// A KVM_PRE_FAULT_MEMORY fault, not a guest access.
    pub prefetch: bool,
    /// Whether the TD is runnable (finalized).
    pub runnable: bool,
}

/// The question when mapping meets a huge leaf above the goal level under the read lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HugeLeafQuery {
    /// The GFN being mapped.
    pub gfn: Gfn,
    /// The level the fault wants.
    pub goal: PageLevel,
    /// The level of the leaf in the way.
    pub leaf: PageLevel,
}

/// What the fault path does on a private EPT violation before running the fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AcceptPlan {
    /// Nothing: run the fault.
    Nothing,
    /// GUEST_INHIBIT (RFC v2 onward): unless `precheck` finds GUEST_INHIBIT already set at
    /// `level`+1 for the GFN (lock-free), take mmu_lock for write, split every mapping above
    /// `level` in the `level`-aligned range, then set GUEST_INHIBIT at `level`+1 (and `level`+2
    /// when `level` is 4K); release the lock and run the fault.
    GuestInhibit {
        /// The accept level.
        level: PageLevel,
        /// Whether the lock-free pre-check runs first.
        precheck: bool,
    },
}

/// What mapping does on meeting a huge leaf above the goal level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SplitDecision {
    /// Refuse the split: restore the SPTE and return RET_PF_RETRY.
    Refuse,
    /// Split under the read lock: BLOCK → TRACK → DEMOTE, rolling back with UNBLOCK when DEMOTE
    /// fails (a plain DEMOTE on a non-blocking-resize module).
    SplitInPlace,
    /// Keep the huge leaf: the fault is already resolved (RET_PF_SPURIOUS).
    KeepHugeLeaf,
    /// KVM_BUG_ON: the VM is bugged.
    BugVm,
}

/// A decision a policy took on the fault path, with what it was asked: what a trace shows
/// beside the step, so a reader sees which design choice produced a RET_PF value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// `on_private_exit`: the plan for a private EPT violation.
    Exit {
        /// The exit.
        exit: PrivateExit,
        /// The plan.
        plan: AcceptPlan,
    },
    /// The level the fault maps at most: `private_max_mapping_level` under mmu_lock, with
    /// the fault's own max level and lpage_info.
    MaxLevel {
        /// The faulting GFN.
        gfn: Gfn,
        /// The level.
        level: PageLevel,
    },
    /// `on_huge_leaf`: mapping met a huge leaf above the goal.
    HugeLeaf {
        /// The question.
        query: HugeLeafQuery,
        /// The answer.
        decision: SplitDecision,
    },
}

/// A policy cannot run with this module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyError {
    /// explicit-demotion needs a module whose too-small ACCEPT returns SIZE_MISMATCH to the
    /// guest (the explicit-demotion module profile).
    NeedsExplicitDemotionModule,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::NeedsExplicitDemotionModule => f.write_str(
                "policy explicit-demotion needs the explicit-demotion module profile \
                 (ACCEPT smaller than a pending leaf must return SIZE_MISMATCH to the guest)",
            ),
        }
    }
}

/// Per-vCPU policy state. Only RFC v1 keeps any: the violation window and request level
/// (`violation_gfn_start`, `violation_gfn_end`, `violation_request_level`, all -1 at first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct VcpuPolicyState {
    /// The window [start, end) of GFNs the request level applies to; empty when start == end.
    pub window_start: Gfn,
    /// See `window_start`.
    pub window_end: Gfn,
    /// The request level inside the window.
    pub request_level: Option<PageLevel>,
}

impl VcpuPolicyState {
    /// Whether `gfn` lies in the window.
    pub const fn in_window(&self, gfn: Gfn) -> bool {
        self.request_level.is_some()
            && gfn.raw() >= self.window_start.raw()
            && gfn.raw() < self.window_end.raw()
    }

    /// Sets the window to the `level`-aligned range around `gfn`.
    pub fn set_window(&mut self, gfn: Gfn, level: PageLevel) {
        let start = gfn.round_for_level(level);
        self.window_start = start;
        self.window_end = Gfn(start.raw().saturating_add(u64::from(level.pages_4k())));
        self.request_level = Some(level);
    }

    /// Empties the window.
    pub fn reset(&mut self) {
        *self = VcpuPolicyState::default();
    }
}

/// The decision points of one design.
pub trait Policy {
    /// The design's name, as the command line spells it.
    fn name(&self) -> &'static str;

    /// Whether the design can run on this module.
    fn check_profile(&self, _profile: ModuleProfile) -> Result<(), PolicyError> {
        Ok(())
    }

    /// The fault's own max level for a private EPT violation (KVM starts at 1G).
    fn fault_max_level(&self, _exit: &PrivateExit) -> PageLevel {
        PageLevel::Size1G
    }

    /// Called on every private EPT violation before the fault runs.
    fn on_private_exit(&self, _vcpu: &mut VcpuPolicyState, _exit: &PrivateExit) -> AcceptPlan {
        AcceptPlan::Nothing
    }

    /// The TDX `private_max_mapping_level` hook.
    fn max_mapping_level(&self, vcpu: &VcpuPolicyState, q: &MaxLevelQuery) -> PageLevel;

    /// Mapping met a huge leaf above the goal under the read lock.
    fn on_huge_leaf(&self, vcpu: &mut VcpuPolicyState, q: &HugeLeafQuery) -> SplitDecision;
}

/// Every design, by name: a value usable where any policy is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyId {
    /// [`UpstreamFourK`].
    Upstream4K,
    /// [`RfcV1`].
    RfcV1,
    /// [`FaultMaxLevel`].
    FaultMaxLevel,
    /// [`GuestInhibit`] with the lock-free pre-check.
    GuestInhibit,
    /// [`GuestInhibit`] without it.
    GuestInhibitNoCheck,
    /// [`FaultPathDemote`].
    FaultPathDemote,
    /// [`ExplicitDemotion`].
    ExplicitDemotion,
}

impl PolicyId {
    /// Every design.
    pub const ALL: [PolicyId; 7] = [
        PolicyId::Upstream4K,
        PolicyId::RfcV1,
        PolicyId::FaultMaxLevel,
        PolicyId::GuestInhibit,
        PolicyId::GuestInhibitNoCheck,
        PolicyId::FaultPathDemote,
        PolicyId::ExplicitDemotion,
    ];

    /// The design with this name.
    pub fn parse(name: &str) -> Option<PolicyId> {
        PolicyId::ALL.into_iter().find(|p| p.name() == name)
    }
}

macro_rules! dispatch {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            PolicyId::Upstream4K => {
                let $p = UpstreamFourK;
                $e
            }
            PolicyId::RfcV1 => {
                let $p = RfcV1;
                $e
            }
            PolicyId::FaultMaxLevel => {
                let $p = FaultMaxLevel;
                $e
            }
            PolicyId::GuestInhibit => {
                let $p = GuestInhibit { precheck: true };
                $e
            }
            PolicyId::GuestInhibitNoCheck => {
                let $p = GuestInhibit { precheck: false };
                $e
            }
            PolicyId::FaultPathDemote => {
                let $p = FaultPathDemote;
                $e
            }
            PolicyId::ExplicitDemotion => {
                let $p = ExplicitDemotion;
                $e
            }
        }
    };
}

impl Policy for PolicyId {
    fn name(&self) -> &'static str {
        dispatch!(self, p => p.name())
    }
    fn check_profile(&self, profile: ModuleProfile) -> Result<(), PolicyError> {
        dispatch!(self, p => p.check_profile(profile))
    }
    fn fault_max_level(&self, exit: &PrivateExit) -> PageLevel {
        dispatch!(self, p => p.fault_max_level(exit))
    }
    fn on_private_exit(&self, vcpu: &mut VcpuPolicyState, exit: &PrivateExit) -> AcceptPlan {
        dispatch!(self, p => p.on_private_exit(vcpu, exit))
    }
    fn max_mapping_level(&self, vcpu: &VcpuPolicyState, q: &MaxLevelQuery) -> PageLevel {
        dispatch!(self, p => p.max_mapping_level(vcpu, q))
    }
    fn on_huge_leaf(&self, vcpu: &mut VcpuPolicyState, q: &HugeLeafQuery) -> SplitDecision {
        dispatch!(self, p => p.on_huge_leaf(vcpu, q))
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
