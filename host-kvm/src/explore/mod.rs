//! The exhaustive explorer: every interleaving of a world's choices, each state remembered by
//! a 128-bit fingerprint of its full value (hash compaction, as explicit-state model checkers
//! do), the safety invariants checked on every transition. [`explore`] searches depth first
//! over one scratch world and one copy per level of the current path, each updated by what a
//! step changed; shortest traces come from a breadth-first pass over the explored graph, and
//! [`explore_breadth_first`] traces a violation in the fewest steps. At the end, liveness is
//! decided on the explored graph: a state from which no end state can be reached is a livelock
//! (under fair scheduling every run ends exactly when an end is reachable from every reachable
//! state).

mod fingerprint;
mod graph;

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
            let n = w.enabled(&mut choices);
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
                            + Graph::summary_bytes(graph.states() + k, graph.edges() + k)
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
        + Graph::summary_bytes(graph.states(), graph.edges());
    let mut ex = graph.exploration(transitions, stopped, violation, checks.memory.max(now));
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

/// Levels of the depth-first path reserved at the start.
const PATH_RESERVE: usize = 1024;

/// Memory the depth-first path's worlds take unless [`Bounds::path_bytes`] says otherwise.
const PATH_BYTES: usize = 256 << 20;

/// One state on the depth-first path: its choices and the next one to take, the hashes of
/// its regions (together and, as asked, one by one) and of its other parts.
struct Frame {
    id: u32,
    regions: u128,
    parts: PartHashes,
    /// Region hashes computed for it so far.
    memo: [(u32, u128); MEMO],
    memo_len: u8,
    choices: [Choice; MAX_CHOICES],
    n: u8,
    next: u8,
}

/// Region hashes a frame remembers.
const MEMO: usize = 4;

impl Frame {
    fn of<SS: SeptStorage + Clone, KS: KvmStorage + Clone>(
        id: u32,
        regions: u128,
        parts: PartHashes,
        w: &World<SS, KS>,
    ) -> Frame {
        let mut choices = [Choice::Vcpu(0); MAX_CHOICES];
        let n = w.enabled(&mut choices);
        Frame {
            id,
            regions,
            parts,
            memo: [(0, 0); MEMO],
            memo_len: 0,
            choices,
            n: u8::try_from(n).unwrap_or(u8::MAX),
            next: 0,
        }
    }

    /// The hash of region `r` of this frame's state `w`.
    fn region_hash<SS: SeptStorage + Clone, KS: KvmStorage + Clone>(
        &mut self,
        w: &World<SS, KS>,
        r: u32,
    ) -> u128 {
        let len = usize::from(self.memo_len);
        if let Some(&(_, h)) = self.memo[..len].iter().find(|(m, _)| *m == r) {
            return h;
        }
        let h = region_hash(w, r as usize);
        if len < MEMO {
            self.memo[len] = (r, h);
            self.memo_len += 1;
        }
        h
    }
}

