//! KVM's side: memslots, attributes and lpage_info, every way the fault path can end, each
//! policy's answer to a huge leaf in the way, and the host operations.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use hugesept_core::abi::{
    AcceptExitInfo, AcceptOperand, ExitQualification, ExtendedExitQualification, Gfn, Gpa,
    PageLevel, SeptEntryState, TdxStatus,
};
use hugesept_core::kvm::{
    Attrs, FaultCtx, FaultEnd, FaultPath, FaultStats, HostOpEnd, HostOpKind, HostOperation,
    HostStep, Kvm, KvmArrayStorage, KvmError, Memslot, RetPf,
};
use hugesept_core::policy::{PolicyId, VcpuPolicyState};
use hugesept_core::sept::{AcceptOutcome, ArrayStorage, Content, EptViolationExit, OpState, Sept};

mod common;

use common::BASE;
const R1: Gpa = Gpa(BASE + 0x20_0000);

/// Four regions, and `T` tables in each model's pool.
struct TdWith<const T: usize> {
    sept: Sept<ArrayStorage<1, 4, T>>,
    kvm: Kvm<KvmArrayStorage<1, 4, T>>,
    vcpu: VcpuPolicyState,
    stats: FaultStats,
}

/// A table per region in each pool.
type Td = TdWith<4>;

impl<const T: usize> TdWith<T> {
    fn new(profile: &str) -> TdWith<T> {
        let (sept, kvm) = common::td(profile, false);
        TdWith {
            sept,
            kvm,
            vcpu: VcpuPolicyState::default(),
            stats: FaultStats::default(),
        }
    }

    /// Runs a fault path to its end with no other vCPU, at most `limit` steps; None if it did
    /// not end.
    fn run(
        &mut self,
        path: FaultPath,
        policy: PolicyId,
        event: bool,
        limit: u32,
    ) -> Option<FaultEnd> {
        common::run_fault(
            &mut FaultCtx {
                kvm: &mut self.kvm,
                sept: &mut self.sept,
                policy: &policy,
                vcpu: &mut self.vcpu,
                event_pending: event,
                stats: &mut self.stats,
                decision: &mut None,
            },
            path,
            limit,
        )
    }

    /// The guest's ACCEPT; returns its outcome.
    fn accept(&mut self, gpa: Gpa, level: PageLevel) -> AcceptOutcome {
        self.sept
            .accept(AcceptOperand { gpa, level }.encode())
            .unwrap()
    }

    /// ACCEPT, and on an exit the fault path, until the ACCEPT retires.
    fn accept_until_retired(&mut self, gpa: Gpa, level: PageLevel, policy: PolicyId) -> TdxStatus {
        for _ in 0..8 {
            match self.accept(gpa, level) {
                AcceptOutcome::Completed(s) => return s,
                AcceptOutcome::Exit(e) => {
                    let end = self.run(FaultPath::new(e), policy, false, 1000).unwrap();
                    assert!(matches!(end, FaultEnd::Resume(_)), "{end:?}");
                }
                AcceptOutcome::Interrupted => {}
            }
        }
        panic!("ACCEPT {level} at {gpa} did not retire");
    }
}

fn accept_exit(gpa: Gpa, level: PageLevel) -> EptViolationExit {
    EptViolationExit {
        exit_qualification: ExitQualification::WRITE,
        eeq: ExtendedExitQualification::Accept(AcceptExitInfo {
            requested: level,
            error_level: PageLevel::Size2M,
            error_state: SeptEntryState::Pending,
            error_is_leaf: true,
            vm_index: 0,
        }),
        gpa,
    }
}

