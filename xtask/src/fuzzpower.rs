//! The fuzz tooling's measurements: a libFuzzer run's output read for its numbers, and
//! `cargo xtask fuzz --check-power`, which turns each broken variant of the models on
//! (`hugesept_core::broken`, through the fuzz crate's `broken` feature and
//! `HUGESEPT_BROKEN`) and each known problem into a crash (`HUGESEPT_HUNT`), runs the target
//! that should find it from an empty corpus, and prints the time to the first crash.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{Result, cmd, root, run};

/// A command's merged output, echoed as it runs.
pub struct Captured {
    /// stdout and stderr.
    pub text: String,
    /// Whether it exited with status 0.
    pub success: bool,
    /// Seconds from start to exit.
    pub seconds: f64,
}

/// Runs `c`, echoing its stderr (libFuzzer's) and keeping it.
pub fn run_captured(mut c: Command) -> Result<Captured> {
    eprintln!("$ {c:?}");
    let start = Instant::now();
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("{c:?}: {e}"))?;
    let out = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out {
            for l in BufReader::new(o).lines().map_while(std::result::Result::ok) {
                s.push_str(&l);
                s.push('\n');
            }
        }
        s
    });
    let mut text = String::new();
    if let Some(e) = child.stderr.take() {
        for l in BufReader::new(e).lines().map_while(std::result::Result::ok) {
            if !l.starts_with("#") || l.contains("DONE") {
                let _ = writeln!(std::io::stderr(), "{l}");
            }
            text.push_str(&l);
            text.push('\n');
        }
    }
    let status = child.wait().map_err(|e| format!("{c:?}: {e}"))?;
    text.push_str(&reader.join().unwrap_or_default());
    Ok(Captured {
        text,
        success: status.success(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The numbers of a libFuzzer run.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Inputs run.
    pub runs: Option<u64>,
    /// Their rate.
    pub exec_per_sec: Option<u64>,
    /// Coverage (libFuzzer's `cov:`, edges reached) at the last report.
    pub coverage: Option<u64>,
    /// The crashing input written.
    pub artifact: Option<String>,
    /// The first line of the panic message.
    pub panic: Option<String>,
}

impl Stats {
    /// Reads `text`, libFuzzer's output.
    pub fn of(text: &str) -> Stats {
        let mut s = Stats::default();
        let number = |l: &str, key: &str| -> Option<u64> {
            let at = l.find(key)? + key.len();
            l.get(at..)?
                .trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        let mut next_is_panic = false;
        for l in text.lines() {
            if let Some(v) = number(l, "stat::number_of_executed_units:") {
                s.runs = Some(v);
            }
            if let Some(v) = number(l, "stat::average_exec_per_sec:") {
                s.exec_per_sec = Some(v);
            }
            if l.starts_with('#')
                && let Some(v) = number(l, "cov:")
            {
                s.coverage = Some(v);
            }
            if let Some(at) = l.find("Test unit written to ") {
                s.artifact = l
                    .get(at + "Test unit written to ".len()..)
                    .map(str::to_owned);
            }
            if next_is_panic && s.panic.is_none() {
                s.panic = Some(l.chars().take(160).collect());
            }
            next_is_panic = l.contains("panicked at");
        }
        s
    }
}

/// What `--check-power` runs: a name, the target that should find it, and the environment
/// that makes it a bug.
struct Probe {
    name: &'static str,
    target: &'static str,
    env: (&'static str, &'static str),
    broken: bool,
}

const PROBES: &[Probe] = &[
    // The known problems, in the correct models: each is a crash only while hunted.
    Probe {
        name: "known: rfc-v1 livelocks a 4K-only #VE guest",
        target: "interleave",
        env: ("HUGESEPT_HUNT", "livelock:rfc-v1:touch-first"),
        broken: false,
    },
    Probe {
        name: "known: td-shim panics (re-accept, level bits)",
        target: "interleave",
        env: ("HUGESEPT_HUNT", "guest-panic:*:td-shim"),
        broken: false,
    },
    Probe {
        name: "known: OVMF panics after its BUSY retries",
        target: "interleave",
        env: ("HUGESEPT_HUNT", "guest-panic:*:ovmf"),
        broken: false,
    },
    // The broken variants, each by the target that should find it.
    Probe {
        name: "conversion-removes-2m",
        target: "interleave",
        env: ("HUGESEPT_BROKEN", "conversion-removes-2m"),
        broken: true,
    },
    Probe {
        name: "split-without-block",
        target: "interleave",
        env: ("HUGESEPT_BROKEN", "split-without-block"),
        broken: true,
    },
    Probe {
        name: "remove-without-track",
        target: "interleave",
        env: ("HUGESEPT_BROKEN", "remove-without-track"),
        broken: true,
    },
    Probe {
        name: "mixed-not-set",
        target: "interleave",
        env: ("HUGESEPT_BROKEN", "mixed-not-set"),
        broken: true,
    },
    Probe {
        name: "mixed-not-set",
        target: "policy_decisions",
        env: ("HUGESEPT_BROKEN", "mixed-not-set"),
        broken: true,
    },
    Probe {
        name: "rfc-v1-window-kept",
        target: "interleave",
        env: ("HUGESEPT_BROKEN", "rfc-v1-window-kept"),
        broken: true,
    },
    Probe {
        name: "rfc-v1-window-kept",
        target: "policy_decisions",
        env: ("HUGESEPT_BROKEN", "rfc-v1-window-kept"),
        broken: true,
    },
    Probe {
        name: "huge-before-runnable",
        target: "policy_decisions",
        env: ("HUGESEPT_BROKEN", "huge-before-runnable"),
        broken: true,
    },
    Probe {
        name: "fault-max-level-ignores-accept",
        target: "interleave",
        env: ("HUGESEPT_BROKEN", "fault-max-level-ignores-accept"),
        broken: true,
    },
    Probe {
        name: "fault-max-level-ignores-accept",
        target: "policy_decisions",
        env: ("HUGESEPT_BROKEN", "fault-max-level-ignores-accept"),
        broken: true,
    },
    Probe {
        name: "linux-size-mismatch-advance",
        target: "interleave",
        env: ("HUGESEPT_BROKEN", "linux-size-mismatch-advance"),
        broken: true,
    },
    Probe {
        name: "demote-children-pending",
        target: "interleave",
        env: ("HUGESEPT_BROKEN", "demote-children-pending"),
        broken: true,
    },
    Probe {
        name: "demote-children-pending",
        target: "sept_ops",
        env: ("HUGESEPT_BROKEN", "demote-children-pending"),
        broken: true,
    },
    Probe {
        name: "accept-ignores-host-priority",
        target: "sept_ops",
        env: ("HUGESEPT_BROKEN", "accept-ignores-host-priority"),
        broken: true,
    },
    Probe {
        name: "block-keeps-accept-counter",
        target: "sept_ops",
        env: ("HUGESEPT_BROKEN", "block-keeps-accept-counter"),
        broken: true,
    },
];

/// `cargo xtask fuzz --check-power`: every probe from an empty corpus for at most `seconds`.
pub fn check_power(seconds: u64) -> Result {
    let fuzz = root().join("fuzz");
    let dirs = [("correct", false), ("broken", true)];
    for (dir, broken) in dirs {
        let mut c = cmd("cargo");
        c.current_dir(&fuzz);
        // Every probe's target is a world target: built as `cargo xtask fuzz` builds them.
        c.args([
            "fuzz",
            "build",
            "--sanitizer",
            "none",
            "--no-trace-compares",
            "--target-dir",
        ]);
        c.arg(fuzz.join("target/power").join(dir));
        if broken {
            c.args(["--features", "broken"]);
        }
        run(c)?;
    }
    let work = root().join("target/fuzz-power");
    let mut rows = Vec::new();
    let mut missed = Vec::new();
    for p in PROBES {
        let dir = if p.broken { "broken" } else { "correct" };
        let bin = fuzz
            .join("target/power")
            .join(dir)
            .join("x86_64-unknown-linux-gnu/release")
            .join(p.target);
        let case = work.join(format!("{}-{}", p.env.1.replace([':', '*'], "_"), p.target));
        let _ = std::fs::remove_dir_all(&case);
        let corpus = case.join("corpus");
        std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        let mut c = Command::new(&bin);
        c.arg(&corpus)
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", case.display()))
            .env(p.env.0, p.env.1);
        let out = run_captured(c)?;
        let stats = Stats::of(&out.text);
        let found = !out.success && stats.artifact.is_some();
        if !found {
            missed.push(format!("{} ({})", p.name, p.target));
        }
        rows.push((p, found, out.seconds, stats));
    }
    eprintln!(
        "\n| problem | target | found | time to find | inputs run | what the target reported |\n|---|---|---|---:|---:|---|"
    );
    for (p, found, secs, stats) in &rows {
        eprintln!(
            "| {} | {} | {} | {} | {} | {} |",
            p.name,
            p.target,
            if *found { "yes" } else { "no" },
            if *found {
                format!("{secs:.1} s")
            } else {
                format!("> {seconds} s")
            },
            stats.runs.map_or("?".into(), |r| r.to_string()),
            stats.panic.as_deref().unwrap_or("").replace('|', "/")
        );
    }
    if missed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzz --check-power: not found within {seconds} s: {}",
            missed.join(", ")
        ))
    }
}
