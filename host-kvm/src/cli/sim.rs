//! `hugesept sim`: a scenario under many seeded schedules — outcome counts, the distribution
//! of each metric over the runs that ended (the 2M coverage of the private memory mapped at
//! the end among them; runs that exhausted their step budget are counted apart), and the
//! first failing run (or, asked for, the first run) saved as a trace, recorded as it ran.

use std::io::Write;
use std::path::PathBuf;

use crate::scenario::{self, RunStats, SchedulerKind};
use crate::trace;

use super::CliError;
use crate::scenario::METRIC_ROWS;

/// Options of `sim`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The scenario file.
    scenario: PathBuf,
    /// Schedules to run, 1 to 1,000,000 (default: the scenario's `schedules`).
    #[arg(long)]
    runs: Option<u32>,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How schedules pick the next choice (default: the scenario's `scheduler`).
    #[arg(long, value_enum)]
    scheduler: Option<SchedulerArg>,
    /// PCT's bug depth (change points + 1).
    #[arg(long, default_value_t = 3)]
    depth: u8,
    /// Where to save the trace of the first run that did not end as expected, or not ok
    /// (default: `<scenario>.trace.toml` in the current directory); given, the first run's
    /// trace is saved there even when every run ended ok.
    #[arg(long)]
    trace: Option<PathBuf>,
}

/// Schedulers the command line offers.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchedulerArg {
    /// Uniform among the enabled choices.
    Random,
    /// Probabilistic concurrency testing (random priorities, `--depth` - 1 change points).
    Pct,
    /// The scenario's fixed actor `order` (one schedule: every seed runs the same).
    Priority,
}

/// The most schedules one `sim` runs (each keeps its numbers for the percentiles).
pub const MAX_RUNS: u32 = 1_000_000;

/// Reads and parses a scenario file; its warnings go to stderr.
pub(crate) fn load(path: &PathBuf) -> Result<(String, scenario::Scenario), CliError> {
    let name = path.display().to_string();
    let text = super::read_input(path, "scenario", super::SCENARIO_CAP)?;
    let sc = scenario::parse(&text).map_err(|e| CliError::Scenario(name.clone(), e))?;
    for w in &sc.warnings {
        eprintln!("warning: {name}: {w}");
    }
    Ok((text, sc))
}

