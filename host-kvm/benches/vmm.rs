//! The VMM's costs on /dev/kvm: a bare TDCALL exit (an emulation failure answered with RAX
//! only), a TDCALL served by the core (a 4K ACCEPT through the world: the TDCALL, its
//! EPT-violation exit and fault path, the re-executed TDCALL), and whole runs of a small
//! scenario per second. Elements are exits (or runs), so criterion's throughput is exits/s.
//! Needs /dev/kvm and the payload (`cargo xtask guest`); without them it says so and measures
//! nothing. Results and the command: docs/benchmarks.md.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hugesept_host_kvm::scenario::{self, Scenario};
use hugesept_host_kvm::vmm::{self, RunOptions, RunResult};

fn payload() -> Option<Vec<u8>> {
    if let Err(e) = vmm::kvm_available() {
        eprintln!("vmm benchmarks skipped: /dev/kvm is not usable ({e})");
        return None;
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../guest-td/target/x86_64-unknown-none/release/hugesept-guest-td");
    let b = std::fs::read(&p).ok();
    if b.is_none() {
        eprintln!(
            "vmm benchmarks skipped: no payload at {} (cargo xtask guest)",
            p.display()
        );
    }
    b
}

fn run(sc: &Scenario, payload: &[u8]) -> RunResult {
    vmm::run(
        sc,
        &RunOptions {
            payload: payload.to_vec(),
            timeout: Duration::from_secs(60),
            tdcall_by_port: false,
            entry: vmm::Entry::Hugesept,
            log: false,
            boot_block: None,
        },
    )
    .unwrap()
}

fn exits(r: &RunResult) -> u64 {
    r.vcpus.iter().map(|v| v.exits).sum()
}

/// One vCPU accepting `pages` 4K pages (no markers) under guest-inhibit, runnable.
fn accept_4k(pages: u64) -> Scenario {
    let end = 0x4000_0000 + pages * 4096;
    let regions = pages.div_ceil(512).max(1);
    scenario::parse(&format!(
        "name = \"4K accepts\"\npolicy = \"guest-inhibit\"\nregions = {regions}\nsteps = \
         10000000\n[[vcpu]]\nguest = \"accept-4k-only\"\nstart = \"0x40000000\"\nend = \
         \"{end:#x}\"\nmarkers = false\n"
    ))
    .unwrap()
}

fn vmm_costs(c: &mut Criterion) {
    let Some(payload) = payload() else {
        return;
    };
    let mut g = c.benchmark_group("vmm");
    g.sample_size(10).measurement_time(Duration::from_secs(8));

    let bare = vmm::elf::tiny_image(&vmm::elf::tdcall_loop(2000));
    let one = accept_4k(1);
    let n = exits(&run(&one, &bare));
    g.throughput(Throughput::Elements(n));
    g.bench_function("bare TDCALL exit (unknown leaf, RAX only)", |b| {
        b.iter(|| run(&one, &bare))
    });

    let r0 = run(&one, &bare);
    let v0 = &r0.vcpus[0];
    let bare_serve = v0.serve_ns as f64 / v0.exits as f64 / 1e3;
    let bare_run = v0.run_ns as f64 / v0.exits as f64 / 1e3;
    eprintln!(
        "bare TDCALL exit: {bare_run:.1} µs in KVM_RUN + {bare_serve:.1} µs in the VMM per exit"
    );

    let sc = accept_4k(1024);
    let r = run(&sc, &payload);
    let v = &r.vcpus[0];
    let accept_serve = v.accept_serve_ns as f64 / v.tdcalls[0] as f64 / 1e3;
    eprintln!(
        "served ACCEPT TDCALL: {accept_serve:.1} µs in the VMM per ACCEPT exit; above a bare \
         exit's {:.1} µs (KVM_RUN's exit and entry plus the VMM's answer): {:+.1} µs, {:+.0}%",
        bare_run + bare_serve,
        accept_serve - bare_serve,
        (accept_serve - bare_serve) / (bare_run + bare_serve) * 100.0
    );
    // TDCALL exits only: ACCEPTs and their re-executions (the console's VMCALLs are apart).
    let accepts: u64 = r.vcpus.iter().map(|v| v.tdcalls[0]).sum();
    g.throughput(Throughput::Elements(accepts));
    g.bench_function(
        "served ACCEPT TDCALL (4K, EPT violation and fault path)",
        |b| b.iter(|| run(&sc, &payload)),
    );

    let seed = scenario::parse(include_str!("../../scenarios/seed-rfc-v1.toml")).unwrap();
    g.throughput(Throughput::Elements(1));
    g.bench_function("runs of seed-rfc-v1 (2 vCPUs)", |b| {
        b.iter(|| run(&seed, &payload))
    });
    g.finish();
}

criterion_group!(benches, vmm_costs);
criterion_main!(benches);
