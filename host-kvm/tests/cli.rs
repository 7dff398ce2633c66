//! The `hugesept` binary as a user runs it.

use std::process::Command;

fn hugesept(args: &[&str]) -> (bool, String, String) {
    hugesept_in(std::path::Path::new("."), args)
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
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["ok", "2"]),
        "{out}"
    );
    assert!(out.contains("as expected: ok"), "{out}");
    assert!(out.contains("world steps"), "{out}");
    let (ok, _, err) = hugesept(&["sim", "/nonexistent.toml"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent.toml"), "{err}");
}

fn scenario(name: &str) -> String {
    format!("{}/../scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hugesept-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn a_livelock_found_by_sim_replays_step_by_step() {
    let trace = temp("livelock.trace.toml");
    let t = trace.to_str().unwrap();
    let (ok, out, err) = hugesept(&[
        "sim",
        &scenario("touch-first-4k-rfc-v1.toml"),
        "--runs",
        "2",
        "--trace",
        t,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("trace saved to"), "{out}");
    let (ok, out, err) = hugesept(&["replay", t, "--last", "40"]);
    assert!(ok, "{err}");
    assert!(out.contains("back into the guest"), "{out}");
    assert!(
        out.contains("ACCEPT 4K: walk stopped at 2M PENDING leaf"),
        "{out}"
    );
    assert!(out.contains("mirror 0x40200000 2M: 2M leaf"), "{out}");
    assert!(out.contains("reproduced: livelock"), "{out}");
    // A trace edited so that it no longer reproduces.
    let text = std::fs::read_to_string(&trace).unwrap();
    let bad = temp("diverged.trace.toml");
    std::fs::write(&bad, text.replacen("choices = \"v0", "choices = \"h1", 1)).unwrap();
    let (ok, _, err) = hugesept(&["replay", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("does not reproduce") && err.contains("step 0"),
        "{err}"
    );
    // A trace from a future format, and a file that is not a trace.
    std::fs::write(&bad, text.replacen("format = 2", "format = 9", 1)).unwrap();
    let (ok, _, err) = hugesept(&["replay", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("trace format 9"), "{err}");
    std::fs::write(&bad, "this is [not a trace").unwrap();
    let (ok, _, err) = hugesept(&["replay", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("not a hugesept trace"), "{err}");
    std::fs::write(
        &bad,
        text.replacen("policy = ", "policy = \"none\"\nx = ", 1),
    )
    .unwrap();
    let (ok, _, err) = hugesept(&["replay", bad.to_str().unwrap()]);
    assert!(!ok, "{err}");
}

#[test]
fn explore_reduces_unless_told_and_verifies_its_reduction() {
    let file = scenario("bench/linux-and-4k-only-rfc-v1.toml");
    let states = |out: &str| -> usize {
        let line = out.lines().find(|l| l.contains("distinct states")).unwrap();
        line.split_whitespace().next().unwrap().parse().unwrap()
    };
    let trace = temp("explore-reduced.trace.toml");
    let trace = trace.to_str().unwrap();
    let (_, reduced, err) = hugesept(&["explore", &file, "--trace", trace]);
    assert!(reduced.contains("partial-order reduced)"), "{reduced}{err}");
    let (_, full, err) = hugesept(&["explore", &file, "--full", "--trace", trace]);
    assert!(full.contains("every interleaving)"), "{full}{err}");
    assert!(states(&reduced) < states(&full), "{reduced}{full}");
    // The same verdicts, however reached.
    let verdicts = |out: &str| -> Vec<String> {
        out.lines()
            .skip_while(|l| !l.starts_with("end states:"))
            .skip(1)
            .filter(|l| l.starts_with("  ") && !l.starts_with("    "))
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(verdicts(&reduced), verdicts(&full));
    assert_eq!(verdicts(&full), ["guest-panic", "ok"]);
    let (ok, out, err) = hugesept(&["explore", &file, "--verify-reduction"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("reduction verified"), "{out}");
    // Both searches must be complete for the check to say anything.
    let (ok, _, err) = hugesept(&[
        "explore",
        &file,
        "--verify-reduction",
        "--max-states",
        "1000",
    ]);
    assert!(!ok && err.contains("hit its bounds"), "{err}");
    let (ok, _, err) = hugesept(&["explore", &file, "--verify-reduction", "--full"]);
    assert!(!ok && err.contains("--full"), "{err}");
}

#[test]
fn explore_checks_the_seed_scenario_and_reports_bounds() {
    let (ok, out, err) = hugesept(&["explore", &scenario("seed-tdcalls.toml")]);
    assert!(ok, "{err}");
    assert!(out.contains("distinct states"), "{out}");
    assert!(out.contains("no livelock under fair scheduling"), "{out}");
    assert!(
        out.contains("as expected: every reachable outcome is ok"),
        "{out}"
    );
    let (ok, out, err) = hugesept(&[
        "explore",
        &scenario("seed-tdcalls.toml"),
        "--max-states",
        "10",
    ]);
    assert!(!ok);
    assert!(out.contains("stopped at --max-states 10"), "{out}");
    assert!(err.contains("cannot confirm"), "{err}");
    // A partial exploration says what it left and what more states would cost.
    assert!(
        out.contains("  left: ") && out.contains("ten times the states (100)"),
        "{out}"
    );
    // The same counts and outcomes on one thread and on three; no threads is refused.
    let counts = |out: &str| {
        out.lines()
            .find(|l| l.contains("distinct states"))
            .and_then(|l| l.split(", depth").next())
            .map(str::to_owned)
    };
    let (ok1, one, err) = hugesept(&["explore", &scenario("seed-tdcalls.toml"), "--threads", "1"]);
    assert!(ok1, "{err}");
    assert!(
        one.contains("1 thread, partial-order reduced)") && one.contains("peak resident"),
        "{one}"
    );
    let (ok3, three, err) =
        hugesept(&["explore", &scenario("seed-tdcalls.toml"), "--threads", "3"]);
    assert!(ok3, "{err}");
    assert!(
        three.contains("3 threads, partial-order reduced)"),
        "{three}"
    );
    assert_eq!(counts(&one), counts(&three));
    assert!(counts(&one).is_some());
    let end_lines = |out: &str| -> Vec<String> {
        out.lines()
            .skip_while(|l| !l.starts_with("end states:"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(end_lines(&one), end_lines(&three));
    let (ok, _, err) = hugesept(&["explore", &scenario("seed-tdcalls.toml"), "--threads", "0"]);
    assert!(!ok && err.contains("--threads"), "{err}");
    // An outcome other than the expected one is reported as found, bound or not: the seed
    // under rfc-v1 expects ok under its seeded schedules, and the explorer reaches OVMF's
    // panic after its fourth TDX_OPERAND_BUSY well within the bound.
    let (ok, _, err) = hugesept(&[
        "explore",
        &scenario("seed-rfc-v1.toml"),
        "--max-states",
        "100000",
        "--trace",
        temp("explore-seed-rfc-v1.trace.toml").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("expected only ok; reachable: guest-panic, ok (and maybe more"),
        "{err}"
    );
    let trace = temp("explore-livelock.trace.toml");
    let (ok, out, err) = hugesept(&[
        "explore",
        &scenario("touch-first-4k-rfc-v1.toml"),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("livelock"), "{out}");
    let (ok, out, err) = hugesept(&["replay", trace.to_str().unwrap(), "--brief"]);
    assert!(ok, "{err}");
    // The explorer's livelock trace ends in the cycle it goes round, which replay checks.
    assert!(out.contains("reproduced: livelock"), "{out}");
    assert!(out.contains("goes round a cycle"), "{out}");
    let (ok, _, err) = hugesept(&["explore", "/nonexistent.toml"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent.toml"), "{err}");
}

#[test]
fn matrix_prints_markdown_json_and_svg() {
    let json = temp("m.json");
    let svg = temp("m.svg");
    let (ok, out, err) = hugesept(&[
        "matrix",
        "--policy",
        "guest-inhibit,rfc-v1",
        "--guest",
        "linux,touch-first",
        "--seeds",
        "1",
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("| design | linux | touch-first |"), "{out}");
    let row = out.lines().find(|l| l.starts_with("| rfc-v1 |")).unwrap();
    assert!(
        row.starts_with("| rfc-v1 | ok |") && row.contains("livelock"),
        "{out}"
    );
    assert!(
        row.ends_with("* |"),
        "touch-first is not claimed by rfc-v1: {row}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["cells"].as_array().unwrap().len(), 2 * (2 * 4 + 1));
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<svg") && s.contains("guest-inhibit"), "{s}");
    let (ok, _, err) = hugesept(&["matrix", "--policy", "rfc-v9"]);
    assert!(!ok);
    assert!(err.contains("'rfc-v9' names no policy"), "{err}");
    let (ok, out, _) = hugesept(&["matrix", "--show", "churn:guest-inhibit:linux"]);
    assert!(ok);
    assert!(out.contains("convert-to-shared"), "{out}");
}

/// Runs `hugesept` in the directory `dir`.
fn hugesept_in(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hugesept"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run hugesept");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--trace FILE` writes a trace even when nothing went wrong, and the trace replays to ok.
#[test]
fn a_trace_asked_for_is_written_when_every_run_ends_ok() {
    // The seed as bare TDCALLs ends ok in every schedule and every interleaving.
    let seed = scenario("seed-tdcalls.toml");
    let sim_trace = temp("seed-tdcalls.sim.trace.toml");
    let _ = std::fs::remove_file(&sim_trace);
    let t = sim_trace.to_str().unwrap();
    let (ok, out, err) = hugesept(&["sim", &seed, "--runs", "4", "--trace", t]);
    assert!(ok, "{err}");
    assert!(out.contains("as expected: ok"), "{out}");
    assert!(
        out.contains("first run ending in ok: seed 1")
            && out.contains(&format!("trace saved to {t}")),
        "{out}"
    );
    let (ok, out, err) = hugesept(&["replay", t, "--brief"]);
    assert!(ok, "{err}");
    assert!(out.contains("claims: ok"), "{out}");
    assert!(out.contains("reproduced: ok"), "{out}");

    let explore_trace = temp("seed-tdcalls.explore.trace.toml");
    let _ = std::fs::remove_file(&explore_trace);
    let t = explore_trace.to_str().unwrap();
    let (ok, out, err) = hugesept(&["explore", &seed, "--trace", t]);
    assert!(ok, "{err}");
    assert!(
        out.contains("as expected: every reachable outcome is ok"),
        "{out}"
    );
    assert!(
        out.contains(&format!("shortest trace to an ok end saved to {t}")),
        "{out}"
    );
    let (ok, out, err) = hugesept(&["replay", t, "--brief"]);
    assert!(ok, "{err}");
    assert!(out.contains("explore, shortest"), "{out}");
    assert!(out.contains("reproduced: ok"), "{out}");
}

/// Without `--trace`, runs that all end ok leave no trace file behind.
#[test]
fn without_trace_an_all_ok_run_writes_no_trace() {
    let dir = temp("no-trace");
    std::fs::create_dir_all(&dir).unwrap();
    let seed = scenario("seed-tdcalls.toml");
    let (ok, out, err) = hugesept_in(&dir, &["sim", &seed, "--runs", "2"]);
    assert!(ok, "{err}");
    assert!(!out.contains("trace saved"), "{out}");
    let (ok, out, err) = hugesept_in(&dir, &["explore", &seed]);
    assert!(ok, "{err}");
    assert!(!out.contains("trace saved"), "{out}");
    let written: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(written.is_empty(), "{written:?}");
}

/// The numbers of a metric row of `sim`'s per-run table: min, median, p90, max.
fn spread_of(text: &str, name: &str) -> Vec<String> {
    row(text, name)
        .trim_start()
        .strip_prefix(name)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `sim`'s per-run table counts spurious faults and gives the share of mapped private memory
/// mapped at 2M at the end of each run.
#[test]
fn sim_shows_spurious_faults_and_2m_coverage() {
    // 2M first, then a 4K accept inside the accepted page: the page stays mapped at 2M.
    let (ok, out, err) = hugesept(&["sim", &scenario("seed-2m-first-guest-inhibit.toml")]);
    assert!(ok, "{err}");
    assert_eq!(
        spread_of(&out, "2M coverage at the end"),
        ["100.0%"; 4],
        "{out}"
    );
    assert_eq!(spread_of(&out, "spurious faults"), ["0"; 4], "{out}");
    // Upstream KVM maps private memory at 4K only.
    let (ok, out, err) = hugesept(&[
        "sim",
        &scenario("td-shim-reaccept-2m-upstream-4k.toml"),
        "--runs",
        "4",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        spread_of(&out, "2M coverage at the end"),
        ["0.0%"; 4],
        "{out}"
    );
    // RFC v1 keeps the touch-first guest's page at 2M and its 4K accepts fault again and
    // again on a mapping that is already there: spurious faults, every run.
    let (ok, out, err) = hugesept(&[
        "sim",
        &scenario("touch-first-4k-rfc-v1.toml"),
        "--runs",
        "2",
        "--trace",
        temp("spurious.trace.toml").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        spread_of(&out, "2M coverage at the end"),
        ["100.0%"; 4],
        "{out}"
    );
    let spurious: Vec<u64> = spread_of(&out, "spurious faults")
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(spurious[0] > 0 && spurious.is_sorted(), "{out}");
}

/// A TD built at build time: the image added at 4K, finalized twice (KVM_TDX_FINALIZE_VM a
/// second time is refused by the module), then one 2M accept; one fixed order, host first.
const FINALIZED_TWICE: &str = r#"
name = "build time: image at 4K, finalize twice, one 2M accept"
policy = "guest-inhibit"
regions = 2
runnable = false
scheduler = "priority"
order = [4, 0]
expect = "ok"

[[vcpu]]
guest = "single-accept"
start = "0x40200000"
end = "0x40400000"

[[host]]
actions = [
  { op = "init-mem-region", start = "0x40000000", end = "0x40002000" },
  { op = "finalize" },
  { op = "finalize" },
]
"#;

/// The replay of [`FINALIZED_TWICE`]'s one schedule, traced by `sim` under the name `name`.
fn replay_finalized_twice(name: &str) -> String {
    let file = temp(&format!("{name}.toml"));
    std::fs::write(&file, FINALIZED_TWICE).unwrap();
    let trace = temp(&format!("{name}.trace.toml"));
    let t = trace.to_str().unwrap();
    let (ok, out, err) = hugesept(&["sim", file.to_str().unwrap(), "--trace", t]);
    assert!(ok, "{err}");
    assert!(out.contains("trace saved to"), "{out}");
    let (ok, out, err) = hugesept(&["replay", t]);
    assert!(ok, "{err}");
    assert!(out.contains("reproduced: ok"), "{out}");
    out
}

/// Replay names the host steps that run TDH.MR.FINALIZE, with the module's status.
#[test]
fn replay_names_finalize_with_the_module_status() {
    let out = replay_finalized_twice("finalize-named");
    let host_lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("host 0") && l.contains("FINALIZE"))
        .collect();
    assert_eq!(host_lines.len(), 2, "{out}");
    assert!(
        host_lines[0].contains("KVM_TDX_FINALIZE_VM: TDH.MR.FINALIZE → TDX_SUCCESS"),
        "{out}"
    );
    assert!(
        host_lines[1].contains("TDH.MR.FINALIZE → TDX_OP_STATE_INCORRECT"),
        "{out}"
    );
}

/// Replay shows, with the 2M lpage_info of the range a step touched, that of the 1G range
/// the 2M range lies in.
#[test]
fn replay_shows_the_1g_lpage_info_of_a_touched_range() {
    let out = replay_finalized_twice("lpage-1g");
    let ranges: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("lpage_info 2M"))
        .collect();
    assert!(!ranges.is_empty(), "{out}");
    for l in ranges {
        assert!(l.contains("; lpage_info 1G 0x40000000: count "), "{l}");
    }
}

/// `run`'s bad input: a broken scenario, a payload that is not there or not an ELF, a timeout
/// out of range, an unknown design — each a clear error before any vCPU runs.
#[test]
fn run_refuses_bad_input_clearly() {
    let broken = temp("broken-run.toml");
    std::fs::write(&broken, "regions = \"many\"\n").unwrap();
    let (ok, _, err) = hugesept(&["run", broken.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("regions"), "{err}");
    let seed = scenario("seed-rfc-v1.toml");
    let (ok, _, err) = hugesept(&["run", &seed, "--payload", "/nonexistent/payload"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/payload"), "{err}");
    let (ok, _, err) = hugesept(&["run", &seed, "--payload", broken.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("not an ELF64") || err.contains("/dev/kvm is not usable"),
        "{err}"
    );
    let (ok, _, err) = hugesept(&["run", &seed, "--timeout", "0"]);
    assert!(!ok);
    assert!(err.contains("--timeout 0"), "{err}");
    let (ok, _, err) = hugesept(&["run", &seed, "--policy", "no-such-design"]);
    assert!(!ok);
    assert!(err.contains("no such design"), "{err}");
}

/// `run --brief --brief-header`: the table header and one row naming the world without the
/// file's own design, the design it ran under, its outcome and counts; the trace replays.
/// Needs /dev/kvm and the payload (`cargo xtask guest`), as tests/vmm.rs does.
#[test]
fn run_brief_prints_one_table_row_and_a_replayable_trace() {
    let payload = format!(
        "{}/../guest-td/target/x86_64-unknown-none/release/hugesept-guest-td",
        env!("CARGO_MANIFEST_DIR")
    );
    let usable =
        std::fs::File::open("/dev/kvm").is_ok() && std::path::Path::new(&payload).is_file();
    if !usable {
        assert!(
            std::env::var_os("HUGESEPT_REQUIRE_KVM").is_none(),
            "HUGESEPT_REQUIRE_KVM is set but /dev/kvm or the payload is missing"
        );
        eprintln!("SKIPPED (needs /dev/kvm and the payload)");
        return;
    }
    let trace = temp("brief.run.trace.toml");
    // The file expects ok under upstream-4k; under guest-inhibit td-shim panics, which the
    // command reports as unexpected (exit 1) after printing its row and saving the trace.
    let (ok, out, err) = hugesept(&[
        "run",
        &scenario("td-shim-reaccept-2m-upstream-4k.toml"),
        "--policy",
        "guest-inhibit",
        "--brief",
        "--brief-header",
        "--payload",
        &payload,
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("the scenario expects ok"), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("| world | design | outcome |"),
        "{out}"
    );
    assert!(
        lines[2].starts_with(
            "| td-shim re-accepting an accepted 2M page | guest-inhibit | guest-panic |"
        ),
        "{out}"
    );
    let (ok, out, err) = hugesept(&["replay", trace.to_str().unwrap(), "--brief"]);
    assert!(ok, "{err}");
    assert!(out.contains("reproduced: guest-panic"), "{out}");
}

#[test]
fn costs_prices_the_field_shapes_and_matrix_prints_estimated_times() {
    let md = temp("costs.md");
    let svg = temp("costs.svg");
    let readme = temp("README.md");
    std::fs::write(
        &readme,
        "intro\n<!-- costs:begin -->\nstale\n<!-- costs:end -->\nend\n",
    )
    .unwrap();
    let (ok, out, err) = hugesept(&[
        "costs",
        "--quick",
        "--policy",
        "upstream-4k,guest-inhibit",
        "--markdown",
        md.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
        "--readme",
        readme.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(&md).unwrap(), out);
    // Under upstream-4k a 4 MiB block is 1024 exits; where KVM maps 2M, two.
    let storm_row = |policy: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("| {policy} | 248 |")))
            .unwrap_or_else(|| panic!("{out}"))
            .to_owned()
    };
    assert!(
        storm_row("upstream-4k").contains("| 832 MiB | ok | 212992 |"),
        "{out}"
    );
    assert!(
        storm_row("guest-inhibit").contains("| 832 MiB | ok | 416 |"),
        "{out}"
    );
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<svg") && s.contains("upstream-4k"), "{s}");
    let r = std::fs::read_to_string(&readme).unwrap();
    assert!(
        r.starts_with("intro\n<!-- costs:begin -->\n| design |"),
        "{r}"
    );
    assert!(
        r.ends_with("<!-- costs:end -->\nend\n") && !r.contains("stale"),
        "{r}"
    );
    // The profile: printed with its sources; a bad file is refused by name.
    let (ok, out, _) = hugesept(&["costs", "--show-profile"]);
    assert!(
        ok && out.contains("exit_us = 8.0") && out.contains("pull request 1220"),
        "{out}"
    );
    let bad = temp("bad-profile.toml");
    std::fs::write(&bad, "name = \"x\"\nexit_us = -1\n").unwrap();
    let (ok, _, err) = hugesept(&["costs", "--quick", "--cost-profile", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("bad-profile.toml"), "{err}");
    // matrix --costs adds the estimated time per cell.
    let (ok, out, err) = hugesept(&[
        "matrix",
        "--policy",
        "upstream-4k",
        "--guest",
        "linux-early,asterinas",
        "--seeds",
        "1",
        "--costs",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("Estimated wall time per run"), "{out}");
    assert!(
        out.contains("| design | linux-early | asterinas | boot |"),
        "{out}"
    );
}
