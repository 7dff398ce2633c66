//! The depth-first search on several threads: each worker runs its own [`Search`] (its own
//! path and scratch world); states are told apart in one table split into shards by
//! fingerprint, each behind its own lock, and numbered from one counter; a worker that runs out
//! of states to search from waits for one another worker hands over (a new state it would
//! have descended into while a worker waits). Each worker keeps the transitions and verdicts
//! it recorded; at the end they make one graph, summarised as the sequential search's is.
//! A complete exploration reaches the same states by the same transitions whatever the order,
//! so its counts, ends, depth, liveness and shortest-trace lengths are the sequential ones.

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use hugesept_core::kvm::{KvmError, KvmStorage};
use hugesept_core::sept::SeptStorage;
use hugesept_core::world::{Choice, Verdict, Violation, World};

use super::edges::{Edges, MAX_STATES};
use super::fingerprint::{Lookup, StateTable};
use super::graph::{Broken, Graph};
use super::search::{Ended, Item, Record, Search, Visit};
use super::{
    Bounds, CHECK_EDGES, Exploration, Stop, capacity_after, fingerprint, part_hashes, regions_hash,
};

/// Shards of the state table (a power of two): enough that two workers rarely want the same
/// one at once.
const SHARDS: usize = 256;

/// One shard: a table from fingerprints to its own indices, and each index's state id.
struct Shard {
    table: StateTable,
    ids: Vec<u32>,
}

/// States waiting for a worker, and who waits for one.
struct Queue<SS: SeptStorage + Clone, KS: KvmStorage + Clone> {
    items: Vec<Item<SS, KS>>,
    /// Workers waiting in [`Shared::take`].
    waiting: usize,
    /// Every worker waited with nothing queued: the search is over.
    done: bool,
}

/// What the workers share.
struct Shared<SS: SeptStorage + Clone, KS: KvmStorage + Clone> {
    shards: Vec<Mutex<Shard>>,
    /// The next state id (ids past `max_states` are not given out).
    next_id: AtomicUsize,
    max_states: usize,
    queue: Mutex<Queue<SS, KS>>,
    ready: Condvar,
    /// Workers waiting for a state, and states queued (read without the queue's lock to
    /// decide whether to hand one over).
    hungry: AtomicUsize,
    queued: AtomicUsize,
    /// A worker stopped (a bound, the stop flag, a broken invariant): every worker stops.
    halt: AtomicBool,
    /// The worker that stopped first: its reason is the exploration's (the others stop
    /// because it did).
    first: Mutex<Option<usize>>,
    /// Transitions recorded by all workers as of their last checks.
    edges: AtomicUsize,
    /// Bytes the state table's shards hold.
    table_bytes: AtomicUsize,
    /// Each worker's bytes (its search's path and scratch world, its transitions and
    /// verdicts) as of its last check.
    held: Vec<AtomicUsize>,
    /// The workers' reservations ([`Worker::reserved`]) together.
    reserved: AtomicUsize,
    /// Bytes of the largest world copy any worker has seen.
    one: AtomicUsize,
    /// The most bytes a check estimated.
    memory: AtomicUsize,
    threads: usize,
}

/// Locks `m`. A worker that panicked while holding a lock poisons it; what the locks guard is
/// consistent between two calls, and the panic stops the search anyway ([`Finish`]), so the
/// others go on to their end.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<SS: SeptStorage + Clone, KS: KvmStorage + Clone> Shared<SS, KS> {
    fn shard(&self, fp: u128) -> MutexGuard<'_, Shard> {
        lock(&self.shards[(fp as usize) & (SHARDS - 1)])
    }

    fn queue(&self) -> MutexGuard<'_, Queue<SS, KS>> {
        lock(&self.queue)
    }

    /// Stops every worker and wakes the waiting ones.
    fn stop(&self) {
        self.halt.store(true, Ordering::Release);
        let _q = self.queue();
        self.ready.notify_all();
    }

    /// The next state to search from: one queued, or, once every worker waits with nothing
    /// queued (or the search halted), none.
    fn take(&self) -> Option<Item<SS, KS>> {
        let mut q = self.queue();
        loop {
            if q.done || self.halt.load(Ordering::Acquire) {
                return None;
            }
            if let Some(item) = q.items.pop() {
                self.queued.store(q.items.len(), Ordering::Relaxed);
                return Some(item);
            }
            q.waiting += 1;
            if q.waiting == self.threads {
                q.done = true;
                self.ready.notify_all();
                return None;
            }
            self.hungry.fetch_add(1, Ordering::Relaxed);
            q = self
                .ready
                .wait(q)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.hungry.fetch_sub(1, Ordering::Relaxed);
            q.waiting -= 1;
        }
    }

    fn give(&self, item: Item<SS, KS>) {
        let mut q = self.queue();
        q.items.push(item);
        self.queued.store(q.items.len(), Ordering::Relaxed);
        self.ready.notify_one();
    }
}

