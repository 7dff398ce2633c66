//! The host's pool of 4K tables that grows as the model takes tables (`GrowingTables`, a
//! core `TablePool`) behaves exactly as a pool of the same size laid out up front: the same
//! statuses, entries and content after every operation, the same table indices taken,
//! `TablePoolExhausted` at the same point; and copies by what changed bring a copy's pool to
//! the other's length both ways.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use hugesept_core::abi::{AcceptOperand, Gpa, PageLevel};
use hugesept_core::kvm::{Kvm, KvmArrayStorage, KvmGig, KvmRegion, KvmStorage, MirrorTable};
use hugesept_core::sept::{
    ArrayStorage, Content, HostCall, HugeEntry, Region, Sept, SeptConfig, SeptStorage, Storage,
    Table4K,
};
use hugesept_core::snapshot::Snapshot;
use hugesept_host_kvm::scenario::GrowingTables;
use proptest::prelude::*;

const BASE: u64 = 0x4000_0000;
const TABLES: usize = 4;

type Fixed = Sept<ArrayStorage<1, 8, TABLES>>;
type Growing = Sept<Storage<[HugeEntry; 1], [Region; 8], GrowingTables<Table4K>>>;

fn config() -> SeptConfig {
    SeptConfig::new(Gpa(BASE), 8)
}

fn both() -> (Fixed, Growing) {
    let mut fixed = Sept::new(config(), ArrayStorage::new()).unwrap();
    fixed.finalize();
    let storage = Storage::from_parts(
        [HugeEntry::FREE; 1],
        [Region::EMPTY; 8],
        GrowingTables::new(TABLES),
    );
    let mut growing = Sept::new(config(), storage).unwrap();
    growing.finalize();
    (fixed, growing)
}

/// Both, with the 1G table in place (it takes no table from the pool), so that SEPT.ADD and
/// DEMOTE at 2M take tables.
fn both_with_1g_table() -> (Fixed, Growing) {
    let (mut fixed, mut growing) = both();
    for s in [
        apply(&mut fixed, Op::Call(1, 0, PageLevel::Size1G)),
        apply(&mut growing, Op::Call(1, 0, PageLevel::Size1G)),
    ] {
        assert_eq!(s, "Ok(TdxStatus(0))");
    }
    (fixed, growing)
}

/// One operation on page `p` (of 8 regions × 3 pages) at `level`.
#[derive(Clone, Copy, Debug)]
enum Op {
    Call(u8, u8, PageLevel),
    Accept(u8, PageLevel),
    Write(u8, u16),
    Track,
    Enter,
}

fn page(p: u8) -> Gpa {
    let region = u64::from(p / 3);
    let offset = [0u64, 1, 511][usize::from(p % 3)] * 4096;
    Gpa(BASE + region * PageLevel::Size2M.bytes() + offset)
}

fn any_level() -> impl Strategy<Value = PageLevel> {
    prop_oneof![Just(PageLevel::Size4K), Just(PageLevel::Size2M)]
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, 0u8..24, any_level()).prop_map(|(k, p, l)| Op::Call(k, p, l)),
        3 => (0u8..24, any_level()).prop_map(|(p, l)| Op::Accept(p, l)),
        2 => (0u8..24, 1u16..9).prop_map(|(p, t)| Op::Write(p, t)),
        1 => Just(Op::Track),
        1 => Just(Op::Enter),
    ]
}

/// Applies `op`, returning what it returned, as text.
fn apply<S: SeptStorage>(s: &mut Sept<S>, op: Op) -> String {
    match op {
        Op::Call(k, p, l) => {
            let gpa = page(p).align_down(l);
            let call = match k {
                0 => HostCall::aug(gpa, l),
                1 => HostCall::sept_add(gpa, l),
                2 => HostCall::block(gpa, l),
                3 => HostCall::demote(gpa, l),
                4 => HostCall::remove(gpa, l),
                _ => HostCall::unblock(gpa, l),
            };
            format!("{:?}", s.seamcall(call))
        }
        Op::Accept(p, l) => {
            let rcx = AcceptOperand {
                gpa: page(p).align_down(l),
                level: l,
            }
            .encode();
            format!("{:?}", s.accept(rcx))
        }
        Op::Write(p, t) => format!(
            "{:?}",
            s.guest_write(page(p), PageLevel::Size4K, Content::data(t))
        ),
        Op::Track => format!("{:?}", s.track()),
        Op::Enter => format!("{:?}", s.vcpu_enter()),
    }
}

