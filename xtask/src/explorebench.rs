//! `cargo xtask explore-bench [--quick] [--threads N] [--full]`: the explorer on the benchmark worlds
//! (scenarios/bench: three Linux vCPUs on 16 and 32 pages of one region, a Linux vCPU with two
//! 4K-only vCPUs inside its range, a 2 GiB one-vCPU Linux world, a 64 GiB window with two
//! regions touched) and the OVMF seed scenarios,
//! each explored completely by the release `hugesept explore`; prints a Markdown table of
//! states, transitions, time to verdict, states per second, the explorer's memory estimate,
//! peak resident memory and the reachable outcomes, as docs/benchmarks.md records it.
//! `--quick` leaves out the worlds that take more than a few seconds in full; `--full` explores
//! every interleaving instead of the partial-order reduced graph.

use std::process::Command;
use std::time::Instant;

use super::{Result, cmd, root};

/// The worlds, in the table's order; `true`: left out by `--quick`.
const WORLDS: &[(&str, bool)] = &[
    ("scenarios/bench/linux3-16-rfc-v1.toml", false),
    ("scenarios/bench/linux3-16-guest-inhibit.toml", false),
    ("scenarios/bench/linux3-32-rfc-v1.toml", true),
    ("scenarios/bench/linux3-32-guest-inhibit.toml", true),
    ("scenarios/bench/linux-and-4k-only-rfc-v1.toml", false),
    (
        "scenarios/bench/linux-and-4k-only-guest-inhibit.toml",
        false,
    ),
    ("scenarios/bench/linux-2g-guest-inhibit.toml", false),
    ("scenarios/bench/window-64g-guest-inhibit.toml", false),
    ("scenarios/seed-rfc-v1.toml", false),
    ("scenarios/seed-guest-inhibit.toml", false),
    ("scenarios/seed-2m-first-rfc-v1.toml", false),
    ("scenarios/seed-2m-first-guest-inhibit.toml", false),
    ("scenarios/seed-4k-first-rfc-v1.toml", false),
    ("scenarios/seed-4k-first-guest-inhibit.toml", false),
];

/// What one exploration printed.
#[derive(Debug, Default, PartialEq)]
struct Row {
    states: u64,
    transitions: u64,
    seconds: f64,
    estimate_mib: f64,
    peak_mib: Option<f64>,
    outcomes: Vec<String>,
    complete: bool,
}

/// Reads `hugesept explore`'s report: the counts line, the memory line, the end states, the
/// liveness line and whether a bound stopped it.
fn parse(text: &str) -> Result<Row> {
    let mut row = Row {
        complete: true,
        ..Row::default()
    };
    let mut in_ends = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t
            .strip_suffix(')')
            .filter(|_| t.contains("distinct states"))
        {
            // "N distinct states, T transitions, depth D, S s (R states/s)"
            let words: Vec<&str> = rest.split([' ', ',']).filter(|w| !w.is_empty()).collect();
            let number = |i: usize| {
                words
                    .get(i)
                    .ok_or_else(|| format!("short counts line: {t}"))
            };
            row.states = number(0)?.parse().map_err(|e| format!("{t}: {e}"))?;
            row.transitions = number(3)?.parse().map_err(|e| format!("{t}: {e}"))?;
            row.seconds = number(7)?.parse().map_err(|e| format!("{t}: {e}"))?;
        } else if let Some(rest) = t.strip_prefix("memory: ") {
            row.estimate_mib = rest
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("memory line: {t}"))?;
            row.peak_mib = rest
                .split("peak resident ")
                .nth(1)
                .and_then(|p| p.split(' ').next())
                .and_then(|n| n.parse().ok());
        } else if t.starts_with("stopped at") || t.starts_with("interrupted") {
            row.complete = false;
        } else if t == "end states:" {
            in_ends = true;
            continue;
        } else if t.starts_with("liveness:") {
            if t.ends_with("livelock") {
                row.outcomes.push("livelock".into());
            }
        } else if t.starts_with("safety invariant broken") {
            row.outcomes.push("invariant-violation".into());
        }
        // After "end states:", a line indented two spaces is a verdict and its count (its
        // decoded details are indented more); an unindented line ends the list.
        if !line.starts_with("  ") {
            in_ends = false;
        } else if in_ends && !line.starts_with("   ") {
            let mut w = t.split_whitespace();
            if let (Some(verdict), Some(count)) = (w.next(), w.next()) {
                row.outcomes.push(format!("{verdict} ({count})"));
            }
        }
    }
    if row.states == 0 {
        return Err("no counts line in explore's report".into());
    }
    Ok(row)
}

