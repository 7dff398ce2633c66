//! Livelock evidence a reviewer can check: a cycle of states a run goes round without
//! progress, found by following the run on from where it stopped and fingerprinting each
//! state it passes (the explorer's hash, kept up to date by what each step changed), and
//! checked by replaying it (the state after the cycle equals the state before it).

use std::collections::HashMap;

use hugesept_core::kvm::KvmError;
use hugesept_core::snapshot::Snapshot;
use hugesept_core::world::{Choice, Metrics, PARTS, Scheduler, Stepped, choices_for};

use crate::explore::{PartHashes, fingerprint, part_hash, part_hashes, region_hash};
use crate::scenario::{LargeMemoryWorld, RunWorld, ScenarioWorld, WideWorld};

/// A world a run can be followed in for a cycle: how its states are fingerprinted, step by
/// step.
pub trait Fingerprinted: Sized {
    /// The fingerprint kept along a run.
    type Fingerprint;
    /// The fingerprint of this state, from scratch (its TLB epochs already renumbered).
    fn fingerprint(&self) -> Self::Fingerprint;
    /// Brings `fp` from the state before a step to `w`, the state after it (renumbering its
    /// TLB epochs when they need it).
    fn refresh(fp: &mut Self::Fingerprint, w: &mut Self);
    /// The fingerprint's value.
    fn value(fp: &Self::Fingerprint) -> u128;
}

impl Fingerprinted for ScenarioWorld {
    type Fingerprint = RunFingerprint;

    fn fingerprint(&self) -> RunFingerprint {
        RunFingerprint::of(self)
    }

    fn refresh(fp: &mut RunFingerprint, w: &mut Self) {
        fp.update(w);
    }

    fn value(fp: &RunFingerprint) -> u128 {
        fp.value()
    }
}

/// The whole state's hash, from two differently seeded hashers.
fn whole_hash(w: &impl std::hash::Hash) -> u128 {
    use std::hash::{Hash, Hasher};
    let mut a = std::hash::DefaultHasher::new();
    let mut b = std::hash::DefaultHasher::new();
    0xa5u8.hash(&mut b);
    w.hash(&mut a);
    w.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// Worlds larger than the default are fingerprinted whole at every step (their actors and
/// bitmap are past what the explorer's incremental hash tracks): followed runs are short, the
/// livelock's patience.
macro_rules! whole_state_fingerprint {
    ($world:ty) => {
        impl Fingerprinted for $world {
            type Fingerprint = u128;

            fn fingerprint(&self) -> u128 {
                whole_hash(self)
            }

            fn refresh(fp: &mut u128, w: &mut Self) {
                if w.sept().epochs().rebase_offset() != 0 {
                    w.canonicalize();
                }
                *fp = whole_hash(w);
            }

            fn value(fp: &u128) -> u128 {
                *fp
            }
        }
    };
}

whole_state_fingerprint!(WideWorld);
whole_state_fingerprint!(LargeMemoryWorld);
whole_state_fingerprint!(RunWorld);

/// A world's fingerprint kept up to date step by step: the hash of each region and part, and
/// their XOR (the explorer's fingerprint). A step costs what it changed, not the window.
#[derive(Debug, Clone)]
pub struct RunFingerprint {
    regions: Vec<u128>,
    regions_xor: u128,
    parts: PartHashes,
}

impl RunFingerprint {
    /// The fingerprint of `w`, from scratch.
    pub fn of(w: &ScenarioWorld) -> RunFingerprint {
        let regions: Vec<u128> = (0..w.regions()).map(|r| region_hash(w, r)).collect();
        let regions_xor = regions.iter().fold(0, |a, h| a ^ h);
        RunFingerprint {
            regions,
            regions_xor,
            parts: part_hashes(w),
        }
    }

    /// The fingerprint's value.
    pub fn value(&self) -> u128 {
        fingerprint(&self.parts, self.regions_xor)
    }

    /// Brings the fingerprint from the state before a step to `w`, the state after it, whose
    /// change record names what the step changed (it is renumbered first when its TLB epochs
    /// need it, as the explorer does, so states that differ only in those compare equal).
    pub fn update(&mut self, w: &mut ScenarioWorld) {
        if w.sept().epochs().rebase_offset() != 0 {
            w.canonicalize();
            *self = RunFingerprint::of(w);
            return;
        }
        let changed = w.changed_regions();
        if changed.is_all() {
            *self = RunFingerprint::of(w);
            return;
        }
        for &r in changed.regions() {
            let new = region_hash(w, r as usize);
            if let Some(old) = self.regions.get_mut(r as usize) {
                self.regions_xor ^= *old ^ new;
                *old = new;
            }
        }
        let touched = w.touched_parts();
        for k in 0..PARTS {
            if touched & (1 << k) != 0
                && let Some(h) = self.parts.get_mut(k)
            {
                *h = part_hash(w, k);
            }
        }
    }
}

/// A cycle found by following a run on: the steps taken from where it stopped, of which those
/// from `start` on lead from a state back to the same state without progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// The choices taken after the run stopped.
    pub tail: Vec<Choice>,
    /// Where in `tail` the cycle starts: the state after `tail[..start]` is the state after
    /// all of `tail`.
    pub start: usize,
}

