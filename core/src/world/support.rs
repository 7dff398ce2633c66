//! Which guests each host design claims to handle (shared/reference/kvm-fault-path.md): a
//! supported pair must end **ok** in every world and schedule — for the adversarial guest,
//! whose own verdict may be a panic or a killed VM, it must never bug the host or lose another
//! guest's data. The matrix and the fuzzer hold every policy to its declaration.

use crate::guest::GuestKind;
use crate::policy::PolicyId;

/// Why a design does not claim a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Unsupported {
    /// The reason, with its source.
    pub reason: &'static str,
}

/// Whether `policy` claims to handle `guest`.
pub const fn supports(policy: PolicyId, guest: GuestKind) -> Result<(), Unsupported> {
    match (policy, guest) {
        // kvm-fault-path.md, RFC v1: a touch maps 2M, the #VE handler's 4K ACCEPT meets the
        // pending 2M leaf, RFC v1 refuses to split it, the exits repeat forever
        // ("acknowledged as a livelock for such guests").
        (PolicyId::RfcV1, GuestKind::TouchFirst) => Err(Unsupported {
            reason: "a touch maps 2M and the 4K ACCEPT after it is refused forever (livelock, acknowledged for RFC v1)",
        }),
        // kvm-fault-path.md, explicit-demotion: a TD opts in with TDX_ATTR_SEPT_EXPLICIT_DEMOTION
        // and must then answer SIZE_MISMATCH on a 4K ACCEPT inside a huge leaf by retrying at
        // 2M or asking for demotion. No modelled guest does: each treats a 4K SIZE_MISMATCH as
        // fatal, so any 2M mapping over memory it accepts at 4K (a prefetch, a touch, another
        // vCPU) panics it. The design claims only that an adversarial TD cannot hurt the host.
        (PolicyId::ExplicitDemotion, g) if !matches!(g, GuestKind::Adversarial) => {
            Err(Unsupported {
                reason: "the guest must opt in and answer a 4K SIZE_MISMATCH by retrying at 2M or requesting demotion; no modelled guest does",
            })
        }
        _ => Ok(()),
    }
}

/// Whether a guest of this kind survives TDX_OPERAND_BUSY on its own ACCEPT however long the
/// entry stays locked: it retries without limit (accept-4k-only; touch-first's #VE handler
/// accepts as accept-4k-only does). No host design claims more for a guest whose page the
/// host is mapping at that moment, e.g. by KVM_PRE_FAULT_MEMORY: the SEAMCALL that maps it
/// holds the entry's lock, the module answers the ACCEPT BUSY (shared/reference/tdx-module.md,
/// entry locks), and no design can keep it from doing so. A guest that gives up — Linux at
/// once (any failure at 4K is fatal), OVMF after 3 retries, td-shim after 5, the tdx-guest
/// crate and asterinas at once, svsm at once — can panic then (guests.md).
pub const fn retries_busy_without_limit(guest: GuestKind) -> bool {
    matches!(guest, GuestKind::Accept4kOnly | GuestKind::TouchFirst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declarations_follow_the_reference() {
        for g in GuestKind::ALL {
            assert!(supports(PolicyId::Upstream4K, g).is_ok(), "{g}");
            assert!(supports(PolicyId::GuestInhibit, g).is_ok(), "{g}");
        }
        assert!(supports(PolicyId::RfcV1, GuestKind::TouchFirst).is_err());
        assert!(supports(PolicyId::RfcV1, GuestKind::Linux).is_ok());
        assert!(supports(PolicyId::ExplicitDemotion, GuestKind::Accept4kOnly).is_err());
        assert!(supports(PolicyId::ExplicitDemotion, GuestKind::Linux).is_err());
        assert!(supports(PolicyId::ExplicitDemotion, GuestKind::Adversarial).is_ok());
    }

    #[test]
    fn only_guests_that_retry_busy_for_ever_survive_any_lock_holder() {
        // Each strategy's reaction to BUSY at 4K after many retries.
        let busy = crate::abi::TdxStatus::new(crate::abi::StatusCode::OperandBusy, 1);
        for g in GuestKind::STRATEGIES {
            if g == GuestKind::Adversarial {
                continue;
            }
            let r = crate::guest::rules::react(g, crate::abi::PageLevel::Size4K, busy, 200);
            assert_eq!(
                retries_busy_without_limit(g),
                r == crate::guest::Reaction::Retry,
                "{g}: {r:?}"
            );
        }
    }
}