impl Shard {
    /// Bytes the shard holds.
    fn bytes(&self) -> usize {
        self.table.bytes_after(0) + self.ids.capacity() * size_of::<u32>()
    }
}

/// Bytes the state table may take per state beyond what it holds: a fingerprint and an id, and
/// slots at most five-eighths full, with each vector's room doubling as it grows.
const TABLE_BYTES_PER_STATE: usize =
    2 * (size_of::<u128>() + size_of::<u32>() + 2 * size_of::<u64>());

/// One worker's record: the transitions and verdicts it found.
struct Worker<'a, SS: SeptStorage + Clone, KS: KvmStorage + Clone> {
    shared: &'a Shared<SS, KS>,
    index: usize,
    edges: Edges,
    verdicts: Vec<(u32, Option<Verdict>)>,
    /// Edges recorded at the next check, and at the last one.
    next_check: usize,
    checked: usize,
    /// Bytes this worker reserved at its last check for what it may hold and add until its
    /// next (its part of [`Shared::reserved`]).
    reserved: usize,
}

impl<SS: SeptStorage + Clone, KS: KvmStorage + Clone> Worker<'_, SS, KS> {
    /// Bytes of this worker's own vectors once `k` more states and transitions are in them.
    fn own_bytes(&self, k: usize) -> usize {
        self.edges.bytes_after(k)
            + capacity_after(&self.verdicts, k) * size_of::<(u32, Option<Verdict>)>()
    }
}