/// Runs the benchmark and prints its table.
pub fn explore_bench(args: &[String]) -> Result {
    let mut quick = false;
    let mut threads: Option<String> = None;
    let mut full = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--full" => full = true,
            "--threads" => threads = Some(it.next().ok_or("--threads needs a count")?.clone()),
            other => return Err(format!("explore-bench: unknown argument {other}")),
        }
    }
    let mut build = cmd("cargo");
    build.current_dir(root()).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "hugesept-host-kvm",
        "--bin",
        "hugesept",
    ]);
    super::run(build)?;
    let exe = root().join("target/release/hugesept");
    println!(
        "| world | states | transitions | time to verdict | states/s | estimate | peak resident | outcomes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    let mut failed = Vec::new();
    for &(world, slow) in WORLDS {
        if quick && slow {
            continue;
        }
        let mut c = Command::new(&exe);
        c.current_dir(root()).args([
            "explore",
            world,
            "--max-states",
            "200000000",
            "--max-memory",
            "16G",
            "--trace",
            "/dev/null",
        ]);
        if let Some(n) = &threads {
            c.args(["--threads", n]);
        }
        if full {
            c.arg("--full");
        }
        let t0 = Instant::now();
        let out = c.output().map_err(|e| format!("{}: {e}", exe.display()))?;
        let wall = t0.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&out.stdout);
        let row = match parse(&text) {
            Ok(r) => r,
            Err(e) => {
                failed.push(format!("{world}: {e}"));
                continue;
            }
        };
        if !row.complete {
            failed.push(format!("{world}: the exploration was partial"));
        }
        let name = world
            .trim_start_matches("scenarios/")
            .trim_end_matches(".toml");
        println!(
            "| {name} | {} | {} | {wall:.2} s | {:.0} k | {:.0} MiB | {} | {} |",
            row.states,
            row.transitions,
            row.states as f64 / row.seconds.max(1e-9) / 1e3,
            row.estimate_mib,
            row.peak_mib
                .map_or_else(|| "—".to_owned(), |p| format!("{p:.0} MiB")),
            row.outcomes.join(", ")
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_explores_report() {
        let text = "scenarios/x.toml: x — rfc-v1 on tdx-1.5\n  \
                    954928 distinct states, 3855480 transitions, depth 190, 1.089 s (877010 states/s)\n  \
                    memory: 136.3 MiB (149 bytes per state), peak resident 125.7 MiB\n\
                    end states:\n  \
                    guest-panic          18 (shortest run: 65 steps)\n      \
                    vCPU 0 (linux): panicked\n  \
                    ok                    4 (shortest run: 168 steps)\n\
                    liveness: an end is reachable from every state (no livelock under fair scheduling)\n";
        let row = parse(text).unwrap();
        assert_eq!(
            row,
            Row {
                states: 954_928,
                transitions: 3_855_480,
                seconds: 1.089,
                estimate_mib: 136.3,
                peak_mib: Some(125.7),
                outcomes: vec!["guest-panic (18)".into(), "ok (4)".into()],
                complete: true,
            }
        );
        let partial = text.replace(
            "end states:",
            "  stopped at --max-states 5: the exploration is partial\nend states:",
        );
        assert!(!parse(&partial).unwrap().complete);
        assert!(parse("nothing").is_err());
    }
}
