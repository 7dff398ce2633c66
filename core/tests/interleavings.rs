//! Operations that hold locks across time, interleaved with others: what the module does, and
//! that the model stays consistent and refuses tokens that name nothing in flight.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use hugesept_core::abi::{
    AcceptOperand, Gpa, OperandId, PageLevel, SeptEntryState, StatusCode, TdxStatus,
};
use hugesept_core::sept::{
    AcceptOp, AcceptOutcome, AcceptStart, AccessOutcome, ArrayStorage, Content, HostCall, HostOp,
    HostStart, ModuleProfile, Sept, SeptConfig, SeptError,
};

const BASE: u64 = 0x4000_0000;
const R1: Gpa = Gpa(BASE + 0x20_0000);
type TestSept = Sept<ArrayStorage<1, 4, 4>>;

fn sept(profile: &str) -> TestSept {
    let mut config = SeptConfig::new(Gpa(BASE), 4);
    config.profile = ModuleProfile::parse(profile).unwrap();
    let mut s = Sept::new(config, ArrayStorage::new()).unwrap();
    s.finalize();
    s.arrange(Gpa(BASE), PageLevel::Size1G, SeptEntryState::NlMapped)
        .unwrap();
    s
}

fn begin<S: hugesept_core::sept::SeptStorage>(s: &mut Sept<S>, call: HostCall) -> HostOp {
    match s.host_begin(call).unwrap() {
        HostStart::Started(op) => op,
        HostStart::Done(st) => panic!("{call:?} completed at once: {st}"),
    }
}

fn accept_begin(s: &mut TestSept, gpa: Gpa, level: PageLevel) -> AcceptOp {
    match s
        .accept_begin(AcceptOperand { gpa, level }.encode())
        .unwrap()
    {
        AcceptStart::Zeroing(op) => op,
        AcceptStart::Checking(_) => panic!("entry not pending"),
        AcceptStart::Done(o) => panic!("accept completed at once: {o}"),
    }
}

#[test]
fn guest_writes_while_a_non_blocking_demote_is_in_flight() {
    for two_m_write_first in [false, true] {
        let mut s = sept("non-blocking-resize");
        s.arrange(R1, PageLevel::Size2M, SeptEntryState::Mapped)
            .unwrap();
        if two_m_write_first {
            // The region has a per-page content table before the DEMOTE starts.
            s.guest_write(Gpa(R1.raw() + 0x3000), PageLevel::Size4K, Content::data(1))
                .unwrap();
        }
        let op = begin(&mut s, HostCall::demote(R1, PageLevel::Size2M));
        s.check_consistency(false).unwrap();
        // The leaf stays MAPPED while it is demoted without BLOCK: the guest can write it.
        if two_m_write_first {
            s.guest_write(R1, PageLevel::Size2M, Content::data(2))
                .unwrap();
        } else {
            s.guest_write(Gpa(R1.raw() + 0x5000), PageLevel::Size4K, Content::data(3))
                .unwrap();
        }
        assert_eq!(s.host_end(op, false).unwrap(), TdxStatus::SUCCESS);
        s.check_consistency(true).unwrap();
        assert_eq!(
            s.entry_state(R1, PageLevel::Size2M).unwrap(),
            Some(SeptEntryState::NlMapped)
        );
        if two_m_write_first {
            assert_eq!(s.content(Gpa(R1.raw() + 0x3000)).unwrap(), Content::data(2));
        } else {
            assert_eq!(s.content(Gpa(R1.raw() + 0x5000)).unwrap(), Content::data(3));
            assert_eq!(s.content(R1).unwrap(), Content::ZERO);
        }
        assert_eq!(s.tables_in_use(), 1);
    }
}