impl<SS, KS> Record<SS, KS> for Worker<'_, SS, KS>
where
    SS: SeptStorage + Clone,
    KS: KvmStorage + Clone,
{
    fn prefetch(&self, _fp: u128) {}

    fn visit(
        &mut self,
        from: u32,
        c: Choice,
        fp: u128,
        new: &mut dyn FnMut() -> Result<Option<Verdict>, Violation>,
    ) -> Visit {
        let id = {
            let mut shard = self.shared.shard(fp);
            match shard.table.find(fp) {
                Lookup::Known(local) => {
                    // Every index the shard's table gives out has its id.
                    let known = shard.ids[local as usize];
                    drop(shard);
                    if known != from {
                        self.edges.push(from, known, c);
                    }
                    return Visit::Known;
                }
                Lookup::Vacant(slot) => {
                    let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
                    if id >= self.shared.max_states.min(MAX_STATES) {
                        return Visit::Full;
                    }
                    let before = shard.bytes();
                    let local = shard.ids.len() as u32;
                    shard.table.insert_at(slot, fp, local);
                    shard.ids.push(id as u32);
                    // The table's bytes change only when one of the shard's vectors grows.
                    let after = shard.bytes();
                    if after != before {
                        self.shared
                            .table_bytes
                            .fetch_add(after.saturating_sub(before), Ordering::Relaxed);
                    }
                    id as u32
                }
            }
        };
        match new() {
            Err(v) => Visit::Broken(v),
            Ok(verdict) => {
                self.edges.push(from, id, c);
                self.verdicts.push((id, verdict));
                Visit::New(id, verdict)
            }
        }
    }

    fn check_due(&self) -> bool {
        self.edges.len() >= self.next_check || self.shared.halt.load(Ordering::Relaxed)
    }

    fn check(
        &mut self,
        bounds: &Bounds,
        one: usize,
        held: &dyn Fn(usize) -> usize,
    ) -> Option<Stop> {
        let shared = self.shared;
        if shared.halt.load(Ordering::Acquire) {
            // Another worker stopped; it says why.
            return Some(Stop::Interrupted);
        }
        if bounds.stop.is_some_and(|stop| stop()) {
            return Some(Stop::Interrupted);
        }
        let new_edges = self.edges.len() - self.checked;
        self.checked = self.edges.len();
        let edges = shared.edges.fetch_add(new_edges, Ordering::Relaxed) + new_edges;
        let one = shared.one.fetch_max(one, Ordering::Relaxed).max(one);
        let states = shared.next_id.load(Ordering::Relaxed);
        let storage = one.saturating_sub(size_of::<World<SS, KS>>());
        let queued = shared.queued.load(Ordering::Relaxed) * (storage + size_of::<Item<SS, KS>>());
        let table = shared.table_bytes.load(Ordering::Relaxed);
        let together = Graph::passes_together(shared.threads, edges);
        // What every worker shares, as found so far: the table, the queue, the graph's
        // verdicts (its transitions are the workers' lists, moved), and what its summary
        // allocates.
        let common = table
            + queued
            + states * size_of::<Option<Verdict>>()
            + Graph::summary_bytes(states, edges, together);
        // This worker's reservation until its next check, `k` transitions (so states) away:
        // its search and its own vectors then, and what `k` more states and transitions add
        // to what every worker shares.
        let per_state =
            TABLE_BYTES_PER_STATE + size_of::<Option<Verdict>>() + Graph::summary_bytes(1, 1, true);
        // One insert may double a shard's vectors, old and new alive together while it does.
        let shard_growth = 2 * table.div_ceil(SHARDS);
        let reservation = |k: usize| held(k) + self.own_bytes(k) + k * per_state + shard_growth;
        // What it holds now, for the memory the exploration reports.
        if let Some(a) = shared.held.get(self.index) {
            a.store(held(0) + self.own_bytes(0), Ordering::Relaxed);
        }
        // What every worker holds now (their paths, scratch worlds and lists, which become
        // the graph's), with what they share: the memory the exploration reports.
        let holding: usize = shared.held.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        shared.memory.fetch_max(common + holding, Ordering::Relaxed);
        // Reserve, against every other worker's reservation, room for `CHECK_EDGES` more
        // transitions, else for one, else stop: the workers' reservations and what they share
        // stay within the bound together.
        let max = bounds.max_memory;
        let old = self.reserved;
        for k in [CHECK_EDGES, 1] {
            let new = reservation(k);
            let taken = shared
                .reserved
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                    let r = r.saturating_sub(old) + new;
                    (max == 0 || common + r <= max).then_some(r)
                });
            if taken.is_ok() {
                self.reserved = new;
                self.next_check = self.edges.len() + k;
                return None;
            }
        }
        Some(Stop::MaxMemory)
    }

    fn share(&self) -> bool {
        let shared = self.shared;
        shared.queued.load(Ordering::Relaxed) < shared.hungry.load(Ordering::Relaxed)
    }

    fn set_aside(&mut self, item: Item<SS, KS>) {
        self.shared.give(item);
    }

    fn take(&mut self) -> Option<Item<SS, KS>> {
        // A worker without a state to search from holds no room for one: it gives its
        // reservation back while it waits, and checks (reserving again) before its first step.
        self.shared
            .reserved
            .fetch_sub(self.reserved, Ordering::AcqRel);
        self.reserved = 0;
        self.next_check = self.edges.len();
        self.shared.take()
    }

    fn report(&mut self, _path: usize) {}
}

/// Marks a worker finished when dropped, and stops every worker unless it completed (it
/// returned, or unwound from a panic, without completing).
struct Finish<'a, SS: SeptStorage + Clone, KS: KvmStorage + Clone> {
    shared: &'a Shared<SS, KS>,
    finished: &'a AtomicUsize,
    index: usize,
    completed: bool,
}

impl<SS: SeptStorage + Clone, KS: KvmStorage + Clone> Drop for Finish<'_, SS, KS> {
    fn drop(&mut self) {
        if !self.completed {
            // The first to stop is named before anyone sees the halt it raises.
            lock(&self.shared.first).get_or_insert(self.index);
            self.shared.stop();
        }
        self.finished.fetch_add(1, Ordering::Release);
    }
}

/// What one worker found.
struct Found {
    edges: Edges,
    verdicts: Vec<(u32, Option<Verdict>)>,
    transitions: u64,
    ended: Ended,
    pending: usize,
}

