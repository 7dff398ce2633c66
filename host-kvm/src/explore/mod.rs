//! The exhaustive explorer: every interleaving of a world's choices, each state remembered by
//! a 128-bit fingerprint of its full value (hash compaction, as explicit-state model checkers
//! do), the safety invariants checked on every transition. [`explore`] searches depth first
//! over one scratch world and one copy per level of the current path, each updated by what a
//! step changed; shortest traces come from a breadth-first pass over the explored graph, and
//! [`explore_breadth_first`] traces a violation in the fewest steps. At the end, liveness is
//! decided on the explored graph: a state from which no end state can be reached is a livelock
//! (under fair scheduling every run ends exactly when an end is reachable from every reachable
//! state).

mod edges;
mod fingerprint;
mod graph;
mod parallel;
mod reduction;
mod search;

use hugesept_core::snapshot::Snapshot;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use hugesept_core::kvm::KvmStorage;
use hugesept_core::sept::SeptStorage;
use hugesept_core::world::{
    Choice, MAX_CHOICES, Metrics, PARTS, Stepped, Verdict, Violation, World,
};

pub use fingerprint::Fingerprint;
use graph::{Broken, Graph};
pub use reduction::{ReductionCheck, disagreements, verify_reduction};

/// Limits of an exploration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bounds {
    /// Distinct states at most; the exploration stops (partial) when it would exceed them.
    pub max_states: usize,
    /// Bytes the exploration may hold by its estimate ([`Exploration::memory`]: the state
    /// table, the graph, the copies of the world it keeps, and what the summary after the
    /// search needs); checked every [`CHECK_EDGES`] edges recorded (each new state records
    /// one), and before every edge once that many more might pass it, it stops the
    /// exploration (partial) when one more state would. 0: no bound.
    pub max_memory: usize,
    /// Asked at the checks of `max_memory` (every [`CHECK_EDGES`] edges, so new states, at
    /// most); `true` stops the exploration (partial), as the bounds do. `hugesept explore`
    /// passes Ctrl-C's flag.
    pub stop: Option<fn() -> bool>,
    /// Recompute every fingerprint from scratch as well and fail on a difference (tests).
    pub verify_fingerprints: bool,
    /// Memory the depth-first path's copies of the world may take (0: 256 MiB); states found
    /// deeper wait aside and are searched from once the path is done.
    pub path_bytes: usize,
    /// Threads the depth-first search runs on (0 or 1: this one). A complete exploration
    /// finds the same states, transitions, ends, depth, liveness and shortest-trace lengths
    /// on any number; which of several shortest traces it keeps, and where a bound stops a
    /// partial one, may differ from run to run.
    pub threads: usize,
    /// Partial-order reduction: where some vCPU's every choice is independent of everything
    /// the other actors can still do ([`World::independent_vcpu`]), search only its choices
    /// from the state. It keeps whether an invariant breaks, the verdicts reached, the end
    /// states where every vCPU finished (ok, guest-panic: their number too, and the fewest
    /// steps to each), and whether some state cannot end. It changes the state and transition
    /// counts, the depth, how many states end early (the VM killed or bugged, data lost) and
    /// by how many steps at least, how many states cannot end, and may lengthen a violation's
    /// or livelock's trace by steps that commute with it. `hugesept explore
    /// --verify-reduction` checks this against the full search.
    pub reduce: bool,
}

/// The choices to search from `w`, written to `out`: every enabled one, or with `reduce` those
/// of the vCPU whose choices are independent of everything else, when there is one
/// ([`Bounds::reduce`]).
pub(super) fn choices_of<SS: SeptStorage, KS: KvmStorage>(
    w: &World<SS, KS>,
    reduce: bool,
    out: &mut [Choice; MAX_CHOICES],
) -> usize {
    let n = w.enabled(out);
    if reduce && let Some(i) = w.independent_vcpu() {
        // The vCPU's choices (its step, and an interrupt when one is enabled), in order.
        let mut k = 0;
        for j in 0..n {
            if let Choice::Vcpu(v) | Choice::Interrupt(v) = out[j]
                && v == i
            {
                out[k] = out[j];
                k += 1;
            }
        }
        return k;
    }
    n
}

/// The 128-bit hash of region `r` of `w`.
pub fn region_hash<SS: SeptStorage + Clone, KS: KvmStorage + Clone>(
    w: &World<SS, KS>,
    r: usize,
) -> u128 {
    let mut f = Fingerprint::default();
    w.hash_region(r, &mut f);
    f.value()
}

