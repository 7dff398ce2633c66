//! Property tests: the ABI decoders on arbitrary input, and the S-EPT transition rules under
//! random sequences of guest and host operations.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use hugesept_core::abi::{
    AcceptExitInfo, AcceptOperand, ExtendedExitQualification, Gpa, Gpaw, KvmPgLevel, PageLevel,
    SeptEntryState, StatusCode, TdcallRax, TdxSeptLevel, TdxStatus,
};
use hugesept_core::sept::{
    AcceptOp, AcceptOutcome, AcceptStart, ArrayStorage, Content, EpochTicket, HostCall,
    HostCallKind, HostOp, HostStart, ModuleProfile, OpState, Sept, SeptConfig, SeptError,
};
use proptest::prelude::*;

fn any_level() -> impl Strategy<Value = PageLevel> {
    prop_oneof![
        Just(PageLevel::Size4K),
        Just(PageLevel::Size2M),
        Just(PageLevel::Size1G)
    ]
}

fn any_state() -> impl Strategy<Value = SeptEntryState> {
    proptest::sample::select(SeptEntryState::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn accept_operand_round_trips(raw in any::<u64>(), level in any_level()) {
        let gpa = Gpa(raw & 0x000F_FFFF_FFFF_F000).align_down(level);
        let op = AcceptOperand { gpa, level };
        prop_assert_eq!(AcceptOperand::decode(op.encode()), Ok(op));
    }

    #[test]
    fn accept_operand_decode_is_exact(rcx in any::<u64>()) {
        if let Ok(op) = AcceptOperand::decode(rcx) {
            prop_assert_eq!(op.encode(), rcx);
            prop_assert!(op.gpa.is_aligned(op.level));
        }
        for gpaw in [Gpaw::Bits48, Gpaw::Bits52] {
            if let Ok(op) = AcceptOperand::decode_for(rcx, gpaw) {
                prop_assert!(!op.gpa.is_shared(gpaw));
                prop_assert!(op.gpa.is_within(gpaw));
            }
        }
    }

    #[test]
    fn status_decode_is_lossless(raw in any::<u64>()) {
        let s = TdxStatus(raw);
        prop_assert_eq!(TdxStatus::new(s.code(), s.detail_bits()).raw(), raw);
        prop_assert_eq!(StatusCode::from_value(s.code().value()), s.code());
        let _ = format!("{s}");
    }

    #[test]
    fn eeq_decode_is_exact(rdx in any::<u64>()) {
        if let Ok(e) = ExtendedExitQualification::decode(rdx) {
            prop_assert_eq!(e.encode(), rdx);
        }
    }

    #[test]
    fn eeq_accept_round_trips(
        requested in any_level(),
        error_level in any_level(),
        error_state in any_state(),
        leaf in any::<bool>(),
        vm in 0u8..4,
    ) {
        let e = ExtendedExitQualification::Accept(AcceptExitInfo {
            requested,
            error_level,
            error_state,
            error_is_leaf: leaf,
            vm_index: vm,
        });
        prop_assert_eq!(ExtendedExitQualification::decode(e.encode()), Ok(e));
    }

    #[test]
    fn small_decoders_are_exact(raw in any::<u64>(), code in any::<u8>()) {
        if let Ok(r) = TdcallRax::decode(raw) {
            prop_assert_eq!(r.encode(), raw);
        }
        prop_assert_eq!(TdxSeptLevel::new(raw).is_ok(), raw <= 2);
        prop_assert_eq!(KvmPgLevel::new(raw).is_ok(), (1..=3).contains(&raw));
        if let Ok(s) = SeptEntryState::from_public_code(code) {
            prop_assert_eq!(s.public_code(), code);
        }
    }
}

/// Window for the transition properties: the second GiB, whole, so 1G leaves can exist.
const BASE: u64 = 0x4000_0000;
type TestSept = Sept<ArrayStorage<1, 512, 16>>;

fn new_sept(profile: ModuleProfile) -> TestSept {
    let mut config = SeptConfig::new(Gpa(BASE), 512);
    config.profile = profile;
    let mut s = Sept::new(config, ArrayStorage::new()).unwrap();
    s.finalize();
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// DEMOTE gives all 512 children the parent's unblocked state and keeps every page's
    /// content where it was.
    #[test]
    fn demote_copies_unblocked_state(
        parent in proptest::sample::select(vec![SeptEntryState::Blocked, SeptEntryState::PendingBlocked]),
        writes in proptest::collection::vec((0u64..512, 0u16..100), 0..8),
        level in prop_oneof![Just(PageLevel::Size2M), Just(PageLevel::Size1G)],
    ) {
        let mut s = new_sept(ModuleProfile::TDX_1_5);
        let gpa = Gpa(BASE + 3 * PageLevel::Size2M.bytes()).align_down(level);
        if level == PageLevel::Size2M {
            s.arrange(gpa, PageLevel::Size1G, SeptEntryState::NlMapped).unwrap();
        }
        s.arrange(gpa, level, parent.unblocked()).unwrap();
        let stride = level.bytes() / 512;
        if parent.unblocked() == SeptEntryState::Mapped {
            for (i, tag) in &writes {
                let page = Gpa(gpa.raw() + i * stride);
                s.guest_write(page, PageLevel::Size4K, Content::data(*tag)).unwrap();
            }
        }
        let before: Vec<Content> = (0..512).map(|i| s.content(Gpa(gpa.raw() + i * stride)).unwrap()).collect();
        prop_assert_eq!(s.seamcall(HostCall::block(gpa, level)).unwrap(), TdxStatus::SUCCESS);
        prop_assert_eq!(s.track().unwrap(), TdxStatus::SUCCESS);
        prop_assert_eq!(s.seamcall(HostCall::demote(gpa, level)).unwrap(), TdxStatus::SUCCESS);
        let child = level.smaller().unwrap();
        prop_assert_eq!(s.entry_state(gpa, level).unwrap(), Some(SeptEntryState::NlMapped));
        for i in 0..512 {
            let c = Gpa(gpa.raw() + i * stride);
            prop_assert_eq!(s.entry_state(c, child).unwrap(), Some(parent.unblocked()));
            prop_assert_eq!(s.content(c).unwrap(), before[i as usize]);
        }
        s.check_consistency(true).unwrap();
    }

    /// PROMOTE succeeds exactly when the 512 children are all MAPPED or all PENDING.
    #[test]
    fn promote_needs_identical_children(
        states in proptest::collection::vec(
            proptest::sample::select(vec![
                SeptEntryState::Free,
                SeptEntryState::Pending,
                SeptEntryState::Mapped,
                SeptEntryState::Blocked,
                SeptEntryState::PendingBlocked,
            ]),
            1..6,
        ),
        uniform in proptest::sample::select(vec![SeptEntryState::Mapped, SeptEntryState::Pending]),
        mixed in any::<bool>(),
    ) {
        let mut s = new_sept(ModuleProfile::TDX_1_5);
        let gpa = Gpa(BASE + 5 * PageLevel::Size2M.bytes());
        s.arrange(gpa, PageLevel::Size1G, SeptEntryState::NlMapped).unwrap();
        s.arrange(gpa, PageLevel::Size2M, SeptEntryState::NlMapped).unwrap();
        let child = |i: u64| Gpa(gpa.raw() + (i % 512) * 4096);
        for i in 0..512 {
            s.arrange(child(i), PageLevel::Size4K, uniform).unwrap();
        }
        if mixed {
            // Spread the drawn states over the children; at least one differs.
            for (k, st) in states.iter().enumerate() {
                s.arrange(child(k as u64 * 97 + 1), PageLevel::Size4K, *st).unwrap();
            }
        }
        let identical = (0..512)
            .map(|i| s.entry_state(child(i), PageLevel::Size4K).unwrap())
            .all(|st| st == Some(uniform));
        prop_assert_eq!(s.seamcall(HostCall::block(gpa, PageLevel::Size2M)).unwrap(), TdxStatus::SUCCESS);
        s.track().unwrap();
        let st = s.seamcall(HostCall::promote(gpa, PageLevel::Size2M)).unwrap();
        if identical {
            prop_assert_eq!(st, TdxStatus::SUCCESS);
            prop_assert_eq!(s.entry_state(gpa, PageLevel::Size2M).unwrap(), Some(uniform));
        } else {
            prop_assert_eq!(st.code(), StatusCode::EptInvalidPromoteConditions);
            prop_assert_eq!(s.entry_state(gpa, PageLevel::Size2M).unwrap(), Some(SeptEntryState::NlBlocked));
        }
        s.check_consistency(true).unwrap();
    }
}

/// One random operation on a small part of the window.
#[derive(Clone, Debug)]
enum Op {
    Accept(usize, PageLevel),
    Aug(usize, PageLevel),
    SeptAdd(usize, PageLevel),
    Block(usize, PageLevel),
    Unblock(usize, PageLevel),
    Demote(usize, PageLevel),
    Promote(usize, PageLevel),
    Remove(usize, PageLevel),
    SeptRemove(usize, PageLevel),
    Track,
    Enter,
    Exit,
    Write(usize, PageLevel, u16),
    /// The first phase of a SEAMCALL (kind 0..9 as the host ops above) or of an ACCEPT (9).
    Begin(u8, usize, PageLevel),
    /// The second phase of one of the operations in flight (interrupted, pages).
    End(usize, bool, u32),
}

/// The pages the random operations name: three pages in each of the first three regions.
fn page(i: usize) -> Gpa {
    let region = (i / 3) as u64;
    let offset = [0u64, 1, 511][i % 3] * 4096;
    Gpa(BASE + region * PageLevel::Size2M.bytes() + offset)
}
const PAGES: usize = 9;

fn any_op() -> impl Strategy<Value = Op> {
    let p = 0..PAGES;
    prop_oneof![
        4 => (p.clone(), any_level()).prop_map(|(i, l)| Op::Accept(i, l)),
        3 => (p.clone(), any_level()).prop_map(|(i, l)| Op::Aug(i, l)),
        2 => (p.clone(), any_level()).prop_map(|(i, l)| Op::SeptAdd(i, l)),
        2 => (p.clone(), any_level()).prop_map(|(i, l)| Op::Block(i, l)),
        1 => (p.clone(), any_level()).prop_map(|(i, l)| Op::Unblock(i, l)),
        2 => (p.clone(), any_level()).prop_map(|(i, l)| Op::Demote(i, l)),
        1 => (p.clone(), any_level()).prop_map(|(i, l)| Op::Promote(i, l)),
        2 => (p.clone(), any_level()).prop_map(|(i, l)| Op::Remove(i, l)),
        1 => (p.clone(), any_level()).prop_map(|(i, l)| Op::SeptRemove(i, l)),
        2 => Just(Op::Track),
        1 => Just(Op::Enter),
        1 => Just(Op::Exit),
        3 => (p.clone(), any_level(), 0u16..50).prop_map(|(i, l, t)| Op::Write(i, l, t)),
        3 => (0u8..10, p, any_level()).prop_map(|(k, i, l)| Op::Begin(k, i, l)),
        3 => (0usize..8, any::<bool>(), 1u32..600).prop_map(|(k, f, n)| Op::End(k, f, n)),
    ]
}

/// An operation between its two phases.
enum Pending {
    Host(HostOp),
    Accept(AcceptOp),
}

fn host_call(kind: u8, gpa: Gpa, level: PageLevel) -> HostCall {
    match kind {
        0 => HostCall::aug(gpa, level),
        1 => HostCall::sept_add(gpa, level),
        2 => HostCall::block(gpa, level),
        3 => HostCall::unblock(gpa, level),
        4 => HostCall::demote(gpa, level),
        5 => HostCall::promote(gpa, level),
        6 => HostCall::remove(gpa, level),
        7 => HostCall::sept_remove(gpa, level),
        _ => HostCall::aug(gpa, level),
    }
}

fn any_profile() -> impl Strategy<Value = ModuleProfile> {
    proptest::sample::select(
        ModuleProfile::NAMED
            .iter()
            .map(|(_, p)| *p)
            .collect::<Vec<_>>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Under any sequence of operations: the model never contradicts itself, and a page's
    /// accepted content changes only by a guest write or a successful PAGE.REMOVE covering it
    /// (ACCEPT only turns "none" into zeros).
    #[test]
    fn only_remove_loses_content(
        profile in any_profile(),
        ops in proptest::collection::vec(any_op(), 1..80),
    ) {
        let mut s = new_sept(profile);
        // A start with every shape nearby: an accepted 2M leaf, a split region with accepted
        // and pending pages, a pending 2M leaf.
        s.arrange(Gpa(BASE), PageLevel::Size1G, SeptEntryState::NlMapped).unwrap();
        s.arrange(page(0), PageLevel::Size2M, SeptEntryState::Mapped).unwrap();
        s.arrange(page(3), PageLevel::Size2M, SeptEntryState::NlMapped).unwrap();
        s.arrange(page(3), PageLevel::Size4K, SeptEntryState::Mapped).unwrap();
        s.arrange(page(4), PageLevel::Size4K, SeptEntryState::Pending).unwrap();
        s.arrange(page(6), PageLevel::Size2M, SeptEntryState::Pending).unwrap();
        let mut tickets: Vec<EpochTicket> = Vec::new();
        let mut pending: Vec<Pending> = Vec::new();
        for op in ops {
            let before: Vec<Content> = (0..PAGES).map(|i| s.content(page(i)).unwrap()).collect();
            let host = |call: HostCall, s: &mut TestSept| -> Option<TdxStatus> {
                match s.seamcall(call) {
                    Ok(st) => Some(st),
                    Err(SeptError::TablePoolExhausted | SeptError::OutsideModel) => None,
                    Err(e) => panic!("{call:?}: {e}"),
                }
            };
            let at = |i: usize, l: PageLevel| page(i).align_down(l);
            let mut removed: Option<(Gpa, PageLevel)> = None;
            let mut written: Option<(Gpa, PageLevel)> = None;
            match op {
                Op::Accept(i, l) => {
                    let rcx = AcceptOperand { gpa: at(i, l), level: l }.encode();
                    let out = s.accept(rcx).unwrap();
                    prop_assert!(!matches!(out, AcceptOutcome::Interrupted));
                }
                Op::Aug(i, l) => { host(HostCall::aug(at(i, l), l), &mut s); }
                Op::SeptAdd(i, l) => { host(HostCall::sept_add(at(i, l), l), &mut s); }
                Op::Block(i, l) => { host(HostCall::block(at(i, l), l), &mut s); }
                Op::Unblock(i, l) => { host(HostCall::unblock(at(i, l), l), &mut s); }
                Op::Demote(i, l) => { host(HostCall::demote(at(i, l), l), &mut s); }
                Op::Promote(i, l) => { host(HostCall::promote(at(i, l), l), &mut s); }
                Op::SeptRemove(i, l) => { host(HostCall::sept_remove(at(i, l), l), &mut s); }
                Op::Remove(i, l) => {
                    if host(HostCall::remove(at(i, l), l), &mut s) == Some(TdxStatus::SUCCESS) {
                        removed = Some((at(i, l), l));
                    }
                }
                Op::Track => { s.track().unwrap(); }
                Op::Enter => tickets.push(s.vcpu_enter().unwrap()),
                Op::Exit => {
                    if !tickets.is_empty() {
                        let t = tickets.remove(0);
                        s.vcpu_exit(t).unwrap();
                    }
                }
                Op::Begin(k, i, l) => {
                    let gpa = at(i, l);
                    if k == 9 {
                        let rcx = AcceptOperand { gpa, level: l }.encode();
                        match s.accept_begin(rcx) {
                            Ok(AcceptStart::Zeroing(a) | AcceptStart::Checking(a)) => {
                                pending.push(Pending::Accept(a))
                            }
                            Ok(AcceptStart::Done(_)) | Err(SeptError::TooManyInFlight) => {}
                            Err(e) => panic!("accept_begin: {e}"),
                        }
                    } else {
                        let call = host_call(k, gpa, l);
                        match s.host_begin(call) {
                            Ok(HostStart::Started(h)) => pending.push(Pending::Host(h)),
                            Ok(HostStart::Done(_))
                            | Err(SeptError::TablePoolExhausted | SeptError::OutsideModel | SeptError::TooManyInFlight) => {}
                            Err(e) => panic!("{call:?}: {e}"),
                        }
                    }
                }
                Op::End(k, interrupted, n) => {
                    if !pending.is_empty() {
                        match pending.remove(k % pending.len()) {
                            Pending::Host(h) => {
                                let st = s.host_end(h, interrupted).unwrap();
                                if st == TdxStatus::SUCCESS && matches!(h.call().kind, HostCallKind::PageRemove) {
                                    removed = Some((h.call().gpa, h.call().level));
                                }
                            }
                            Pending::Accept(a) => {
                                s.accept_finish(a, interrupted.then_some(n)).unwrap();
                            }
                        }
                    }
                }
                Op::Write(i, l, tag) => {
                    let l = if l == PageLevel::Size1G { PageLevel::Size2M } else { l };
                    match s.guest_write(at(i, l), l, Content::data(tag)) {
                        Ok(_) | Err(SeptError::TablePoolExhausted) => written = Some((at(i, l), l)),
                        Err(e) => panic!("write: {e}"),
                    }
                }
            }
            s.check_consistency(pending.is_empty()).unwrap();
            prop_assert_eq!(s.op_state(), OpState::Runnable);
            for (i, &old) in before.iter().enumerate() {
                let now = s.content(page(i)).unwrap();
                if now == old {
                    continue;
                }
                let covers = |r: Option<(Gpa, PageLevel)>| {
                    r.is_some_and(|(g, l)| page(i).align_down(l) == g)
                };
                let accepted_fresh = old == Content::NONE && now == Content::ZERO;
                prop_assert!(
                    covers(written) || (covers(removed) && now == Content::NONE) || accepted_fresh,
                    "page {i}: {old} -> {now} after {op:?}"
                );
            }
        }
        for p in pending {
            match p {
                Pending::Host(h) => { s.host_end(h, false).unwrap(); }
                Pending::Accept(a) => { s.accept_finish(a, None).unwrap(); }
            }
        }
        s.check_consistency(true).unwrap();
    }
}
