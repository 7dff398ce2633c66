//! Whole-world throughput: the explorer on the seed scenario under every design, seeded
//! schedules (world steps per second) on the Linux-boot-like world, and how both grow with
//! vCPUs and regions. Results and the command: docs/benchmarks.md.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hugesept_core::policy::PolicyId;
use hugesept_core::world::{Metrics, RandomScheduler};
use hugesept_host_kvm::explore::{Bounds, explore};
use hugesept_host_kvm::matrix::boot_scenario_text;
use hugesept_host_kvm::scenario::{self, Scenario};

fn seed(policy: PolicyId) -> Scenario {
    let text = include_str!("../../scenarios/seed-tdcalls.toml").replace(
        "policy = \"guest-inhibit\"",
        &format!("policy = \"{policy}\""),
    );
    let text = if policy == PolicyId::ExplicitDemotion {
        format!("module = \"explicit-demotion\"\n{text}")
    } else {
        text
    };
    scenario::parse(&text).unwrap()
}

fn states(sc: &Scenario) -> u64 {
    let ex = explore(
        &sc.world().unwrap(),
        Bounds {
            max_states: 10_000_000,
            ..Bounds::default()
        },
        &mut |_, _| {},
    )
    .unwrap();
    assert!(!ex.bounded);
    ex.states as u64
}

/// The explorer over the seed scenario, per design: throughput in distinct states.
fn explore_seed(c: &mut Criterion) {
    let mut g = c.benchmark_group("explore-seed");
    for p in PolicyId::ALL {
        let sc = seed(p);
        let n = states(&sc);
        let w = sc.world().unwrap();
        g.throughput(Throughput::Elements(n));
        g.bench_function(BenchmarkId::from_parameter(p), |b| {
            b.iter(|| {
                let ex = explore(
                    black_box(&w),
                    Bounds {
                        max_states: 10_000_000,
                        ..Bounds::default()
                    },
                    &mut |_, _| {},
                )
                .unwrap();
                black_box(ex.states)
            })
        });
    }
    g.finish();
}

/// The explorer over every scenario in scenarios/ it explores completely in a million states
/// (but the smallest, under 500 states, where setting up costs more than exploring).
fn explore_scenarios(c: &mut Criterion) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut g = c.benchmark_group("explore-scenarios");
    for path in files {
        let sc = scenario::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let w = sc.world().unwrap();
        let bounds = Bounds {
            max_states: 1_000_000,
            ..Bounds::default()
        };
        let ex = explore(&w, bounds, &mut |_, _| {}).unwrap();
        if ex.bounded || ex.states < 500 {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        g.throughput(Throughput::Elements(ex.states as u64));
        g.bench_function(format!("{name}-{}-states", ex.states), |b| {
            b.iter(|| {
                black_box(
                    explore(black_box(&w), bounds, &mut |_, _| {})
                        .unwrap()
                        .states,
                )
            })
        });
    }
    g.finish();
}

/// One seeded schedule of a world: throughput in world steps (invariants checked after each).
fn sim_throughput(c: &mut Criterion, group: &str, id: &str, sc: &Scenario) {
    let w = sc.world().unwrap();
    // Seed 1's schedule, start to end: its verdict and its steps.
    let run = || {
        let mut steps = 0u64;
        let mut m = Metrics::default();
        let v = w
            .run_schedule(
                &mut RandomScheduler::new(1),
                sc.limits(),
                &mut m,
                &mut steps,
                |_, _| {},
            )
            .unwrap();
        (v, steps)
    };
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(run().1));
    g.bench_function(id, |b| b.iter(|| black_box(run())));
    g.finish();
}

fn sim_boot(c: &mut Criterion) {
    for p in [PolicyId::GuestInhibit, PolicyId::Upstream4K] {
        let sc = scenario::parse(&boot_scenario_text(p)).unwrap();
        sim_throughput(c, "sim-boot", &p.to_string(), &sc);
    }
}

/// A world of `vcpus` Linux guests, each accepting and marking its own share of `regions`
/// 2 MiB regions.
fn grid(vcpus: u32, regions: u32) -> Scenario {
    let mut t = format!("policy = \"guest-inhibit\"\nregions = {regions}\n");
    let per = u64::from(regions) * 0x20_0000 / u64::from(vcpus);
    for v in 0..u64::from(vcpus) {
        let start = 0x4000_0000 + v * per;
        t += &format!(
            "[[vcpu]]\nguest = \"linux\"\nstart = \"{start:#x}\"\nend = \"{:#x}\"\n",
            start + per
        );
    }
    scenario::parse(&t).unwrap()
}

fn growth(c: &mut Criterion) {
    for (vcpus, regions) in [
        (1, 2),
        (2, 2),
        (4, 4),
        (1, 16),
        (4, 16),
        (4, 128),
        (4, 1024),
        (4, 4096),
    ] {
        sim_throughput(
            c,
            "sim-growth",
            &format!("{vcpus}-vcpus-{regions}-regions"),
            &grid(vcpus, regions),
        );
    }
    // Exhaustive: n single-accept vCPUs, 4K pages in one 2M region, plus a 2M accept.
    let mut g = c.benchmark_group("explore-growth");
    for (n, regions) in [(1u32, 2u32), (2, 2), (2, 16)] {
        let mut t = format!(
            "policy = \"guest-inhibit\"\nregions = {regions}\n[[vcpu]]\nguest = \"single-accept\"\nstart = \"0x40200000\"\nend = \"0x40400000\"\n"
        );
        for k in 0..u64::from(n) {
            let s = 0x4020_1000 + k * 0x1000;
            t += &format!(
                "[[vcpu]]\nguest = \"single-accept\"\nstart = \"{s:#x}\"\nend = \"{:#x}\"\n",
                s + 0x1000
            );
        }
        let sc = scenario::parse(&t).unwrap();
        let count = states(&sc);
        let w = sc.world().unwrap();
        g.throughput(Throughput::Elements(count));
        g.bench_function(
            format!("{}-vcpus-{regions}-regions-{count}-states", n + 1),
            |b| {
                b.iter(|| {
                    black_box(
                        explore(
                            &w,
                            Bounds {
                                max_states: 10_000_000,
                                ..Bounds::default()
                            },
                            &mut |_, _| {},
                        )
                        .unwrap()
                        .states,
                    )
                })
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(10);
    targets = explore_seed, explore_scenarios, sim_boot, growth
}
criterion_main!(benches);