/// A metric row: its name and how to read it off a run.
type Row = (&'static str, fn(&RunStats) -> u64);

/// min, median, 90th percentile and max of `values`.
fn spread<T: Copy + Default + PartialOrd>(mut values: Vec<T>) -> (T, T, T, T) {
    values.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let at = |q: usize| {
        values
            .get((values.len().saturating_sub(1)) * q / 100)
            .copied()
    };
    (
        at(0).unwrap_or_default(),
        at(50).unwrap_or_default(),
        at(90).unwrap_or_default(),
        values.last().copied().unwrap_or_default(),
    )
}

/// Runs `sim`.
pub fn run(args: &Args, out: &mut impl Write) -> Result<(), CliError> {
    let path = args.scenario.display().to_string();
    let (text, mut sc) = load(&args.scenario)?;
    match args.scheduler {
        Some(SchedulerArg::Random) => sc.scheduler = SchedulerKind::Random,
        Some(SchedulerArg::Pct) => {
            if !(1..=9).contains(&args.depth) {
                return Err(CliError::Usage(format!(
                    "--depth {}: PCT's depth is 1 to 9",
                    args.depth
                )));
            }
            sc.scheduler = SchedulerKind::Pct(args.depth);
        }
        Some(SchedulerArg::Priority) => sc.scheduler = SchedulerKind::Priority,
        None => {}
    }
    let runs = args.runs.unwrap_or(sc.schedules);
    if !(1..=MAX_RUNS).contains(&runs) {
        return Err(CliError::Usage(format!(
            "--runs {runs}: sim runs 1 to {MAX_RUNS} schedules (continue from another --seed \
             for more)"
        )));
    }
    // Ctrl-C ends the runs at the next look; what ran is printed, and the exit says so.
    super::interrupt::install()?;
    let bar = super::progress(u64::from(runs), "schedules");
    let started = std::time::Instant::now();
    let sum = scenario::run_with(
        &sc,
        args.seed,
        runs,
        args.trace.is_some(),
        &|| bar.inc(1),
        &super::interrupt::interrupted,
    )
    .map_err(|e| CliError::Scenario(path.clone(), e))?;
    bar.finish_and_clear();
    let done = u32::try_from(sum.runs.len()).unwrap_or(u32::MAX);
    let interrupted = done != runs && super::interrupt::interrupted();
    if done != runs && !interrupted {
        return Err(CliError::Unexpected(format!(
            "{path}: {done} of {runs} schedules ran"
        )));
    }
    let secs = started.elapsed().as_secs_f64();
    let io = CliError::Io;
    if interrupted {
        writeln!(
            out,
            "interrupted (Ctrl-C) after {done} of {runs} schedules: the numbers are theirs"
        )
        .map_err(io)?;
    }
    writeln!(
        out,
        "{path}: {} — {} on {}, {done} {} schedules from seed {}",
        sc.name,
        sc.policy,
        sc.profile,
        sc.scheduler.name(),
        args.seed
    )
    .map_err(io)?;
    writeln!(
        out,
        "  {} steps in {secs:.2} s ({:.0} steps/s)",
        sum.steps,
        sum.steps as f64 / secs.max(1e-9)
    )
    .map_err(io)?;
    writeln!(out, "outcomes:").map_err(io)?;
    for (v, n) in &sum.verdicts {
        writeln!(out, "  {v:<20} {n}").map_err(io)?;
    }
    let ended: Vec<&RunStats> = sum.runs.iter().filter(|r| r.ended()).collect();
    let unfinished = sum.runs.len() - ended.len();
    if unfinished > 0 {
        writeln!(
            out,
            "  ({unfinished} run(s) used their whole budget of {} steps without ending and \
             without {} steps in a row without progress: no verdict, left out of the numbers \
             below; raise `steps`)",
            sc.steps, sc.patience
        )
        .map_err(io)?;
    }
    writeln!(
        out,
        "per run that ended ({}):      min   median      p90      max",
        ended.len()
    )
    .map_err(io)?;
    let steps: Row = ("world steps", |r| r.steps);
    let (lo, med, p90, hi) = spread(ended.iter().map(|r| (steps.1)(r)).collect());
    writeln!(out, "  {:<24} {lo:>6} {med:>8} {p90:>8} {hi:>8}", steps.0).map_err(io)?;
    for (k, (name, _)) in METRIC_ROWS.iter().enumerate() {
        let (lo, med, p90, hi) = spread(
            ended
                .iter()
                .map(|r| r.counts.get(k).copied().unwrap_or(0))
                .collect(),
        );
        writeln!(out, "  {name:<24} {lo:>6} {med:>8} {p90:>8} {hi:>8}").map_err(io)?;
    }
    let (lo, med, p90, hi) = spread(ended.iter().map(|r| r.coverage_2m * 100.0).collect());
    writeln!(
        out,
        "  {:<24} {lo:>5.1}% {med:>7.1}% {p90:>7.1}% {hi:>7.1}%",
        "2M coverage at the end"
    )
    .map_err(io)?;
    // The first run that did not end as expected (or not ok); with `--trace` given, the first
    // run when every run ended ok. Its choices were recorded as it ran.
    if let Some(run) = &sum.traced {
        // A run that went wrong: the fewest of its steps that end the same way (replay
        // re-checks them). A run asked for as it is (ok) is kept whole.
        let mut run = run.clone();
        let recorded = run.choices.len();
        // (Minimising replays the world: the default-sized worlds only.)
        if run.outcome != hugesept_core::world::Verdict::Ok.name() && !sc.is_wide() {
            let start = sc
                .world()
                .map_err(|e| CliError::Scenario(path.clone(), e))?;
            run.choices = crate::minimise::minimise(&start, &run.choices, run.outcome);
        }
        let minimised = if run.choices.len() < recorded {
            format!(" (minimised from {recorded})")
        } else {
            String::new()
        };
        let run = &run;
        let mut t = trace::Trace::of_run(&text, &sc.scheduler.name(), run);
        if !minimised.is_empty() {
            t.schedule += ", minimised";
        }
        let file = super::trace_path(args.trace.as_deref(), &args.scenario, ".trace.toml");
        super::write_output(&file, t.to_toml())?;
        let cycle = match run.cycle {
            Some(k) => format!(
                ", ending in a cycle of {} steps from step {k}",
                run.choices.len() - k
            ),
            None => String::new(),
        };
        writeln!(
            out,
            "first run ending in {}: seed {}, {} steps{minimised}{cycle}; trace saved to {} \
             (hugesept replay {})",
            run.outcome,
            run.seed,
            run.choices.len(),
            file.display(),
            file.display()
        )
        .map_err(io)?;
    }
    if interrupted {
        return Err(CliError::Interrupted);
    }
    match (sc.expect, sum.first_unexpected) {
        (Some(e), Some((seed, got))) => Err(CliError::Unexpected(format!(
            "{path}: expected {} in every schedule; seed {seed} ended in {got}",
            e.name()
        ))),
        (Some(e), None) => {
            writeln!(out, "as expected: {}", e.name()).map_err(io)?;
            Ok(())
        }
        (None, _) => Ok(()),
    }
}
