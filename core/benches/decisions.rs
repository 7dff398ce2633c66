//! The hot decisions of each policy, in ns per call: the `private_max_mapping_level` hook and
//! the plan for a private EPT violation. Results and the command: docs/benchmarks.md.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hugesept_core::abi::{Gfn, Gpa, PageLevel};
use hugesept_core::kvm::{Kvm, KvmArrayStorage, Memslot};
use hugesept_core::policy::{MaxLevelQuery, Policy, PolicyId, PrivateExit, VcpuPolicyState};
use hugesept_core::sept::SeptConfig;

fn decisions(c: &mut Criterion) {
    let mut window = VcpuPolicyState::default();
    window.set_window(Gfn(0x40201), PageLevel::Size4K);
    let queries: Vec<MaxLevelQuery> = (0..64u64)
        .map(|i| MaxLevelQuery {
            gfn: Gfn(0x40200 + i * 7),
            prefetch: i % 5 == 0,
            runnable: true,
        })
        .collect();
    let exits: Vec<PrivateExit> = (0..64u64)
        .map(|i| PrivateExit {
            gfn: Gfn(0x40200 + i * 7),
            accept_level: match i % 3 {
                0 => None,
                1 => Some(PageLevel::Size4K),
                _ => Some(PageLevel::Size2M),
            },
        })
        .collect();
    let mut group = c.benchmark_group("max_mapping_level");
    for id in PolicyId::ALL {
        group.bench_function(id.name(), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & 63;
                black_box(id).max_mapping_level(black_box(&window), black_box(&queries[i]))
            })
        });
    }
    group.finish();
    // The fault path's whole max-level computation: fault max level, folio, lpage_info walk,
    // hook. A 16 MiB window: some regions inhibited, one mixed, one backed by 4K folios.
    let config = SeptConfig::new(Gpa(0x4000_0000), 8);
    let mut kvm = Kvm::new(&config, KvmArrayStorage::<1, 8, 2>::new()).unwrap();
    kvm.add_memslot(Memslot {
        base: Gfn(0x40000),
        pages: 8 * 512,
        guest_memfd: true,
    })
    .unwrap();
    kvm.set_guest_inhibit(Gfn(0x40200), PageLevel::Size2M);
    kvm.set_private(Gfn(0x40407), Gfn(0x40408), false).unwrap();
    kvm.set_folio(Gfn(0x40600), PageLevel::Size4K).unwrap();
    let gfns: Vec<Gfn> = (0..64u64).map(|i| Gfn(0x40000 + i * 61)).collect();
    let mut group = c.benchmark_group("max_level_computation");
    for id in PolicyId::ALL {
        group.bench_function(id.name(), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & 63;
                black_box(&kvm).max_mapping_level(
                    black_box(&id),
                    black_box(&window),
                    black_box(gfns[i]),
                    PageLevel::Size1G,
                    false,
                    true,
                )
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("on_private_exit");
    for id in PolicyId::ALL {
        group.bench_function(id.name(), |b| {
            let mut state = VcpuPolicyState::default();
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & 63;
                black_box(id).on_private_exit(black_box(&mut state), black_box(&exits[i]))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
