//! The S-EPT model's storage: caller-provided, sized for anything from a 4 MiB toy to 64 GiB,
//! and bounded — running out of tables is a typed error, never a panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use hugesept_core::abi::{AcceptOperand, Gpa, PageLevel, SeptEntryState, TdxStatus};
use hugesept_core::sept::{
    AcceptOutcome, ArrayStorage, Content, HostCall, HugeEntry, Region, Sept, SeptConfig, SeptError,
    SliceStorage, Table4K,
};

fn accept(
    s: &mut Sept<impl hugesept_core::sept::SeptStorage>,
    gpa: u64,
    level: PageLevel,
) -> AcceptOutcome {
    s.accept(
        AcceptOperand {
            gpa: Gpa(gpa),
            level,
        }
        .encode(),
    )
    .unwrap()
}

#[test]
fn a_4mib_toy() {
    // Two 2M regions at 4 GiB: one 1G entry, two regions, one table.
    let config = SeptConfig::new(Gpa(0x1_0000_0000), 2);
    assert_eq!(config.gigs_needed(), Ok(1));
    let mut s = Sept::new(config, ArrayStorage::<1, 2, 1>::new()).unwrap();
    s.finalize();
    let g = 0x1_0000_0000;
    assert_eq!(
        s.seamcall(HostCall::sept_add(Gpa(g), PageLevel::Size1G))
            .unwrap(),
        TdxStatus::SUCCESS
    );
    assert_eq!(
        s.seamcall(HostCall::aug(Gpa(g), PageLevel::Size2M))
            .unwrap(),
        TdxStatus::SUCCESS
    );
    assert_eq!(
        accept(&mut s, g, PageLevel::Size2M),
        AcceptOutcome::Completed(TdxStatus::SUCCESS)
    );
    assert_eq!(s.tables_in_use(), 0, "an accepted 2M region needs no table");
    assert!(!s.contains(Gpa(g + 4 * 1024 * 1024)));
    // A SEPT.ADD at 2M outside the window is the model's limit, not a module status.
    assert_eq!(
        s.seamcall(HostCall::sept_add(Gpa(g + 0x40_0000), PageLevel::Size2M)),
        Err(SeptError::OutsideModel)
    );
    s.check_consistency(true).unwrap();
}

#[test]
fn sixty_four_gib_in_caller_slices() {
    // 64 GiB from GPA 0: 64 1G entries, 32768 regions; a handful of tables for the splits.
    let config = SeptConfig::new(Gpa(0), 64 * 512);
    let mut gigs = vec![HugeEntry::FREE; config.gigs_needed().unwrap()];
    let mut regions = vec![Region::EMPTY; 64 * 512];
    let mut tables = vec![Table4K::EMPTY; 4];
    assert_eq!(gigs.len(), 64);
    assert_eq!(
        std::mem::size_of::<Region>() * regions.len(),
        32768 * std::mem::size_of::<Region>()
    );
    assert!(
        std::mem::size_of::<Region>() <= 24,
        "a region costs a few bytes"
    );
    let mut s = Sept::new(
        config,
        SliceStorage::new(&mut gigs, &mut regions, &mut tables),
    )
    .unwrap();
    s.finalize();
    let last = 63 * (1u64 << 30) + 511 * (1 << 21);
    assert_eq!(
        s.seamcall(HostCall::sept_add(
            Gpa(last).align_down(PageLevel::Size1G),
            PageLevel::Size1G
        ))
        .unwrap(),
        TdxStatus::SUCCESS
    );
    assert_eq!(
        s.seamcall(HostCall::aug(Gpa(last), PageLevel::Size2M))
            .unwrap(),
        TdxStatus::SUCCESS
    );
    assert_eq!(
        accept(&mut s, last, PageLevel::Size2M),
        AcceptOutcome::Completed(TdxStatus::SUCCESS)
    );
    assert_eq!(
        s.mapping(Gpa(last + 0x1000)).unwrap().level,
        PageLevel::Size2M
    );
    assert_eq!(s.content(Gpa(last + 0x1F_F000)).unwrap(), Content::ZERO);
    s.check_consistency(true).unwrap();
}

