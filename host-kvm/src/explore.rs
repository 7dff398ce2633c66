//! The exhaustive explorer: every interleaving of a world's choices, breadth first, each state
//! remembered by a 128-bit fingerprint of its full value (hash compaction, as explicit-state
//! model checkers do), the safety invariants checked on every transition. The first violation
//! stops it with a shortest trace; at the end, liveness is decided on the explored graph: a
//! state from which no end state can be reached is a livelock (under fair scheduling every
//! run ends exactly when an end is reachable from every reachable state).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use hugesept_core::kvm::KvmStorage;
use hugesept_core::sept::SeptStorage;
use hugesept_core::world::{Choice, MAX_CHOICES, Metrics, Stepped, Verdict, Violation, World};

/// A fast 128-bit fingerprint: two independent multiply-rotate lanes over the words the
/// derived `Hash` implementations write.
#[derive(Clone, Copy)]
pub struct Fingerprint {
    a: u64,
    b: u64,
}

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint {
            a: 0x243F_6A88_85A3_08D3,
            b: 0x1319_8A2E_0370_7344,
        }
    }
}

impl Fingerprint {
    #[inline]
    fn mix(&mut self, x: u64) {
        self.a = (self.a ^ x)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
        self.b = (self.b.rotate_left(23) ^ x).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    }

    /// The 128-bit value.
    pub fn value(&self) -> u128 {
        let a = self.a ^ (self.b >> 31);
        let b = self.b ^ (self.a >> 29);
        (u128::from(a.wrapping_mul(0xFF51_AFD7_ED55_8CCD)) << 64)
            | u128::from(b.wrapping_mul(0xC4CE_B9FE_1A85_EC53))
    }

    /// The fingerprint of `v`.
    pub fn of<T: Hash + ?Sized>(v: &T) -> u128 {
        let mut f = Fingerprint::default();
        v.hash(&mut f);
        f.value()
    }
}

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.value() as u64
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
}

/// A hasher for maps keyed by fingerprints (already uniform).
#[derive(Default)]
struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, i: u128) {
        self.0 = i as u64;
    }
}

type FpMap<V> = HashMap<u128, V, BuildHasherDefault<Passthrough>>;

/// Limits of an exploration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bounds {
    /// Distinct states at most; the exploration stops (partial) when it would exceed them.
    pub max_states: usize,
    /// Recompute every fingerprint from scratch as well and fail on a difference (tests).
    pub verify_fingerprints: bool,
}

/// The 128-bit hash of region `r` of `w`.
fn region_hash<SS: SeptStorage, KS: KvmStorage>(w: &World<SS, KS>, r: usize) -> u128 {
    let mut f = Fingerprint::default();
    w.hash_region(r, &mut f);
    f.value()
}

/// The XOR of every region's hash.
fn regions_hash<SS: SeptStorage, KS: KvmStorage>(w: &World<SS, KS>) -> u128 {
    (0..w.regions()).fold(0, |acc, r| acc ^ region_hash(w, r))
}

/// The fingerprint of `w` whose regions hash to `regions`.
fn fingerprint<SS: SeptStorage, KS: KvmStorage>(w: &World<SS, KS>, regions: u128) -> u128 {
    let mut f = Fingerprint::default();
    w.hash_small(&mut f);
    f.write_u128(regions);
    f.value()
}

/// What an exploration found.
#[derive(Debug, Clone)]
pub struct Exploration {
    /// Distinct states reached.
    pub states: usize,
    /// Transitions taken (including back into known states).
    pub transitions: u64,
    /// The deepest BFS level reached.
    pub depth: usize,
    /// Whether `max_states` cut it short.
    pub bounded: bool,
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
}

struct Node {
    parent: u32,
    choice: Choice,
}

fn path(nodes: &[Node], mut id: u32) -> Vec<Choice> {
    let mut p = Vec::new();
    while id != 0 {
        let Some(n) = nodes.get(id as usize) else {
            break;
        };
        p.push(n.choice);
        id = n.parent;
    }
    p.reverse();
    p
}

