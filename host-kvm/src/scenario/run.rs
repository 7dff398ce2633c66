//! Running a scenario under seeded schedules: each run's outcome (a verdict, a broken
//! invariant, or an exhausted step budget) and numbers, and the choices of the run a trace
//! will show, recorded while it runs; a livelocked run is followed on to the cycle it goes
//! round ([`crate::cycle`]), so its trace carries the evidence.

use std::collections::BTreeMap;

use hugesept_core::world::{Choice, Metrics, ScheduleError, Stepped, Verdict};

use hugesept_core::sept::{MAX_IN_FLIGHT, MAX_SLOTS};
use hugesept_core::world::{LAZY_WORDS, MAX_VCPUS, MAX_WORLD_VCPUS};

use super::{Scenario, ScenarioError, ScenarioWorld, VIOLATION, WIDE_LAZY_WORDS};
use crate::cycle::{self, Fingerprinted, Followed};

/// The outcome name of a run that used its whole step budget while still making progress
/// ([`ScheduleError::BudgetExhausted`]): no verdict.
pub const BUDGET_EXHAUSTED: &str = "budget-exhausted";

/// The outcome name of a schedule's result: its verdict's name, [`VIOLATION`] or
/// [`BUDGET_EXHAUSTED`]; a model error is an error.
pub fn outcome_name(r: &Result<Verdict, ScheduleError>) -> Result<&'static str, String> {
    match r {
        Ok(v) => Ok(v.name()),
        Err(ScheduleError::Invariant { .. }) => Ok(VIOLATION),
        Err(ScheduleError::BudgetExhausted { .. }) => Ok(BUDGET_EXHAUSTED),
        Err(ScheduleError::Model(e)) => Err(e.to_string()),
        Err(ScheduleError::Stopped { steps }) => Err(format!("stopped after {steps} steps")),
    }
}

/// Steps between two looks at the stop request inside a schedule.
const STOP_EVERY: u32 = 4096;

/// The observer of [`run_with`]'s schedules: records the choices and stops the schedule when
/// asked (looking every [`STOP_EVERY`] steps).
struct Recorder<'a> {
    choices: &'a mut Vec<Choice>,
    stop: &'a dyn Fn() -> bool,
    countdown: u32,
}

impl<W> hugesept_core::world::Observer<W> for Recorder<'_> {
    fn stepped(&mut self, _n: u32, choice: Choice, _s: Stepped, _before: &W, _after: &W) {
        self.choices.push(choice);
    }

    fn keep_going(&mut self) -> bool {
        if self.countdown == 0 {
            self.countdown = STOP_EVERY;
            return !(self.stop)();
        }
        self.countdown -= 1;
        true
    }
}