/// The XOR of every region's hash.
fn regions_hash<SS: SeptStorage + Clone, KS: KvmStorage + Clone>(w: &World<SS, KS>) -> u128 {
    (0..w.regions()).fold(0, |acc, r| acc ^ region_hash(w, r))
}

/// The hashes of a world's parts outside the regions ([`World::hash_part`]).
pub type PartHashes = [u128; PARTS];

/// The 128-bit hash of part `k` of `w` (keyed by `k`, so parts can be combined by XOR).
pub fn part_hash<SS: SeptStorage + Clone, KS: KvmStorage + Clone>(
    w: &World<SS, KS>,
    k: usize,
) -> u128 {
    let mut f = Fingerprint::default();
    f.write_usize(k);
    w.hash_part(k, &mut f);
    f.value()
}

/// Every part's hash.
pub fn part_hashes<SS: SeptStorage + Clone, KS: KvmStorage + Clone>(
    w: &World<SS, KS>,
) -> PartHashes {
    std::array::from_fn(|k| part_hash(w, k))
}

/// The fingerprint of a world whose parts and regions hash to `parts` and `regions`: the XOR
/// of them all. Each is a 128-bit hash keyed by its part or region (Zobrist hashing), so the
/// XOR is one too and needs no further mixing.
pub fn fingerprint(parts: &PartHashes, regions: u128) -> u128 {
    parts.iter().fold(regions, |acc, p| acc ^ p)
}

/// Why an exploration stopped before it was complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// It held [`Bounds::max_states`] states.
    MaxStates,
    /// One more state would have taken its memory estimate past [`Bounds::max_memory`].
    MaxMemory,
    /// [`Bounds::stop`] said so.
    Interrupted,
}

/// The capacity `v` has after `k` more pushes: doubling each time it is full, as `Vec`
/// grows.
fn capacity_after<T>(v: &Vec<T>, k: usize) -> usize {
    let need = v.len() + k;
    let mut cap = v.capacity();
    while cap < need {
        cap = (cap * 2).max(4);
    }
    cap
}

/// Bytes a vector of `T` holds once `k` more are pushed.
fn vec_bytes_after<T>(v: &Vec<T>, k: usize) -> usize {
    capacity_after(v, k) * size_of::<T>()
}

/// Edges the explorer records at most between two checks of [`Bounds::stop`] and
/// [`Bounds::max_memory`] (each new state brings one, so new states too); once its memory
/// estimate for that many more would pass the bound, it checks before every edge.
pub const CHECK_EDGES: usize = 1 << 10;

/// The explorer's checks of its stop and its memory bound: each is made when the graph holds
/// the edges the one before set, and sets the next.
struct Checks {
    edges: usize,
    /// The most bytes a check found held.
    memory: usize,
}

impl Checks {
    /// The first check is due at once.
    fn new() -> Self {
        Checks {
            edges: 0,
            memory: 0,
        }
    }

    /// Whether a check is due before the next transition is recorded.
    #[inline]
    fn due(&self, graph: &Graph) -> bool {
        graph.edges() >= self.edges
    }

    /// Checks, with `estimate(k)` the bytes held once `k` more states and `k` more edges are
    /// added: stops when [`Bounds::stop`] says so, or when one more state and edge would take
    /// the estimate past [`Bounds::max_memory`]; else sets the next check. Made once per
    /// [`CHECK_EDGES`] edges at most, so kept out of the search's loop.
    #[cold]
    #[inline(never)]
    fn check(
        &mut self,
        bounds: &Bounds,
        graph: &Graph,
        estimate: impl Fn(usize) -> usize,
    ) -> Option<Stop> {
        if bounds.stop.is_some_and(|stop| stop()) {
            return Some(Stop::Interrupted);
        }
        self.memory = self.memory.max(estimate(0));
        let max = bounds.max_memory;
        let k = if max == 0 || estimate(CHECK_EDGES) <= max {
            CHECK_EDGES
        } else if estimate(1) <= max {
            1
        } else {
            return Some(Stop::MaxMemory);
        };
        self.edges = graph.edges() + k;
        None
    }
}