#[test]
fn memslot_edges_forbid_huge_pages() {
    let mut td = Td::new("tdx-1.5");
    let mut kvm2 = Kvm::new(td.sept.config(), KvmArrayStorage::<1, 4, 4>::new()).unwrap();
    // A slot starting 4K into region 1 and ending 4K before region 3's end.
    kvm2.add_memslot(Memslot {
        base: Gfn(R1.gfn().raw() + 1),
        pages: 2 * 512 - 2,
        guest_memfd: true,
    })
    .unwrap();
    assert_eq!(kvm2.lpage(R1.gfn(), PageLevel::Size2M).unwrap().count(), 1);
    assert_eq!(
        kvm2.lpage(Gfn(R1.gfn().raw() + 512), PageLevel::Size2M)
            .unwrap()
            .count(),
        1
    );
    assert!(kvm2.lpage(R1.gfn(), PageLevel::Size1G).unwrap().disallows());
    // Overlapping slots are refused.
    assert_eq!(
        kvm2.add_memslot(Memslot {
            base: R1.gfn(),
            pages: 512,
            guest_memfd: true
        }),
        Err(KvmError::BadMemslot)
    );
    // On the aligned slot, the same 2M ACCEPT maps 2M; with the edge it would be 4K.
    assert_eq!(
        td.accept_until_retired(R1, PageLevel::Size2M, PolicyId::GuestInhibit),
        TdxStatus::SUCCESS
    );
    assert!(
        td.kvm
            .mirror(R1.gfn(), PageLevel::Size2M)
            .unwrap()
            .is_leaf()
    );
}

#[test]
fn a_shared_page_makes_its_range_mixed() {
    let mut td = Td::new("tdx-1.5");
    let shared = Gfn(R1.gfn().raw() + 7);
    td.kvm
        .set_private(shared, Gfn(shared.raw() + 1), false)
        .unwrap();
    assert!(!td.kvm.is_private(shared));
    assert!(td.kvm.is_private(Gfn(shared.raw() + 1)));
    assert_eq!(td.kvm.region_of(shared).unwrap().attrs, Attrs::Mixed);
    assert!(td.kvm.lpage(shared, PageLevel::Size2M).unwrap().mixed());
    assert!(td.kvm.lpage(shared, PageLevel::Size1G).unwrap().mixed());
    // A 2M ACCEPT there is mapped 4K by every design: MIXED caps the walk. The 2M accept sees
    // SIZE_MISMATCH after the fault mapped the first 4K page.
    let s = td.accept_until_retired(R1, PageLevel::Size2M, PolicyId::GuestInhibit);
    assert_eq!(s.code(), hugesept_core::abi::StatusCode::PageSizeMismatch);
    assert!(
        td.kvm
            .mirror(R1.gfn(), PageLevel::Size2M)
            .unwrap()
            .is_table()
    );
    // A private fault on the shared GFN exits to userspace (KVM_EXIT_MEMORY_FAULT).
    let exit = accept_exit(shared.gpa().unwrap(), PageLevel::Size4K);
    assert_eq!(
        td.run(FaultPath::new(exit), PolicyId::GuestInhibit, false, 100),
        Some(FaultEnd::ExitToUserspace)
    );
    // Converting it back makes the region private again (MIXED clears).
    td.kvm
        .set_private(shared, Gfn(shared.raw() + 1), true)
        .unwrap();
    assert_eq!(td.kvm.region_of(shared).unwrap().attrs, Attrs::Private);
    assert!(!td.kvm.lpage(shared, PageLevel::Size2M).unwrap().mixed());
}

