//! The world, explored exhaustively over every schedule (with state hashing): verdicts,
//! invariants after every step, and livelock as "a reachable state from which no end is
//! reachable".
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use hugesept_core::snapshot::Snapshot;
use std::collections::{BTreeSet, HashMap};

use common::BASE;
use hugesept_core::abi::{Gpa, PageLevel};
use hugesept_core::guest::{Guest, GuestKind};
use hugesept_core::kvm::{HostOpKind, KvmArrayStorage};
use hugesept_core::policy::PolicyId;
use hugesept_core::sept::{ArrayStorage, Sept};
use hugesept_core::world::{
    Choice, HostAction, Limits, MAX_CHOICES, MAX_VCPUS, Metrics, RandomScheduler, ScheduleError,
    Stepped, Verdict, World,
};

type W = World<ArrayStorage<1, 2, 3>, KvmArrayStorage<1, 2, 3>>;

struct Explored {
    verdicts: BTreeSet<&'static str>,
    livelock: bool,
    states: usize,
    metrics: Metrics,
}

/// Every schedule of `w`, depth-first with state hashing; invariants checked in every state.
fn explore(w: W) -> Explored {
    let mut index: HashMap<W, usize> = HashMap::new();
    let mut succ: Vec<Vec<usize>> = Vec::new();
    let mut terminal: Vec<bool> = Vec::new();
    let mut verdicts = BTreeSet::new();
    let mut metrics = Metrics::default();
    let mut stack = vec![w.clone()];
    index.insert(w, 0);
    succ.push(Vec::new());
    terminal.push(false);
    while let Some(w) = stack.pop() {
        let id = index[&w];
        w.check()
            .unwrap_or_else(|v| panic!("invariant broken: {v:?}"));
        if let Some(v) = w.ended() {
            verdicts.insert(v.name());
            terminal[id] = true;
            continue;
        }
        let mut choices = [Choice::Vcpu(0); MAX_CHOICES];
        let n = w.enabled(&mut choices);
        for &c in &choices[..n] {
            let mut next = w.clone();
            match next.step(c, &mut metrics).unwrap() {
                Stepped::Invalid => continue,
                Stepped::Blocked | Stepped::Moved { .. } => {}
            }
            W::check_transition(&w, &next).unwrap();
            let nid = match index.get(&next) {
                Some(&nid) => nid,
                None => {
                    let nid = succ.len();
                    index.insert(next.clone(), nid);
                    succ.push(Vec::new());
                    terminal.push(false);
                    stack.push(next);
                    nid
                }
            };
            succ[id].push(nid);
        }
        assert!(succ.len() < 300_000, "state space larger than expected");
    }
    // Livelock: some state cannot reach an end.
    let mut can_end = terminal.clone();
    loop {
        let mut changed = false;
        for s in 0..succ.len() {
            if !can_end[s] && succ[s].iter().any(|&t| can_end[t]) {
                can_end[s] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    Explored {
        verdicts,
        livelock: can_end.iter().any(|c| !c),
        states: succ.len(),
        metrics,
    }
}

/// `runs` seeded random schedules of `w`: each picks uniformly among the enabled choices until
/// the world ends (at most `bound` steps), checking the invariants after every step. Returns
/// the verdicts seen; a run that does not end within the bound is reported as livelock.
fn sample(w: &W, runs: u64, bound: u32) -> BTreeSet<&'static str> {
    let mut m = Metrics::default();
    let mut steps = 0u64;
    (1..=runs)
        .map(|seed| {
            w.run_seeded(seed, bound, &mut m, &mut steps)
                .unwrap_or_else(|e| panic!("seed {seed}: {e:?}"))
                .name()
        })
        .collect()
}

fn world(
    policy: PolicyId,
    profile: &str,
    ve: bool,
    guests: &[Guest],
    scripts: &[&[HostAction]],
    interrupts: u8,
) -> W {
    let (sept, kvm) = common::td::<2, 3>(profile, ve);
    World::new(sept, kvm, policy, guests, scripts, interrupts).unwrap()
}

const R1: Gpa = Gpa(BASE + 0x20_0000);

#[test]
fn the_seed_scenario_ends_well_under_seeded_schedules() {
    // vCPU 1 accepts the 2M page (OVMF's rules), vCPU 2 a 4K page inside it (4K only), with an
    // interrupt allowed during the 2M accept. Every schedule explored would be ~10^5 states of
    // 512-page sequences; random schedules cover the orders and the races here, the exhaustive
    // two-vCPU search at TDCALL granularity is in seed_scenario.rs.
    for policy in [
        PolicyId::RfcV1,
        PolicyId::GuestInhibit,
        PolicyId::GuestInhibitNoCheck,
    ] {
        let guests = [
            Guest::new(GuestKind::Ovmf, R1, Gpa(R1.raw() + 0x20_0000), 1).without_markers(),
            Guest::new(
                GuestKind::Accept4kOnly,
                Gpa(R1.raw() + 0x1000),
                Gpa(R1.raw() + 0x2000),
                2,
            )
            .without_markers(),
        ];
        let w = world(policy, "tdx-1.5", false, &guests, &[], 1);
        assert_eq!(sample(&w, 24, 20_000), BTreeSet::from(["ok"]), "{policy}");
    }
}

#[test]
fn rfc_v1_livelocks_a_4k_only_ve_guest_and_guest_inhibit_does_not() {
    let guests = [Guest::new(
        GuestKind::TouchFirst,
        R1,
        Gpa(R1.raw() + 0x2000),
        3,
    )];
    let e = explore(world(PolicyId::RfcV1, "tdx-1.5", true, &guests, &[], 0));
    assert!(
        e.livelock,
        "RFC v1 with a guest that touches, then accepts only 4K"
    );
    assert!(e.states > 10, "{} states", e.states);
    assert_eq!(e.metrics.fault.write_locks, 0);
    let e = explore(world(
        PolicyId::GuestInhibit,
        "tdx-1.5",
        true,
        &guests,
        &[],
        0,
    ));
    assert!(!e.livelock);
    assert_eq!(e.verdicts, BTreeSet::from(["ok"]));
    // GUEST_INHIBIT split the 2M page the touch had mapped.
    assert!(e.metrics.fault.demotions > 0 && e.metrics.fault.write_locks > 0);
    // With #VE disabled the touch kills the VM.
    let e = explore(world(
        PolicyId::GuestInhibit,
        "tdx-1.5",
        false,
        &guests,
        &[],
        0,
    ));
    assert_eq!(e.verdicts, BTreeSet::from(["vm-killed"]));
}

#[test]
fn upstream_never_maps_2m_and_linux_is_fine_under_rfc_v1() {
    let guests = [Guest::new(
        GuestKind::Linux,
        R1,
        Gpa(R1.raw() + 0x20_0000),
        4,
    )];
    for policy in [PolicyId::Upstream4K, PolicyId::RfcV1] {
        let (sept, kvm) = common::td::<2, 3>("tdx-1.5", false);
        let mut w: W = World::new(sept, kvm, policy, &guests, &[], 0).unwrap();
        let mut m = Metrics::default();
        while w.ended().is_none() {
            assert!(matches!(
                w.step(Choice::Vcpu(0), &mut m).unwrap(),
                Stepped::Moved { .. }
            ));
            w.check().unwrap();
        }
        assert_eq!(w.ended(), Some(Verdict::Ok), "{policy}");
        let (two_m, four_k) = w.mapping_histogram();
        if policy == PolicyId::Upstream4K {
            assert_eq!(two_m, 0);
            assert_eq!(four_k, 2 << 20);
        } else {
            assert_eq!(two_m, 2 << 20);
        }
        assert_eq!(
            w.sept().mapping(R1).unwrap().level == PageLevel::Size2M,
            policy == PolicyId::RfcV1
        );
    }
}

#[test]
fn a_4k_conversion_inside_an_accepted_2m_page_loses_nothing_else() {
    // The guest accepts and marks all of region 1 but its last page; the host converts that
    // last page to shared at any point of the run. Whatever the schedule, the 2M page is split
    // across the boundary and only the converted page is removed: no marker of the guest is lost.
    let page = Gpa(BASE + 0x3F_F000).gfn();
    let script = [HostAction::Operation {
        kind: HostOpKind::ConvertToShared,
        start: page,
        end: hugesept_core::abi::Gfn(page.raw() + 1),
    }];
    let guests = [Guest::new(
        GuestKind::Linux,
        R1,
        Gpa(R1.raw() + 0x1F_F000),
        5,
    )];
    for policy in [
        PolicyId::GuestInhibit,
        PolicyId::RfcV1,
        PolicyId::FaultPathDemote,
    ] {
        let w = world(policy, "tdx-1.5", false, &guests, &[&script], 0);
        assert_eq!(sample(&w, 16, 20_000), BTreeSet::from(["ok"]), "{policy}");
    }
}

#[test]
fn an_adversarial_guest_breaks_neither_the_host_nor_the_models() {
    // Arbitrary operands (1G, shared, misaligned, reserved bits, double and overlapping
    // accepts) next to a Linux guest, with a conversion running: the host never bugs the VM
    // and every invariant holds; a touch of a pending page may kill the VM (#VE disabled).
    let script = [HostAction::Operation {
        kind: HostOpKind::ConvertToShared,
        start: Gpa(BASE + 0x1000).gfn(),
        end: Gpa(BASE + 0x3000).gfn(),
    }];
    for policy in [
        PolicyId::GuestInhibit,
        PolicyId::RfcV1,
        PolicyId::FaultPathDemote,
        PolicyId::Upstream4K,
    ] {
        for seed in 1..=4u16 {
            let guests = [
                Guest::new(GuestKind::Adversarial, R1, Gpa(R1.raw() + 0x20_0000), seed),
                Guest::new(GuestKind::Linux, Gpa(BASE), Gpa(BASE + 0x10_0000), 9).without_markers(),
            ];
            let w = world(policy, "tdx-1.5", false, &guests, &[&script], 1);
            let verdicts = sample(&w, 4, 20_000);
            for v in &verdicts {
                assert!(
                    ["ok", "vm-killed", "guest-panic"].contains(v),
                    "{policy}, seed {seed}: {verdicts:?}"
                );
            }
        }
    }
}

#[test]
fn the_invariant_checks_catch_what_they_are_for() {
    use hugesept_core::kvm::FaultPath;
    use hugesept_core::sept::{OpState, Sept, SeptConfig};
    use hugesept_core::world::Violation;
    // GUEST_INHIBIT is one-way: a state with a bit set, then one without, is a violation.
    let guests = [Guest::new(
        GuestKind::Accept4kOnly,
        R1,
        Gpa(R1.raw() + 0x1000),
        1,
    )];
    let fresh = world(PolicyId::GuestInhibit, "tdx-1.5", false, &guests, &[], 0);
    let mut w = fresh.clone();
    let mut m = Metrics::default();
    while w.ended().is_none() {
        w.step(Choice::Vcpu(0), &mut m).unwrap();
    }
    assert!(
        w.kvm()
            .lpage(R1.gfn(), PageLevel::Size2M)
            .unwrap()
            .guest_inhibit()
    );
    assert!(matches!(
        W::check_transition(&w, &fresh),
        Err(Violation::InhibitCleared(_))
    ));
    assert_eq!(W::check_transition(&fresh, &w), Ok(()));
    // Accepted content that vanishes while no conversion or punch hole names it.
    let fresh = world(PolicyId::RfcV1, "tdx-1.5", false, &guests, &[], 0);
    let mut w = fresh.clone();
    while w.ended().is_none() {
        w.step(Choice::Vcpu(0), &mut m).unwrap();
    }
    assert_eq!(
        W::check_transition(&w, &fresh),
        Err(Violation::RemovedOutsideRange(R1))
    );
    // A 2M leaf over a range whose guest_memfd folio is 4K.
    let p = Guest::new(GuestKind::Ovmf, R1, Gpa(R1.raw() + 0x20_0000), 1);
    let mut w = world(PolicyId::RfcV1, "tdx-1.5", false, &[p], &[], 0);
    while w.ended().is_none() {
        w.step(Choice::Vcpu(0), &mut m).unwrap();
    }
    assert_eq!(w.mapping_histogram().0, 1 << 21);
    assert_eq!(w.check(), Ok(()));
    let mut bad = w.clone();
    bad.clear_changes();
    bad.kvm_mut()
        .set_folio(R1.gfn(), PageLevel::Size4K)
        .unwrap();
    assert_eq!(bad.check(), Err(Violation::LeafTooLarge(R1)));
    // The per-step check sees it too, from the one region the change marked.
    assert_eq!(bad.check_step(&w), Err(Violation::LeafTooLarge(R1)));
    // A 2M mirror leaf while the TD is not runnable is a violation (checked before anything else).
    let config = SeptConfig::new(Gpa(BASE), 2);
    let sept: Sept<ArrayStorage<1, 2, 3>> = Sept::new(config, ArrayStorage::new()).unwrap();
    let (mut s2, mut kvm) = common::td::<2, 3>("tdx-1.5", false);
    let p = FaultPath::prefetch(R1.gfn(), OpState::Runnable).unwrap();
    let mut v = hugesept_core::policy::VcpuPolicyState::default();
    let mut stats = hugesept_core::kvm::FaultStats::default();
    common::run_fault(
        &mut hugesept_core::kvm::FaultCtx {
            kvm: &mut kvm,
            sept: &mut s2,
            policy: &PolicyId::GuestInhibit,
            vcpu: &mut v,
            event_pending: false,
            stats: &mut stats,
            decision: &mut None,
        },
        p,
        100,
    )
    .unwrap();
    let w: W = World::new(sept, kvm, PolicyId::GuestInhibit, &[], &[], 0).unwrap();
    assert_eq!(w.check(), Err(Violation::HugeBeforeRunnable(R1)));
}

#[test]
fn a_world_of_a_larger_capacity_holds_more_vcpus_each_with_its_own_slot() {
    use hugesept_core::sept::MAX_SLOTS;
    use hugesept_core::world::{MAX_WORLD_VCPUS, WorldError};
    // Sixteen vCPUs, each accepting its own 4K page of one region, with two host actors: a
    // world of capacity 16 takes them, with a slot for each of the 18 actors.
    let guests: Vec<Guest> = (0..16u64)
        .map(|i| {
            let start = Gpa(R1.raw() + i * 0x1000);
            Guest::new(
                GuestKind::Accept4kOnly,
                start,
                Gpa(start.raw() + 0x1000),
                1 + i as u16,
            )
        })
        .collect();
    let programs: Vec<&[Guest]> = guests.iter().map(core::slice::from_ref).collect();
    // The TD's configuration and KVM from the common set-up; the S-EPT is built again with
    // the slots asked for.
    let td = || {
        let (sept, kvm) = common::td::<2, 3>("tdx-1.5", false);
        (*sept.config(), kvm)
    };
    let (config, kvm) = td();
    let mut sept = Sept::<_, 18>::with_slots(config, ArrayStorage::<1, 2, 3>::new()).unwrap();
    sept.finalize();
    let prefetch = [HostAction::Prefetch(Gpa(R1.raw() + 0x20_0000).gfn())];
    let scripts: [&[HostAction]; 2] = [&prefetch, &prefetch];
    let w =
        World::<_, _, 16, 18>::with_capacity(sept, kvm, PolicyId::RfcV1, &programs, &scripts, 0)
            .unwrap();
    let mut m = Metrics::default();
    let mut steps = 0;
    let v = w.run_seeded(7, 100_000, &mut m, &mut steps);
    assert_eq!(v, Ok(hugesept_core::world::Verdict::Ok));
    // Each of the sixteen exited for its page (again when it found another's fault path
    // building the region's table), and accepted it.
    assert!(
        m.vcpu_exits[..16].iter().all(|&e| e >= 1),
        "{:?}",
        &m.vcpu_exits[..17]
    );
    assert!(
        m.vcpu_tdcalls[..16].iter().all(|&t| t >= 2),
        "{:?}",
        &m.vcpu_tdcalls[..17]
    );
    assert_eq!(m.accept_success, 16);
    assert_eq!(m.vcpu_exits[16], 0);
    // Fewer slots than actors, more vCPUs than the widest world, more slots than a byte
    // numbers: refused.
    let (config, kvm) = td();
    let sept = Sept::<_, 17>::with_slots(config, ArrayStorage::<1, 2, 3>::new()).unwrap();
    assert_eq!(
        World::<_, _, 16, 17>::with_capacity(sept, kvm, PolicyId::RfcV1, &programs, &[], 0).err(),
        Some(WorldError::TooLarge)
    );
    let (config, kvm) = td();
    let sept = Sept::<_, MAX_SLOTS>::with_slots(config, ArrayStorage::<1, 2, 3>::new()).unwrap();
    assert_eq!(
        World::<_, _, { MAX_WORLD_VCPUS + 1 }, MAX_SLOTS>::with_capacity(
            sept,
            kvm,
            PolicyId::RfcV1,
            &programs,
            &[],
            0
        )
        .err(),
        Some(WorldError::TooLarge)
    );
    assert!(
        Sept::<_, { MAX_SLOTS + 1 }>::with_slots(config, ArrayStorage::<1, 2, 3>::new()).is_err()
    );
    // A world of the default capacity refuses the sixteen.
    let (sept, kvm) = common::td::<2, 3>("tdx-1.5", false);
    assert_eq!(
        World::with_programs(sept, kvm, PolicyId::RfcV1, &programs, &[], 0).err(),
        Some(WorldError::TooLarge)
    );
}

#[test]
fn a_world_too_large_is_refused() {
    let g = Guest::new(GuestKind::Linux, R1, Gpa(R1.raw() + 0x1000), 1);
    let (sept, kvm) = common::td::<2, 3>("tdx-1.5", false);
    assert_eq!(
        World::new(sept, kvm, PolicyId::RfcV1, &[g; MAX_VCPUS + 1], &[], 0).err(),
        Some(hugesept_core::world::WorldError::TooLarge)
    );
    let (sept, kvm) = common::td::<2, 3>("explicit-demotion", false);
    assert!(World::new(sept, kvm, PolicyId::ExplicitDemotion, &[g], &[], 0).is_ok());
    let (sept, kvm) = common::td::<2, 3>("tdx-1.5", false);
    assert!(matches!(
        World::new(sept, kvm, PolicyId::ExplicitDemotion, &[g], &[], 0).err(),
        Some(hugesept_core::world::WorldError::Policy(_))
    ));
}

#[test]
fn errors_name_their_inner_cause_layer_by_layer() {
    use hugesept_core::kvm::KvmError;
    use hugesept_core::policy::PolicyError;
    use hugesept_core::sept::SeptError;
    use hugesept_core::world::WorldError;
    let policy = PolicyError::NeedsExplicitDemotionModule.to_string();
    let kvm = KvmError::Policy(PolicyError::NeedsExplicitDemotionModule).to_string();
    assert!(kvm.contains(&policy), "{kvm}");
    let sept = SeptError::TablePoolExhausted.to_string();
    let world = WorldError::Model(KvmError::Sept(SeptError::TablePoolExhausted)).to_string();
    assert!(world.contains(&sept) && world.contains("S-EPT"), "{world}");
    assert!(
        WorldError::Policy(PolicyError::NeedsExplicitDemotionModule)
            .to_string()
            .contains(&policy)
    );
}

#[test]
fn steps_read_as_the_domain_writes_them() {
    use hugesept_core::abi::{AcceptOperand, StatusCode, TdxStatus};
    use hugesept_core::guest::{GuestEvent, GuestOp};
    use hugesept_core::kvm::{FaultEnd, RetPf};
    use hugesept_core::world::{Choice, StepNote};
    let op = GuestOp::Accept(AcceptOperand {
        gpa: Gpa(0x4020_0000),
        level: PageLevel::Size2M,
    });
    let busy = TdxStatus::with_operand(StatusCode::OperandBusy, hugesept_core::abi::OperandId::RCX);
    let note = StepNote {
        retired: Some((op, GuestEvent::Status(busy))),
        ..StepNote::default()
    };
    let text = note.to_string();
    assert!(
        text.starts_with("TDG.MEM.PAGE.ACCEPT 0x40200000 2M → TDX_OPERAND_BUSY"),
        "{text}"
    );
    let fault = StepNote {
        fault_end: Some(FaultEnd::Resume(RetPf::Retry)),
        ..StepNote::default()
    };
    assert_eq!(
        fault.to_string(),
        "fault path ends: RET_PF_RETRY, back into the guest"
    );
    assert_eq!(Choice::Vcpu(1).to_string(), "v1");
    assert_eq!(Choice::Interrupt(0).to_string(), "i0");
    assert_eq!(Choice::Host(1).to_string(), "h1");
    assert_eq!(StepNote::default().to_string(), "");
    // A guest's end reads decoded: the operand and the status by name, not a debug dump.
    let panic = hugesept_core::guest::GuestEnd::Panic {
        op: AcceptOperand {
            gpa: Gpa(0x4020_0000),
            level: PageLevel::Size2M,
        },
        status: busy,
    };
    let text = panic.to_string();
    assert!(
        text.starts_with("panicked: TDG.MEM.PAGE.ACCEPT 0x40200000 2M → TDX_OPERAND_BUSY"),
        "{text}"
    );
    // A design's decision on the fault path names the question and the answer.
    use hugesept_core::policy::{Decision, HugeLeafQuery, SplitDecision};
    let refuse = Decision::HugeLeaf {
        query: HugeLeafQuery {
            gfn: Gpa(0x4020_0000).gfn(),
            goal: PageLevel::Size4K,
            leaf: PageLevel::Size2M,
        },
        decision: SplitDecision::Refuse,
    };
    assert_eq!(
        refuse.to_string(),
        "2M leaf in the way, fault at 4K: refuses the split → RET_PF_RETRY"
    );
}

/// A schedule that runs out of its step budget while every step still makes progress has no
/// verdict; only steps without progress make a livelock.
#[test]
fn a_run_out_of_budget_is_not_a_livelock() {
    let guests = [Guest::new(
        GuestKind::Linux,
        R1,
        Gpa(R1.raw() + 0x20_0000),
        1,
    )];
    let w = world(PolicyId::GuestInhibit, "tdx-1.5", true, &guests, &[], 0);
    let mut m = Metrics::default();
    let mut steps = 0u64;
    assert_eq!(
        w.run_seeded(1, 10, &mut m, &mut steps),
        Err(ScheduleError::BudgetExhausted { steps: 10 })
    );
    assert_eq!(steps, 10);
    assert_eq!(
        w.run_seeded(1, 100_000, &mut m, &mut steps),
        Ok(Verdict::Ok)
    );
    // The same world with patience 1: its first step (an ACCEPT that exits to KVM) makes no
    // progress, so the run is a livelock after one step.
    let mut steps = 0u64;
    let r = w.run_schedule(
        &mut RandomScheduler::new(1),
        Limits {
            bound: 10,
            patience: 1,
        },
        &mut m,
        &mut steps,
        |_, _| {},
    );
    assert_eq!((r, steps), (Ok(Verdict::Livelock), 1));
}

/// The mirror is checked against the S-EPT while an ACCEPT is between its phases (an ACCEPT
/// changes no mapping); only a SEAMCALL in flight defers the check.
#[test]
fn a_mirror_mismatch_is_seen_while_an_accept_is_in_flight() {
    use hugesept_core::abi::SeptEntryState;
    use hugesept_core::world::{VcpuState, Violation};
    let (mut sept, kvm) = common::td::<2, 3>("tdx-1.5", false);
    // The S-EPT maps a 4K page the mirror does not know of, and holds a PENDING one beside it.
    let page = Gpa(BASE);
    let pending = Gpa(BASE + 0x1000);
    if sept.entry_state(page, PageLevel::Size1G).unwrap() != Some(SeptEntryState::NlMapped) {
        sept.arrange(page, PageLevel::Size1G, SeptEntryState::NlMapped)
            .unwrap();
    }
    sept.arrange(page, PageLevel::Size2M, SeptEntryState::NlMapped)
        .unwrap();
    sept.arrange(page, PageLevel::Size4K, SeptEntryState::Mapped)
        .unwrap();
    sept.arrange(pending, PageLevel::Size4K, SeptEntryState::Pending)
        .unwrap();
    let g = Guest::new(
        GuestKind::Accept4kOnly,
        pending,
        Gpa(pending.raw() + 0x1000),
        1,
    );
    let mut w: W = World::new(sept, kvm, PolicyId::GuestInhibit, &[g], &[], 0).unwrap();
    assert!(matches!(w.check(), Err(Violation::MirrorMismatch(_))));
    // The ACCEPT of the PENDING page takes its entry lock and zeroes: it is in flight.
    w.step(Choice::Vcpu(0), &mut Metrics::default()).unwrap();
    assert!(matches!(
        w.vcpus().next().map(|v| v.state()),
        Some(VcpuState::InTdcall { .. })
    ));
    assert_eq!(w.sept().in_flight_count(), 1);
    assert!(matches!(w.check(), Err(Violation::MirrorMismatch(_))));
}