/// How following a run on ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// It went round a cycle.
    Cycle(Cycle),
    /// After `tail`, no choice is enabled: every actor waits for good.
    Stuck {
        /// The choices taken after the run stopped (none when it stopped stuck).
        tail: Vec<Choice>,
    },
    /// No state came back within the limit, or the world ended: no evidence.
    NoCycle,
}

/// Follows the run that stopped in `w` on, `scheduler` choosing, for at most `limit` steps,
/// until a state comes back without progress in between (a step that makes progress starts
/// the search afresh: a livelock cycle makes none).
pub fn follow<const V: usize, const F: usize, const L: usize>(
    w: &ScenarioWorld<V, F, L>,
    scheduler: &mut impl Scheduler,
    limit: u32,
) -> Result<Followed, KvmError>
where
    ScenarioWorld<V, F, L>: Fingerprinted,
{
    let mut s = w.clone();
    s.canonicalize();
    s.clear_changes();
    let mut fp = s.fingerprint();
    let mut seen: HashMap<u128, usize> = HashMap::new();
    seen.insert(ScenarioWorld::<V, F, L>::value(&fp), 0);
    let mut tail = Vec::new();
    let mut m = Metrics::default();
    let mut choices = vec![Choice::Vcpu(0); choices_for(V)];
    for step in 0..limit {
        if s.ended().is_some() {
            return Ok(Followed::NoCycle);
        }
        let n = s.enabled(&mut choices);
        let Some(enabled) = choices.get(..n).filter(|c| !c.is_empty()) else {
            return Ok(Followed::Stuck { tail });
        };
        let pick = scheduler.pick(step, enabled);
        let choice = enabled.get(pick).copied().unwrap_or(Choice::Vcpu(0));
        let stepped = s.step(choice, &mut m)?;
        scheduler.feedback(choice, stepped);
        tail.push(choice);
        ScenarioWorld::<V, F, L>::refresh(&mut fp, &mut s);
        s.clear_changes();
        if matches!(stepped, Stepped::Moved { progress: true }) {
            seen.clear();
        }
        let value = ScenarioWorld::<V, F, L>::value(&fp);
        match seen.get(&value) {
            Some(&start) => return Ok(Followed::Cycle(Cycle { tail, start })),
            None => {
                seen.insert(value, tail.len());
            }
        }
    }
    Ok(Followed::NoCycle)
}

/// Whether `a` and `b` are the same state, TLB epochs renumbered in both.
pub fn same_state(a: &ScenarioWorld, b: &ScenarioWorld) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    a.canonicalize();
    b.canonicalize();
    a == b
}