#[test]
fn fault_ends() {
    // No memslot, or one without guest_memfd: exit to userspace.
    let mut td = Td::new("tdx-1.5");
    let outside = accept_exit(Gpa(BASE + 0x80_0000), PageLevel::Size4K);
    assert_eq!(
        td.run(FaultPath::new(outside), PolicyId::RfcV1, false, 100),
        Some(FaultEnd::ExitToUserspace)
    );
    // A touch of a PENDING page with #VE disabled kills the VM.
    let touch = EptViolationExit {
        exit_qualification: ExitQualification::READ,
        eeq: ExtendedExitQualification::PendingEptViolation,
        gpa: R1,
    };
    assert_eq!(
        td.run(FaultPath::new(touch), PolicyId::RfcV1, false, 100),
        Some(FaultEnd::VmKilled)
    );
    assert!(td.kvm.killed);
    // An invalidation in progress over the GFN: RETRY, back to the guest when an event is pending.
    let mut td = Td::new("tdx-1.5");
    td.kvm.invalidation = Some((R1.gfn(), Gfn(R1.gfn().raw() + 512)));
    let exit = accept_exit(R1, PageLevel::Size2M);
    assert_eq!(
        td.run(FaultPath::new(exit), PolicyId::RfcV1, true, 100),
        Some(FaultEnd::Resume(RetPf::Retry))
    );
    // ...and without one, the local retry loop keeps going.
    assert_eq!(
        td.run(FaultPath::new(exit), PolicyId::RfcV1, false, 200),
        None
    );
    assert!(td.stats.local_retries > 10);
    // Prefetch is refused before finalization and maps 2M after it (guest-inhibit allows it).
    assert!(FaultPath::prefetch(R1.gfn(), OpState::BuildTime).is_none());
    let mut td = Td::new("tdx-1.5");
    let p = FaultPath::prefetch(R1.gfn(), OpState::Runnable).unwrap();
    assert_eq!(
        td.run(p, PolicyId::GuestInhibit, false, 100),
        Some(FaultEnd::Resume(RetPf::Fixed))
    );
    assert!(
        td.kvm
            .mirror(R1.gfn(), PageLevel::Size2M)
            .unwrap()
            .is_leaf()
    );
    // RFC v1 forces prefetch to 4K.
    let mut td = Td::new("tdx-1.5");
    let p = FaultPath::prefetch(R1.gfn(), OpState::Runnable).unwrap();
    assert_eq!(
        td.run(p, PolicyId::RfcV1, false, 100),
        Some(FaultEnd::Resume(RetPf::Fixed))
    );
    assert!(
        td.kvm
            .mirror(R1.gfn(), PageLevel::Size4K)
            .unwrap()
            .is_leaf()
    );
}

/// A 2M page mapped PENDING by a first fault; then a 4K ACCEPT inside it exits.
fn pending_2m_then_4k_exit(td: &mut Td, policy: PolicyId) -> EptViolationExit {
    let AcceptOutcome::Exit(e) = td.accept(R1, PageLevel::Size2M) else {
        panic!("2M ACCEPT did not exit");
    };
    assert_eq!(
        td.run(FaultPath::new(e), policy, false, 100),
        Some(FaultEnd::Resume(RetPf::Fixed))
    );
    assert!(
        td.kvm
            .mirror(R1.gfn(), PageLevel::Size2M)
            .unwrap()
            .is_leaf()
    );
    let AcceptOutcome::Exit(e) = td.accept(Gpa(R1.raw() + 0x3000), PageLevel::Size4K) else {
        panic!("4K ACCEPT did not exit");
    };
    e
}

