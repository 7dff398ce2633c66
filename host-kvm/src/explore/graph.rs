//! The explored graph: states by fingerprint, the transitions between them, which are ends;
//! and what it says once explored (shortest traces, depth, liveness).

use std::collections::BTreeMap;

use hugesept_core::world::{Choice, Verdict, Violation};

use super::edges::{Edges, MAX_STATES, Step};
use super::fingerprint::{Lookup, StateTable};
use super::{Exploration, Stop};

/// The explored graph: the states by fingerprint, transitions between distinct states, and
/// which states are ends. Both searches build it the same way.
pub(super) struct Graph {
    /// Each state's id by fingerprint.
    ids: StateTable,
    /// Every transition into another state, by source.
    edges: Edges,
    /// The verdict of each state, `None` while it runs.
    verdicts: Vec<Option<Verdict>>,
}

/// States a new graph has room for before its vectors grow.
const RESERVE_STATES: usize = 1 << 16;

/// A broken invariant: the state it was reached from, the choice, what broke.
pub(super) type Broken = (u32, Choice, Violation);

/// A state not in the graph, and where it goes once added ([`Graph::reach`], [`Graph::add`]).
pub(super) struct Unknown {
    fp: u128,
    slot: usize,
}

impl Graph {
    /// The graph of the start state alone (id 0).
    pub(super) fn new(fp: u128, verdict: Option<Verdict>) -> Self {
        let mut ids = StateTable::new();
        if let Lookup::Vacant(slot) = ids.find(fp) {
            ids.insert_at(slot, fp, 0);
        }
        // Room for a small world's graph up front (untouched pages cost nothing) rather than
        // by moving the vectors as they grow.
        let mut verdicts = Vec::with_capacity(RESERVE_STATES);
        verdicts.push(verdict);
        Graph {
            ids,
            edges: Edges::default(),
            verdicts,
        }
    }

    /// The graph of `verdicts.len()` states (id 0 the start) and these transitions, built by
    /// other means than [`Graph::reach`] and [`Graph::add`] (the parallel search): it can be
    /// summarised, not searched on.
    pub(super) fn from_parts(edges: Edges, verdicts: Vec<Option<Verdict>>) -> Self {
        Graph {
            ids: StateTable::new(),
            edges,
            verdicts,
        }
    }

    pub(super) fn states(&self) -> usize {
        self.verdicts.len()
    }

    /// Edges recorded.
    pub(super) fn edges(&self) -> usize {
        self.edges.len()
    }

    /// Bytes the graph holds once `states` more states and `edges` more edges are added (an
    /// upper bound): each vector's capacity as it grows times its element's size (the state
    /// table's slots and fingerprints, the edges, the verdicts).
    pub(super) fn bytes_after(&self, states: usize, edges: usize) -> usize {
        self.ids.bytes_after(states)
            + self.edges.bytes_after(edges)
            + super::capacity_after(&self.verdicts, states) * size_of::<Option<Verdict>>()
    }

    /// Bytes [`Graph::exploration`] allocates at most beyond the graph, for a graph of
    /// `states` states and `edges` edges: the rows of the edges by source and the distances
    /// and first steps of the shortest paths; then, with the distances kept, the rows by
    /// target and the marks and stack of the liveness pass.
    /// With `together`, the two passes run at once (on two threads) and hold their
    /// allocations together.
    pub(super) fn summary_bytes(states: usize, edges: usize, together: bool) -> usize {
        let rows = 2 * (states + 1) * size_of::<u32>();
        let shortest = states * (2 * size_of::<u32>() + size_of::<Step>());
        let queue = states * size_of::<u32>();
        let by_source = rows + edges * size_of::<Step>() + shortest + queue;
        let marks = 2 * states * size_of::<bool>() + states * size_of::<u32>();
        let by_target = rows + edges * size_of::<u32>() + marks;
        if together {
            by_source + by_target
        } else {
            by_source.max(shortest + by_target)
        }
    }

    /// Whether [`Graph::exploration`] runs its two passes at once with `threads` threads
    /// (worth a thread on graphs past a million transitions).
    pub(super) fn passes_together(threads: usize, edges: usize) -> bool {
        threads > 1 && edges > 1 << 20
    }

