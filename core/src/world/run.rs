//! Running a schedule: a scheduler picks each choice, the invariants are checked after every
//! step, an observer sees each step (traces, fuzzers, shadow checks).

use crate::kvm::KvmStorage;
use crate::sept::SeptStorage;
use crate::snapshot::Snapshot;

use super::{
    Choice, Limits, MAX_WORLD_CHOICES, Metrics, RandomScheduler, ScheduleError, Scheduler, Stepped,
    Verdict, World,
};

/// What sees each step of a schedule ([`World::advance_schedule`]): a trace recorder, a
/// fuzzer's shadow checks, a test comparing the incremental checks with the full ones. A
/// closure taking the choice and what it did is one.
pub trait Observer<W> {
    /// Step `n` took `choice`, which did `stepped`: `before` is the state before it, `after`
    /// the state after it (its per-step invariants are checked next).
    fn stepped(&mut self, n: u32, choice: Choice, stepped: Stepped, before: &W, after: &W);

    /// The copy of the state before each step was brought up to `world` by the change record
    /// (so a shadow check can compare the two).
    fn synced(&mut self, _copy: &W, _world: &W) {}

    /// Asked before each step: false stops the schedule there with
    /// [`ScheduleError::Stopped`] (a user's Ctrl-C, a deadline).
    fn keep_going(&mut self) -> bool {
        true
    }
}

impl<W, F: FnMut(Choice, Stepped)> Observer<W> for F {
    fn stepped(&mut self, _n: u32, choice: Choice, stepped: Stepped, _before: &W, _after: &W) {
        self(choice, stepped);
    }
}

impl<SS: SeptStorage, KS: KvmStorage, const V: usize, const F: usize, const L: usize>
    World<SS, KS, V, F, L>
{
    /// Runs one schedule chosen by `seed` from this state: uniformly among the enabled choices
    /// (xorshift64), the invariants checked after every step, until the world ends, 20 000
    /// steps pass without progress (livelock) or `bound` steps have passed
    /// ([`ScheduleError::BudgetExhausted`]). Adds the steps taken to `steps`.
    pub fn run_seeded(
        &self,
        seed: u64,
        bound: u32,
        metrics: &mut Metrics,
        steps: &mut u64,
    ) -> Result<Verdict, ScheduleError>
    where
        SS: Clone,
        KS: Clone,
    {
        self.run_schedule(
            &mut RandomScheduler::new(seed),
            Limits::steps(bound),
            metrics,
            steps,
            |_, _| {},
        )
    }

    /// Runs one schedule from this state, `scheduler` picking each choice: the invariants
    /// checked after every step, `observer` shown every step (the trace, shadow checks), until the
    /// world ends — or it is a livelock: no choice enabled, or `limits.patience` steps in a row
    /// without progress. A schedule still making progress after `limits.bound` steps has no
    /// verdict ([`ScheduleError::BudgetExhausted`]). Adds the steps taken to `steps`.
    pub fn run_schedule<Sch: Scheduler>(
        &self,
        scheduler: &mut Sch,
        limits: Limits,
        metrics: &mut Metrics,
        steps: &mut u64,
        observer: impl Observer<Self>,
    ) -> Result<Verdict, ScheduleError>
    where
        SS: Clone,
        KS: Clone,
    {
        self.clone()
            .advance_schedule(scheduler, limits, metrics, steps, observer)
    }

    /// [`World::run_schedule`] on this world itself: it is left in the state the schedule
    /// ended in (for the final mapping histogram, or to look at).
    pub fn advance_schedule<Sch: Scheduler>(
        &mut self,
        scheduler: &mut Sch,
        limits: Limits,
        metrics: &mut Metrics,
        steps: &mut u64,
        mut observer: impl Observer<Self>,
    ) -> Result<Verdict, ScheduleError>
    where
        SS: Clone,
        KS: Clone,
    {
        let w = self;
        let mut before = w.clone();
        let mut idle = 0u32;
        w.clear_changes();
        let mut choices = [Choice::Vcpu(0); MAX_WORLD_CHOICES];
        for step in 0..limits.bound {
            if let Some(v) = w.ended() {
                return Ok(v);
            }
            if !observer.keep_going() {
                return Err(ScheduleError::Stopped { steps: step });
            }
            let n = w.enabled(&mut choices);
            let Some(enabled) = choices.get(..n).filter(|c| !c.is_empty()) else {
                return Ok(Verdict::Livelock);
            };
            let pick = scheduler.pick(step, enabled);
            let choice = enabled.get(pick).copied().unwrap_or(Choice::Vcpu(0));
            let stepped = w.step(choice, metrics).map_err(ScheduleError::Model)?;
            scheduler.feedback(choice, stepped);
            observer.stepped(step, choice, stepped, &before, w);
            *steps = steps.saturating_add(1);
            w.check_step(&before)
                .map_err(|violation| ScheduleError::Invariant {
                    step,
                    choice,
                    violation,
                })?;
            // `before` follows by copying what changed; then a fresh record.
            before.sync_from(w);
            observer.synced(&before, w);
            w.clear_changes();
            idle = match stepped {
                Stepped::Moved { progress: true } => 0,
                _ => idle.saturating_add(1),
            };
            if idle >= limits.patience {
                return Ok(Verdict::Livelock);
            }
        }
        w.ended().ok_or(ScheduleError::BudgetExhausted {
            steps: limits.bound,
        })
    }

    /// Whether `choice` is enabled now.
    pub fn is_enabled(&self, choice: Choice) -> bool {
        let mut choices = [Choice::Vcpu(0); MAX_WORLD_CHOICES];
        let n = self.enabled(&mut choices);
        choices.get(..n).is_some_and(|c| c.contains(&choice))
    }
}
