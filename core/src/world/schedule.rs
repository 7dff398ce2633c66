//! Schedulers that pick among a world's enabled choices: uniform random, and PCT
//! (probabilistic concurrency testing, Burckhardt et al., ASPLOS 2010: random actor
//! priorities, `depth - 1` random points where the running actor drops to the lowest
//! priority). Both are seeded and deterministic; both are told when a step was blocked, so
//! neither spins on an actor that waits.

use super::{Choice, MAX_HOSTS, MAX_VCPUS, MAX_WORLD_VCPUS, Stepped};

/// Actors a schedule tells apart at most: the vCPUs, then the host actors.
const ACTORS: usize = MAX_WORLD_VCPUS + MAX_HOSTS;

/// The number host actors start at in a world of `vcpus` vCPUs: [`MAX_VCPUS`] for worlds of
/// up to that many (so their actor numbers do not depend on how many vCPUs they have), else
/// `vcpus`. Scenario orders name host actor `i` as this plus `i`.
pub const fn first_host_actor(vcpus: usize) -> usize {
    if vcpus > MAX_VCPUS {
        if vcpus > MAX_WORLD_VCPUS {
            MAX_WORLD_VCPUS
        } else {
            vcpus
        }
    } else {
        MAX_VCPUS
    }
}

/// A strategy for picking the next choice.
pub trait Scheduler {
    /// The index into `choices` (never empty) to take at step `step`.
    fn pick(&mut self, step: u32, choices: &[Choice]) -> usize;
    /// What the picked choice did.
    fn feedback(&mut self, _choice: Choice, _stepped: Stepped) {}
}

/// xorshift64: small, fast, deterministic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub const fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64().checked_rem(n).unwrap_or(0)
    }
}

/// Uniform choice among the enabled choices.
#[derive(Clone, Copy, Debug)]
pub struct RandomScheduler(Rng);

impl RandomScheduler {
    /// Seeded.
    pub const fn new(seed: u64) -> Self {
        RandomScheduler(Rng::new(seed))
    }
}

impl Scheduler for RandomScheduler {
    fn pick(&mut self, _step: u32, choices: &[Choice]) -> usize {
        usize::try_from(self.0.below(choices.len() as u64)).unwrap_or(0)
    }
}

/// The actor a choice belongs to, host actors numbered from `first_host`
/// ([`first_host_actor`]).
fn actor(c: Choice, first_host: usize) -> usize {
    match c {
        Choice::Vcpu(i) | Choice::Interrupt(i) => usize::from(i),
        Choice::Host(i) => first_host.saturating_add(usize::from(i)),
    }
}

/// Change points PCT holds at most.
pub const MAX_PCT_DEPTH: usize = 8;

/// PCT: the enabled actor with the highest priority runs; at `depth - 1` change points
/// (uniform over the first `horizon` steps) the running actor drops below every other. An
/// actor whose step was blocked drops too (it waits on another). An interrupt is taken for
/// the chosen vCPU one time in eight when one can land.
#[derive(Clone, Copy, Debug)]
pub struct PctScheduler {
    rng: Rng,
    priority: [u32; ACTORS],
    change_points: [u32; MAX_PCT_DEPTH],
    lowest: u32,
    first_host: usize,
}

impl PctScheduler {
    /// Seeded, with bug depth `depth` (1..=[`MAX_PCT_DEPTH`] + 1, clamped) over `horizon`
    /// steps, for a world of up to [`MAX_VCPUS`] vCPUs.
    pub fn new(seed: u64, depth: u8, horizon: u32) -> Self {
        Self::for_vcpus(seed, depth, horizon, MAX_VCPUS)
    }