    /// Starts loading where [`Graph::reach`] will look for `fp`.
    pub(super) fn prefetch(&self, fp: u128) {
        self.ids.prefetch(fp);
    }

    /// A step from `from` by `c` reached the state `fp`: when it is known, records the
    /// transition into it and answers `None`; otherwise, what [`Graph::add`] takes to add it.
    pub(super) fn reach(&mut self, from: u32, c: Choice, fp: u128) -> Option<Unknown> {
        match self.ids.find(fp) {
            Lookup::Known(known) => {
                if known != from {
                    self.edges.push(from, known, c);
                }
                None
            }
            Lookup::Vacant(slot) => Some(Unknown { fp, slot }),
        }
    }

    /// Adds the state `new` ([`Graph::reach`] just said so; nothing added since) reached from
    /// `from` by `c`, and its id; `None` (nothing added) once the graph holds `max_states`.
    pub(super) fn add(
        &mut self,
        new: Unknown,
        from: u32,
        c: Choice,
        verdict: Option<Verdict>,
        max_states: usize,
    ) -> Option<u32> {
        // Ids are 32-bit (and the table keeps id + 1).
        if self.states() >= max_states.min(MAX_STATES) {
            return None;
        }
        let id = self.states() as u32;
        self.ids.insert_at(new.slot, new.fp, id);
        self.edges.push(from, id, c);
        self.verdicts.push(verdict);
        Some(id)
    }

    /// What the exploration found, with `broken` traced along a shortest path into the state
    /// it was reached from.
    pub(super) fn exploration(
        &self,
        transitions: u64,
        stopped: Option<Stop>,
        broken: Option<Broken>,
        memory: usize,
        threads: usize,
    ) -> Exploration {
        // Liveness needs a complete, safe exploration; with a thread to spare on a large
        // graph, the backward pass runs beside the shortest paths.
        let live = stopped.is_none() && broken.is_none();
        let (shortest, stuck) = if live && Self::passes_together(threads, self.edges()) {
            std::thread::scope(|scope| {
                let stuck = scope.spawn(|| self.cannot_end());
                let shortest = self.shortest();
                let stuck = stuck.join().unwrap_or_else(|_| self.cannot_end());
                (shortest, Some(stuck))
            })
        } else {
            (self.shortest(), None)
        };
        let violation = broken.map(|(from, c, v)| {
            let mut p = shortest.path(from);
            p.push(c);
            (v, p)
        });
        let mut ex = summarise(self, &shortest, stuck, transitions, stopped, violation);
        ex.memory = memory;
        ex
    }
}

/// Shortest paths from the start over the explored graph, found breadth first taking each
/// state's choices in [`Choice`]'s order, so that which of several shortest paths each state
/// gets depends on the graph alone, not on the order its states were numbered or its
/// transitions recorded in (the parallel search numbers them as its workers race).
struct Shortest {
    /// Steps from the start, `u32::MAX` when unreachable.
    dist: Vec<u32>,
    /// The state and choice each state is first reached from.
    via: Vec<(u32, Choice)>,
    /// Each state's place in the breadth-first order (`u32::MAX` when unreachable): ties
    /// between states equally far are broken by it.
    rank: Vec<u32>,
}

