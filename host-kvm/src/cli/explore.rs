//! `hugesept explore SCENARIO`: every interleaving, exhaustively, with state hashing; the first
//! safety violation with a shortest trace; the reachable verdicts; liveness on the explored
//! graph.

use std::io::Write;
use std::path::PathBuf;

use hugesept_core::world::{Choice, Metrics, RandomScheduler, Verdict};

use crate::cycle::Followed;
use crate::explore::{self, Bounds, Stop};
use crate::scenario;
use crate::trace::Trace;

use super::CliError;

/// Options of `explore`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The scenario file.
    scenario: PathBuf,
    /// Distinct states to explore at most.
    #[arg(long, default_value_t = 2_000_000)]
    max_states: usize,
    /// Memory the exploration may hold, in bytes (K, M, G: KiB, MiB, GiB), by its estimate
    /// of its state table, graph and copies of the world; past it the exploration stops,
    /// partial. Default: half the memory /proc/meminfo reports available, at most 1.5 GiB
    /// (1 GiB when it cannot be read): the default --max-states takes a few hundred MiB, so
    /// the bound stops only a search that --max-states was raised for, before it crowds out
    /// the rest of the machine.
    #[arg(long, value_parser = parse_bytes)]
    max_memory: Option<u64>,
    /// Where to save the shortest trace of the worst outcome found (default:
    /// `<scenario>.explore.trace.toml` in the current directory); given, the shortest trace
    /// to an ok end is saved there when nothing worse was found.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Threads to search on, 1 to 256 (default: every core this process may run on). A
    /// complete exploration reports the same counts and verdicts on any number.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// Search every enabled choice at every state, without the partial-order reduction: the
    /// fewest steps in every trace, and exact counts of every kind of end state.
    #[arg(long)]
    full: bool,
    /// Explore the scenario twice, reduced and in full, and fail unless both are complete and
    /// agree on what the reduction keeps: whether an invariant breaks, the verdicts reached,
    /// the end states where every vCPU finished and the shortest run to each, and whether
    /// some state cannot end.
    #[arg(long, conflicts_with = "full")]
    verify_reduction: bool,
}

/// The default memory bound when /proc/meminfo cannot tell: 1 GiB.
const FALLBACK_MEMORY: u64 = 1 << 30;

/// The default memory bound is at most this: 1.5 GiB (the estimate counts reserved capacity,
/// so a process at the bound stays well below 2 GiB resident).
const DEFAULT_MEMORY_CAP: u64 = 3 << 29;

/// Parses a byte count: digits, then optionally K, M or G (KiB, MiB, GiB; `KiB`, `MB` and
/// lower case are read the same).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("'{s}': expected bytes, as 512M or 2G")),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{s}': expected bytes, as 512M or 2G"))?;
    let bytes = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("'{s}': too large"))?;
    if bytes == 0 {
        return Err(format!("'{s}': the bound must be more than 0 bytes"));
    }
    Ok(bytes)
}

/// `MemAvailable` of a /proc/meminfo text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let mut words = line.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// The default memory bound for a machine whose /proc/meminfo reads `meminfo`: half of what
/// is available, at most [`DEFAULT_MEMORY_CAP`]; [`FALLBACK_MEMORY`] without it.
fn default_memory(meminfo: Option<&str>) -> u64 {
    meminfo
        .and_then(mem_available)
        .map_or(FALLBACK_MEMORY, |available| {
            (available / 2).min(DEFAULT_MEMORY_CAP)
        })
}

/// Steps a livelock trace may follow the run on from the state it enters, looking for the
/// cycle it goes round.
const LIVELOCK_TAIL: u32 = 100_000;

