//! The designs, one type each, with the thread that proposed it
//! (shared/reference/kvm-fault-path.md, "The designs").

use crate::abi::PageLevel;
use crate::sept::ModuleProfile;

use super::{
    AcceptPlan, HugeLeafQuery, MaxLevelQuery, Policy, PolicyError, PrivateExit, SplitDecision,
    VcpuPolicyState,
};

/// Before the TD is runnable every private mapping is 4K (PAGE.ADD); every design shares this.
fn before_runnable(q: &MaxLevelQuery) -> Option<PageLevel> {
    if q.runnable || crate::broken::active(crate::broken::Variant::HugeBeforeRunnable) {
        None
    } else {
        Some(PageLevel::Size4K)
    }
}

/// **upstream-4k** — mainline since 6.16: the TDX hook returns 4K for every private fault
/// (arch/x86/kvm/vmx/tdx.c `tdx_gmem_private_max_mapping_level`). A huge leaf can never be in
/// the way; if one were, splitting a mirror SPTE under the read lock is a KVM_BUG_ON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct UpstreamFourK;

impl Policy for UpstreamFourK {
    fn name(&self) -> &'static str {
        "upstream-4k"
    }

    fn max_mapping_level(&self, _vcpu: &VcpuPolicyState, _q: &MaxLevelQuery) -> PageLevel {
        PageLevel::Size4K
    }

    fn on_huge_leaf(&self, _vcpu: &mut VcpuPolicyState, _q: &HugeLeafQuery) -> SplitDecision {
        SplitDecision::BugVm
    }
}

/// **rfc-v1** — Yan Zhao's RFC v1, "TDX huge page support for private memory"
/// (<https://lore.kernel.org/all/20250424030033.32635-1-yan.y.zhao@intel.com/>): per-vCPU
/// `violation_gfn_start/end` and `violation_request_level`. An ACCEPT exit sets the window to
/// the accept level's aligned range and the request level to that level; any other private
/// EPT violation empties it. The hook returns 4K before runnable and for prefetch, the request
/// level inside the window, 2M elsewhere. A huge leaf in the way of a smaller goal is refused:
/// the window widens to its 2M range at 2M, the split fails (-EBUSY) and the fault retries —
/// and now finds the identical 2M SPTE (RET_PF_SPURIOUS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RfcV1;

impl Policy for RfcV1 {
    fn name(&self) -> &'static str {
        "rfc-v1"
    }

    fn on_private_exit(&self, vcpu: &mut VcpuPolicyState, exit: &PrivateExit) -> AcceptPlan {
        match exit.accept_level {
            Some(level) => vcpu.set_window(exit.gfn, level),
            None if crate::broken::active(crate::broken::Variant::RfcV1WindowKept) => {}
            None => vcpu.reset(),
        }
        AcceptPlan::Nothing
    }

    fn max_mapping_level(&self, vcpu: &VcpuPolicyState, q: &MaxLevelQuery) -> PageLevel {
        if let Some(l) = before_runnable(q) {
            return l;
        }
        if q.prefetch {
            // RFC v1 forced prefetch to 4K so that stale per-vCPU data could not apply to it.
            return PageLevel::Size4K;
        }
        match vcpu.request_level {
            Some(l) if vcpu.in_window(q.gfn) => l,
            _ => PageLevel::Size2M,
        }
    }

    fn on_huge_leaf(&self, vcpu: &mut VcpuPolicyState, q: &HugeLeafQuery) -> SplitDecision {
        vcpu.set_window(q.gfn, q.leaf);
        SplitDecision::Refuse
    }
}

/// **fault-max-level** — Isaku Yamahata's v8 and Rick Edgecombe's sketch: the accept level
/// travels with the fault (synthetic error-code bits 52:50 → `fault->max_level`); ACCEPT exits
/// pass their level and, in Rick's refinement, every other exit 4K (no huge pages for #VE
/// guests yet). The hook returns 4K only for prefetch and before runnable, else 2M. The scheme
/// has no answer for a huge leaf already in the way (Yan's objection): it is refused, and the
/// tools show what follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FaultMaxLevel;