impl Graph {
    /// The edges grouped by the state `by` names for each (compressed rows): the items of
    /// state `i` are `items[start[i]..start[i + 1]]`, in the order the edges were recorded.
    fn adjacency<T: Copy>(
        &self,
        blank: T,
        by: impl Fn(u32, Step) -> (u32, T),
    ) -> (Vec<u32>, Vec<T>) {
        let n = self.verdicts.len();
        let mut start = vec![0u32; n + 1];
        for (from, step) in self.edges.iter() {
            start[by(from, step).0 as usize + 1] += 1;
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut items = vec![blank; self.edges.len()];
        for (from, step) in self.edges.iter() {
            let (k, item) = by(from, step);
            items[fill[k as usize] as usize] = item;
            fill[k as usize] += 1;
        }
        (start, items)
    }

    fn shortest(&self) -> Shortest {
        let n = self.verdicts.len();
        let (start, mut out) = self.adjacency(Step::default(), |from, step| (from, step));
        for i in 0..n {
            out[start[i] as usize..start[i + 1] as usize].sort_unstable_by_key(|s| s.code());
        }
        let mut dist = vec![u32::MAX; n];
        let mut via = vec![(0u32, Choice::Vcpu(0)); n];
        let mut rank = vec![u32::MAX; n];
        let mut queue = std::collections::VecDeque::new();
        if n > 0 {
            dist[0] = 0;
            queue.push_back(0u32);
        }
        let mut next_rank = 0u32;
        while let Some(f) = queue.pop_front() {
            rank[f as usize] = next_rank;
            next_rank += 1;
            let d = dist[f as usize] + 1;
            for step in &out[start[f as usize] as usize..start[f as usize + 1] as usize] {
                let (t, c) = (step.to(), step.choice());
                if dist[t as usize] == u32::MAX {
                    dist[t as usize] = d;
                    via[t as usize] = (f, c);
                    queue.push_back(t);
                }
            }
        }
        Shortest { dist, via, rank }
    }

    /// States from which no end state is reachable (backward reachability from the ends).
    fn cannot_end(&self) -> Vec<bool> {
        let n = self.verdicts.len();
        let (rev_start, rev) = self.adjacency(0, |from, step| (step.to(), from));
        let mut can_end: Vec<bool> = self.verdicts.iter().map(Option::is_some).collect();
        let mut stack: Vec<u32> = (0..n as u32).filter(|&i| can_end[i as usize]).collect();
        while let Some(t) = stack.pop() {
            for &f in &rev[rev_start[t as usize] as usize..rev_start[t as usize + 1] as usize] {
                if !can_end[f as usize] {
                    can_end[f as usize] = true;
                    stack.push(f);
                }
            }
        }
        can_end.into_iter().map(|c| !c).collect()
    }
}

impl Shortest {
    fn path(&self, mut id: u32) -> Vec<Choice> {
        let mut p = Vec::new();
        while id != 0 && self.dist.get(id as usize).is_some_and(|&d| d != u32::MAX) {
            let (from, c) = self.via[id as usize];
            p.push(c);
            id = from;
        }
        p.reverse();
        p
    }
}

/// What the explored graph says: ends, shortest traces, depth, and (when complete and safe)
/// liveness.
fn summarise(
    graph: &Graph,
    shortest: &Shortest,
    stuck: Option<Vec<bool>>,
    transitions: u64,
    stopped: Option<Stop>,
    violation: Option<(Violation, Vec<Choice>)>,
) -> Exploration {
    let bounded = stopped.is_some();
    let reached = |&d: &u32| d != u32::MAX;
    let states = graph.states();
    let mut ex = Exploration {
        states,
        transitions,
        depth: shortest
            .dist
            .iter()
            .filter(|d| reached(d))
            .max()
            .copied()
            .unwrap_or(0) as usize,
        bounded,
        stopped,
        memory: 0,
        ends: BTreeMap::new(),
        end_traces: BTreeMap::new(),
        livelock_states: 0,
        livelock_trace: None,
        violation: None,
        pending: 0,
    };
    // The nearest by steps, then by breadth-first order.
    let key = |i: u32| (shortest.dist[i as usize], shortest.rank[i as usize]);
    let closest = |ids: &mut dyn Iterator<Item = u32>| {
        ids.filter(|&i| reached(&shortest.dist[i as usize]))
            .min_by_key(|&i| key(i))
    };
    let mut best: BTreeMap<&'static str, u32> = BTreeMap::new();
    for (i, v) in graph.verdicts.iter().enumerate() {
        let Some(v) = v.map(Verdict::name) else {
            continue;
        };
        *ex.ends.entry(v).or_insert(0) += 1;
        let i = i as u32;
        let e = best.entry(v).or_insert(i);
        if key(i) < key(*e) {
            *e = i;
        }
    }
    for (v, i) in best {
        ex.end_traces.insert(v, shortest.path(i));
    }
    if violation.is_none() && !bounded {
        let stuck = stuck.unwrap_or_else(|| graph.cannot_end());
        ex.livelock_states = stuck.iter().filter(|s| **s).count();
        ex.livelock_trace = closest(&mut (0..states as u32).filter(|&i| stuck[i as usize]))
            .map(|i| shortest.path(i));
    }
    ex.violation = violation;
    ex
}
