//! The `hugesept` binary as a user runs it.

use std::process::Command;

fn hugesept(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hugesept"))
        .args(args)
        .output()
        .expect("run hugesept");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn row<'a>(text: &'a str, path: &str) -> &'a str {
    text.lines()
        .find(|l| {
            l.trim_start().starts_with(path) && l.trim_start()[path.len()..].starts_with("  ")
        })
        .unwrap_or_else(|| panic!("no row {path:?} in\n{text}"))
}

#[test]
fn accept_matrix_shows_the_reference_outcomes() {
    let (ok, out, err) = hugesept(&["accept-matrix"]);
    assert!(ok, "{err}");
    // The seed: 4K accept inside a pending 2M leaf exits; inside an accepted one it is
    // ALREADY_ACCEPTED with the 2M level; 1G is never accepted by TDX 1.5.
    let pending = row(&out, "1G NL_MAPPED / 2M PENDING");
    assert!(pending.contains("B exit: 2M PENDING leaf"), "{pending}");
    assert!(pending.contains("G SUCCESS"), "{pending}");
    assert!(pending.contains("- OPERAND_INVALID|RCX"), "{pending}");
    let mapped = row(&out, "1G NL_MAPPED / 2M MAPPED");
    assert!(mapped.contains("A PAGE_ALREADY_ACCEPTED|2M"), "{mapped}");
    let split = row(&out, "1G NL_MAPPED / 2M NL_MAPPED / 4K PENDING");
    assert!(split.contains("D PAGE_SIZE_MISMATCH|2M"), "{split}");
    assert!(out.contains("Profile explicit-demotion: 3 cell(s) differ"));
    assert!(out.contains(
        "1G NL_MAPPED / 2M PENDING, ACCEPT 4K: B exit: 2M PENDING leaf  ->  B PAGE_SIZE_MISMATCH|2M"
    ));
}

#[test]
fn accept_matrix_markdown_for_a_combined_profile() {
    let (ok, out, err) = hugesept(&[
        "accept-matrix",
        "--markdown",
        "--profile",
        "accept-1g+explicit-demotion",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("Module profile: explicit-demotion+accept-1g"));
    assert!(
        out.contains(
            "| 1G PENDING | B PAGE_SIZE_MISMATCH|1G | B PAGE_SIZE_MISMATCH|1G | G SUCCESS |"
        ),
        "{out}"
    );
}

#[test]
fn unknown_profile_is_a_clear_error() {
    let (ok, _, err) = hugesept(&["accept-matrix", "--profile", "tdx-9"]);
    assert!(!ok);
    assert!(
        err.contains("'tdx-9'") && err.contains("unknown module profile"),
        "{err}"
    );
}

#[test]
fn sim_runs_a_scenario_and_reports_verdicts() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/touch-first-4k-guest-inhibit.toml"
    );
    let (ok, out, err) = hugesept(&["sim", path, "--runs", "2"]);
    assert!(ok, "{err}");
    assert!(out.contains("ok           2"), "{out}");
    assert!(out.contains("as expected: ok"), "{out}");
    let (ok, _, err) = hugesept(&["sim", "/nonexistent.toml"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent.toml"), "{err}");
}