impl Policy for FaultMaxLevel {
    fn name(&self) -> &'static str {
        "fault-max-level"
    }

    fn fault_max_level(&self, exit: &PrivateExit) -> PageLevel {
        match exit.accept_level {
            Some(_)
                if crate::broken::active(crate::broken::Variant::FaultMaxLevelIgnoresAccept) =>
            {
                PageLevel::Size2M
            }
            Some(l) => l,
            None => PageLevel::Size4K,
        }
    }

    fn max_mapping_level(&self, _vcpu: &VcpuPolicyState, q: &MaxLevelQuery) -> PageLevel {
        match before_runnable(q) {
            Some(l) => l,
            None if q.prefetch => PageLevel::Size4K,
            None => PageLevel::Size2M,
        }
    }

    fn on_huge_leaf(&self, _vcpu: &mut VcpuPolicyState, _q: &HugeLeafQuery) -> SplitDecision {
        SplitDecision::Refuse
    }
}

/// **guest-inhibit** — RFC v2 (<https://lore.kernel.org/all/20250807093950.4395-1-yan.y.zhao@intel.com/>),
/// v3 (<https://lore.kernel.org/all/20260106101646.24809-1-yan.y.zhao@intel.com/>) and Sean
/// Christopherson's combined v5 (<https://lore.kernel.org/all/20260129011517.3545883-1-seanjc@google.com/>):
/// global, one-way GUEST_INHIBIT in lpage_info. On an ACCEPT exit at level L: a lock-free
/// pre-check of GUEST_INHIBIT at L+1, else split everything above L in the L-aligned range
/// under the write lock, then set GUEST_INHIBIT at L+1 (and L+2 for 4K). Exits without an
/// accept level map at the largest permitted level (2M); prefetch too. A huge leaf left in the
/// way under the read lock is refused (v2/v3 return -EOPNOTSUPP → RET_PF_RETRY).
///
/// With `precheck: false` this is **guest-inhibit-nocheck**, which takes the write lock on every
/// ACCEPT exit: the variant Yan measured at 17,626 write-lock acquisitions per boot against 11
/// (<https://lore.kernel.org/all/aGSoDnODoG2%2FpbYn@yzhao56-desk.sh.intel.com/>).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestInhibit {
    /// Whether the lock-free pre-check runs.
    pub precheck: bool,
}

impl Policy for GuestInhibit {
    fn name(&self) -> &'static str {
        if self.precheck {
            "guest-inhibit"
        } else {
            "guest-inhibit-nocheck"
        }
    }

    fn on_private_exit(&self, _vcpu: &mut VcpuPolicyState, exit: &PrivateExit) -> AcceptPlan {
        match exit.accept_level {
            Some(level) => AcceptPlan::GuestInhibit {
                level,
                precheck: self.precheck,
            },
            None => AcceptPlan::Nothing,
        }
    }

    fn max_mapping_level(&self, _vcpu: &VcpuPolicyState, q: &MaxLevelQuery) -> PageLevel {
        before_runnable(q).unwrap_or(PageLevel::Size2M)
    }

    fn on_huge_leaf(&self, _vcpu: &mut VcpuPolicyState, _q: &HugeLeafQuery) -> SplitDecision {
        SplitDecision::Refuse
    }
}

/// **fault-path-demote** — Kirill Shutemov's demand that 4K-only accepting guests work
/// ("Accepting everything at 4k level is a stupid, but valid behaviour"), as Yan sketched it:
/// the accept level caps the fault, and a huge leaf in the way is split under the *read* lock
/// with BLOCK → TRACK → DEMOTE, rolled back with UNBLOCK when DEMOTE fails (a plain DEMOTE on a
/// non-blocking-resize module).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FaultPathDemote;

impl Policy for FaultPathDemote {
    fn name(&self) -> &'static str {
        "fault-path-demote"
    }

    fn fault_max_level(&self, exit: &PrivateExit) -> PageLevel {
        exit.accept_level.unwrap_or(PageLevel::Size1G)
    }

    fn max_mapping_level(&self, _vcpu: &VcpuPolicyState, q: &MaxLevelQuery) -> PageLevel {
        before_runnable(q).unwrap_or(PageLevel::Size2M)
    }

    fn on_huge_leaf(&self, _vcpu: &mut VcpuPolicyState, _q: &HugeLeafQuery) -> SplitDecision {
        SplitDecision::SplitInPlace
    }
}