/// Explores every interleaving from `start`, depth first: one scratch world is stepped
/// through each choice and put back, and the worlds on the current path are kept one per
/// depth and updated by what each step changed, so nothing is copied whole and what is
/// touched stays in cache. Shortest traces (per end verdict, into a livelock) and the depth
/// (the greatest number of steps a state needs) come from a breadth-first pass over the
/// explored graph afterwards; a violation is traced again breadth first for one of the fewest
/// steps. `progress` is told the states seen and the current path's length now and then.
pub fn explore<SS, KS>(
    start: &World<SS, KS>,
    bounds: Bounds,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Exploration, hugesept_core::kvm::KvmError>
where
    SS: SeptStorage + Clone + Hash + PartialEq,
    KS: KvmStorage + Clone + Hash + PartialEq,
{
    use hugesept_core::kvm::KvmError;
    let start_regions = regions_hash(start);
    let start_parts = part_hashes(start);
    let mut graph = Graph::new(fingerprint(&start_parts, start_regions), start.ended());
    let mut transitions = 0u64;
    let mut stopped = None;
    let mut violation: Option<Broken> = None;
    let path_bytes = if bounds.path_bytes == 0 {
        PATH_BYTES
    } else {
        bounds.path_bytes
    };
    // The path's depth is bounded by its bytes: a copy's size grows with the tables its pools
    // take, so the bound follows the largest copy seen so far (`one`, below).
    let depth_for = |one: usize| (path_bytes / one.max(1)).max(2);
    let mut max_depth = depth_for(world_bytes(start));

    // path[d] is the state at depth d of the current path (a state whose last choice is
    // taken gives its place to the state that choice reaches). Each copy past the first
    // differs from the one before it only where its change record says, so a revert to that
    // one, or to a state stepped from it, copies just that; the search keeps this true.
    // Room for a path as deep as a small world's, taken up front (pages the path does not
    // reach are never touched) rather than by moving every world to a bigger vector.
    let mut path: Vec<World<SS, KS>> = Vec::with_capacity(max_depth.min(PATH_RESERVE));
    path.push(start.clone());
    // States whose successors wait because the path was as deep as memory allows.
    let mut aside: Vec<(u32, u128, PartHashes, World<SS, KS>)> = Vec::new();
    // The scratch world: path[d], stepped through each choice and put back.
    let mut s = start.clone();
    s.clear_changes();
    let mut frames: Vec<Frame> = Vec::new();
    if start.ended().is_none() {
        frames.push(Frame::of(0, start_regions, start_parts, start));
    }
    let mut m = Metrics::default();
    let mut reported = 0usize;
    // The copies of the world held once `n` more states are added (each on the path or set
    // aside, with a frame): the path's and the set-aside states' (each world's storage
    // beyond what its vector holds of it), the scratch world; and the frames.
    // A copy's bytes grow with the tables its pools take: the largest seen so far.
    let one = std::cell::Cell::new(world_bytes(start));
    let held = |path: &Vec<World<SS, KS>>, aside: &Vec<_>, frames: &Vec<Frame>, n: usize| {
        let one = one.get();
        let storage = one.saturating_sub(size_of::<World<SS, KS>>());
        vec_bytes_after(path, n)
            + vec_bytes_after::<(u32, u128, PartHashes, World<SS, KS>)>(aside, n)
            + (path.len() + aside.len() + n) * storage
            + vec_bytes_after(frames, n)
            + one
    };
    let mut checks = Checks::new();
    loop {
        let d = frames.len().saturating_sub(1);
        let Some(f) = frames.last_mut() else {
            // The path is done: go on from a state set aside.
            let Some((id, regions, parts, w)) = aside.pop() else {
                break;
            };
            path.truncate(1);
            path[0] = w;
            s.clone_from(&path[0]);
            s.clear_changes();
            frames.push(Frame::of(id, regions, parts, &path[0]));
            continue;
        };
        if f.next >= f.n {
            frames.pop();
            if d > 0 {
                // `s` equals path[d]; it and path[d] go back to path[d - 1] by what path[d]'s
                // record says, and the copy past path[d] now differs from it by that too.
                let (before, here) = path.split_at_mut(d);
                let (Some(parent), [here, past @ ..]) = (before.last(), here) else {
                    return Err(KvmError::Inconsistent);
                };
                let changes = here.changes();
                s.absorb_changes(&changes);
                s.revert_to(parent);
                s.clear_changes();
                if let Some(past) = past.first_mut() {
                    past.absorb_changes(&changes);
                }
                here.revert_to(parent);
                here.clear_changes();
            }
            continue;
        }
        // Last enabled first: the first choice, a vCPU running on, is most often the long
        // continuation, and the choice taken last gives the new state its state's level, so
        // chains deepen the path far less (td-shim's 6,156-step chain: about 500 worlds on
        // the path instead of 3,077).
        let c = f.choices[usize::from(f.n - 1 - f.next)];
        f.next += 1;
        let last = f.next >= f.n;
        let Some(w) = path.get(d) else {
            return Err(KvmError::Inconsistent);
        };
        // Tests: every revert, sync and copy of what changed left the scratch world equal to
        // the state it is stepped from.
        if bounds.verify_fingerprints && s != *w {
            return Err(KvmError::Inconsistent);
        }
        let stepped = s.step(c, &mut m)?;
        transitions += 1;
        if matches!(stepped, Stepped::Invalid) {
            s.revert_to(w);
            s.clear_changes();
            continue;
        }
        // The transition's invariants (before the fingerprint's slot is looked up, which
        // gives its load time to arrive; before renumbering epochs, when that happens); the
        // state's once it proves new.
        let mut changed = s.changed_regions();
        let renumber = s.sept().epochs().rebase_offset() != 0;
        if renumber {
            if let Err(v) = s.check_step_transition_in(w, &changed) {
                violation = Some((f.id, c, v));
                break;
            }
            s.canonicalize();
            changed = s.changed_regions();
        }
        // The fingerprint, updated by the regions and parts the step changed (from scratch
        // when it cannot tell, or after renumbering epochs).
        let s_regions = if renumber || changed.is_all() {
            regions_hash(&s)
        } else {
            let mut acc = f.regions;
            for &r in changed.regions() {
                acc ^= f.region_hash(w, r) ^ region_hash(&s, r as usize);
            }
            acc
        };
        let s_parts = if renumber {
            part_hashes(&s)
        } else {
            // Parts the step cannot have changed keep their hashes; KVM's fields and the
            // shared state (not tracked) are compared first; the S-EPT's fields when its
            // record says they changed, and an actor the step ran or kicked, are rehashed.
            let touched = s.touched_parts();
            let mut p = f.parts;
            for (k, h) in p.iter_mut().enumerate() {
                let bit = 1 << k;
                if touched & bit == 0 || ((k == 1 || k == 2) && s.same_part(w, k)) {
                    continue;
                }
                *h = part_hash(&s, k);
            }
            p
        };
        // Tests: the incremental parts against hashes from scratch, and the full checks
        // (which include the tables' digests against their entries).
        if bounds.verify_fingerprints
            && (s_regions != regions_hash(&s) || s_parts != part_hashes(&s) || s.check().is_err())
        {
            return Err(KvmError::Inconsistent);
        }
        let fp = fingerprint(&s_parts, s_regions);
        graph.prefetch(fp);
        if !renumber && let Err(v) = s.check_step_transition_in(w, &changed) {
            violation = Some((f.id, c, v));
            break;
        }
        let id = f.id;
        if checks.due(&graph) {
            one.set(one.get().max(world_bytes(&s)));
            max_depth = max_depth.min(depth_for(one.get()));
            let estimate = |k| {
                graph.bytes_after(k, k)
                    + held(&path, &aside, &frames, k)
                    + Graph::summary_bytes(graph.states() + k, graph.edges() + k)
            };
            if let Some(why) = checks.check(&bounds, &graph, estimate) {
                stopped = Some(why);
                break;
            }
        }
        let Some(unknown) = graph.reach(id, c, fp) else {
            s.revert_to(w);
            s.clear_changes();
            continue;
        };
        if let Err(v) = s.check_step_state_in(&changed) {
            violation = Some((id, c, v));
            break;
        }
        let verdict = s.ended();
        let Some(new) = graph.add(unknown, id, c, verdict, bounds.max_states) else {
            stopped = Some(Stop::MaxStates);
            break;
        };
        if graph.states() >= reported + (1 << 16) {
            reported = graph.states();
            progress(reported, path.len());
        }
        if verdict.is_some() {
            s.revert_to(w);
            s.clear_changes();
            continue;
        }
        let next = Frame::of(new, s_regions, s_parts, &s);
        if last {
            // path[d] has no choice left: the new state takes its place. Relative to
            // path[d - 1] it differs where path[d] did and where the step changed; the copy
            // past it, where it did and where the step changed.
            let step = s.changes();
            let (here, past) = path.split_at_mut(d + 1);
            let Some(here) = here.last_mut() else {
                return Err(KvmError::Inconsistent);
            };
            let before = here.changes();
            if let Some(past) = past.first_mut() {
                past.absorb_changes(&step);
            }
            here.sync_from(&s);
            here.absorb_changes(&before);
            s.clear_changes();
            if let Some(f) = frames.last_mut() {
                *f = next;
            }
            continue;
        }
        if d + 1 >= max_depth {
            aside.push((new, s_regions, s_parts, s.clone()));
            s.revert_to(w);
            s.clear_changes();
            continue;
        }
        // Descend: path[d + 1] becomes the new state, by what differs from it.
        match path.get_mut(d + 1..) {
            Some([next, past @ ..]) => {
                next.absorb_changes(&s.changes());
                if let Some(past) = past.first_mut() {
                    past.absorb_changes(&next.changes());
                }
                next.revert_to(&s);
            }
            _ => path.push(s.clone()),
        }
        s.clear_changes();
        frames.push(next);
    }
    progress(graph.states(), path.len());
    if violation.is_some() {
        // One of the fewest steps, breadth first; the depth-first path when the bound stops
        // that search first.
        let bfs = explore_breadth_first(start, bounds, progress)?;
        if bfs.violation.is_some() {
            return Ok(bfs);
        }
    }
    let now = graph.bytes_after(0, 0)
        + held(&path, &aside, &frames, 0)
        + Graph::summary_bytes(graph.states(), graph.edges());
    let mut ex = graph.exploration(transitions, stopped, violation, checks.memory.max(now));
    ex.pending = frames
        .iter()
        .map(|f| usize::from(f.n.saturating_sub(f.next)))
        .sum::<usize>()
        + aside.len();
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