    /// [`PctScheduler::new`] for a world of `vcpus` vCPUs (the same schedules as `new` for
    /// up to [`MAX_VCPUS`]).
    pub fn for_vcpus(seed: u64, depth: u8, horizon: u32, vcpus: usize) -> Self {
        let first_host = first_host_actor(vcpus);
        let actors = first_host.saturating_add(MAX_HOSTS).min(ACTORS);
        let mut rng = Rng::new(seed);
        // Distinct random priorities: a shuffled 1..=actors, shifted above the drop range.
        // The drop range lies below 1000 and each drop takes the next lower value, so more
        // drops than that would reach the priorities of actors not in the world: it stops at
        // zero, which no actor outranks.
        let mut priority = [0u32; ACTORS];
        for (i, p) in priority.iter_mut().enumerate().take(actors) {
            *p = u32::try_from(i).unwrap_or(0).saturating_add(1_000);
        }
        for i in (1..actors).rev() {
            let j = usize::try_from(rng.below((i as u64).saturating_add(1))).unwrap_or(0);
            priority.swap(i, j.min(i));
        }
        let mut change_points = [u32::MAX; MAX_PCT_DEPTH];
        let changes = usize::from(depth.saturating_sub(1)).min(MAX_PCT_DEPTH);
        for c in change_points.iter_mut().take(changes) {
            *c = u32::try_from(rng.below(u64::from(horizon.max(1)))).unwrap_or(0);
        }
        PctScheduler {
            rng,
            priority,
            change_points,
            lowest: 999,
            first_host,
        }
    }

    fn drop_actor(&mut self, a: usize) {
        if let Some(p) = self.priority.get_mut(a) {
            *p = self.lowest;
            self.lowest = self.lowest.saturating_sub(1);
        }
    }
}

impl Scheduler for PctScheduler {
    fn pick(&mut self, step: u32, choices: &[Choice]) -> usize {
        let mut best = 0usize;
        let mut best_p = 0u32;
        for (i, c) in choices.iter().enumerate() {
            if matches!(c, Choice::Interrupt(_)) {
                continue;
            }
            let p = self
                .priority
                .get(actor(*c, self.first_host))
                .copied()
                .unwrap_or(0);
            if p > best_p {
                best_p = p;
                best = i;
            }
        }
        let chosen = choices.get(best).copied();
        if self.change_points.contains(&step)
            && let Some(c) = chosen
        {
            self.drop_actor(actor(c, self.first_host));
        }
        if let Some(Choice::Vcpu(v)) = chosen
            && self.rng.below(8) == 0
            && let Some(k) = choices.iter().position(|c| *c == Choice::Interrupt(v))
        {
            return k;
        }
        best
    }

    fn feedback(&mut self, choice: Choice, stepped: Stepped) {
        if stepped == Stepped::Blocked {
            self.drop_actor(actor(choice, self.first_host));
        }
    }
}

/// How long a schedule may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Steps in all: a run that has not ended by then stops without a verdict (its budget is
    /// exhausted; it is not a livelock unless it also went `patience` steps without progress).
    pub bound: u32,
    /// Consecutive steps without progress (no guest operation retired, no host action done)
    /// before the run counts as livelock. Under a fair scheduler a waiting actor's holder runs
    /// within a few steps; a run that makes no progress for this long is going in circles.
    pub patience: u32,
}

impl Limits {
    /// `bound` steps, patience 20 000.
    pub const fn steps(bound: u32) -> Limits {
        Limits {
            bound,
            patience: 20_000,
        }
    }
}

/// A fixed order: the first actor in `order` whose step can move runs; an actor whose step
/// was blocked is passed over until another actor moves. With vCPU 0 before vCPU 1 this runs
/// vCPU 0 to its end first (except where it waits on vCPU 1): the "orders" of a scenario.
#[derive(Clone, Copy, Debug)]
pub struct PriorityScheduler {
    order: [u8; ACTORS],
    len: u16,
    blocked: [bool; ACTORS],
    first_host: usize,
}

impl PriorityScheduler {
    /// Actors in `order`, for a world of up to [`MAX_VCPUS`] vCPUs: vCPUs by number, then host
    /// actors as `MAX_VCPUS + i`; actors not named run after those named, in number order.
    pub fn new(order: &[u8]) -> Self {
        Self::for_vcpus(order, MAX_VCPUS)
    }

