//! Verdicts a reviewer can trust: a run count that is not met is an error, a livelock is
//! claimed only with evidence replay checks, and a run that exhausts its step budget is its
//! own outcome, never a livelock.

use std::path::PathBuf;
use std::process::Command;

fn hugesept(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hugesept"))
        .args(args)
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .output()
        .expect("run hugesept");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scenario(name: &str) -> String {
    format!("{}/../scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn temp(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_file(&p);
    p
}

/// The number after `label` in `text` (`label` followed by spaces and the number).
fn count_after(text: &str, label: &str) -> u32 {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Seeds wrap around at 2^64: the last seed and two after it are three schedules, not none.
#[test]
fn sim_runs_every_schedule_asked_for_even_at_the_last_seed() {
    let seed = scenario("seed-tdcalls.toml");
    for first in ["18446744073709551615", "18446744073709551614"] {
        let (ok, out, err) = hugesept(&["sim", &seed, "--seed", first, "--runs", "3"]);
        assert!(ok, "{err}");
        assert!(out.contains("3 random schedules"), "{out}");
        assert_eq!(count_after(&out, "ok"), 3, "{out}");
    }
    // A count that cannot be met is an error, not a pass.
    for runs in ["0", "4000000000"] {
        let (ok, out, err) = hugesept(&["sim", &seed, "--runs", runs]);
        assert!(!ok, "--runs {runs}: {out}");
        assert!(err.contains(&format!("--runs {runs}")), "{err}");
    }
    // PCT's depth outside its range is refused, not clamped.
    let (ok, _, err) = hugesept(&["sim", &seed, "--scheduler", "pct", "--depth", "0"]);
    assert!(!ok && err.contains("--depth 0"), "{err}");
}

/// The priority scheduler scenario files allow is offered by `sim` too.
#[test]
fn sim_takes_the_priority_scheduler() {
    let (ok, out, err) = hugesept(&[
        "sim",
        &scenario("seed-2m-first-guest-inhibit.toml"),
        "--scheduler",
        "priority",
        "--runs",
        "2",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("priority"), "{out}");
}

/// A trace cut short of its end and relabelled livelock is refused by replay: the world it
/// stops in can still end, and the trace records no cycle.
#[test]
fn a_livelock_claim_without_evidence_is_not_confirmed() {
    let full = temp("td-shim-reaccept.explore.trace.toml");
    let (ok, out, err) = hugesept(&[
        "explore",
        &scenario("td-shim-reaccept-2m-guest-inhibit.toml"),
        "--trace",
        full.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let text = std::fs::read_to_string(&full).unwrap();
    let mut t: toml::Table = toml::from_str(&text).unwrap();
    let cut: Vec<String> = t["choices"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .take(3)
        .map(str::to_owned)
        .collect();
    t.insert("choices".into(), cut.join(" ").into());
    t.insert("verdict".into(), "livelock".into());
    let forged = temp("forged-livelock.trace.toml");
    std::fs::write(&forged, toml::to_string(&t).unwrap()).unwrap();
    let (ok, out, err) = hugesept(&["replay", forged.to_str().unwrap(), "--brief"]);
    assert!(!ok, "{out}");
    assert!(!out.contains("reproduced"), "{out}");
    assert!(
        err.contains("cannot confirm") && err.contains("guest-panic"),
        "{err}"
    );
}

/// A livelock `sim` finds ends its trace in the cycle the run goes round; replay checks that
/// the cycle returns to the same state without progress. Moving the cycle's start breaks it.
#[test]
fn a_livelock_trace_carries_its_cycle_and_replay_checks_it() {
    let file = temp("touch-first.sim.trace.toml");
    let (ok, out, err) = hugesept(&[
        "sim",
        &scenario("touch-first-4k-rfc-v1.toml"),
        "--runs",
        "2",
        "--trace",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("ending in a cycle of"), "{out}");
    let (ok, out, err) = hugesept(&["replay", file.to_str().unwrap(), "--brief"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("reproduced: livelock: from step")
            && out.contains("without progress back to the same state")
            && out.contains("no end is reachable"),
        "{out}"
    );
    // The steps read as the design's decisions, with the cycle marked.
    let (ok, out, err) = hugesept(&["replay", file.to_str().unwrap(), "--last", "12"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("rfc-v1: 2M leaf in the way, fault at 4K: refuses the split → RET_PF_RETRY"),
        "{out}"
    );
    assert!(out.contains("── the cycle: steps"), "{out}");
    // The cycle marked one step later than it starts does not come back to its state.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut t: toml::Table = toml::from_str(&text).unwrap();
    let k = t["cycle"].as_integer().unwrap();
    t.insert("cycle".into(), (k + 1).into());
    let moved = temp("moved-cycle.trace.toml");
    std::fs::write(&moved, toml::to_string(&t).unwrap()).unwrap();
    let (ok, out, err) = hugesept(&["replay", moved.to_str().unwrap(), "--brief"]);
    assert!(!ok, "{out}");
    assert!(err.contains("cannot confirm"), "{err}");
}

/// A world whose runs make progress at every step but need more steps than `steps` allows
/// ends in `budget-exhausted`, not livelock; its costs are left out of the numbers, and its
/// trace replays to the same outcome.
#[test]
fn a_run_out_of_budget_is_its_own_outcome() {
    let text = std::fs::read_to_string(scenario("linux-boot-guest-inhibit.toml")).unwrap();
    let mut t: toml::Table = toml::from_str(&text).unwrap();
    t.insert("steps".into(), 300.into());
    t.remove("expect");
    let file = temp("budget.toml");
    std::fs::write(&file, toml::to_string(&t).unwrap()).unwrap();
    let trace = temp("budget.trace.toml");
    let (ok, out, err) = hugesept(&[
        "sim",
        file.to_str().unwrap(),
        "--runs",
        "3",
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(count_after(&out, "budget-exhausted"), 3, "{out}");
    assert!(!out.contains("livelock"), "{out}");
    assert!(out.contains("left out of the numbers"), "{out}");
    assert!(out.contains("per run that ended (0)"), "{out}");
    let (ok, out, err) = hugesept(&["replay", trace.to_str().unwrap(), "--brief"]);
    assert!(ok, "{err}");
    assert!(out.contains("reproduced: budget exhausted"), "{out}");
}

/// A failing run's trace is minimised: it still ends the same way, and no single step of it
/// can be dropped (the rest would not run, or would end otherwise).
#[test]
fn a_failing_runs_trace_is_one_minimal() {
    use hugesept_host_kvm::{minimise, scenario};
    let text = std::fs::read_to_string(scenario("seed-rfc-v1.toml")).unwrap();
    let sc = scenario::parse(&text).unwrap();
    let sum = scenario::run_with(&sc, 1, 32, false, &|| {}, &|| false).unwrap();
    let run = sum.traced.expect("a guest-panic among 32 schedules");
    assert_eq!(run.outcome, "guest-panic");
    let start = sc.world().unwrap();
    let min = minimise::minimise(&start, &run.choices, run.outcome);
    assert!(min.len() <= run.choices.len());
    let ends_in = |choices: &[hugesept_core::world::Choice]| {
        let mut w = start.clone();
        let mut m = hugesept_core::world::Metrics::default();
        for &c in choices {
            if let Some(v) = w.ended() {
                return Some(v.name());
            }
            if !w.is_enabled(c) {
                return None;
            }
            w.step(c, &mut m).unwrap();
        }
        w.ended().map(|v| v.name())
    };
    assert_eq!(ends_in(&min), Some("guest-panic"));
    for i in 0..min.len() {
        let mut fewer = min.clone();
        fewer.remove(i);
        assert_ne!(
            ends_in(&fewer),
            Some("guest-panic"),
            "step {i} was not needed"
        );
    }
}

/// The matrix says what its marks mean, and refuses counts it cannot honour.
#[test]
fn the_matrix_explains_its_marks_and_refuses_zero_seeds() {
    let (ok, out, err) = hugesept(&["matrix", "--seeds", "1", "--policy", "explicit-demotion"]);
    assert!(ok, "{err}");
    assert!(out.contains("ok*"), "{out}");
    let legend = out
        .lines()
        .find(|l| l.starts_with("Legend:"))
        .unwrap_or_else(|| panic!("no legend in\n{out}"));
    for mark in ["`ok*`", "`*`", "`adversarial`", "`budget-exhausted`"] {
        assert!(legend.contains(mark), "{mark} not explained: {legend}");
    }
    for (flag, value) in [("--seeds", "0"), ("--threads", "0")] {
        let (ok, _, err) = hugesept(&["matrix", flag, value]);
        assert!(!ok && err.contains(&format!("{flag} {value}")), "{err}");
    }
}