/// What an exploration found.
#[derive(Debug, Clone)]
pub struct Exploration {
    /// Distinct states reached.
    pub states: usize,
    /// Transitions taken (including back into known states).
    pub transitions: u64,
    /// The most steps any explored state needs from the start (its breadth-first level).
    pub depth: usize,
    /// Whether it was cut short ([`Exploration::stopped`] says why).
    pub bounded: bool,
    /// What cut it short, if anything.
    pub stopped: Option<Stop>,
    /// The bytes it held at most by its estimate: the capacities of the state table's and the
    /// graph's vectors times their elements' sizes, the copies of the world kept (the search
    /// path, the states set aside or in the frontier, the scratch world), and what the summary
    /// of the graph allocates after the search.
    pub memory: usize,
    /// Distinct end states per verdict.
    pub ends: BTreeMap<&'static str, usize>,
    /// A shortest path to an end state per verdict.
    pub end_traces: BTreeMap<&'static str, Vec<Choice>>,
    /// A broken safety invariant and a shortest path that breaks it (the last choice breaks
    /// it).
    pub violation: Option<(Violation, Vec<Choice>)>,
    /// States from which no end is reachable (livelock), when the exploration was complete.
    pub livelock_states: usize,
    /// A shortest path into a livelock state.
    pub livelock_trace: Option<Vec<Choice>>,
    /// Work a partial exploration left: choices not yet taken from states on the search path
    /// and states found but not yet searched from (set aside, or in the breadth-first
    /// frontier). Each leads to at least one transition; 0 when the exploration is complete.
    pub pending: usize,
}

/// Explores every interleaving from `start` breadth first, keeping every state of the next
/// level: slower than [`explore`] (states are copied into the frontier and read back cold), but
/// its first violation is one of the fewest steps. [`explore`] calls it for that trace when its
/// depth-first search finds a violation. `progress` is told the number of states seen after
/// each level.
pub fn explore_breadth_first<SS, KS>(
    start: &World<SS, KS>,
    bounds: Bounds,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Exploration, hugesept_core::kvm::KvmError>
where
    SS: SeptStorage + Clone + Hash + PartialEq,
    KS: KvmStorage + Clone + Hash + PartialEq,
{
    let start_regions = regions_hash(start);
    let mut graph = Graph::new(
        fingerprint(&part_hashes(start), start_regions),
        start.ended(),
    );
    let mut transitions = 0u64;
    let mut stopped = None;
    let mut violation: Option<Broken> = None;
    let mut frontier: Vec<(u32, u128, World<SS, KS>)> = Vec::new();
    if start.ended().is_none() {
        frontier.push((0, start_regions, start.clone()));
    }
    let mut m = Metrics::default();
    let mut next_frontier = Vec::new();
    let mut level = 0;
    // The copies of the world held once `n` more states are added: the frontiers' (each
    // world's storage beyond what its vector holds of it), the scratch world and a copy of
    // the state stepped to.
    // A copy's bytes grow with the tables its pools take: the largest seen so far.
    let one = std::cell::Cell::new(world_bytes(start));
    let held = |frontier: usize, next: &Vec<(u32, u128, World<SS, KS>)>, n: usize| {
        let one = one.get();
        let storage = one.saturating_sub(size_of::<World<SS, KS>>());
        frontier + vec_bytes_after(next, n) + (next.len() + n) * storage + 2 * one
    };
    let mut checks = Checks::new();
    // States of the level being searched not yet searched from (the one being searched
    // included), for [`Exploration::pending`] when a bound stops the search.
    let mut unsearched = 0usize;
    'levels: while !frontier.is_empty() {
        level += 1;
        // What the level being searched holds while it is drained.
        let storage = one.get().saturating_sub(size_of::<World<SS, KS>>());
        let level_bytes = vec_bytes_after(&frontier, 0) + frontier.len() * storage;
        unsearched = frontier.len();
        for (id, w_regions, w) in frontier.drain(..) {
            let mut choices = [Choice::Vcpu(0); MAX_CHOICES];
            let n = choices_of(&w, bounds.reduce, &mut choices);
            // One scratch world per state: step it, and put back what the step changed.
            let mut s = w.clone();
            s.clear_changes();
            for &c in choices.iter().take(n) {
                let stepped = s.step(c, &mut m)?;
                transitions += 1;
                if matches!(stepped, Stepped::Invalid) {
                    s.revert_to(&w);
                    s.clear_changes();
                    continue;
                }
                if let Err(v) = s.check_step(&w) {
                    violation = Some((id, c, v));
                    break 'levels;
                }
                let mut canonical = None;
                if s.sept().epochs().rebase_offset() != 0 {
                    let mut k = s.clone();
                    k.canonicalize();
                    canonical = Some(k);
                }
                // The regions' part of the fingerprint, updated by the regions the step
                // changed (from scratch when it cannot tell, or after renumbering epochs).
                let changed = s.changed_regions();
                let s_regions = match &canonical {
                    Some(k) => regions_hash(k),
                    None if changed.is_all() => regions_hash(&s),
                    None => changed.regions().iter().fold(w_regions, |acc, &r| {
                        acc ^ region_hash(&w, r as usize) ^ region_hash(&s, r as usize)
                    }),
                };
                let target = canonical.as_ref().unwrap_or(&s);
                if bounds.verify_fingerprints && s_regions != regions_hash(target) {
                    return Err(hugesept_core::kvm::KvmError::Inconsistent);
                }
                let fp = fingerprint(&part_hashes(target), s_regions);
                if checks.due(&graph) {
                    one.set(one.get().max(world_bytes(&s)));
                    let estimate = |k| {
                        graph.bytes_after(k, k)
                            + held(level_bytes, &next_frontier, k)
                            + Graph::summary_bytes(graph.states() + k, graph.edges() + k, false)
                    };
                    if let Some(why) = checks.check(&bounds, &graph, estimate) {
                        stopped = Some(why);
                        break 'levels;
                    }
                }
                if let Some(unknown) = graph.reach(id, c, fp) {
                    let verdict = target.ended();
                    let Some(new) = graph.add(unknown, id, c, verdict, bounds.max_states) else {
                        stopped = Some(Stop::MaxStates);
                        break 'levels;
                    };
                    if verdict.is_none() {
                        let child = canonical.unwrap_or_else(|| s.clone());
                        next_frontier.push((new, s_regions, child));
                    }
                }
                s.revert_to(&w);
                s.clear_changes();
            }
            unsearched -= 1;
        }
        std::mem::swap(&mut frontier, &mut next_frontier);
        progress(graph.states(), level);
    }
    let storage = one.get().saturating_sub(size_of::<World<SS, KS>>());
    let now = graph.bytes_after(0, 0)
        + held(
            vec_bytes_after(&frontier, 0) + frontier.len() * storage,
            &next_frontier,
            0,
        )
        + Graph::summary_bytes(graph.states(), graph.edges(), false);
    let mut ex = graph.exploration(transitions, stopped, violation, checks.memory.max(now), 1);
    ex.pending = unsearched + next_frontier.len();
    Ok(ex)
}

