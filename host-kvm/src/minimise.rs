//! Trace minimisation: the fewest steps that still end the same way. A trace's steps are
//! dropped in shrinking blocks (delta debugging: halves, quarters, … single steps) wherever the
//! rest still runs — every choice enabled where it is taken — and ends in the same outcome;
//! replay then re-checks the result like any trace. Runs that end in a livelock or an
//! exhausted budget are kept whole: their evidence is the run itself.

use hugesept_core::snapshot::Snapshot;
use hugesept_core::world::{Choice, Metrics, Verdict};

use crate::scenario::{BUDGET_EXHAUSTED, ScenarioWorld, VIOLATION};

/// World steps a minimisation may spend replaying candidates, at most.
pub const STEP_BUDGET: u64 = 5_000_000;

/// How `choices` from `start` end, when they run: `Some(outcome)` with the choices cut at
/// the world's end; `None` when a choice is not enabled where it is taken, the model fails,
/// or the world has not ended (nor broken an invariant) after the last choice.
fn outcome_of(
    start: &ScenarioWorld,
    choices: &[Choice],
    spent: &mut u64,
) -> Option<(&'static str, usize)> {
    let mut w = start.clone();
    let mut before = w.clone();
    w.clear_changes();
    let mut m = Metrics::default();
    for (k, &c) in choices.iter().enumerate() {
        if let Some(v) = w.ended() {
            return Some((v.name(), k));
        }
        if !w.is_enabled(c) {
            return None;
        }
        *spent = spent.saturating_add(1);
        w.step(c, &mut m).ok()?;
        // The per-step checks (those a schedule runs; equal to the full ones replay runs).
        if w.check_step(&before).is_err() {
            return Some((VIOLATION, k + 1));
        }
        before.sync_from(&w);
        w.clear_changes();
    }
    w.ended().map(|v| (v.name(), choices.len()))
}

/// The choices of a run from `start` that ended in `outcome`, minimised: as few as delta
/// debugging finds within [`STEP_BUDGET`] replayed steps, ending the same way. Unchanged for
/// outcomes that are not an end (livelock, exhausted budget) or when the run does not replay.
pub fn minimise(start: &ScenarioWorld, choices: &[Choice], outcome: &str) -> Vec<Choice> {
    let mut best = choices.to_vec();
    if outcome == Verdict::Livelock.name() || outcome == BUDGET_EXHAUSTED {
        return best;
    }
    let mut spent = 0u64;
    match outcome_of(start, &best, &mut spent) {
        Some((o, len)) if o == outcome => best.truncate(len),
        _ => return best,
    }
    let mut block = best.len().div_ceil(2).max(1);
    loop {
        let mut at = 0;
        while at < best.len() {
            if spent >= STEP_BUDGET {
                return best;
            }
            let end = (at + block).min(best.len());
            let mut candidate = Vec::with_capacity(best.len() - (end - at));
            candidate.extend_from_slice(&best[..at]);
            candidate.extend_from_slice(&best[end..]);
            match outcome_of(start, &candidate, &mut spent) {
                Some((o, len)) if o == outcome => {
                    candidate.truncate(len);
                    best = candidate;
                }
                _ => at = end,
            }
        }
        if block == 1 {
            return best;
        }
        block = block.div_ceil(2);
    }
}