#[test]
fn each_policy_meets_a_huge_leaf() {
    // fault-path-demote: split under the read lock (BLOCK, TRACK, DEMOTE), then the 4K ACCEPT
    // succeeds and the rest of the 2M page stays pending.
    for (profile, seamcalls) in [("tdx-1.5", 3), ("non-blocking-resize", 1)] {
        let mut td = Td::new(profile);
        let exit = pending_2m_then_4k_exit(&mut td, PolicyId::FaultPathDemote);
        let before = td.stats.seamcalls;
        assert_eq!(
            td.run(FaultPath::new(exit), PolicyId::FaultPathDemote, false, 100),
            Some(FaultEnd::Resume(RetPf::Spurious))
        );
        assert_eq!(td.stats.seamcalls - before, seamcalls, "{profile}");
        assert_eq!(td.stats.demotions, 1);
        assert_eq!(
            td.accept(Gpa(R1.raw() + 0x3000), PageLevel::Size4K),
            AcceptOutcome::Completed(TdxStatus::SUCCESS)
        );
        assert_eq!(
            td.sept.entry_state(R1, PageLevel::Size4K).unwrap(),
            Some(SeptEntryState::Pending)
        );
        td.sept.check_consistency(true).unwrap();
        td.kvm.check_against_sept(&td.sept).unwrap();
    }
    // fault-max-level: the scheme has no answer; it refuses forever (the local retry loop
    // spins until an event is pending).
    let mut td = Td::new("tdx-1.5");
    let exit = pending_2m_then_4k_exit(&mut td, PolicyId::FaultMaxLevel);
    assert_eq!(
        td.run(FaultPath::new(exit), PolicyId::FaultMaxLevel, false, 300),
        None
    );
    assert_eq!(
        td.run(FaultPath::new(exit), PolicyId::FaultMaxLevel, true, 300),
        Some(FaultEnd::Resume(RetPf::Retry))
    );
    // upstream-4k never maps 2M; a 2M leaf in its way (made here by another design) bugs the VM.
    let mut td = Td::new("tdx-1.5");
    let exit = pending_2m_then_4k_exit(&mut td, PolicyId::GuestInhibit);
    assert!(matches!(
        td.run(FaultPath::new(exit), PolicyId::Upstream4K, false, 100),
        Some(FaultEnd::VmBugged(None))
    ));
    assert!(td.kvm.bugged);
    // explicit-demotion keeps the huge leaf: SPURIOUS.
    let mut td = Td::new("explicit-demotion");
    let AcceptOutcome::Exit(e) = td.accept(R1, PageLevel::Size2M) else {
        panic!()
    };
    td.run(FaultPath::new(e), PolicyId::ExplicitDemotion, false, 100)
        .unwrap();
    // With this module the guest sees SIZE_MISMATCH instead of exiting...
    assert_eq!(
        td.accept(Gpa(R1.raw() + 0x3000), PageLevel::Size4K),
        AcceptOutcome::Completed(TdxStatus::with_level(
            hugesept_core::abi::StatusCode::PageSizeMismatch,
            PageLevel::Size2M
        ))
    );
    // ...and a 4K exit that reaches KVM anyway leaves the 2M leaf alone.
    let exit = accept_exit(Gpa(R1.raw() + 0x3000), PageLevel::Size4K);
    assert_eq!(
        td.run(FaultPath::new(exit), PolicyId::ExplicitDemotion, false, 100),
        Some(FaultEnd::Resume(RetPf::Spurious))
    );
    assert!(
        td.kvm
            .mirror(R1.gfn(), PageLevel::Size2M)
            .unwrap()
            .is_leaf()
    );
}

/// Runs a host operation with no vCPU inside the guest.
fn run_host<const T: usize>(td: &mut TdWith<T>, mut op: HostOperation) -> HostOpEnd {
    for _ in 0..10_000 {
        match op.step(&mut td.kvm, &mut td.sept).unwrap() {
            HostStep::Progress => {}
            HostStep::Blocked => panic!("blocked"),
            HostStep::Done(e) => return e,
        }
    }
    panic!("host operation did not end");
}