/// Every entry on each page's path, and its content.
fn view<S: SeptStorage>(s: &Sept<S>) -> Vec<String> {
    (0..24)
        .map(|p| {
            let g = page(p);
            let e: Vec<String> = [PageLevel::Size1G, PageLevel::Size2M, PageLevel::Size4K]
                .into_iter()
                .map(|l| format!("{:?}", s.entry(g, l)))
                .collect();
            format!("{} {:?}", e.join(" "), s.content(g))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_growing_pool_behaves_as_a_pool_laid_out_up_front(
        ops in proptest::collection::vec(any_op(), 1..60),
    ) {
        let (mut fixed, mut growing) = both_with_1g_table();
        let start = growing.clone();
        for (i, op) in ops.into_iter().enumerate() {
            prop_assert_eq!(apply(&mut fixed, op), apply(&mut growing, op), "op {} {:?}", i, op);
            prop_assert_eq!(view(&fixed), view(&growing), "after op {} {:?}", i, op);
            prop_assert_eq!(fixed.tables_in_use(), growing.tables_in_use());
            prop_assert_eq!(fixed.has_free_table(), growing.has_free_table());
            growing.check_consistency(false).unwrap();
        }
        prop_assert!(growing.storage().tables().len() <= TABLES);
        // A copy brought forward by the change record takes the grown pool; the world
        // reverted by it shrinks back.
        let mut copy = start.clone();
        copy.copy_changed(&growing, &growing.changes());
        prop_assert_eq!(&copy, &growing);
        let mut back = growing.clone();
        back.revert_to(&start);
        prop_assert_eq!(&back, &start);
        prop_assert_eq!(back.storage().tables().len(), 0);
    }
}

/// The pool grows to its limit and no further: the next SEPT.ADD finds none.
#[test]
fn a_growing_pool_runs_out_at_its_limit() {
    let (mut fixed, mut growing) = both();
    // The 1G table (no pool table), then a 4K table under each region's 2M entry.
    let a = apply(&mut fixed, Op::Call(1, 0, PageLevel::Size1G));
    assert_eq!(a, apply(&mut growing, Op::Call(1, 0, PageLevel::Size1G)));
    assert_eq!(a, "Ok(TdxStatus(0))");
    let mut results = Vec::new();
    for r in 0..6u8 {
        let a = apply(&mut fixed, Op::Call(1, r * 3, PageLevel::Size2M));
        let b = apply(&mut growing, Op::Call(1, r * 3, PageLevel::Size2M));
        assert_eq!(a, b, "SEPT.ADD for region {r}");
        results.push(a);
    }
    assert!(
        results[..TABLES].iter().all(|r| r == "Ok(TdxStatus(0))"),
        "{results:?}"
    );
    assert!(
        results[TABLES..]
            .iter()
            .all(|r| r.contains("TablePoolExhausted")),
        "{results:?}"
    );
    assert_eq!(growing.storage().tables().len(), TABLES);
    assert_eq!(growing.tables_in_use(), TABLES as u32);
    assert!(!growing.has_free_table());
}

/// KVM's mirror tables grow the same way: a split takes one, up to the limit.
#[test]
fn kvm_mirror_tables_grow_up_to_the_limit() {
    type Growing = Kvm<Storage<[KvmGig; 1], [KvmRegion; 8], GrowingTables<MirrorTable>>>;
    let storage = Storage::from_parts(
        [KvmGig::EMPTY; 1],
        [KvmRegion::EMPTY; 8],
        GrowingTables::new(2),
    );
    let kvm: Growing = Kvm::new(&config(), storage).unwrap();
    let fixed: Kvm<KvmArrayStorage<1, 8, 2>> = Kvm::new(&config(), KvmArrayStorage::new()).unwrap();
    let gfn = page(0).gfn();
    assert_eq!(kvm.can_split(gfn), fixed.can_split(gfn));
    assert!(kvm.can_split(gfn));
    assert_eq!(kvm.storage().tables().len(), 0);
}