/// A metric read off a run's metrics.
pub type MetricRow = (&'static str, fn(&Metrics) -> u64);

/// The metrics rows `sim` and `run` print (a run keeps these, [`RunStats::counts`], rather than
/// its whole metrics, whose per-vCPU counters have room for the widest world).
pub const METRIC_ROWS: [MetricRow; 15] = [
    ("ACCEPT TDCALLs", |m| u64::from(m.tdcalls)),
    ("TD exits", |m| {
        u64::from(m.exits_accept) + u64::from(m.exits_other)
    }),
    ("entries without progress", |m| {
        u64::from(m.entries_without_progress)
    }),
    ("local retries", |m| u64::from(m.fault.local_retries)),
    ("SEAMCALLs", |m| {
        u64::from(m.fault.seamcalls) + u64::from(m.host_seamcalls)
    }),
    ("SEAMCALL BUSY", |m| u64::from(m.fault.seamcall_busy)),
    ("write locks", |m| u64::from(m.fault.write_locks)),
    ("demotions", |m| {
        u64::from(m.fault.demotions) + u64::from(m.host_demotions)
    }),
    ("spurious faults", |m| u64::from(m.fault.spurious)),
    ("ACCEPT BUSY", |m| u64::from(m.accept_busy)),
    ("mmu_lock waits", |m| u64::from(m.fault.mmu_lock_waits)),
    ("split waits for guests", |m| u64::from(m.fault.split_waits)),
    ("busiest vCPU's steps", |m| u64::from(m.busiest_vcpu().0)),
    ("busiest vCPU's waits", |m| u64::from(m.busiest_vcpu().1)),
    ("most exits on one vCPU", |m| {
        u64::from(m.most_exits_on_one_vcpu())
    }),
];

/// One schedule's numbers.
#[derive(Debug, Clone, Copy)]
pub struct RunStats {
    /// Its outcome ([`outcome_name`]).
    pub outcome: &'static str,
    /// World steps.
    pub steps: u64,
    /// Its counters, [`METRIC_ROWS`] in order.
    pub counts: [u64; METRIC_ROWS.len()],
    /// Of the private memory mapped at its end, the share mapped at 2M ([`coverage_2m`]).
    pub coverage_2m: f64,
}

impl RunStats {
    /// Whether the run reached an end (a verdict or a broken invariant) rather than its step
    /// budget: costs are averaged over these only.
    pub fn ended(&self) -> bool {
        self.outcome != BUDGET_EXHAUSTED
    }
}

/// Of the private memory `w` maps in the mirror, the share mapped at 2M (0..1; 0 when nothing
/// is mapped).
pub fn coverage_2m<const V: usize, const F: usize, const L: usize>(
    w: &ScenarioWorld<V, F, L>,
) -> f64 {
    let (two_m, four_k) = w.mapping_histogram();
    let mapped = two_m.saturating_add(four_k);
    if mapped == 0 {
        0.0
    } else {
        two_m as f64 / mapped as f64
    }
}

/// A run recorded for its trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRun {
    /// Its seed.
    pub seed: u64,
    /// Its outcome ([`outcome_name`]).
    pub outcome: &'static str,
    /// Every choice it took; for a livelock, followed on round the cycle it is in.
    pub choices: Vec<Choice>,
    /// For a livelock: where in `choices` the cycle starts (the state after `choices[..k]`
    /// is the state after all of them), when one was found.
    pub cycle: Option<usize>,
}