#[test]
fn converting_4k_inside_an_accepted_2m_page_loses_nothing_else() {
    let mut td = Td::new("tdx-1.5");
    assert_eq!(
        td.accept_until_retired(R1, PageLevel::Size2M, PolicyId::GuestInhibit),
        TdxStatus::SUCCESS
    );
    td.sept
        .guest_write(R1, PageLevel::Size2M, Content::data(9))
        .unwrap();
    let page = Gfn(R1.gfn().raw() + 5);
    let op = HostOperation::new(HostOpKind::ConvertToShared, page, Gfn(page.raw() + 1));
    assert_eq!(run_host(&mut td, op), HostOpEnd::Done);
    // The 2M page was split (mirror and S-EPT), exactly the one 4K page was removed.
    assert!(
        td.kvm
            .mirror(R1.gfn(), PageLevel::Size2M)
            .unwrap()
            .is_table()
    );
    assert_eq!(
        td.sept.entry_state(R1, PageLevel::Size2M).unwrap(),
        Some(SeptEntryState::NlMapped)
    );
    for i in 0..512u64 {
        let g = Gpa(R1.raw() + i * 0x1000);
        let (state, content) = if i == 5 {
            (SeptEntryState::Free, Content::NONE)
        } else {
            (SeptEntryState::Mapped, Content::data(9))
        };
        assert_eq!(
            td.sept.entry_state(g, PageLevel::Size4K).unwrap(),
            Some(state),
            "page {i}"
        );
        assert_eq!(td.sept.content(g).unwrap(), content, "page {i}");
        assert_eq!(
            td.kvm.mirror(g.gfn(), PageLevel::Size4K).unwrap().is_leaf(),
            i != 5
        );
    }
    assert!(!td.kvm.is_private(page));
    assert!(td.kvm.lpage(page, PageLevel::Size2M).unwrap().mixed());
    assert_eq!(td.kvm.mmu_lock.readers(), 0);
    assert!(!td.kvm.mmu_lock.write_held());
    td.sept.check_consistency(true).unwrap();
    td.kvm.check_against_sept(&td.sept).unwrap();
    // Back to private: the guest accepts the page again (zeroed).
    let op = HostOperation::new(HostOpKind::ConvertToPrivate, page, Gfn(page.raw() + 1));
    assert_eq!(run_host(&mut td, op), HostOpEnd::Done);
    assert_eq!(
        td.accept_until_retired(
            page.gpa().unwrap(),
            PageLevel::Size4K,
            PolicyId::GuestInhibit
        ),
        TdxStatus::SUCCESS
    );
    assert_eq!(td.sept.content(page.gpa().unwrap()).unwrap(), Content::ZERO);
}

#[test]
fn punch_hole_removes_exactly_the_range() {
    let mut td = Td::new("tdx-1.5");
    for r in 0..2u64 {
        let g = Gpa(BASE + r * 0x20_0000);
        assert_eq!(
            td.accept_until_retired(g, PageLevel::Size2M, PolicyId::GuestInhibit),
            TdxStatus::SUCCESS
        );
        td.sept
            .guest_write(g, PageLevel::Size2M, Content::data(r as u16))
            .unwrap();
    }
    // [1M, 3M): the tail of region 0 and the head of region 1.
    let start = Gfn(Gpa(BASE).gfn().raw() + 256);
    let end = Gfn(Gpa(BASE).gfn().raw() + 768);
    let op = HostOperation::new(HostOpKind::PunchHole, start, end);
    assert_eq!(run_host(&mut td, op), HostOpEnd::Done);
    for i in 0..1024u64 {
        let g = Gpa(BASE + i * 0x1000);
        let inside = (256..768).contains(&i);
        let want = if inside {
            Content::NONE
        } else {
            Content::data((i / 512) as u16)
        };
        assert_eq!(td.sept.content(g).unwrap(), want, "page {i}");
    }
    td.sept.check_consistency(true).unwrap();
    td.kvm.check_against_sept(&td.sept).unwrap();
}

