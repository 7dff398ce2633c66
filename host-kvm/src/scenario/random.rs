//! Small random worlds in the scenario format, for checks that answer one question two ways
//! and compare (host-kvm/tests/reduction.rs: the explorer's reduced search against its full
//! one, and with the models' deliberately broken variants, fuzz/tests/reduction_broken.rs),
//! drawn with the schedulers' seeded generator.

use std::fmt::Write as _;

pub use hugesept_core::world::Rng;

/// One of `of`, drawn.
fn pick<'a>(r: &mut Rng, of: &[&'a str]) -> &'a str {
    let i = usize::try_from(r.below(of.len() as u64)).unwrap_or(0);
    of.get(i).copied().unwrap_or_default()
}

const BASE: u64 = 0x4000_0000;

/// A range in `regions` regions: a whole region, or one to four pages among a region's first
/// eight (so vCPUs' ranges often meet).
fn range(r: &mut Rng, regions: u64) -> (u64, u64) {
    let region = BASE + (r.below(regions) << 21);
    if r.below(6) == 0 {
        return (region, region + (1 << 21));
    }
    let start = region + (r.below(8) << 12);
    (start, start + ((1 + r.below(4)) << 12))
}

/// A small random world in the scenario format: one of the seven designs, one or two regions,
/// two or three vCPUs running any guest strategy over a whole region or one to four pages
/// (ranges often overlap), sometimes two stages each, interrupts, #VE on or off, a memslot
/// without guest_memfd, a TD at build time finalized by a host actor, and host actions
/// (prefetch, split, punch hole, conversions, a wait for the first stage). Some draws are
/// files the format refuses (a range outside the memslots, say): [`super::parse`] says why.
pub fn world(r: &mut Rng) -> String {
    let designs = [
        "upstream-4k",
        "rfc-v1",
        "fault-max-level",
        "guest-inhibit",
        "guest-inhibit-nocheck",
        "fault-path-demote",
        "explicit-demotion",
    ];
    let guests = [
        "linux",
        "linux-lazy",
        "ovmf",
        "td-shim",
        "tdx-guest",
        "svsm",
        "accept-4k-only",
        "touch-first",
        "single-accept",
        "adversarial",
        "linux",
        "accept-4k-only",
    ];
    let design = pick(r, &designs);
    let regions = 1 + r.below(2);
    let runnable = r.below(5) != 0;
    let mut t = String::new();
    let _ = writeln!(t, "policy = \"{design}\"\nregions = {regions}");
    if design == "explicit-demotion" {
        let _ = writeln!(t, "module = \"tdx-1.5+explicit-demotion\"");
    }
    let _ = writeln!(t, "ve = {}", r.below(3) == 0);
    if !runnable {
        let _ = writeln!(t, "runnable = false");
    }
    if r.below(8) == 0 {
        // The second region's memslot has no guest_memfd.
        let _ = writeln!(
            t,
            "[[memslot]]\nstart = \"{BASE:#x}\"\nend = \"{:#x}\"\n[[memslot]]\nstart = \"{:#x}\"\nend = \"{:#x}\"\nguest_memfd = false",
            BASE + (1 << 21),
            BASE + (1 << 21),
            BASE + (regions.max(2) << 21)
        );
    }
    let vcpus = 2 + r.below(3).saturating_sub(1);
    let two_stages = r.below(6) == 0;
    for i in 0..vcpus {
        let _ = writeln!(t, "[[vcpu]]\ninterrupts = {}", r.below(2));
        let stages = if two_stages { 2 } else { 1 };
        for _ in 0..stages {
            let (start, end) = range(r, regions);
            let g = pick(r, &guests);
            if two_stages {
                let _ = writeln!(t, "[[vcpu.stage]]");
            }
            let _ = writeln!(
                t,
                "guest = \"{g}\"\nstart = \"{start:#x}\"\nend = \"{end:#x}\"\ntag = {}\nmarkers = {}",
                i + 1,
                r.below(3) != 0
            );
        }
    }
    let hosts = if runnable { r.below(3).min(1) } else { 1 };
    for h in 0..hosts {
        let mut actions = Vec::new();
        if h == 0 && !runnable {
            if r.below(2) == 0 {
                let (s, _) = range(r, regions);
                actions.push(format!(
                    "{{ op = \"init-mem-region\", start = \"{s:#x}\", end = \"{:#x}\" }}",
                    s + 0x1000
                ));
            }
            actions.push("{ op = \"finalize\" }".to_string());
        }
        for _ in 0..1 + r.below(2) {
            let (s, e) = range(r, regions);
            actions.push(match r.below(5) {
                0 => format!("{{ op = \"prefetch\", gpa = \"{s:#x}\" }}"),
                1 => format!("{{ op = \"split\", start = \"{s:#x}\", end = \"{e:#x}\" }}"),
                2 => format!("{{ op = \"punch-hole\", start = \"{s:#x}\", end = \"{e:#x}\" }}"),
                3 => format!(
                    "{{ op = \"convert-to-shared\", start = \"{s:#x}\", end = \"{e:#x}\" }}, \
                     {{ op = \"convert-to-private\", start = \"{s:#x}\", end = \"{e:#x}\" }}"
                ),
                _ if two_stages => "{ op = \"await-stage\", stage = 1 }".to_string(),
                _ => format!("{{ op = \"prefetch\", gpa = \"{e:#x}\" }}"),
            });
        }
        let _ = writeln!(t, "[[host]]\nactions = [{}]", actions.join(", "));
    }
    t
}