/// Explores on [`Bounds::threads`] threads (see the module's documentation).
pub(super) fn explore<SS, KS>(
    start: &World<SS, KS>,
    bounds: Bounds,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Exploration, KvmError>
where
    SS: SeptStorage + Clone + Hash + PartialEq + Send,
    KS: KvmStorage + Clone + Hash + PartialEq + Send,
{
    let threads = bounds.threads.max(1);
    let start_regions = regions_hash(start);
    let start_parts = part_hashes(start);
    let start_fp = fingerprint(&start_parts, start_regions);
    let shared = Shared {
        shards: (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    table: StateTable::new(),
                    ids: Vec::new(),
                })
            })
            .collect(),
        next_id: AtomicUsize::new(0),
        max_states: bounds.max_states,
        queue: Mutex::new(Queue {
            items: Vec::new(),
            waiting: 0,
            done: false,
        }),
        ready: Condvar::new(),
        hungry: AtomicUsize::new(0),
        queued: AtomicUsize::new(0),
        halt: AtomicBool::new(false),
        first: Mutex::new(None),
        edges: AtomicUsize::new(0),
        table_bytes: AtomicUsize::new(0),
        held: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
        reserved: AtomicUsize::new(0),
        one: AtomicUsize::new(0),
        memory: AtomicUsize::new(0),
        threads,
    };
    // The start state is id 0, as in the sequential search.
    {
        let mut shard = shared.shard(start_fp);
        if let Lookup::Vacant(slot) = shard.table.find(start_fp) {
            shard.table.insert_at(slot, start_fp, 0);
            shard.ids.push(0);
        }
        shared.next_id.store(1, Ordering::Relaxed);
    }
    let table: usize = shared.shards.iter().map(|m| lock(m).bytes()).sum();
    shared.table_bytes.store(table, Ordering::Relaxed);
    if start.ended().is_none() {
        shared.give((0, start_regions, start_parts, start.clone()));
    }
    let workers: Vec<Search<SS, KS>> = (0..threads).map(|_| Search::new(start, &bounds)).collect();
    let finished = AtomicUsize::new(0);
    let found: Vec<Result<Found, KvmError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .into_iter()
            .enumerate()
            .map(|(index, mut search)| {
                let shared = &shared;
                let finished = &finished;
                scope.spawn(move || {
                    // However this worker ends (a panic included), the others stop unless it
                    // completed, and the main thread counts it finished.
                    let mut guard = Finish {
                        shared,
                        finished,
                        index,
                        completed: false,
                    };
                    let mut rec = Worker {
                        shared,
                        index,
                        edges: Edges::default(),
                        verdicts: Vec::new(),
                        next_check: 0,
                        checked: 0,
                        reserved: 0,
                    };
                    let ended = search.run(&mut rec, &bounds);
                    guard.completed = matches!(ended, Ok(Ended::Done));
                    drop(guard);
                    ended.map(|ended| Found {
                        pending: search.pending(),
                        edges: rec.edges,
                        verdicts: rec.verdicts,
                        transitions: search.transitions,
                        ended,
                    })
                })
            })
            .collect();
        // Progress while the workers run.
        while finished.load(Ordering::Acquire) < threads {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let states = shared.next_id.load(Ordering::Relaxed);
            progress(states.min(bounds.max_states.max(1)), 0);
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(KvmError::Inconsistent)))
            .collect()
    });
    let mut parts = Vec::with_capacity(found.len());
    for f in found {
        parts.push(f?);
    }
    let states = shared
        .next_id
        .load(Ordering::Relaxed)
        .min(bounds.max_states.clamp(1, MAX_STATES));
    let mut verdicts = vec![None; states];
    if let Some(v) = verdicts.first_mut() {
        *v = start.ended();
    }
    // The graph's transitions: the workers' lists one after another (their chunks move).
    let mut edges = Edges::default();
    let mut transitions = 0;
    let mut stopped = None;
    let mut violation: Option<Broken> = None;
    let mut pending = shared.queue().items.len();
    let first = *lock(&shared.first);
    for (i, p) in parts.into_iter().enumerate() {
        for (id, v) in p.verdicts {
            if let Some(slot) = verdicts.get_mut(id as usize) {
                *slot = v;
            }
        }
        edges.append(p.edges);
        transitions += p.transitions;
        pending += p.pending;
        // The first worker to stop says why; the others stopped because it did.
        if first == Some(i) {
            match p.ended {
                Ended::Done => {}
                Ended::Stopped(why) => stopped = Some(why),
                Ended::Broken(b) => violation = Some(b),
            }
        }
    }
    progress(states, 0);
    let graph = Graph::from_parts(edges, verdicts);
    let together = Graph::passes_together(threads, graph.edges());
    let now =
        graph.bytes_after(0, 0) + Graph::summary_bytes(graph.states(), graph.edges(), together);
    let memory = shared.memory.load(Ordering::Relaxed).max(now);
    // The state table is not needed to summarise the graph: freed first.
    drop(shared);
    let mut ex = graph.exploration(transitions, stopped, violation, memory, threads);
    ex.pending = pending;
    Ok(ex)
}