#[test]
fn promote_checks_children_in_order() {
    // Child 0 is FREE and child 7 is being accepted: the module stops at child 0 with
    // INVALID_PROMOTE_CONDITIONS and never touches child 7 (no host-priority bit on it).
    let mut s = sept("tdx-1.5");
    s.arrange(R1, PageLevel::Size2M, SeptEntryState::NlMapped)
        .unwrap();
    for i in 1..512u64 {
        s.arrange(
            Gpa(R1.raw() + i * 0x1000),
            PageLevel::Size4K,
            SeptEntryState::Pending,
        )
        .unwrap();
    }
    let seven = Gpa(R1.raw() + 7 * 0x1000);
    let acc = accept_begin(&mut s, seven, PageLevel::Size4K);
    assert_eq!(
        s.seamcall(HostCall::block(R1, PageLevel::Size2M)).unwrap(),
        TdxStatus::SUCCESS
    );
    s.track().unwrap();
    let st = s
        .seamcall(HostCall::promote(R1, PageLevel::Size2M))
        .unwrap();
    assert_eq!(st.code(), StatusCode::EptInvalidPromoteConditions);
    let e = s.entry(seven, PageLevel::Size4K).unwrap().unwrap();
    assert!(e.lock.is_locked() && !e.lock.host_priority());
    assert_eq!(
        s.accept_finish(acc, None).unwrap(),
        AcceptOutcome::Completed(TdxStatus::SUCCESS)
    );
    s.check_consistency(true).unwrap();

    // With child 0 valid, the locked child is reached: BUSY, and its HP bit is set.
    let mut s = sept("tdx-1.5");
    s.arrange(R1, PageLevel::Size2M, SeptEntryState::NlMapped)
        .unwrap();
    for i in 0..512u64 {
        s.arrange(
            Gpa(R1.raw() + i * 0x1000),
            PageLevel::Size4K,
            SeptEntryState::Pending,
        )
        .unwrap();
    }
    let acc = accept_begin(&mut s, seven, PageLevel::Size4K);
    s.seamcall(HostCall::block(R1, PageLevel::Size2M)).unwrap();
    s.track().unwrap();
    let st = s
        .seamcall(HostCall::promote(R1, PageLevel::Size2M))
        .unwrap();
    assert_eq!(st.code(), StatusCode::OperandBusy);
    assert!(
        s.entry(seven, PageLevel::Size4K)
            .unwrap()
            .unwrap()
            .lock
            .host_priority()
    );
    let six = Gpa(R1.raw() + 6 * 0x1000);
    assert!(
        !s.entry(six, PageLevel::Size4K)
            .unwrap()
            .unwrap()
            .lock
            .is_locked()
    );
    s.accept_finish(acc, None).unwrap();
    s.check_consistency(true).unwrap();
}

#[test]
fn stale_and_replayed_tokens_change_nothing() {
    let mut s = sept("tdx-1.5");
    s.arrange(R1, PageLevel::Size2M, SeptEntryState::Free)
        .unwrap();
    let aug = begin(&mut s, HostCall::aug(R1, PageLevel::Size2M));
    assert_eq!(s.host_end(aug, false).unwrap(), TdxStatus::SUCCESS);
    let acc = accept_begin(&mut s, R1, PageLevel::Size2M);
    let before = s.clone();
    // Replaying the finished AUG while the ACCEPT holds the entry lock.
    assert_eq!(s.host_end(aug, false), Err(SeptError::StaleOperation));
    assert_eq!(s, before);
    assert_eq!(
        s.accept_finish(acc, None).unwrap(),
        AcceptOutcome::Completed(TdxStatus::SUCCESS)
    );
    assert_eq!(s.accept_finish(acc, None), Err(SeptError::StaleOperation));
    s.check_consistency(true).unwrap();
}

#[test]
fn arrange_is_refused_while_operations_are_in_flight() {
    let mut s = sept("tdx-1.5");
    s.arrange(R1, PageLevel::Size2M, SeptEntryState::Pending)
        .unwrap();
    let acc = accept_begin(&mut s, R1, PageLevel::Size2M);
    assert_eq!(
        s.arrange(R1, PageLevel::Size2M, SeptEntryState::Free),
        Err(SeptError::ArrangeConflict)
    );
    s.accept_finish(acc, None).unwrap();
    s.arrange(R1, PageLevel::Size2M, SeptEntryState::Free)
        .unwrap();
}

#[test]
fn a_2m_write_stops_at_the_first_page_it_cannot_access() {
    let mut s = sept("tdx-1.5");
    s.arrange(R1, PageLevel::Size2M, SeptEntryState::NlMapped)
        .unwrap();
    for i in 0..512u64 {
        let st = if i == 100 {
            SeptEntryState::Pending
        } else {
            SeptEntryState::Mapped
        };
        s.arrange(Gpa(R1.raw() + i * 0x1000), PageLevel::Size4K, st)
            .unwrap();
    }
    let out = s
        .guest_write(R1, PageLevel::Size2M, Content::data(4))
        .unwrap();
    assert!(matches!(out, AccessOutcome::Exit(e) if e.gpa == Gpa(R1.raw() + 100 * 0x1000)));
    assert_eq!(
        s.content(Gpa(R1.raw() + 99 * 0x1000)).unwrap(),
        Content::data(4)
    );
    assert_eq!(
        s.content(Gpa(R1.raw() + 101 * 0x1000)).unwrap(),
        Content::ZERO
    );
    s.check_consistency(true).unwrap();
}

