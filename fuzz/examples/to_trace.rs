//! Turns an `interleave` input (a crash artifact, a corpus file) into a hugesept trace that
//! `hugesept replay` prints: the input's world as a scenario file, the run's choices
//! (minimised to the fewest steps that end the same way; a livelock followed on round its
//! cycle, so replay can confirm it), checked by replaying it before it is written.
//!
//! `cargo run --example to_trace -- INPUT [OUT]` (OUT defaults to INPUT.trace.toml);
//! `cargo xtask fuzz` runs it on every crash of the target.

use std::process::ExitCode;

use hugesept_core::world::{Choice, MAX_CHOICES, Metrics, RandomScheduler, ScheduleError, Verdict};
use hugesept_fuzz::interleave::{self, Spec};
use hugesept_host_kvm::cli::replay::{Options, replay};
use hugesept_host_kvm::cycle::{self, Followed};
use hugesept_host_kvm::scenario::{self, BUDGET_EXHAUSTED, VIOLATION};
use hugesept_host_kvm::trace::{Claim, Trace};

/// The trace of `spec`'s run, and what replaying it reproduced.
pub fn trace_of(spec: &Spec) -> Result<(Trace, Claim), String> {
    let run = interleave::run(spec)?;
    let text = spec.scenario_text();
    let sc = scenario::parse(&text).map_err(|e| format!("the generated scenario: {e}"))?;
    let start = sc
        .world()
        .map_err(|e| format!("the generated scenario's world: {e}"))?;
    let outcome = match &run.outcome {
        Ok(v) => v.name(),
        Err(ScheduleError::Invariant { .. }) => VIOLATION,
        Err(ScheduleError::BudgetExhausted { .. }) => BUDGET_EXHAUSTED,
        Err(e) => return Err(format!("the run ended in a model error: {e:?}")),
    };
    let mut choices = run.choices.clone();
    let mut cycle_at = None;
    if run.outcome == Ok(Verdict::Livelock) {
        // Where the run stopped, then on round the cycle it goes round.
        let mut w = start.clone();
        let mut m = Metrics::default();
        for (i, c) in choices.iter().enumerate() {
            let mut enabled = [Choice::Vcpu(0); MAX_CHOICES];
            let n = w.enabled(&mut enabled);
            if !enabled.get(..n).is_some_and(|e| e.contains(c)) {
                return Err(format!(
                    "choice {i} ({c}) is not enabled in the scenario's world"
                ));
            }
            w.step(*c, &mut m).map_err(|e| e.to_string())?;
        }
        match cycle::follow(&w, &mut RandomScheduler::new(1), 10_000).map_err(|e| e.to_string())? {
            Followed::Cycle(c) => {
                cycle_at = Some(choices.len() + c.start);
                choices.extend(c.tail);
            }
            Followed::Stuck { tail } => choices.extend(tail),
            Followed::NoCycle => {}
        }
    } else if outcome != BUDGET_EXHAUSTED {
        choices = hugesept_host_kvm::minimise::minimise(&start, &choices, outcome);
    }
    let mut t = Trace::new(&text, "fuzz interleave".into(), &choices, Verdict::Ok);
    t.verdict = outcome.into();
    t.cycle = cycle_at;
    let claim = replay(
        &t,
        Options {
            last: Some(0),
            brief: true,
            confirm_states: 100_000,
        },
        &mut std::io::sink(),
    )
    .map_err(|e| format!("the trace does not replay: {e}"))?;
    Ok((t, claim))
}

#[allow(dead_code)]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(input) = args.first() else {
        eprintln!("usage: to_trace INPUT [OUT]");
        return ExitCode::from(2);
    };
    let out = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| format!("{input}.trace.toml"));
    let data = match std::fs::read(input) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let spec = Spec::decode(&data);
    match trace_of(&spec) {
        Ok((t, claim)) => {
            if let Err(e) = std::fs::write(&out, t.to_toml()) {
                eprintln!("{out}: {e}");
                return ExitCode::FAILURE;
            }
            println!(
                "{out}: {} steps, replay reproduces {} (hugesept replay {out})",
                t.choice_list().map_or(0, |c| c.len()),
                claim.name()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{input}: {e}");
            ExitCode::FAILURE
        }
    }
}
