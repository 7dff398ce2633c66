//! The `hugesept` binary against what it reads, writes and holds: input files larger than
//! their cap, outputs that cannot be written, a standard output its reader closed, the
//! explorer's memory bound, and Ctrl-C.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn hugesept() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hugesept"))
}

/// Runs `hugesept args`: whether it succeeded, its standard output and error.
fn run(args: &[&str]) -> (bool, String, String) {
    let out = hugesept().args(args).output().expect("run hugesept");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scenario(name: &str) -> String {
    format!("{}/../scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory of this test process's own.
fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("hugesept-resources-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits for `child` at most `limit`; kills it and fails the test past that.
fn wait_at_most(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits at most `limit` for `child`, whose output is piped: its status, standard output and
/// error. (What these commands print fits a pipe's buffer: the child never waits on it.)
fn collect(mut child: Child, limit: Duration, what: &str) -> (ExitStatus, String, String) {
    let status = wait_at_most(&mut child, limit, what);
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, out, err)
}

/// `hugesept args` with its output piped.
fn spawn_piped(args: &[&str]) -> Child {
    hugesept()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hugesept")
}

/// Runs `hugesept args`, piped, for at most `limit`: its status, standard output and error.
fn run_at_most(args: &[&str], limit: Duration) -> (ExitStatus, String, String) {
    collect(spawn_piped(args), limit, &args.join(" "))
}

/// A sparse file of `len` zero bytes.
fn zeros(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

#[test]
fn input_files_are_read_up_to_their_cap() {
    let dir = temp_dir("inputs");
    // One byte past the cap: refused, naming the file and the cap, by every command that
    // reads a scenario.
    let big = dir.join("big.toml");
    zeros(&big, (1 << 20) + 1);
    let b = big.to_str().unwrap();
    for cmd in ["sim", "explore"] {
        let (ok, _, err) = run(&[cmd, b]);
        assert!(!ok);
        assert!(
            err.contains(&format!(
                "{b}: larger than the 1 MiB a scenario file may be"
            )),
            "{cmd}: {err}"
        );
    }
    // At the cap it is read, and then it is not a scenario.
    zeros(&big, 1 << 20);
    let (ok, _, err) = run(&["sim", b]);
    assert!(!ok);
    assert!(err.contains(b) && !err.contains("larger than"), "{err}");
    // Traces may be larger.
    let trace = dir.join("big.trace.toml");
    zeros(&trace, (64 << 20) + 1);
    let t = trace.to_str().unwrap();
    let (ok, _, err) = run(&["replay", t]);
    assert!(!ok);
    assert!(
        err.contains(&format!("{t}: larger than the 64 MiB a trace file may be")),
        "{err}"
    );
    // A directory, and bytes that are not UTF-8.
    let d = dir.to_str().unwrap();
    let (ok, _, err) = run(&["sim", d]);
    assert!(!ok);
    assert!(
        err.contains(&format!("{d}: is a directory, not a scenario file")),
        "{err}"
    );
    let (ok, _, err) = run(&["replay", d]);
    assert!(!ok);
    assert!(
        err.contains(&format!("{d}: is a directory, not a trace file")),
        "{err}"
    );
    let bad = dir.join("latin1.toml");
    std::fs::write(&bad, b"name = \"caf\xe9\"\n").unwrap();
    let (ok, _, err) = run(&["sim", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains(&format!("{}: not UTF-8 text", bad.display())),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file that never ends: read up to the cap and refused, in a child whose address space is
/// limited so that reading without bound fails instead of filling the machine.
#[test]
fn an_endless_input_is_refused() {
    for (cmd, cap) in [("sim", "1 MiB"), ("explore", "1 MiB"), ("replay", "64 MiB")] {
        let mut child = Command::new("sh")
            .args([
                "-c",
                "ulimit -v 2000000 && exec \"$0\" \"$@\"",
                env!("CARGO_BIN_EXE_hugesept"),
                cmd,
                "/dev/zero",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_at_most(&mut child, Duration::from_secs(60), cmd);
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains(&format!("/dev/zero: larger than the {cap}")),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn output_errors_name_the_path() {
    let dir = temp_dir("outputs");
    let missing = dir.join("no-such-dir").join("out");
    let unwritable = [
        (missing.to_str().unwrap(), "No such file or directory"),
        (dir.to_str().unwrap(), "Is a directory"),
        ("/dev/full", "No space left on device"),
    ];
    let seed = scenario("seed-tdcalls.toml");
    for (path, why) in unwritable {
        let want = format!("hugesept: {path}: {why}");
        let runs: [Vec<&str>; 5] = [
            vec!["sim", &seed, "--runs", "1", "--trace", path],
            vec!["explore", &seed, "--trace", path],
            vec![
                "matrix", "--seeds", "1", "--policy", "rfc-v1", "--guest", "linux", "--json", path,
            ],
            vec![
                "matrix", "--seeds", "1", "--policy", "rfc-v1", "--guest", "linux", "--svg", path,
            ],
            vec![
                "matrix", "--seeds", "1", "--policy", "rfc-v1", "--guest", "linux", "--format",
                "json", "--json", path,
            ],
        ];
        for args in runs {
            let (ok, _, err) = run(&args);
            assert!(!ok, "{args:?}");
            assert!(err.starts_with(&want), "{args:?}: {err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `matrix` opens its output files before it computes: with more schedules per cell than it
/// could run in hours, an output it cannot write fails at once.
#[test]
fn matrix_refuses_an_unwritable_output_before_computing() {
    let dir = temp_dir("matrix-first");
    let missing = dir.join("no-such-dir").join("m.json");
    let m = missing.to_str().unwrap();
    let (status, out, err) = run_at_most(
        &["matrix", "--seeds", "100000", "--json", m],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(
        err.starts_with(&format!("hugesept: {m}: No such file or directory")),
        "{err}"
    );
    let (status, _, err) = run_at_most(
        &[
            "matrix",
            "--seeds",
            "100000",
            "--svg",
            dir.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("Is a directory"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Output to a pipe whose reader is gone (as in `hugesept matrix | head -1`, once `head` has
/// its line): the command ends quietly with exit code 0.
#[test]
fn a_closed_standard_output_ends_the_command_quietly() {
    let seed = scenario("seed-tdcalls.toml");
    let runs: [Vec<&str>; 4] = [
        vec!["accept-matrix"],
        vec![
            "matrix", "--seeds", "1", "--policy", "rfc-v1", "--guest", "linux",
        ],
        vec!["explore", &seed],
        vec!["sim", &seed, "--runs", "2"],
    ];
    for args in runs {
        let mut child = hugesept()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes before the command has printed anything.
        drop(child.stdout.take());
        let status = wait_at_most(&mut child, Duration::from_secs(60), &args.join(" "));
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(status.success(), "{args:?}: {status}: {err}");
        assert_eq!(err, "", "{args:?}");
    }
}

/// The number before "MiB" on explore's memory line.
fn memory_mib(out: &str) -> f64 {
    let line = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("memory: "))
        .unwrap_or_else(|| panic!("no memory line in\n{out}"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn explore_stops_at_its_memory_bound_with_a_partial_result() {
    // No bound on the states: the memory bound stops it, and says so.
    let boot = scenario("linux-boot-rfc-v1.toml");
    let dir = temp_dir("memory");
    let trace = dir.join("t.toml");
    let (status, out, err) = run_at_most(
        &[
            "explore",
            &boot,
            "--max-states",
            "18446744073709551615",
            "--max-memory",
            "64M",
            "--trace",
            trace.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert!(
        out.contains(
            "stopped at --max-memory 64 MiB: the exploration is partial (no liveness verdict)"
        ),
        "{out}"
    );
    assert!(out.contains("end states:"), "{out}");
    assert!(!out.contains("liveness:"), "{out}");
    let mib = memory_mib(&out);
    assert!(mib > 32.0 && mib <= 64.0, "{out}");
    // The scenario expects ok, which a partial exploration cannot confirm.
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("the exploration hit --max-memory 64 MiB; it cannot confirm"),
        "{err}"
    );
    // A complete exploration reports its memory too, per state.
    let (ok, out, err) = run(&["explore", &scenario("seed-tdcalls.toml")]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.contains("memory: ")).unwrap();
    assert!(line.contains("bytes per state)"), "{line}");
    assert!(memory_mib(&out) > 0.0, "{out}");
    // Byte counts take K, M, G; anything else is a usage error.
    for bad in ["12X", "0", "1.5G"] {
        let (ok, _, err) = run(&["explore", &boot, "--max-memory", bad]);
        assert!(!ok);
        assert!(err.contains("--max-memory"), "{bad}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `hugesept args`, sends it SIGINT after a second (it must still be running then), and
/// waits at most `limit` for it to end: its exit status, stdout and stderr.
fn interrupted_after_a_second(args: &[&str], limit: Duration) -> (ExitStatus, String, String) {
    let mut child = spawn_piped(args);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        child.try_wait().unwrap().is_none(),
        "{args:?} ended before Ctrl-C"
    );
    let kill = Command::new("sh")
        .args(["-c", "kill -INT \"$0\"", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    collect(child, limit, "the command after Ctrl-C")
}

/// Ctrl-C during a long exploration: it stops at its next check, prints what it found as a
/// partial result, and exits with 130.
#[test]
fn ctrl_c_stops_explore_with_a_partial_result() {
    let dir = temp_dir("ctrl-c");
    let (status, out, err) = interrupted_after_a_second(
        &[
            "explore",
            &scenario("linux-boot-rfc-v1.toml"),
            "--max-states",
            "1000000000",
            "--trace",
            dir.join("t.toml").to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(status.code(), Some(130), "{status}: {out}{err}");
    assert!(out.contains("distinct states"), "{out}");
    assert!(
        out.contains("interrupted (Ctrl-C): the exploration is partial (no liveness verdict)"),
        "{out}"
    );
    assert!(out.contains("end states:"), "{out}");
    assert!(!out.contains("liveness:"), "{out}");
    assert!(err.contains("hugesept: interrupted"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C stops `sim` too, even inside a long schedule: it prints the schedules that ran and
/// exits 130, never 0.
#[test]
fn ctrl_c_stops_sim_with_the_schedules_that_ran() {
    let (status, out, err) = interrupted_after_a_second(
        &[
            "sim",
            &scenario("linux-boot-rfc-v1.toml"),
            "--runs",
            "1000000",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(130), "{status}: {out}{err}");
    assert!(out.contains("interrupted (Ctrl-C) after"), "{out}");
    assert!(out.contains("of 1000000 schedules"), "{out}");
    assert!(out.contains("outcomes:"), "{out}");
    assert!(err.contains("hugesept: interrupted"), "{err}");
}

/// The explorer's own bounds, both searches: the memory estimate stays within
/// `max_memory` and the stop is reported as the memory bound; a `stop` that answers true
/// stops it as an interruption; without either it runs to completion and reports its memory.
#[test]
fn the_explorer_stops_within_its_memory_bound_and_when_asked() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hugesept_host_kvm::explore::{Bounds, CHECK_EDGES, Stop, explore, explore_breadth_first};

    let text = std::fs::read_to_string(scenario("seed-rfc-v1.toml")).unwrap();
    let w = hugesept_host_kvm::scenario::parse(&text)
        .unwrap()
        .world()
        .unwrap();
    let searches: [(&str, hugesept_host_kvm::explore::Exploration); 2] = {
        let bounds = Bounds {
            max_states: usize::MAX,
            max_memory: 12 << 20,
            ..Bounds::default()
        };
        [
            ("depth first", explore(&w, bounds, &mut |_, _| {}).unwrap()),
            (
                "breadth first",
                explore_breadth_first(&w, bounds, &mut |_, _| {}).unwrap(),
            ),
        ]
    };
    for (what, ex) in searches {
        assert_eq!(ex.stopped, Some(Stop::MaxMemory), "{what}");
        assert!(ex.bounded && ex.livelock_trace.is_none(), "{what}");
        assert!(ex.states > 1_000, "{what}: {} states", ex.states);
        assert!(ex.memory <= 12 << 20, "{what}: {} bytes", ex.memory);
        assert!(ex.memory > 6 << 20, "{what}: {} bytes", ex.memory);
    }

    // Asked at the start and then every CHECK_EDGES edges (each new state is one): told to
    // stop the third time, it stops there.
    static ASKED: AtomicUsize = AtomicUsize::new(0);
    fn third() -> bool {
        ASKED.fetch_add(1, Ordering::Relaxed) + 1 >= 3
    }
    let ex = explore(
        &w,
        Bounds {
            max_states: usize::MAX,
            stop: Some(third),
            ..Bounds::default()
        },
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(ex.stopped, Some(Stop::Interrupted));
    assert_eq!(ASKED.load(Ordering::Relaxed), 3);
    assert!(
        ex.states > 2 && ex.states <= 1 + 2 * CHECK_EDGES,
        "{}",
        ex.states
    );

    let ex = explore(
        &w,
        Bounds {
            max_states: usize::MAX,
            ..Bounds::default()
        },
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(ex.stopped, None);
    assert!(!ex.bounded);
    // More than the table, the edges and the summary take at their least per state.
    assert!(ex.memory > 40 * ex.states, "{} bytes", ex.memory);
}