#[test]
fn a_split_that_cannot_get_a_table_fails_the_ioctl_and_changes_nothing() {
    // A pool of one table per region never runs out (`Sept::can_demote_2m`): a region holds
    // at most one, and a 2M leaf with per-page content demotes into its own. So the pool here
    // is one short: three tables for four regions.
    let mut td = TdWith::<3>::new("tdx-1.5");
    assert_eq!(
        td.accept_until_retired(R1, PageLevel::Size2M, PolicyId::GuestInhibit),
        TdxStatus::SUCCESS
    );
    // Fill the S-EPT model's pool: three split regions; R1's content stays uniform.
    for r in [0u64, 2, 3] {
        td.sept
            .arrange(
                Gpa(BASE + r * 0x20_0000),
                PageLevel::Size2M,
                SeptEntryState::NlMapped,
            )
            .unwrap();
    }
    assert!(!td.sept.has_free_table() && !td.sept.can_demote_2m(R1));
    let before = td.sept.clone();
    let op = HostOperation::new(
        HostOpKind::PunchHole,
        Gfn(R1.gfn().raw() + 1),
        Gfn(R1.gfn().raw() + 2),
    );
    assert_eq!(run_host(&mut td, op), HostOpEnd::OutOfMemory);
    assert_eq!(td.sept, before);
    assert!(!td.kvm.mmu_lock.write_held());
    assert_eq!(td.kvm.invalidation, None);
    assert!(
        td.kvm
            .mirror(R1.gfn(), PageLevel::Size2M)
            .unwrap()
            .is_leaf()
    );

    // With a table per region, the same punch hole in a leaf with per-page content (its
    // content table holds the pool's last table) splits into that table.
    let mut td = Td::new("tdx-1.5");
    assert_eq!(
        td.accept_until_retired(R1, PageLevel::Size2M, PolicyId::GuestInhibit),
        TdxStatus::SUCCESS
    );
    td.sept
        .guest_write(Gpa(R1.raw() + 0x1000), PageLevel::Size4K, Content::data(1))
        .unwrap();
    for r in [0u64, 2, 3] {
        td.sept
            .arrange(
                Gpa(BASE + r * 0x20_0000),
                PageLevel::Size2M,
                SeptEntryState::NlMapped,
            )
            .unwrap();
    }
    assert!(!td.sept.has_free_table() && td.sept.can_demote_2m(R1));
    let op = HostOperation::new(
        HostOpKind::PunchHole,
        Gfn(R1.gfn().raw() + 2),
        Gfn(R1.gfn().raw() + 3),
    );
    assert_eq!(run_host(&mut td, op), HostOpEnd::Done);
    assert_eq!(
        td.sept.content(Gpa(R1.raw() + 0x1000)).unwrap(),
        Content::data(1)
    );
}

#[test]
fn boundary_splits_and_folio_orders() {
    assert_eq!(
        Kvm::<KvmArrayStorage<1, 4, 4>>::folio_level(0),
        PageLevel::Size4K
    );
    assert_eq!(
        Kvm::<KvmArrayStorage<1, 4, 4>>::folio_level(9),
        PageLevel::Size2M
    );
    assert_eq!(
        Kvm::<KvmArrayStorage<1, 4, 4>>::folio_level(18),
        PageLevel::Size1G
    );
    let mut td = Td::new("tdx-1.5");
    assert_eq!(
        td.accept_until_retired(R1, PageLevel::Size2M, PolicyId::GuestInhibit),
        TdxStatus::SUCCESS
    );
    // Splitting at 2M-aligned boundaries touches nothing.
    let aligned = HostOperation::new(
        HostOpKind::SplitBoundaries,
        R1.gfn(),
        Gfn(R1.gfn().raw() + 512),
    );
    assert_eq!(run_host(&mut td, aligned), HostOpEnd::Done);
    assert!(
        td.kvm
            .mirror(R1.gfn(), PageLevel::Size2M)
            .unwrap()
            .is_leaf()
    );
    // A boundary inside the 2M page splits it; nothing is removed.
    let inside = HostOperation::new(
        HostOpKind::SplitBoundaries,
        Gfn(R1.gfn().raw() + 3),
        Gfn(R1.gfn().raw() + 512),
    );
    assert_eq!(run_host(&mut td, inside), HostOpEnd::Done);
    assert!(
        td.kvm
            .mirror(R1.gfn(), PageLevel::Size2M)
            .unwrap()
            .is_table()
    );
    for i in 0..512u64 {
        let g = Gpa(R1.raw() + i * 0x1000);
        assert_eq!(
            td.sept.entry_state(g, PageLevel::Size4K).unwrap(),
            Some(SeptEntryState::Mapped)
        );
        assert_eq!(td.sept.content(g).unwrap(), Content::ZERO);
    }
    td.kvm.check_against_sept(&td.sept).unwrap();
    // A region backed by 4K folios is mapped 4K whatever the ACCEPT asks.
    let r2 = Gpa(BASE + 0x40_0000);
    td.kvm
        .set_folio(r2.gfn(), Kvm::<KvmArrayStorage<1, 4, 4>>::folio_level(0))
        .unwrap();
    let s = td.accept_until_retired(r2, PageLevel::Size2M, PolicyId::GuestInhibit);
    assert_eq!(s.code(), hugesept_core::abi::StatusCode::PageSizeMismatch);
}