/// The peak resident set in KiB from the text of /proc/self/status (its `VmHWM` line).
fn peak_resident(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What a partial exploration left, and what ten times its states would cost at the rate
/// and memory per state it ran at (a world with fewer states ends sooner).
fn left_text(ex: &explore::Exploration, secs: f64) -> String {
    let states = ex.states.max(1) as f64;
    let more = 10.0 * states;
    format!(
        "left: {} choices on the search path and states not yet searched from (each at least \
         one more transition); ten times the states ({:.0}) would take about {:.0} s and \
         {:.0} MiB at this run's rate and bytes per state",
        ex.pending,
        more,
        secs / states * more,
        ex.memory as f64 / states * more / f64::from(1 << 20)
    )
}

/// Runs `search` with a progress bar towards `max_states` (states found, depth) and gives its
/// result with the seconds it took.
fn searching<T>(
    path: &str,
    max_states: usize,
    search: impl FnOnce(&mut dyn FnMut(usize, usize)) -> Result<T, hugesept_core::kvm::KvmError>,
) -> Result<(T, f64), CliError> {
    let bar = super::progress_to_bound(max_states as u64, "states");
    let t0 = std::time::Instant::now();
    let found = search(&mut |states, depth| {
        bar.set_position(states as u64);
        bar.set_message(format!("depth {depth}"));
    })
    .map_err(|e| CliError::Usage(format!("{path}: model error: {e}")))?;
    bar.finish_and_clear();
    Ok((found, t0.elapsed().as_secs_f64()))
}

/// `explore --verify-reduction`: both searches, their sizes and times, and where they
/// disagree (an error when they do, or when either is partial).
fn verify(
    path: &str,
    sc: &scenario::Scenario,
    start: &scenario::ScenarioWorld,
    bounds: Bounds,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let io = CliError::Io;
    let (check, secs) = searching(path, bounds.max_states, |progress| {
        explore::verify_reduction(start, bounds, progress)
    })?;
    writeln!(out, "{path}: {} — {} on {}", sc.name, sc.policy, sc.profile).map_err(io)?;
    for (what, ex) in [("full", &check.full), ("reduced", &check.reduced)] {
        let ends: Vec<String> = ex.ends.iter().map(|(v, n)| format!("{v} {n}")).collect();
        writeln!(
            out,
            "  {what:<8} {} states, {} transitions, ends: {}{}{}",
            ex.states,
            ex.transitions,
            if ends.is_empty() {
                "none".to_string()
            } else {
                ends.join(", ")
            },
            if ex.violation.is_some() {
                ", an invariant breaks"
            } else {
                ""
            },
            if ex.livelock_states > 0 {
                ", livelock"
            } else {
                ""
            },
        )
        .map_err(io)?;
    }
    if check.full.stopped == Some(Stop::Interrupted)
        || check.reduced.stopped == Some(Stop::Interrupted)
    {
        return Err(CliError::Interrupted);
    }
    if !check.complete() {
        return Err(CliError::Unexpected(format!(
            "{path}: a search hit its bounds; the reduction can be checked only on a world \
             both explore completely"
        )));
    }
    if !check.disagreements.is_empty() {
        return Err(CliError::Unexpected(format!(
            "{path}: the reduced search disagrees with the full one: {}",
            check.disagreements.join("; ")
        )));
    }
    writeln!(
        out,
        "reduction verified: it keeps the verdicts reached, the ends where every vCPU finished and liveness, with {:.1}% \
         of the states ({secs:.2} s for both)",
        100.0 * check.reduced.states as f64 / check.full.states.max(1) as f64
    )
    .map_err(io)?;
    Ok(())
}

/// Runs `explore`.
pub fn run(args: &Args, out: &mut impl Write) -> Result<(), CliError> {
    let io = CliError::Io;
    let path = args.scenario.display().to_string();
    let (text, sc) = super::sim::load(&args.scenario)?;
    let start = sc
        .world()
        .map_err(|e| CliError::Scenario(path.clone(), e))?;
    if let Some(file) = &args.trace {
        super::check_output_path(file)?;
    }
    let max_memory = args.max_memory.unwrap_or_else(|| {
        default_memory(std::fs::read_to_string("/proc/meminfo").ok().as_deref())
    });
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        usize::from,
    );
    super::interrupt::install()?;
    let bounds = Bounds {
        max_states: args.max_states.max(1),
        max_memory: usize::try_from(max_memory).unwrap_or(usize::MAX),
        stop: Some(super::interrupt::interrupted),
        threads,
        reduce: !args.full,
        ..Bounds::default()
    };
    if args.verify_reduction {
        return verify(&path, &sc, &start, bounds, out);
    }
    let (ex, secs) = searching(&path, bounds.max_states, |progress| {
        explore::explore(&start, bounds, progress)
    })?;
    writeln!(out, "{path}: {} — {} on {}", sc.name, sc.policy, sc.profile).map_err(io)?;
    writeln!(
        out,
        "  {} distinct states, {} transitions, depth {}, {secs:.3} s ({:.0} states/s, {threads} \
         thread{}, {})",
        ex.states,
        ex.transitions,
        ex.depth,
        ex.states as f64 / secs.max(1e-9),
        if threads == 1 { "" } else { "s" },
        if args.full {
            "every interleaving"
        } else {
            "partial-order reduced"
        }
    )
    .map_err(io)?;
    // The process's peak resident memory, where Linux reports it.
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| peak_resident(&s))
        .map(|kib| format!(", peak resident {:.1} MiB", kib as f64 / 1024.0))
        .unwrap_or_default();
    writeln!(
        out,
        "  memory: {:.1} MiB ({} bytes per state){peak}",
        ex.memory as f64 / f64::from(1 << 20),
        ex.memory / ex.states.max(1)
    )
    .map_err(io)?;
    // The bound that cut the exploration short, as the command line names it.
    let bound = match ex.stopped {
        Some(Stop::MaxStates) => format!("--max-states {}", args.max_states),
        Some(Stop::MaxMemory) => format!("--max-memory {}", super::human_bytes(max_memory)),
        Some(Stop::Interrupted) | None => String::new(),
    };
    match ex.stopped {
        Some(Stop::Interrupted) => writeln!(
            out,
            "  interrupted (Ctrl-C): the exploration is partial (no liveness verdict)"
        )
        .map_err(io)?,
        Some(_) => writeln!(
            out,
            "  stopped at {bound}: the exploration is partial (no liveness verdict); \
             raise the bound or shrink the world"
        )
        .map_err(io)?,
        None => {}
    }
    if ex.stopped.is_some() {
        writeln!(out, "  {}", left_text(&ex, secs)).map_err(io)?;
    }
    writeln!(out, "end states:").map_err(io)?;
    for (v, n) in &ex.ends {
        let path = ex.end_traces.get(v);
        let len = path.map_or(0, Vec::len);
        writeln!(out, "  {v:<14} {n:>8} (shortest run: {len} steps)").map_err(io)?;
        // What went wrong at the end of the shortest run, decoded.
        if *v != Verdict::Ok.name()
            && let Some(p) = path
        {
            for line in end_text(&start, p)? {
                writeln!(out, "      {line}").map_err(io)?;
            }
        }
    }
    if let Some((v, p)) = &ex.violation {
        writeln!(
            out,
            "safety invariant broken: {v}, after {} steps (shortest)",
            p.len()
        )
        .map_err(io)?;
    } else if !ex.bounded {
        if ex.livelock_states == 0 {
            writeln!(
                out,
                "liveness: an end is reachable from every state (no livelock under fair scheduling)"
            )
            .map_err(io)?;
        } else {
            writeln!(
                out,
                "liveness: {} states from which no end is reachable: livelock",
                ex.livelock_states
            )
            .map_err(io)?;
        }
    }
    let worst = explore::worst(&ex);
    if worst.is_none()
        && let Some(file) = &args.trace
    {
        // Nothing went wrong; the trace asked for is the shortest run to an ok end.
        match ex.end_traces.get(Verdict::Ok.name()) {
            Some(choices) => {
                let t = Trace::new(&text, "explore, shortest".into(), choices, Verdict::Ok);
                super::write_output(file, t.to_toml())?;
                writeln!(
                    out,
                    "no outcome worse than ok; shortest trace to an ok end saved to {} \
                     (hugesept replay {})",
                    file.display(),
                    file.display()
                )
                .map_err(io)?;
            }
            None => writeln!(
                out,
                "no end state reached: no trace to save to {}",
                file.display()
            )
            .map_err(io)?,
        }
    }
    if let Some(w) = worst {
        let mut choices = match w {
            scenario::VIOLATION => ex.violation.as_ref().map(|(_, p)| p.clone()),
            "livelock" => ex.livelock_trace.clone(),
            v => ex.end_traces.get(v).cloned(),
        }
        .unwrap_or_default();
        // The shortest path is minimal in length; a partial search's may not be: the fewest of
        // its steps that end the same way (livelock traces are kept, and extended to a cycle).
        choices = crate::minimise::minimise(&start, &choices, w);
        let cycle = if w == "livelock" {
            extend_livelock(&start, &mut choices)?
        } else {
            None
        };
        let mut t = Trace::new(&text, "explore, shortest".into(), &choices, Verdict::Ok);
        t.verdict = w.into();
        t.cycle = cycle;
        let file = super::trace_path(args.trace.as_deref(), &args.scenario, ".explore.trace.toml");
        super::write_output(&file, t.to_toml())?;
        writeln!(
            out,
            "worst outcome: {w}; shortest trace saved to {} (hugesept replay {})",
            file.display(),
            file.display()
        )
        .map_err(io)?;
    }
    if ex.stopped == Some(Stop::Interrupted) {
        return Err(CliError::Interrupted);
    }
    // Every reachable outcome must be the one the scenario expects.
    if let Some(e) = sc.expect {
        let mut found: Vec<&str> = ex.ends.keys().copied().collect();
        if ex.livelock_states > 0 {
            found.push(Verdict::Livelock.name());
        }
        if ex.violation.is_some() {
            found.push(scenario::VIOLATION);
        }
        // An outcome found is reachable however far the search got; only "nothing else"
        // needs the whole graph.
        if found.iter().any(|f| *f != e.name()) {
            return Err(CliError::Unexpected(format!(
                "{path}: expected only {}; reachable: {}{}",
                e.name(),
                found.join(", "),
                if ex.bounded {
                    format!(" (and maybe more: the exploration hit {bound})")
                } else {
                    String::new()
                }
            )));
        }
        if ex.bounded {
            return Err(CliError::Unexpected(format!(
                "{path}: the exploration hit {bound}; it cannot confirm `expect = \"{}\"`",
                e.name()
            )));
        }
        writeln!(out, "as expected: every reachable outcome is {}", e.name()).map_err(io)?;
    }
    Ok(())
}