#[test]
fn storage_must_match_the_window() {
    let config = SeptConfig::new(Gpa(0x4000_0000), 3);
    assert_eq!(
        Sept::new(config, ArrayStorage::<1, 2, 1>::new()).err(),
        Some(SeptError::StorageMismatch)
    );
    // A window crossing a 1G boundary touches two 1G entries.
    let crossing = SeptConfig::new(Gpa(0x7FE0_0000), 2);
    assert_eq!(crossing.gigs_needed(), Ok(2));
    assert!(Sept::new(crossing, ArrayStorage::<2, 2, 0>::new()).is_ok());
    // Misaligned, empty or shared windows are refused.
    assert_eq!(
        SeptConfig::new(Gpa(0x1000), 1).gigs_needed(),
        Err(SeptError::InvalidWindow)
    );
    assert_eq!(
        SeptConfig::new(Gpa(0), 0).gigs_needed(),
        Err(SeptError::InvalidWindow)
    );
    assert_eq!(
        SeptConfig::new(Gpa(1 << 47), 1).gigs_needed(),
        Err(SeptError::InvalidWindow)
    );
}

#[test]
fn running_out_of_tables_is_an_error_that_changes_nothing() {
    let config = SeptConfig::new(Gpa(0x4000_0000), 4);
    let mut s = Sept::new(config, ArrayStorage::<1, 4, 1>::new()).unwrap();
    s.finalize();
    let base = 0x4000_0000u64;
    s.arrange(Gpa(base), PageLevel::Size1G, SeptEntryState::NlMapped)
        .unwrap();
    assert_eq!(
        s.seamcall(HostCall::sept_add(Gpa(base), PageLevel::Size2M))
            .unwrap(),
        TdxStatus::SUCCESS
    );
    let before = s.clone();
    assert_eq!(
        s.seamcall(HostCall::sept_add(Gpa(base + 0x20_0000), PageLevel::Size2M)),
        Err(SeptError::TablePoolExhausted)
    );
    assert_eq!(s, before, "a refused call leaves the model unchanged");
    // Non-uniform content in a 2M leaf needs a table too.
    s.arrange(
        Gpa(base + 0x40_0000),
        PageLevel::Size2M,
        SeptEntryState::Mapped,
    )
    .unwrap();
    assert_eq!(
        s.guest_write(Gpa(base + 0x40_1000), PageLevel::Size4K, Content::data(1)),
        Err(SeptError::TablePoolExhausted)
    );
    // A uniform 2M write does not.
    s.guest_write(Gpa(base + 0x40_0000), PageLevel::Size2M, Content::data(1))
        .unwrap();
    assert_eq!(s.content(Gpa(base + 0x5F_F000)).unwrap(), Content::data(1));
    s.check_consistency(true).unwrap();
}

#[test]
fn stale_operations_are_errors() {
    let config = SeptConfig::new(Gpa(0x4000_0000), 4);
    let mut s = Sept::new(config, ArrayStorage::<1, 4, 1>::new()).unwrap();
    s.finalize();
    let g = Gpa(0x4000_0000);
    s.arrange(g, PageLevel::Size1G, SeptEntryState::NlMapped)
        .unwrap();
    s.arrange(g, PageLevel::Size2M, SeptEntryState::Pending)
        .unwrap();
    let hugesept_core::sept::AcceptStart::Zeroing(op) = s
        .accept_begin(
            AcceptOperand {
                gpa: g,
                level: PageLevel::Size2M,
            }
            .encode(),
        )
        .unwrap()
    else {
        panic!("expected zeroing");
    };
    assert_eq!(
        s.accept_finish(op, None).unwrap(),
        AcceptOutcome::Completed(TdxStatus::SUCCESS)
    );
    assert_eq!(s.accept_finish(op, None), Err(SeptError::StaleOperation));
    let hugesept_core::sept::HostStart::Started(h) =
        s.host_begin(HostCall::block(g, PageLevel::Size2M)).unwrap()
    else {
        panic!("expected started");
    };
    assert_eq!(s.host_end(h, false).unwrap(), TdxStatus::SUCCESS);
    assert_eq!(s.host_end(h, false), Err(SeptError::StaleOperation));
    s.check_consistency(true).unwrap();
}