/// Bytes of memory one copy of `w` holds (its fields and its storage), to size the
/// depth-first path.
fn world_bytes<SS: SeptStorage + Clone, KS: KvmStorage + Clone>(w: &World<SS, KS>) -> usize {
    use std::mem::size_of_val;
    let sept = w.sept().storage();
    let kvm = w.kvm().storage();
    size_of_val(w)
        + size_of_val(sept.gigs())
        + size_of_val(sept.regions())
        + size_of_val(sept.tables())
        + size_of_val(kvm.gigs())
        + size_of_val(kvm.regions())
        + size_of_val(kvm.tables())
}

/// Explores every interleaving from `start`, depth first (explore/search.rs), on
/// [`Bounds::threads`] threads (one when 0 or 1; explore/parallel.rs). Shortest traces (per end
/// verdict, into a livelock) and the depth (the greatest number of steps a state needs) come
/// from a breadth-first pass over the explored graph afterwards; a violation is traced again
/// breadth first for one of the fewest steps. `progress` is told the states seen and the
/// current path's length now and then.
pub fn explore<SS, KS>(
    start: &World<SS, KS>,
    bounds: Bounds,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Exploration, hugesept_core::kvm::KvmError>
where
    SS: SeptStorage + Clone + Hash + PartialEq + Send,
    KS: KvmStorage + Clone + Hash + PartialEq + Send,
{
    let ex = if bounds.threads > 1 {
        parallel::explore(start, bounds, progress)?
    } else {
        explore_sequential(start, bounds, progress)?
    };
    if ex.violation.is_some() {
        // One of the fewest steps, breadth first; the depth-first path when the bound stops
        // that search first.
        let bfs = explore_breadth_first(start, bounds, progress)?;
        if bfs.violation.is_some() {
            return Ok(bfs);
        }
    }
    Ok(ex)
}

/// Where the sequential search records: the explored graph, the checks of the bounds, the
/// states set aside because the path was as deep as memory allows.
struct Sequential<'p, SS: SeptStorage + Clone, KS: KvmStorage + Clone> {
    graph: Graph,
    checks: Checks,
    max_states: usize,
    aside: Vec<search::Item<SS, KS>>,
    progress: &'p mut dyn FnMut(usize, usize),
}

