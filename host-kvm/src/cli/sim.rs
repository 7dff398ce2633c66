//! `hugesept sim`: a scenario under many seeded schedules; verdict counts and metrics.

use std::io::Write;
use std::path::PathBuf;

use crate::scenario;

use super::CliError;

/// Options of `sim`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The scenario file.
    scenario: PathBuf,
    /// Schedules to run (default: the scenario's `schedules`).
    #[arg(long)]
    runs: Option<u32>,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Runs `sim`.
pub fn run(args: &Args, out: &mut impl Write) -> Result<(), CliError> {
    let path = args.scenario.display().to_string();
    let text = std::fs::read_to_string(&args.scenario).map_err(|e| {
        CliError::Scenario(path.clone(), scenario::ScenarioError::Syntax(e.to_string()))
    })?;
    let sc = scenario::parse(&text).map_err(|e| CliError::Scenario(path.clone(), e))?;
    let runs = args.runs.unwrap_or(sc.schedules);
    let sum =
        scenario::run(&sc, args.seed, runs).map_err(|e| CliError::Scenario(path.clone(), e))?;
    let io = CliError::Io;
    writeln!(
        out,
        "{}: {} under {} on {}, {runs} schedules from seed {} ({} steps)",
        path, sc.name, sc.policy, sc.profile, args.seed, sum.steps
    )
    .map_err(io)?;
    for (v, n) in &sum.verdicts {
        writeln!(out, "  {v:<12} {n}").map_err(io)?;
    }
    let m = sum.metrics;
    writeln!(
        out,
        "  metrics: {} TDCALLs ({} succeeded, {} failed), {} exits with accept info, {} without, \
         {} TD entries without progress, {} faults ({} local retries, {} spurious, {} fixed), \
         {} write locks, {} SEAMCALLs in faults ({} BUSY), {} demotions, {} kicks",
        m.tdcalls,
        m.accept_success,
        m.accept_failed,
        m.exits_accept,
        m.exits_other,
        m.entries_without_progress,
        m.fault.faults,
        m.fault.local_retries,
        m.fault.spurious,
        m.fault.fixed,
        m.fault.write_locks,
        m.fault.seamcalls,
        m.fault.seamcall_busy,
        m.fault.demotions + m.host_demotions,
        m.kicks
    )
    .map_err(io)?;
    match (sc.expect, sum.first_unexpected) {
        (Some(e), Some((seed, got))) => Err(CliError::Unexpected(format!(
            "{path}: expected {} in every schedule; seed {seed} ended in {got}",
            e.name()
        ))),
        (Some(e), None) => {
            writeln!(out, "  as expected: {}", e.name()).map_err(io)?;
            Ok(())
        }
        (None, _) => Ok(()),
    }
}
