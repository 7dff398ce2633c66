//! The `policy_decisions` target: arbitrary fault contexts into every design, each decision
//! held to the rules every design shares and to a shadow of that design's own rules, both
//! written out here from shared/reference/kvm-fault-path.md.
//!
//! The input is a sequence of events over a small KVM state (one memslot over four 2M
//! regions, possibly starting off a 2M boundary): private EPT-violation exits with or without
//! an accept level, mapping-level queries (prefetch or not, before or after the TD is
//! runnable), huge leaves met under the read lock, attribute conversions, GUEST_INHIBIT
//! settings and folio changes. Every design sees the same events with its own per-vCPU
//! state. The shared rules: the level is never above 2M (the module has no 1G AUG), never
//! above the folio, never above 4K before the TD is runnable, never above 4K in a 2M range
//! with mixed attributes, GUEST_INHIBIT or an unaligned memslot edge; GUEST_INHIBIT never
//! clears. The shadow: each design's `fault->max_level`, its hook, its plan for an exit and
//! its answer to a huge leaf.

use hugesept_core::abi::{Gfn, Gpa, PageLevel};
use hugesept_core::kvm::{Kvm, KvmArrayStorage, Memslot};
use hugesept_core::policy::{
    AcceptPlan, HugeLeafQuery, Policy, PolicyId, PrivateExit, SplitDecision, VcpuPolicyState,
};
use hugesept_core::sept::SeptConfig;

const BASE: u64 = 0x4000_0000;
const REGIONS: u64 = 4;
const PAGES: u64 = REGIONS * 512;
/// Events one input may hold.
const MAX_EVENTS: usize = 64;

type Window = Kvm<KvmArrayStorage<1, 4, 4>>;

/// The shadow of one design's per-vCPU state: RFC v1's window.
#[derive(Clone, Copy, Debug, Default)]
struct ShadowVcpu {
    window: Option<(u64, u64, PageLevel)>,
    /// The last exit's accept level, if the last event was an exit.
    last_exit: Option<Option<PageLevel>>,
}

fn level_of(b: u8) -> PageLevel {
    match b % 3 {
        0 => PageLevel::Size4K,
        1 => PageLevel::Size2M,
        _ => PageLevel::Size1G,
    }
}

fn aligned(gfn: u64, l: PageLevel) -> (u64, u64) {
    let n = u64::from(l.pages_4k());
    let s = gfn & !(n - 1);
    (s, s + n)
}

/// The design's `fault->max_level` for an exit with `accept` (the reference's rules).
fn shadow_fault_max(p: PolicyId, accept: Option<PageLevel>) -> PageLevel {
    match p {
        // Rick Edgecombe's refinement: 4K for exits without an accept level.
        PolicyId::FaultMaxLevel => accept.unwrap_or(PageLevel::Size4K),
        // An accept level caps the fault.
        PolicyId::FaultPathDemote | PolicyId::ExplicitDemotion => {
            accept.unwrap_or(PageLevel::Size1G)
        }
        // KVM starts at 1G; these designs act elsewhere.
        _ => PageLevel::Size1G,
    }
}

/// The design's hook.
fn shadow_hook(p: PolicyId, v: &ShadowVcpu, gfn: u64, prefetch: bool, runnable: bool) -> PageLevel {
    if !runnable {
        return PageLevel::Size4K;
    }
    match p {
        PolicyId::Upstream4K => PageLevel::Size4K,
        PolicyId::RfcV1 if prefetch => PageLevel::Size4K,
        PolicyId::RfcV1 => match v.window {
            Some((s, e, l)) if gfn >= s && gfn < e => l,
            _ => PageLevel::Size2M,
        },
        PolicyId::FaultMaxLevel if prefetch => PageLevel::Size4K,
        _ => PageLevel::Size2M,
    }
}

