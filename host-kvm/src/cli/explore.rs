//! `hugesept explore SCENARIO`: every interleaving, exhaustively, with state hashing; the first
//! safety violation with a shortest trace; the reachable verdicts; liveness on the explored
//! graph.

use std::io::Write;
use std::path::PathBuf;

use hugesept_core::world::{Choice, Metrics, RandomScheduler, Verdict};

use crate::cycle::Followed;
use crate::explore::{self, Bounds};
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
    /// Where to save the shortest trace of the worst outcome found (default:
    /// `<scenario>.explore.trace.toml` in the current directory); given, the shortest trace
    /// to an ok end is saved there when nothing worse was found.
    #[arg(long)]
    trace: Option<PathBuf>,
}

/// Steps a livelock trace may follow the run on from the state it enters, looking for the
/// cycle it goes round.
const LIVELOCK_TAIL: u32 = 100_000;

/// Runs `explore`.
pub fn run(args: &Args, out: &mut impl Write) -> Result<(), CliError> {
    let io = CliError::Io;
    let path = args.scenario.display().to_string();
    let (text, sc) = super::sim::load(&args.scenario)?;
    let start = sc
        .world()
        .map_err(|e| CliError::Scenario(path.clone(), e))?;
    let bar = super::progress_spinner("states");
    let t0 = std::time::Instant::now();
    let ex = explore::explore(
        &start,
        Bounds {
            max_states: args.max_states.max(1),
            ..Bounds::default()
        },
        &mut |states, depth| {
            bar.set_position(states as u64);
            bar.set_message(format!("depth {depth}"));
        },
    )
    .map_err(|e| CliError::Usage(format!("{path}: model error: {e}")))?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    writeln!(out, "{path}: {} — {} on {}", sc.name, sc.policy, sc.profile).map_err(io)?;
    writeln!(
        out,
        "  {} distinct states, {} transitions, depth {}, {secs:.3} s ({:.0} states/s)",
        ex.states,
        ex.transitions,
        ex.depth,
        ex.states as f64 / secs.max(1e-9)
    )
    .map_err(io)?;
    if ex.bounded {
        writeln!(
            out,
            "  stopped at --max-states {}: the exploration is partial (no liveness verdict); \
             raise the bound or shrink the world",
            args.max_states
        )
        .map_err(io)?;
    }
    writeln!(out, "end states:").map_err(io)?;
    for (v, n) in &ex.ends {
        let len = ex.end_traces.get(v).map_or(0, Vec::len);
        writeln!(out, "  {v:<14} {n:>8} (shortest run: {len} steps)").map_err(io)?;
    }
    if let Some((v, p)) = &ex.violation {
        writeln!(
            out,
            "safety invariant broken: {v:?}, after {} steps (shortest)",
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
                std::fs::write(file, t.to_toml()).map_err(io)?;
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
        let cycle = if w == "livelock" {
            extend_livelock(&start, &mut choices)?
        } else {
            None
        };
        let mut t = Trace::new(&text, "explore, shortest".into(), &choices, Verdict::Ok);
        t.verdict = w.into();
        t.cycle = cycle;
        let file = args.trace.clone().unwrap_or_else(|| {
            let stem = args
                .scenario
                .file_stem()
                .map_or("scenario".into(), |s| s.to_string_lossy().into_owned());
            PathBuf::from(format!("{stem}.explore.trace.toml"))
        });
        std::fs::write(&file, t.to_toml()).map_err(io)?;
        writeln!(
            out,
            "worst outcome: {w}; shortest trace saved to {} (hugesept replay {})",
            file.display(),
            file.display()
        )
        .map_err(io)?;
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
                    " (and maybe more: the exploration hit --max-states)"
                } else {
                    ""
                }
            )));
        }
        if ex.bounded {
            return Err(CliError::Unexpected(format!(
                "{path}: the exploration hit --max-states; it cannot confirm `expect = \"{}\"`",
                e.name()
            )));
        }
        writeln!(out, "as expected: every reachable outcome is {}", e.name()).map_err(io)?;
    }
    Ok(())
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
