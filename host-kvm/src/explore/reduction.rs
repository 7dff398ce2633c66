//! The partial-order reduction's proof obligation, checked on a world: the reduced search and
//! the full one agree on everything the reduction keeps ([`Bounds::reduce`]). `hugesept
//! explore --verify-reduction` runs it on a scenario; the tests run it on every scenario small
//! enough, and on seeded random worlds.

use std::hash::Hash;

use hugesept_core::kvm::{KvmError, KvmStorage};
use hugesept_core::sept::SeptStorage;
use hugesept_core::world::{Verdict, World};

use super::{Bounds, Exploration, explore};

/// Both searches of one world, and where they disagree.
#[derive(Debug)]
pub struct ReductionCheck {
    /// The search of every enabled choice.
    pub full: Exploration,
    /// The reduced search.
    pub reduced: Exploration,
    /// What the reduction should have kept and did not, one sentence each; empty when they
    /// agree.
    pub disagreements: Vec<String>,
}

impl ReductionCheck {
    /// Whether both searches were complete, so that their comparison says something.
    pub fn complete(&self) -> bool {
        !self.full.bounded && !self.reduced.bounded
    }
}

/// Whether an end of verdict `v` can be reached with a vCPU still running: the VM ends under
/// it, or one vCPU's lost data ends the run at once ([`World::ended`]). The reduction may reach
/// fewer of those states, by longer runs (a step it took first would have been left undone),
/// but it reaches one whenever the full search does.
fn ends_early(v: &str) -> bool {
    v == Verdict::VmKilled.name() || v == Verdict::VmBugged.name() || v == Verdict::DataLoss.name()
}

/// What `reduced` should agree with `full` on and does not: whether a violation is reachable;
/// without one, every verdict reached, the number of end states where every vCPU finished
/// (ok, guest-panic) and the fewest steps to each, and whether some state cannot end; and no more states than
/// the full search.
pub fn disagreements(full: &Exploration, reduced: &Exploration) -> Vec<String> {
    let mut out = Vec::new();
    if full.violation.is_some() != reduced.violation.is_some() {
        out.push(format!(
            "a broken invariant: the full search {}, the reduced one {}",
            if full.violation.is_some() {
                "finds one"
            } else {
                "none"
            },
            if reduced.violation.is_some() {
                "finds one"
            } else {
                "none"
            }
        ));
        return out;
    }
    if full.violation.is_some() {
        return out;
    }
    for v in full.ends.keys().chain(reduced.ends.keys()) {
        let (f, r) = (
            full.ends.get(v).copied().unwrap_or(0),
            reduced.ends.get(v).copied().unwrap_or(0),
        );
        let (fl, rl) = (
            full.end_traces.get(v).map(Vec::len),
            reduced.end_traces.get(v).map(Vec::len),
        );
        if ends_early(v) {
            if (f > 0) != (r > 0) || r > f {
                out.push(format!(
                    "{v}: {f} end states in the full search, {r} reduced"
                ));
            }
        } else if f != r || fl != rl {
            out.push(format!(
                "{v}: {f} end states (shortest run {fl:?}) in the full search, {r} ({rl:?}) \
                 reduced"
            ));
        }
    }
    out.dedup();
    if (full.livelock_states > 0) != (reduced.livelock_states > 0) {
        out.push(format!(
            "liveness: {} states that cannot end in the full search, {} reduced",
            full.livelock_states, reduced.livelock_states
        ));
    }
    if reduced.states > full.states {
        out.push(format!(
            "the reduced search has more states ({}) than the full one ({})",
            reduced.states, full.states
        ));
    }
    out
}

/// Explores `start` both ways within `bounds` (its `reduce` is ignored) and compares them.
pub fn verify_reduction<SS, KS>(
    start: &World<SS, KS>,
    bounds: Bounds,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ReductionCheck, KvmError>
where
    SS: SeptStorage + Clone + Hash + PartialEq + Send,
    KS: KvmStorage + Clone + Hash + PartialEq + Send,
{
    let reduced = explore(
        start,
        Bounds {
            reduce: true,
            ..bounds
        },
        progress,
    )?;
    let full = explore(
        start,
        Bounds {
            reduce: false,
            ..bounds
        },
        progress,
    )?;
    let disagreements = if full.bounded || reduced.bounded {
        Vec::new()
    } else {
        disagreements(&full, &reduced)
    };
    Ok(ReductionCheck {
        full,
        reduced,
        disagreements,
    })
}