/// Explores every interleaving from `start`; `progress` is told the number of states seen
/// after each BFS level.
pub fn explore<SS, KS>(
    start: &World<SS, KS>,
    bounds: Bounds,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Exploration, hugesept_core::kvm::KvmError>
where
    SS: SeptStorage + Clone + Hash,
    KS: KvmStorage + Clone + Hash,
{
    let mut ids: FpMap<u32> = FpMap::default();
    let mut nodes = vec![Node {
        parent: 0,
        choice: Choice::Vcpu(0),
    }];
    let start_regions = regions_hash(start);
    ids.insert(fingerprint(start, start_regions), 0);
    let mut ended: Vec<bool> = vec![false];
    let mut edges: Vec<(u32, u32)> = Vec::new();
    let mut frontier: Vec<(u32, u128, World<SS, KS>)> = vec![(0, start_regions, start.clone())];
    let mut ex = Exploration {
        states: 1,
        transitions: 0,
        depth: 0,
        bounded: false,
        ends: BTreeMap::new(),
        end_traces: BTreeMap::new(),
        violation: None,
        livelock_states: 0,
        livelock_trace: None,
    };
    if let Some(v) = start.ended() {
        ex.ends.insert(v.name(), 1);
        ex.end_traces.insert(v.name(), Vec::new());
        return Ok(ex);
    }
    let mut m = Metrics::default();
    let mut next_frontier = Vec::new();
    'levels: while !frontier.is_empty() {
        for (id, w_regions, w) in frontier.drain(..) {
            let mut choices = [Choice::Vcpu(0); MAX_CHOICES];
            let n = w.enabled(&mut choices);
            // One scratch world per state: step it, and put back what the step changed.
            let mut s = w.clone();
            s.clear_dirty();
            for &c in choices.iter().take(n) {
                let stepped = s.step(c, &mut m)?;
                ex.transitions += 1;
                if matches!(stepped, Stepped::Invalid) {
                    s.revert_to(&w);
                    s.clear_dirty();
                    continue;
                }
                if let Err(v) = s.check_step(&w) {
                    let mut p = path(&nodes, id);
                    p.push(c);
                    ex.violation = Some((v, p));
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
                let fp = fingerprint(target, s_regions);
                let known = ids.get(&fp).copied();
                if let Some(known) = known {
                    if known != id {
                        edges.push((id, known));
                    }
                } else {
                    if nodes.len() >= bounds.max_states {
                        ex.bounded = true;
                        break 'levels;
                    }
                    let new = nodes.len() as u32;
                    nodes.push(Node {
                        parent: id,
                        choice: c,
                    });
                    ids.insert(fp, new);
                    edges.push((id, new));
                    let child = canonical.unwrap_or_else(|| s.clone());
                    match child.ended() {
                        Some(v) => {
                            ended.push(true);
                            *ex.ends.entry(v.name()).or_insert(0) += 1;
                            ex.end_traces
                                .entry(v.name())
                                .or_insert_with(|| path(&nodes, new));
                        }
                        None => {
                            ended.push(false);
                            next_frontier.push((new, s_regions, child));
                        }
                    }
                }
                s.revert_to(&w);
                s.clear_dirty();
            }
        }
        if !next_frontier.is_empty() {
            ex.depth += 1;
        }
        std::mem::swap(&mut frontier, &mut next_frontier);
        progress(nodes.len(), ex.depth);
    }
    ex.states = nodes.len();
    if ex.violation.is_none() && !ex.bounded {
        // Backward reachability from the end states.
        let mut rev_start = vec![0u32; nodes.len() + 1];
        for &(_, to) in &edges {
            rev_start[to as usize + 1] += 1;
        }
        for i in 0..nodes.len() {
            rev_start[i + 1] += rev_start[i];
        }
        let mut fill = rev_start.clone();
        let mut rev = vec![0u32; edges.len()];
        for &(from, to) in &edges {
            rev[fill[to as usize] as usize] = from;
            fill[to as usize] += 1;
        }
        let mut can_end = ended.clone();
        let mut stack: Vec<u32> = (0..nodes.len() as u32)
            .filter(|&i| ended[i as usize])
            .collect();
        while let Some(t) = stack.pop() {
            for &f in &rev[rev_start[t as usize] as usize..rev_start[t as usize + 1] as usize] {
                if !can_end[f as usize] {
                    can_end[f as usize] = true;
                    stack.push(f);
                }
            }
        }
        ex.livelock_states = can_end.iter().filter(|c| !**c).count();
        // Node ids grow with BFS depth: the first such id has a shortest path.
        if let Some(first) = can_end.iter().position(|c| !c) {
            ex.livelock_trace = Some(path(&nodes, first as u32));
        }
    }
    Ok(ex)
}

/// The verdict name of the worst outcome an exploration found, for traces and exit codes.
pub fn worst(ex: &Exploration) -> Option<&'static str> {
    if ex.violation.is_some() {
        return Some(crate::trace::VIOLATION);
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
