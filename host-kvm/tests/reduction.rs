//! The partial-order reduction's proof obligation (`explore::verify_reduction`), checked: on
//! every scenario both searches explore completely, and on seeded random worlds (every design,
//! every guest strategy, overlapping ranges, stages, interrupts, #VE on and off, memslots
//! without guest_memfd, host actors that finish early), the reduced search agrees with the full
//! one on whether an invariant breaks, the verdicts reached, the end states where every vCPU
//! finished and the fewest steps to each, and whether some state cannot end. The benchmark
//! worlds must shrink as docs/benchmarks.md says.

use std::path::Path;

use hugesept_host_kvm::explore::{Bounds, ReductionCheck, verify_reduction};
use hugesept_host_kvm::scenario;
use hugesept_host_kvm::scenario::random::{self, Rng};

mod common;

use common::scenario_files;

/// States either search may take in a test.
const MAX_STATES: usize = 200_000;

/// States either search of a random world may take (most take far fewer).
const RANDOM_STATES: usize = 40_000;

fn check_text(text: &str, threads: usize, max_states: usize) -> Option<ReductionCheck> {
    let sc = scenario::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let w = sc.world().unwrap_or_else(|e| panic!("{e}\n{text}"));
    let check = verify_reduction(
        &w,
        Bounds {
            max_states,
            threads,
            ..Bounds::default()
        },
        &mut |_, _| {},
    )
    .unwrap();
    check.complete().then_some(check)
}

#[test]
fn every_scenario_explored_completely_keeps_its_verdicts_when_reduced() {
    let mut compared = 0;
    let mut shrunk = 0;
    for path in scenario_files("")
        .into_iter()
        .chain(scenario_files("bench"))
    {
        let text = std::fs::read_to_string(&path).unwrap();
        let Some(check) = check_text(&text, 1, MAX_STATES) else {
            continue;
        };
        assert!(
            check.disagreements.is_empty(),
            "{}: {:?}",
            path.display(),
            check.disagreements
        );
        compared += 1;
        if check.reduced.states < check.full.states {
            shrunk += 1;
        }
    }
    // The small ones (`cargo xtask test` checks the larger ones with the release build).
    assert!(compared >= 10, "only {compared} scenarios compared");
    assert!(shrunk >= 2, "only {shrunk} scenarios shrank");
}

#[test]
fn the_reduced_search_is_the_same_on_several_threads() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/bench/linux3-16-rfc-v1.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let w = scenario::parse(&text).unwrap().world().unwrap();
    let on = |threads| {
        hugesept_host_kvm::explore::explore(
            &w,
            Bounds {
                max_states: MAX_STATES,
                reduce: true,
                threads,
                ..Bounds::default()
            },
            &mut |_, _| {},
        )
        .unwrap()
    };
    let (one, three) = (on(1), on(3));
    assert!(!one.bounded && !three.bounded);
    assert_eq!(one.states, three.states);
    assert_eq!(one.transitions, three.transitions);
    assert_eq!(one.depth, three.depth);
    assert_eq!(one.ends, three.ends);
    assert_eq!(one.end_traces, three.end_traces);
}

#[test]
fn three_linux_vcpus_over_16_pages_shrink_to_a_few_percent() {
    for design in ["rfc-v1", "guest-inhibit"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../scenarios/bench/linux3-16-{design}.toml"));
        let text = std::fs::read_to_string(path).unwrap();
        let sc = scenario::parse(&text).unwrap();
        let w = sc.world().unwrap();
        let ex = hugesept_host_kvm::explore::explore(
            &w,
            Bounds {
                max_states: MAX_STATES,
                reduce: true,
                ..Bounds::default()
            },
            &mut |_, _| {},
        )
        .unwrap();
        assert!(!ex.bounded, "{design}");
        // 1.39 M and 1.53 M states in full (docs/benchmarks.md).
        assert!(ex.states < 50_000, "{design}: {} states", ex.states);
        assert_eq!(ex.ends.get("ok"), Some(&1), "{design}");
        assert_eq!(ex.livelock_states, 0, "{design}");
    }
}