/// What running a scenario under seeded schedules gave.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Schedules per outcome ([`outcome_name`]).
    pub verdicts: BTreeMap<&'static str, u32>,
    /// The first seed whose outcome differs from the expected one (or, with no expectation,
    /// is not ok).
    pub first_unexpected: Option<(u64, &'static str)>,
    /// The first seed whose outcome is not ok (expected or not).
    pub first_not_ok: Option<(u64, &'static str)>,
    /// Counters summed over all schedules.
    pub metrics: Metrics,
    /// Steps taken in all.
    pub steps: u64,
    /// Each schedule's numbers, in seed order.
    pub runs: Vec<RunStats>,
    /// The run to trace: the first unexpected one, else the first not ok, else (when asked
    /// for) the first.
    pub traced: Option<RecordedRun>,
}

/// Runs `scenario` under `schedules` seeds from `first_seed` (seeds wrap around at 2^64),
/// with its scheduler, recording the choices of the run to trace (the first run too when
/// `trace_first`); `tick` is called after each schedule. When `stop` answers true (it is
/// asked between schedules and every few thousand steps) the runs end: the schedule it
/// stopped is not counted, and `runs` holds fewer than `schedules`.
pub fn run_with(
    scenario: &Scenario,
    first_seed: u64,
    schedules: u32,
    trace_first: bool,
    tick: &dyn Fn(),
    stop: &dyn Fn() -> bool,
) -> Result<Summary, ScenarioError> {
    // The world size the scenario needs: each is its own instance of the same loop.
    let run: RunIn = if scenario.has_many_vcpus() {
        run_in::<MAX_WORLD_VCPUS, MAX_SLOTS, WIDE_LAZY_WORDS>
    } else if scenario.is_wide() {
        run_in::<MAX_VCPUS, MAX_IN_FLIGHT, WIDE_LAZY_WORDS>
    } else {
        run_in::<MAX_VCPUS, MAX_IN_FLIGHT, LAZY_WORDS>
    };
    run(scenario, first_seed, schedules, trace_first, tick, stop)
}

/// [`run_with`] at one world size.
type RunIn =
    fn(&Scenario, u64, u32, bool, &dyn Fn(), &dyn Fn() -> bool) -> Result<Summary, ScenarioError>;

/// [`run_with`] in a world with room for `V` vCPUs and `F` in-flight slots.
fn run_in<const V: usize, const F: usize, const L: usize>(
    scenario: &Scenario,
    first_seed: u64,
    schedules: u32,
    trace_first: bool,
    tick: &dyn Fn(),
    stop: &dyn Fn() -> bool,
) -> Result<Summary, ScenarioError>
where
    ScenarioWorld<V, F, L>: Fingerprinted,
{
    let start = scenario.world_sized::<V, F, L>()?;
    let mut sum = Summary::default();
    let expected = scenario.expect.unwrap_or(Verdict::Ok).name();
    let mut choices = Vec::new();
    // Which of the candidates `traced` holds: 0 the first run, 1 a not-ok one, 2 unexpected.
    let mut traced_rank = None;
    for k in 0..schedules {
        let seed = first_seed.wrapping_add(u64::from(k));
        let mut w = start.clone();
        let mut m = Metrics::default();
        let mut steps = 0;
        let mut scheduler = scenario.scheduler(seed);
        choices.clear();
        if stop() {
            break;
        }
        let r = w.advance_schedule(
            &mut scheduler,
            scenario.limits(),
            &mut m,
            &mut steps,
            Recorder {
                choices: &mut choices,
                stop,
                countdown: STOP_EVERY,
            },
        );
        if matches!(r, Err(ScheduleError::Stopped { .. })) {
            break;
        }
        let name =
            outcome_name(&r).map_err(|e| ScenarioError::Model(format!("seed {seed}: {e}")))?;
        *sum.verdicts.entry(name).or_default() += 1;
        let unexpected = sum.first_unexpected.is_none() && name != expected;
        let not_ok = sum.first_not_ok.is_none() && name != Verdict::Ok.name();
        if unexpected {
            sum.first_unexpected = Some((seed, name));
        }
        if not_ok {
            sum.first_not_ok = Some((seed, name));
        }
        let rank = if unexpected {
            Some(2)
        } else if not_ok {
            Some(1)
        } else if trace_first && k == 0 {
            Some(0)
        } else {
            None
        };
        if let Some(rank) = rank
            && traced_rank.is_none_or(|t| rank > t)
        {
            traced_rank = Some(rank);
            let mut recorded = RecordedRun {
                seed,
                outcome: name,
                choices: choices.clone(),
                cycle: None,
            };
            if r == Ok(Verdict::Livelock) {
                follow_livelock(scenario, &w, &mut scheduler, &mut recorded)?;
            }
            sum.traced = Some(recorded);
        }
        sum.metrics.add(&m);
        sum.steps += steps;
        sum.runs.push(RunStats {
            outcome: name,
            steps,
            counts: METRIC_ROWS.map(|(_, f)| f(&m)),
            coverage_2m: coverage_2m(&w),
        });
        tick();
    }
    Ok(sum)
}

/// Follows the livelocked run that stopped in `w` on with its own scheduler until it goes
/// round a cycle (or is stuck), and adds what it took to `run`.
fn follow_livelock<const V: usize, const F: usize, const L: usize>(
    scenario: &Scenario,
    w: &ScenarioWorld<V, F, L>,
    scheduler: &mut super::AnyScheduler,
    run: &mut RecordedRun,
) -> Result<(), ScenarioError>
where
    ScenarioWorld<V, F, L>: Fingerprinted,
{
    let limit = scenario.patience.max(10_000);
    let followed = cycle::follow(w, scheduler, limit)
        .map_err(|e| ScenarioError::Model(format!("seed {}: {e}", run.seed)))?;
    match followed {
        Followed::Cycle(c) => {
            run.cycle = Some(run.choices.len() + c.start);
            run.choices.extend(c.tail);
        }
        Followed::Stuck { tail } => run.choices.extend(tail),
        Followed::NoCycle => {}
    }
    Ok(())
}

/// Runs `scenario` under `schedules` seeds from `first_seed`, with its scheduler.
pub fn run(scenario: &Scenario, first_seed: u64, schedules: u32) -> Result<Summary, ScenarioError> {
    run_with(scenario, first_seed, schedules, false, &|| {}, &|| false)
}