#[test]
fn too_many_operations_in_flight_is_an_error() {
    let mut config = SeptConfig::new(Gpa(BASE), 512);
    config.profile = ModuleProfile::TDX_1_5;
    let mut s: Sept<ArrayStorage<1, 512, 1>> = Sept::new(config, ArrayStorage::new()).unwrap();
    s.finalize();
    s.arrange(Gpa(BASE), PageLevel::Size1G, SeptEntryState::NlMapped)
        .unwrap();
    for r in 0..=hugesept_core::sept::MAX_IN_FLIGHT as u64 {
        s.arrange(
            Gpa(BASE + r * 0x20_0000),
            PageLevel::Size2M,
            SeptEntryState::Pending,
        )
        .unwrap();
    }
    for r in 0..hugesept_core::sept::MAX_IN_FLIGHT as u64 {
        let rcx = AcceptOperand {
            gpa: Gpa(BASE + r * 0x20_0000),
            level: PageLevel::Size2M,
        }
        .encode();
        assert!(matches!(
            s.accept_begin(rcx).unwrap(),
            AcceptStart::Zeroing(_)
        ));
    }
    let before = s.clone();
    let rcx = AcceptOperand {
        gpa: Gpa(BASE + 16 * 0x20_0000),
        level: PageLevel::Size2M,
    }
    .encode();
    assert_eq!(s.accept_begin(rcx), Err(SeptError::TooManyInFlight));
    assert_eq!(s, before);
}

/// PAGE.ADD holds the TDR exclusively and every other SEAMCALL shared
/// (`check_lock_and_map_explicit_tdr`): while one is in flight the other fails on the TDR, with
/// TDX_OPERAND_BUSY | RDX, before any other check; TDH.MEM.TRACK (TDR shared) and
/// TDH.MR.FINALIZE (exclusive) report the TDR's operand as RCX.
#[test]
fn page_add_and_other_seamcalls_exclude_each_other_on_the_tdr() {
    let mut config = SeptConfig::new(Gpa(BASE), 4);
    config.profile = ModuleProfile::TDX_1_5;
    let mut s: TestSept = Sept::new(config, ArrayStorage::new()).unwrap();
    s.arrange(Gpa(BASE), PageLevel::Size1G, SeptEntryState::NlMapped)
        .unwrap();
    s.arrange(R1, PageLevel::Size2M, SeptEntryState::NlMapped)
        .unwrap();
    let busy_rdx = TdxStatus::with_operand(StatusCode::OperandBusy, OperandId::RDX);
    let busy_rcx = TdxStatus::with_operand(StatusCode::OperandBusy, OperandId::RCX);
    let add = |page: u64| {
        HostCall::add(
            Gpa(R1.raw() + page * 0x1000),
            PageLevel::Size4K,
            Content::data(3),
        )
    };
    // A PAGE.ADD in flight: every other SEAMCALL, even an invalid one, and TRACK are refused.
    let op = begin(&mut s, add(0));
    for call in [
        HostCall::aug(Gpa(R1.raw() + 0x1000), PageLevel::Size4K),
        HostCall::block(R1, PageLevel::Size2M),
        add(1),
        HostCall::aug(Gpa(R1.raw() + 0x1), PageLevel::Size4K),
    ] {
        assert_eq!(
            s.host_begin(call).unwrap(),
            HostStart::Done(busy_rdx),
            "{call:?}"
        );
    }
    assert_eq!(s.track().unwrap(), busy_rcx);
    assert_eq!(s.finalize(), busy_rcx);
    assert_eq!(s.host_end(op, false).unwrap(), TdxStatus::SUCCESS);
    // Another SEAMCALL in flight: PAGE.ADD and FINALIZE are refused, TRACK is not.
    let aug = begin(
        &mut s,
        HostCall::aug(Gpa(R1.raw() + 0x2000), PageLevel::Size4K),
    );
    assert_eq!(s.host_begin(add(1)).unwrap(), HostStart::Done(busy_rdx));
    assert_eq!(s.finalize(), busy_rcx);
    assert_eq!(s.track().unwrap(), TdxStatus::SUCCESS);
    assert_eq!(s.host_end(aug, false).unwrap(), TdxStatus::SUCCESS);
    assert_eq!(s.seamcall(add(1)).unwrap(), TdxStatus::SUCCESS);
    assert_eq!(s.finalize(), TdxStatus::SUCCESS);
    s.check_consistency(true).unwrap();
}