/// **explicit-demotion** — the opt-in detour (Rick Edgecombe, Sean Christopherson, Yan Zhao's
/// TDX_ATTR_SEPT_EXPLICIT_DEMOTION), with the TD attribute set: KVM maps at the maximal level
/// when an exit carries no accept level, an accept level caps the fault, and demotion requests
/// in the fault path are ignored (the huge leaf stays). It needs a module whose too-small
/// ACCEPT returns SIZE_MISMATCH to the guest, which then retries at 2M or asks for demotion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ExplicitDemotion;

impl Policy for ExplicitDemotion {
    fn name(&self) -> &'static str {
        "explicit-demotion"
    }

    fn check_profile(&self, profile: ModuleProfile) -> Result<(), PolicyError> {
        if profile.explicit_demotion {
            Ok(())
        } else {
            Err(PolicyError::NeedsExplicitDemotionModule)
        }
    }

    fn fault_max_level(&self, exit: &PrivateExit) -> PageLevel {
        exit.accept_level.unwrap_or(PageLevel::Size1G)
    }

    fn max_mapping_level(&self, _vcpu: &VcpuPolicyState, q: &MaxLevelQuery) -> PageLevel {
        before_runnable(q).unwrap_or(PageLevel::Size2M)
    }

    fn on_huge_leaf(&self, _vcpu: &mut VcpuPolicyState, _q: &HugeLeafQuery) -> SplitDecision {
        SplitDecision::KeepHugeLeaf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::Gfn;
    use crate::policy::PolicyId;

    const GFN: Gfn = Gfn(0x40201);

    fn q(prefetch: bool, runnable: bool) -> MaxLevelQuery {
        MaxLevelQuery {
            gfn: GFN,
            prefetch,
            runnable,
        }
    }

    fn accept_exit(level: PageLevel) -> PrivateExit {
        PrivateExit {
            gfn: GFN,
            accept_level: Some(level),
        }
    }

    const OTHER_EXIT: PrivateExit = PrivateExit {
        gfn: GFN,
        accept_level: None,
    };

    #[test]
    fn every_design_maps_4k_before_runnable() {
        for p in PolicyId::ALL {
            let v = VcpuPolicyState::default();
            assert_eq!(
                p.max_mapping_level(&v, &q(false, false)),
                PageLevel::Size4K,
                "{p}"
            );
        }
    }

    #[test]
    fn upstream_is_4k_always_and_bugs_on_a_huge_leaf() {
        let p = UpstreamFourK;
        let mut v = VcpuPolicyState::default();
        assert_eq!(
            p.on_private_exit(&mut v, &accept_exit(PageLevel::Size2M)),
            AcceptPlan::Nothing
        );
        assert_eq!(p.max_mapping_level(&v, &q(false, true)), PageLevel::Size4K);
        let h = HugeLeafQuery {
            gfn: GFN,
            goal: PageLevel::Size4K,
            leaf: PageLevel::Size2M,
        };
        assert_eq!(p.on_huge_leaf(&mut v, &h), SplitDecision::BugVm);
    }

    #[test]
    fn rfc_v1_window() {
        let p = RfcV1;
        let mut v = VcpuPolicyState::default();
        // No window yet: 2M.
        assert_eq!(p.max_mapping_level(&v, &q(false, true)), PageLevel::Size2M);
        // A 4K ACCEPT exit: 4K for that GFN only.
        p.on_private_exit(&mut v, &accept_exit(PageLevel::Size4K));
        assert_eq!(p.max_mapping_level(&v, &q(false, true)), PageLevel::Size4K);
        let next = MaxLevelQuery {
            gfn: Gfn(GFN.raw() + 1),
            ..q(false, true)
        };
        assert_eq!(p.max_mapping_level(&v, &next), PageLevel::Size2M);
        // Prefetch is 4K whatever the window.
        assert_eq!(p.max_mapping_level(&v, &q(true, true)), PageLevel::Size4K);
        // A huge leaf in the way widens the window to its 2M range at 2M and refuses.
        let h = HugeLeafQuery {
            gfn: GFN,
            goal: PageLevel::Size4K,
            leaf: PageLevel::Size2M,
        };
        assert_eq!(p.on_huge_leaf(&mut v, &h), SplitDecision::Refuse);
        assert_eq!(v.window_start, Gfn(0x40200));
        assert_eq!(v.window_end, Gfn(0x40400));
        assert_eq!(p.max_mapping_level(&v, &q(false, true)), PageLevel::Size2M);
        // Any other private exit empties the window.
        p.on_private_exit(&mut v, &accept_exit(PageLevel::Size4K));
        p.on_private_exit(&mut v, &OTHER_EXIT);
        assert_eq!(v, VcpuPolicyState::default());
        assert_eq!(p.max_mapping_level(&v, &q(false, true)), PageLevel::Size2M);
    }

    #[test]
    fn fault_max_level_carries_the_accept_level() {
        let p = FaultMaxLevel;
        assert_eq!(
            p.fault_max_level(&accept_exit(PageLevel::Size2M)),
            PageLevel::Size2M
        );
        assert_eq!(
            p.fault_max_level(&accept_exit(PageLevel::Size4K)),
            PageLevel::Size4K
        );
        assert_eq!(p.fault_max_level(&OTHER_EXIT), PageLevel::Size4K);
        let v = VcpuPolicyState::default();
        assert_eq!(p.max_mapping_level(&v, &q(false, true)), PageLevel::Size2M);
        assert_eq!(p.max_mapping_level(&v, &q(true, true)), PageLevel::Size4K);
    }

    #[test]
    fn guest_inhibit_plans_and_prechecks() {
        let mut v = VcpuPolicyState::default();
        for (p, precheck) in [
            (GuestInhibit { precheck: true }, true),
            (GuestInhibit { precheck: false }, false),
        ] {
            assert_eq!(
                p.on_private_exit(&mut v, &accept_exit(PageLevel::Size4K)),
                AcceptPlan::GuestInhibit {
                    level: PageLevel::Size4K,
                    precheck
                }
            );
            assert_eq!(p.on_private_exit(&mut v, &OTHER_EXIT), AcceptPlan::Nothing);
            assert_eq!(p.max_mapping_level(&v, &q(true, true)), PageLevel::Size2M);
        }
        assert_eq!(v, VcpuPolicyState::default(), "no per-vCPU state");
        assert_eq!(
            PolicyId::GuestInhibitNoCheck.name(),
            "guest-inhibit-nocheck"
        );
    }

    #[test]
    fn split_decisions() {
        let h = HugeLeafQuery {
            gfn: GFN,
            goal: PageLevel::Size4K,
            leaf: PageLevel::Size2M,
        };
        let mut v = VcpuPolicyState::default();
        assert_eq!(
            FaultPathDemote.on_huge_leaf(&mut v, &h),
            SplitDecision::SplitInPlace
        );
        assert_eq!(
            ExplicitDemotion.on_huge_leaf(&mut v, &h),
            SplitDecision::KeepHugeLeaf
        );
        assert_eq!(
            FaultMaxLevel.on_huge_leaf(&mut v, &h),
            SplitDecision::Refuse
        );
        assert_eq!(
            GuestInhibit { precheck: true }.on_huge_leaf(&mut v, &h),
            SplitDecision::Refuse
        );
    }

    #[test]
    fn explicit_demotion_needs_its_module() {
        assert_eq!(
            ExplicitDemotion.check_profile(ModuleProfile::TDX_1_5),
            Err(PolicyError::NeedsExplicitDemotionModule)
        );
        let p = ModuleProfile::parse("explicit-demotion").unwrap();
        assert_eq!(ExplicitDemotion.check_profile(p), Ok(()));
        for id in PolicyId::ALL {
            if id != PolicyId::ExplicitDemotion {
                assert_eq!(id.check_profile(ModuleProfile::TDX_1_5), Ok(()), "{id}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for id in PolicyId::ALL {
            assert_eq!(PolicyId::parse(id.name()), Some(id));
        }
        assert_eq!(PolicyId::parse("rfc-v9"), None);
    }
}