/// Bytes the states set `aside` hold once `k` more are, with copies of `one` bytes.
fn aside_bytes<SS, KS>(aside: &Vec<search::Item<SS, KS>>, one: usize, k: usize) -> usize
where
    SS: SeptStorage + Clone,
    KS: KvmStorage + Clone,
{
    let storage = one.saturating_sub(size_of::<World<SS, KS>>());
    vec_bytes_after(aside, k) + aside.len() * storage
}

impl<SS, KS> search::Record<SS, KS> for Sequential<'_, SS, KS>
where
    SS: SeptStorage + Clone,
    KS: KvmStorage + Clone,
{
    fn prefetch(&self, fp: u128) {
        self.graph.prefetch(fp);
    }

    fn visit(
        &mut self,
        from: u32,
        c: Choice,
        fp: u128,
        new: &mut dyn FnMut() -> Result<Option<Verdict>, Violation>,
    ) -> search::Visit {
        let Some(unknown) = self.graph.reach(from, c, fp) else {
            return search::Visit::Known;
        };
        match new() {
            Err(v) => search::Visit::Broken(v),
            Ok(verdict) => match self.graph.add(unknown, from, c, verdict, self.max_states) {
                None => search::Visit::Full,
                Some(id) => search::Visit::New(id, verdict),
            },
        }
    }

    fn check_due(&self) -> bool {
        self.checks.due(&self.graph)
    }

    fn check(
        &mut self,
        bounds: &Bounds,
        one: usize,
        held: &dyn Fn(usize) -> usize,
    ) -> Option<Stop> {
        let (graph, aside) = (&self.graph, &self.aside);
        let estimate = |k| {
            graph.bytes_after(k, k)
                + held(k)
                + aside_bytes(aside, one, k)
                + Graph::summary_bytes(graph.states() + k, graph.edges() + k, false)
        };
        self.checks.check(bounds, graph, estimate)
    }

    fn share(&self) -> bool {
        false
    }

    fn set_aside(&mut self, item: search::Item<SS, KS>) {
        self.aside.push(item);
    }

    fn take(&mut self) -> Option<search::Item<SS, KS>> {
        self.aside.pop()
    }

    fn report(&mut self, path: usize) {
        (self.progress)(self.graph.states(), path);
    }
}

/// The depth-first search on this thread (see [`explore`]).
fn explore_sequential<SS, KS>(
    start: &World<SS, KS>,
    bounds: Bounds,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Exploration, hugesept_core::kvm::KvmError>
where
    SS: SeptStorage + Clone + Hash + PartialEq,
    KS: KvmStorage + Clone + Hash + PartialEq,
{
    let start_regions = regions_hash(start);
    let start_parts = part_hashes(start);
    let mut rec = Sequential {
        graph: Graph::new(fingerprint(&start_parts, start_regions), start.ended()),
        checks: Checks::new(),
        max_states: bounds.max_states,
        aside: Vec::new(),
        progress,
    };
    let mut search = search::Search::new(start, &bounds);
    if start.ended().is_none() {
        search.begin((0, start_regions, start_parts, start.clone()));
    }
    let (stopped, violation) = match search.run(&mut rec, &bounds)? {
        search::Ended::Done => (None, None),
        search::Ended::Stopped(why) => (Some(why), None),
        search::Ended::Broken(b) => (None, Some(b)),
    };
    (rec.progress)(rec.graph.states(), search.path_len());
    let one = search.one;
    let now = rec.graph.bytes_after(0, 0)
        + search.held()
        + aside_bytes(&rec.aside, one, 0)
        + Graph::summary_bytes(rec.graph.states(), rec.graph.edges(), false);
    let memory = rec.checks.memory.max(now);
    let mut ex = rec
        .graph
        .exploration(search.transitions, stopped, violation, memory, 1);
    ex.pending = search.pending() + rec.aside.len();
    Ok(ex)
}

/// The verdict name of the worst outcome an exploration found, for traces and exit codes.
pub fn worst(ex: &Exploration) -> Option<&'static str> {
    if ex.violation.is_some() {
        return Some(crate::scenario::VIOLATION);
    }
    for v in [
        Verdict::VmBugged,
        Verdict::DataLoss,
        Verdict::VmKilled,
        Verdict::GuestPanic,
    ] {
        if ex.ends.contains_key(v.name()) {
            return Some(v.name());
        }
    }
    if ex.livelock_states > 0 {
        return Some(Verdict::Livelock.name());
    }
    None
}