    /// [`PriorityScheduler::new`] for a world of `vcpus` vCPUs: host actor `i` is
    /// [`first_host_actor`]`(vcpus) + i`.
    pub fn for_vcpus(order: &[u8], vcpus: usize) -> Self {
        let first_host = first_host_actor(vcpus);
        let actors = first_host.saturating_add(MAX_HOSTS).min(ACTORS);
        let mut o = [0u8; ACTORS];
        let mut len = 0usize;
        for a in order
            .iter()
            .copied()
            .chain((0..actors).filter_map(|a| u8::try_from(a).ok()))
        {
            if usize::from(a) < actors
                && !o.get(..len).is_some_and(|s| s.contains(&a))
                && let Some(slot) = o.get_mut(len)
            {
                *slot = a;
                len = len.saturating_add(1);
            }
        }
        PriorityScheduler {
            order: o,
            len: u16::try_from(len).unwrap_or(0),
            blocked: [false; ACTORS],
            first_host,
        }
    }
}

impl Scheduler for PriorityScheduler {
    fn pick(&mut self, _step: u32, choices: &[Choice]) -> usize {
        let order = self.order.get(..usize::from(self.len)).unwrap_or(&[]);
        for pass in 0..2 {
            for &a in order {
                let a = usize::from(a);
                if pass == 0 && self.blocked.get(a).copied().unwrap_or(false) {
                    continue;
                }
                if let Some(k) = choices.iter().position(|c| {
                    !matches!(c, Choice::Interrupt(_)) && actor(*c, self.first_host) == a
                }) {
                    return k;
                }
            }
            // Everyone is blocked: try them again.
            self.blocked = [false; ACTORS];
        }
        0
    }

    fn feedback(&mut self, choice: Choice, stepped: Stepped) {
        match stepped {
            Stepped::Blocked | Stepped::Invalid => {
                if let Some(b) = self.blocked.get_mut(actor(choice, self.first_host)) {
                    *b = true;
                }
            }
            Stepped::Moved { .. } => self.blocked = [false; ACTORS],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHOICES: [Choice; 4] = [
        Choice::Vcpu(0),
        Choice::Vcpu(1),
        Choice::Interrupt(1),
        Choice::Host(0),
    ];

    #[test]
    fn pct_runs_the_highest_priority_actor_until_it_blocks() {
        for seed in 0..32 {
            let mut p = PctScheduler::new(seed, 1, 100);
            // Depth 1: no change points, so one actor keeps running...
            let first = CHOICES[p.pick(0, &CHOICES)];
            let actor_of = |c: Choice| actor(c, MAX_VCPUS);
            for step in 1..20 {
                let c = CHOICES[p.pick(step, &CHOICES)];
                assert_eq!(actor_of(c), actor_of(first), "seed {seed}");
            }
            // ...until its step is blocked: then another actor runs.
            p.feedback(first, Stepped::Blocked);
            let next = CHOICES[p.pick(20, &CHOICES)];
            assert_ne!(actor_of(next), actor_of(first), "seed {seed}");
        }
        // The same seed gives the same schedule.
        let picks = |seed| {
            let mut p = PctScheduler::new(seed, 3, 50);
            let mut out = [0usize; 50];
            for (s, o) in (0..).zip(out.iter_mut()) {
                *o = p.pick(s, &CHOICES);
            }
            out
        };
        assert_eq!(picks(7), picks(7));
    }

    #[test]
    fn priority_follows_its_order_and_passes_over_a_blocked_actor() {
        let mut p = PriorityScheduler::new(&[1, 0]);
        assert_eq!(CHOICES[p.pick(0, &CHOICES)], Choice::Vcpu(1));
        p.feedback(Choice::Vcpu(1), Stepped::Blocked);
        assert_eq!(CHOICES[p.pick(1, &CHOICES)], Choice::Vcpu(0));
        p.feedback(Choice::Vcpu(0), Stepped::Moved { progress: true });
        assert_eq!(CHOICES[p.pick(2, &CHOICES)], Choice::Vcpu(1));
    }
}