#[test]
fn random_worlds_keep_their_verdicts_when_reduced() {
    // HUGESEPT_REDUCTION_WORLDS and HUGESEPT_REDUCTION_SEED run a longer or another campaign.
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let worlds = env("HUGESEPT_REDUCTION_WORLDS", 300);
    let mut r = Rng::new(env("HUGESEPT_REDUCTION_SEED", 0x9e37_79b9_7f4a_7c15));
    let (mut compared, mut shrunk, mut refused) = (0, 0, 0);
    let mut verdicts = std::collections::BTreeSet::new();
    for n in 0..worlds {
        let text = random::world(&mut r);
        // Some draws are worlds the format refuses (a prefetch before finalize, a range
        // outside a memslot): they say why, and are skipped.
        let Ok(sc) = scenario::parse(&text) else {
            refused += 1;
            continue;
        };
        if sc.world().is_err() {
            refused += 1;
            continue;
        }
        let Some(check) = check_text(&text, 1, RANDOM_STATES) else {
            continue;
        };
        assert!(
            check.disagreements.is_empty(),
            "world {n}: {:?}\n{text}",
            check.disagreements
        );
        compared += 1;
        if check.reduced.states < check.full.states {
            shrunk += 1;
        }
        verdicts.extend(check.full.ends.keys().copied());
        if check.full.violation.is_some() {
            verdicts.insert("violation");
        }
        if check.full.livelock_states > 0 {
            verdicts.insert("livelock");
        }
    }
    eprintln!(
        "random worlds: {compared} compared ({shrunk} shrank), {refused} refused, ends {verdicts:?}"
    );
    assert!(
        compared >= worlds / 4,
        "{compared} compared, {refused} refused"
    );
    assert!(shrunk >= compared / 4, "only {shrunk} of {compared} shrank");
    // The draws reach more than one kind of end.
    assert!(verdicts.len() >= 4, "{verdicts:?}");
}

/// Along random runs of `text`'s world: wherever `independent_vcpu` names a vCPU, each of its
/// choices commutes with each enabled choice of every other actor (both orders reach equal
/// worlds, and the vCPU's choice stays enabled unless the other one ended the run). Returns how
/// many such pairs it checked.
fn diamonds(text: &str, runs: u64, r: &mut Rng) -> usize {
    use hugesept_core::world::{Choice, MAX_CHOICES, Metrics, Stepped};
    let w0 = scenario::parse(text).unwrap().world().unwrap();
    let mut m = Metrics::default();
    let mut pairs = 0;
    for _ in 0..runs {
        let mut w = w0.clone();
        for _ in 0..4000 {
            let mut all = [Choice::Vcpu(0); MAX_CHOICES];
            let n = w.enabled(&mut all);
            if n == 0 {
                break;
            }
            if let Some(i) = w.independent_vcpu() {
                let mine =
                    |c: &Choice| matches!(c, Choice::Vcpu(v) | Choice::Interrupt(v) if *v == i);
                for a in all[..n].iter().filter(|c| mine(c)) {
                    for b in all[..n].iter().filter(|c| !mine(c)) {
                        let mut ab = w.clone();
                        let sa = ab.step(*a, &mut m).unwrap();
                        let sab = ab.step(*b, &mut m).unwrap();
                        let mut ba = w.clone();
                        let sb = ba.step(*b, &mut m).unwrap();
                        if ba.ended().is_some() {
                            // The other actor ended the run (killed or bugged the VM, lost
                            // data): nothing is enabled after it. The reduction still reaches
                            // such an end (module description of `explore::reduction`).
                            continue;
                        }
                        assert!(ba.is_enabled(*a), "{b:?} disabled {a:?}\n{text}");
                        let sba = ba.step(*a, &mut m).unwrap();
                        assert!(!matches!(sa, Stepped::Invalid | Stepped::Blocked), "{a:?}");
                        assert_eq!(sa, sba, "{a:?} after {b:?}\n{text}");
                        assert_eq!(sb, sab, "{b:?} after {a:?}\n{text}");
                        let (mut x, mut y) = (ab.clone(), ba.clone());
                        x.canonicalize();
                        y.canonicalize();
                        assert!(x == y, "{a:?} and {b:?} do not commute\n{text}");
                        pairs += 1;
                    }
                }
            }
            let c = all[r.below(n as u64) as usize];
            w.step(c, &mut m).unwrap();
        }
    }
    pairs
}

#[test]
fn independent_choices_commute_with_every_other_enabled_choice() {
    let mut r = Rng::new(0x2545_f491_4f6c_dd1d);
    let mut pairs = 0;
    for name in [
        "bench/linux3-16-rfc-v1.toml",
        "bench/linux3-16-guest-inhibit.toml",
        "bench/linux-and-4k-only-rfc-v1.toml",
        "seed-rfc-v1.toml",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios")
            .join(name);
        pairs += diamonds(&std::fs::read_to_string(path).unwrap(), 20, &mut r);
    }
    for _ in 0..200 {
        let text = random::world(&mut r);
        let Ok(sc) = scenario::parse(&text) else {
            continue;
        };
        if sc.world().is_err() {
            continue;
        }
        pairs += diamonds(&text, 3, &mut r);
    }
    eprintln!("{pairs} pairs of choices commute");
    assert!(pairs > 10_000, "only {pairs} pairs checked");
}