/// The checks over one input.
pub fn policy_decisions(data: &[u8]) {
    let mut bytes = data.iter().copied();
    let mut next = move || bytes.next().unwrap_or(0);
    let offset = u64::from(next() % 4);
    let config = SeptConfig::new(Gpa(BASE), REGIONS as u32);
    let Ok(mut kvm) = Window::new(&config, KvmArrayStorage::new()) else {
        panic!("the storage fits the window");
    };
    let slot_start = (BASE >> 12) + offset;
    if kvm
        .add_memslot(Memslot {
            base: Gfn(slot_start),
            pages: PAGES - offset,
            guest_memfd: true,
        })
        .is_err()
    {
        panic!("one memslot");
    }
    // Shadows of KVM's state: per-page attributes, GUEST_INHIBIT set per 2M region, folios.
    let mut shared = [false; PAGES as usize];
    let mut inhibited = [false; REGIONS as usize];
    let mut gig_inhibited = false;
    let mut folio = [PageLevel::Size2M; REGIONS as usize];
    let mut vcpus = [(VcpuPolicyState::default(), ShadowVcpu::default()); PolicyId::ALL.len()];
    for _ in 0..MAX_EVENTS {
        let (kind, a, b, c) = (next(), next(), next(), next());
        let page = u64::from(u16::from_le_bytes([a, b])) % PAGES;
        let gfn = (BASE >> 12) + page;
        match kind % 8 {
            0 | 1 => {
                // A private EPT violation, with an accept level for 0.
                let accept = (kind % 8 == 0).then(|| level_of(c));
                let exit = PrivateExit {
                    gfn: Gfn(gfn),
                    accept_level: accept,
                };
                for (p, (state, shadow)) in PolicyId::ALL.iter().zip(vcpus.iter_mut()) {
                    let plan = p.on_private_exit(state, &exit);
                    let want = match (p, accept) {
                        (PolicyId::GuestInhibit, Some(level)) => AcceptPlan::GuestInhibit {
                            level,
                            precheck: true,
                        },
                        (PolicyId::GuestInhibitNoCheck, Some(level)) => AcceptPlan::GuestInhibit {
                            level,
                            precheck: false,
                        },
                        _ => AcceptPlan::Nothing,
                    };
                    assert_eq!(plan, want, "{p}: the plan for {exit:?}");
                    let fault_max = p.fault_max_level(&exit);
                    assert_eq!(
                        fault_max,
                        shadow_fault_max(*p, accept),
                        "{p}: fault->max_level for {exit:?}"
                    );
                    if *p == PolicyId::RfcV1 {
                        // RFC v1: an ACCEPT exit sets the window, any other empties it.
                        shadow.window = accept.map(|l| {
                            let (s, e) = aligned(gfn, l);
                            (s, e, l)
                        });
                    }
                    shadow.last_exit = Some(accept);
                }
            }
            2 | 3 => {
                // The level a fault on `gfn` maps at.
                let prefetch = c & 1 != 0;
                let runnable = c & 2 == 0;
                for (p, (state, shadow)) in PolicyId::ALL.iter().zip(vcpus.iter_mut()) {
                    let accept = if prefetch {
                        None
                    } else {
                        shadow.last_exit.flatten()
                    };
                    let fault_max = if prefetch {
                        // KVM_PRE_FAULT_MEMORY's fault carries no exit.
                        PageLevel::Size1G
                    } else {
                        shadow_fault_max(*p, accept)
                    };
                    let got =
                        kvm.max_mapping_level(p, state, Gfn(gfn), fault_max, prefetch, runnable);
                    let r = (page / 512) as usize;
                    let (lo, hi) = aligned(page, PageLevel::Size2M);
                    let mixed = shared
                        .get(lo as usize..hi as usize)
                        .is_some_and(|s| s.iter().any(|&x| x) && s.iter().any(|&x| !x));
                    let edge = offset != 0 && r == 0;
                    let region_folio = folio.get(r).copied().unwrap_or(PageLevel::Size4K);
                    // The shared rules.
                    assert!(got <= PageLevel::Size2M, "{p}: mapped at 1G");
                    assert!(got <= region_folio, "{p}: above the folio");
                    if !runnable {
                        assert_eq!(got, PageLevel::Size4K, "{p}: above 4K before runnable");
                    }
                    if mixed || inhibited.get(r).copied().unwrap_or(false) || edge {
                        assert_eq!(
                            got,
                            PageLevel::Size4K,
                            "{p}: above 4K in a 2M range that disallows it (mixed {mixed}, \
                             edge {edge})"
                        );
                    }
                    // The shadow: the walk's caps, then the design's hook.
                    let mut cap = fault_max.min(region_folio);
                    if cap == PageLevel::Size1G {
                        // The memslot covers 8 MiB of the 1G range: its edges disallow 1G.
                        cap = PageLevel::Size2M;
                    }
                    if cap == PageLevel::Size2M
                        && (mixed || inhibited.get(r).copied().unwrap_or(false) || edge)
                    {
                        cap = PageLevel::Size4K;
                    }
                    let want = cap.min(shadow_hook(*p, shadow, gfn, prefetch, runnable));
                    assert_eq!(
                        got, want,
                        "{p}: gfn {gfn:#x} prefetch {prefetch} runnable {runnable} \
                         fault max {fault_max:?} window {:?}",
                        shadow.window
                    );
                }
            }
            4 => {
                // A huge leaf in the way of a smaller goal, under the read lock.
                let goal = if c & 1 == 0 {
                    PageLevel::Size4K
                } else {
                    PageLevel::Size2M
                };
                let leaf = if goal == PageLevel::Size4K && c & 2 == 0 {
                    PageLevel::Size2M
                } else {
                    PageLevel::Size1G
                };
                let q = HugeLeafQuery {
                    gfn: Gfn(gfn),
                    goal,
                    leaf,
                };
                for (p, (state, shadow)) in PolicyId::ALL.iter().zip(vcpus.iter_mut()) {
                    let got = p.on_huge_leaf(state, &q);
                    let want = match p {
                        PolicyId::Upstream4K => SplitDecision::BugVm,
                        PolicyId::FaultPathDemote => SplitDecision::SplitInPlace,
                        PolicyId::ExplicitDemotion => SplitDecision::KeepHugeLeaf,
                        _ => SplitDecision::Refuse,
                    };
                    assert_eq!(got, want, "{p}: the answer to {q:?}");
                    if *p == PolicyId::RfcV1 {
                        // RFC v1 widens the window to the leaf's range at its level.
                        let (s, e) = aligned(gfn, leaf);
                        shadow.window = Some((s, e, leaf));
                    }
                }
            }
            5 => {
                // KVM_SET_MEMORY_ATTRIBUTES over a few pages or a whole 2M range.
                let private = c & 1 != 0;
                let (lo, hi) = if c & 2 != 0 {
                    aligned(page, PageLevel::Size2M)
                } else {
                    (page, (page + u64::from(c >> 2 & 7) + 1).min(PAGES))
                };
                if kvm
                    .set_private(Gfn((BASE >> 12) + lo), Gfn((BASE >> 12) + hi), private)
                    .is_err()
                {
                    panic!("attributes inside the window");
                }
                for s in shared.iter_mut().take(hi as usize).skip(lo as usize) {
                    *s = !private;
                }
            }
            6 => {
                let level = if c & 1 == 0 {
                    PageLevel::Size2M
                } else {
                    PageLevel::Size1G
                };
                kvm.set_guest_inhibit(Gfn(gfn), level);
                if level == PageLevel::Size2M {
                    if let Some(i) = inhibited.get_mut((page / 512) as usize) {
                        *i = true;
                    }
                } else {
                    gig_inhibited = true;
                }
            }
            _ => {
                let r = (page / 512) as usize;
                let f = level_of(c);
                if kvm.set_folio(Gfn(gfn), f).is_err() {
                    panic!("a folio inside the window");
                }
                if let Some(x) = folio.get_mut(r) {
                    *x = f;
                }
            }
        }
        // GUEST_INHIBIT never clears.
        for (r, &set) in inhibited.iter().enumerate() {
            let g = Gfn((BASE >> 12) + r as u64 * 512);
            if set {
                assert!(
                    kvm.lpage(g, PageLevel::Size2M)
                        .is_some_and(|l| l.guest_inhibit()),
                    "GUEST_INHIBIT at 2M cleared for region {r}"
                );
            }
        }
        if gig_inhibited {
            assert!(
                kvm.lpage(Gfn(BASE >> 12), PageLevel::Size1G)
                    .is_some_and(|l| l.guest_inhibit()),
                "GUEST_INHIBIT at 1G cleared"
            );
        }
    }
}