/// The end of the run along `choices` from `start`: each vCPU that did not finish with its
/// markers intact, and how it ended.
fn end_text(
    start: &crate::scenario::ScenarioWorld,
    choices: &[Choice],
) -> Result<Vec<String>, CliError> {
    use hugesept_core::guest::GuestEnd;
    use hugesept_core::world::VcpuState;
    let mut w = start.clone();
    let mut m = Metrics::default();
    for &c in choices {
        w.step(c, &mut m)
            .map_err(|e| CliError::Usage(format!("model error: {e}")))?;
    }
    Ok(w.vcpus()
        .enumerate()
        .filter_map(|(i, v)| {
            let how = match v.state() {
                VcpuState::Finished(GuestEnd::Done) => return None,
                VcpuState::Finished(e) => e.to_string(),
                VcpuState::Stopped(e) => format!("stopped: {e}"),
                _ => return None,
            };
            Some(format!("vCPU {i} ({}): {how}", v.guest().kind()))
        })
        .collect())
}

/// Follows the path `choices` into a state from which no end is reachable on (seeded
/// random choices) until it goes round a cycle, appending the steps; where the cycle starts.
fn extend_livelock(
    start: &crate::scenario::ScenarioWorld,
    choices: &mut Vec<Choice>,
) -> Result<Option<usize>, CliError> {
    let model = |e: hugesept_core::kvm::KvmError| CliError::Usage(format!("model error: {e}"));
    let mut w = start.clone();
    let mut m = Metrics::default();
    for &c in choices.iter() {
        w.step(c, &mut m).map_err(model)?;
    }
    let followed =
        crate::cycle::follow(&w, &mut RandomScheduler::new(1), LIVELOCK_TAIL).map_err(model)?;
    Ok(match followed {
        Followed::Cycle(c) => {
            let at = choices.len() + c.start;
            choices.extend(c.tail);
            Some(at)
        }
        Followed::Stuck { tail } => {
            choices.extend(tail);
            None
        }
        Followed::NoCycle => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("8K"), Ok(8 << 10));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        assert_eq!(parse_bytes("3 GB"), Ok(3 << 30));
        for bad in ["", "M", "12X", "-1", "1.5G", "0", "0K", "99999999999G"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_default_memory_bound_is_half_the_available_memory_capped() {
        let meminfo = |kb: u64| format!("MemTotal: 99 kB\nMemFree: 1 kB\nMemAvailable: {kb} kB\n");
        assert_eq!(default_memory(Some(&meminfo(1 << 20))), 512 << 20);
        assert_eq!(default_memory(Some(&meminfo(20 << 20))), DEFAULT_MEMORY_CAP);
        assert_eq!(default_memory(Some("MemTotal: 1 kB\n")), FALLBACK_MEMORY);
        assert_eq!(
            default_memory(Some("MemAvailable: lots\n")),
            FALLBACK_MEMORY
        );
        assert_eq!(default_memory(None), FALLBACK_MEMORY);
    }

    #[test]
    fn the_peak_resident_set_is_read_from_vmhwm() {
        let status = "Name:\thugesept\nVmPeak:\t  99 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(peak_resident(status), Some(12345));
        assert_eq!(peak_resident("VmRSS: 1 kB\n"), None);
        assert_eq!(peak_resident("VmHWM: many kB\n"), None);
    }
}