/// SEPT.ADD at 1G links a new table whose entries are all FREE and unlocked, whatever lock
/// bits the entries of the table an earlier SEPT.REMOVE took away were left with (a host
/// priority bit a BUSY SEAMCALL set).
#[test]
fn a_new_1g_table_starts_with_fresh_entries() {
    let mut config = SeptConfig::new(Gpa(BASE), 4);
    config.profile = ModuleProfile::TDX_1_5;
    let mut s: TestSept = Sept::new(config, ArrayStorage::new()).unwrap();
    let gig = Gpa(BASE);
    assert_eq!(
        s.seamcall(HostCall::sept_add(gig, PageLevel::Size1G))
            .unwrap(),
        TdxStatus::SUCCESS
    );
    assert_eq!(
        s.seamcall(HostCall::aug(R1, PageLevel::Size2M)).unwrap(),
        TdxStatus::SUCCESS
    );
    // A REMOVE holds the entry; an AUG finds it locked and sets its host-priority bit.
    let remove = begin(&mut s, HostCall::remove(R1, PageLevel::Size2M));
    assert_eq!(
        s.host_begin(HostCall::aug(R1, PageLevel::Size2M)).unwrap(),
        HostStart::Done(TdxStatus::with_operand(
            StatusCode::OperandBusy,
            OperandId::RCX
        ))
    );
    assert_eq!(s.host_end(remove, false).unwrap(), TdxStatus::SUCCESS);
    let entry = s.entry(R1, PageLevel::Size2M).unwrap().unwrap();
    assert!(entry.lock.host_priority());
    assert_eq!(
        s.seamcall(HostCall::sept_remove(gig, PageLevel::Size1G))
            .unwrap(),
        TdxStatus::SUCCESS
    );
    assert_eq!(
        s.seamcall(HostCall::sept_add(gig, PageLevel::Size1G))
            .unwrap(),
        TdxStatus::SUCCESS
    );
    let entry = s.entry(R1, PageLevel::Size2M).unwrap().unwrap();
    assert_eq!(entry.state, SeptEntryState::Free);
    assert!(!entry.lock.host_priority() && !entry.lock.is_locked());
    s.check_consistency(true).unwrap();
}

/// A pool of one table per region never runs out under a 2M DEMOTE: a leaf with per-page
/// content demotes into its own content table; a leaf without it reserves one, which a guest
/// 4K write while the DEMOTE is in flight takes over as the region's content table; and a 2M
/// write that gives the region's content table back leaves the DEMOTE one to take at its end.
#[test]
fn a_pool_of_one_table_per_region_serves_every_demote() {
    type Small = Sept<ArrayStorage<1, 2, 2>>;
    let r0 = Gpa(BASE);
    let r1 = Gpa(BASE + 0x20_0000);
    let page = |r: Gpa, i: u64| Gpa(r.raw() + i * 0x1000);
    let small = || -> Small {
        let mut config = SeptConfig::new(Gpa(BASE), 2);
        config.profile = ModuleProfile::parse("non-blocking-resize").unwrap();
        let mut s = Sept::new(config, ArrayStorage::new()).unwrap();
        s.finalize();
        s.arrange(Gpa(BASE), PageLevel::Size1G, SeptEntryState::NlMapped)
            .unwrap();
        // Region 0 holds a page table: one of the two tables is taken for good.
        s.arrange(r0, PageLevel::Size2M, SeptEntryState::NlMapped)
            .unwrap();
        s.arrange(r1, PageLevel::Size2M, SeptEntryState::Mapped)
            .unwrap();
        s
    };
    let demoted = |s: &Small| {
        assert_eq!(
            s.entry(r1, PageLevel::Size2M).unwrap().unwrap().state,
            SeptEntryState::NlMapped
        );
        assert_eq!(s.tables_in_use(), 2);
        s.check_consistency(true).unwrap();
    };

    // Per-page content first: the region's content table takes the last free table, and the
    // DEMOTE needs no other.
    let mut s = small();
    s.guest_write(page(r1, 3), PageLevel::Size4K, Content::data(1))
        .unwrap();
    assert!(!s.has_free_table() && s.can_demote_2m(r1));
    let op = begin(&mut s, HostCall::demote(r1, PageLevel::Size2M));
    assert_eq!(s.host_end(op, false).unwrap(), TdxStatus::SUCCESS);
    demoted(&s);
    assert_eq!(s.content(page(r1, 3)).unwrap(), Content::data(1));

    // A 4K write while the DEMOTE is in flight takes over the reserved table.
    let mut s = small();
    let op = begin(&mut s, HostCall::demote(r1, PageLevel::Size2M));
    s.guest_write(page(r1, 5), PageLevel::Size4K, Content::data(2))
        .unwrap();
    assert_eq!(s.host_end(op, false).unwrap(), TdxStatus::SUCCESS);
    demoted(&s);
    assert_eq!(s.content(page(r1, 5)).unwrap(), Content::data(2));

    // Per-page content, then a 2M write that makes it uniform again while the DEMOTE is in
    // flight: the region gives its table back, and the DEMOTE takes it at its end.
    let mut s = small();
    s.guest_write(page(r1, 3), PageLevel::Size4K, Content::data(1))
        .unwrap();
    let op = begin(&mut s, HostCall::demote(r1, PageLevel::Size2M));
    s.guest_write(r1, PageLevel::Size2M, Content::data(4))
        .unwrap();
    assert_eq!(s.host_end(op, false).unwrap(), TdxStatus::SUCCESS);
    demoted(&s);
    assert_eq!(s.content(page(r1, 7)).unwrap(), Content::data(4));
}