#[test]
fn page_statistics_follow_the_mirror_through_a_split_and_a_removal() {
    use hugesept_core::kvm::PageStats;
    let mut td = Td::new("tdx-1.5");
    assert_eq!(td.kvm.page_stats(), PageStats::default());
    assert_eq!(
        td.accept_until_retired(R1, PageLevel::Size2M, PolicyId::GuestInhibit),
        TdxStatus::SUCCESS
    );
    let two_m = PageStats {
        pages_2m: 1,
        ..PageStats::default()
    };
    assert_eq!(td.kvm.page_stats(), two_m);
    // A conversion of one 4K page: DEMOTE moves the 2M page to 512 4K ones, REMOVE takes one.
    let page = Gfn(R1.gfn().raw() + 5);
    let op = HostOperation::new(HostOpKind::ConvertToShared, page, Gfn(page.raw() + 1));
    assert_eq!(run_host(&mut td, op), HostOpEnd::Done);
    assert_eq!(
        td.kvm.page_stats(),
        PageStats {
            pages_4k: 511,
            ..PageStats::default()
        }
    );
    assert_eq!(td.kvm.page_stats().bytes(), 511 << 12);
}

#[test]
fn punch_hole_and_conversion_split_through_the_same_sequence() {
    // The v5 review (Yan Zhao on 44/45): one split operation serves private-to-shared
    // conversion and guest_memfd punch hole alike. The same 4K page of an accepted 2M page,
    // converted in one TD and punched out in another: the same phases, SEAMCALLs, demotions
    // and removals, and the same S-EPT and mirror after; only the attributes differ.
    let run = |kind| {
        let mut td = Td::new("tdx-1.5");
        assert_eq!(
            td.accept_until_retired(R1, PageLevel::Size2M, PolicyId::GuestInhibit),
            TdxStatus::SUCCESS
        );
        let page = Gfn(R1.gfn().raw() + 5);
        let mut op = HostOperation::new(kind, page, Gfn(page.raw() + 1));
        let mut phases = vec![op.phase_name()];
        loop {
            match op.step(&mut td.kvm, &mut td.sept).unwrap() {
                HostStep::Progress => phases.push(op.phase_name()),
                HostStep::Blocked => panic!("blocked"),
                HostStep::Done(e) => {
                    assert_eq!(e, HostOpEnd::Done);
                    break;
                }
            }
        }
        let pages: Vec<_> = (0..512u64)
            .map(|i| {
                let g = Gpa(R1.raw() + i * 0x1000);
                (
                    td.sept.entry_state(g, PageLevel::Size4K).unwrap(),
                    td.kvm.mirror(g.gfn(), PageLevel::Size4K).unwrap().is_leaf(),
                )
            })
            .collect();
        (phases, op.counts(), pages, td.kvm.is_private(page))
    };
    let (convert_phases, convert_counts, convert_pages, convert_private) =
        run(HostOpKind::ConvertToShared);
    let (punch_phases, punch_counts, punch_pages, punch_private) = run(HostOpKind::PunchHole);
    // The same phases, but for the conversion's update of the attributes.
    let without_attributes: Vec<_> = convert_phases
        .iter()
        .copied()
        .filter(|p| *p != "set attributes")
        .collect();
    assert_eq!(without_attributes.len() + 1, convert_phases.len());
    assert_eq!(without_attributes, punch_phases);
    assert_eq!(convert_counts, punch_counts);
    // BLOCK, TRACK, DEMOTE, then the REMOVE of the one page (and its own BLOCK and TRACK).
    assert!(
        convert_counts.0 >= 4 && convert_counts.1 == 1 && convert_counts.2 == 1,
        "{convert_counts:?}"
    );
    assert_eq!(convert_pages, punch_pages);
    // Only a conversion changes the attributes.
    assert!(!convert_private && punch_private);
}
