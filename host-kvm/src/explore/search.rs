//! The depth-first search over one scratch world: the worlds on the current path kept one per
//! depth and updated by what each step changed, the fingerprint updated by the regions and
//! parts a step changed, the safety invariants checked on every transition. Where it records
//! what it finds is a [`Record`]: the explored graph for the sequential search (mod.rs), the
//! shared state table for each worker of the parallel one (parallel.rs).

use std::hash::Hash;

use hugesept_core::kvm::{KvmError, KvmStorage};
use hugesept_core::sept::SeptStorage;
use hugesept_core::snapshot::Snapshot;
use hugesept_core::world::{Choice, MAX_CHOICES, Metrics, Stepped, Verdict, Violation, World};

use super::graph::Broken;
use super::{
    Bounds, PartHashes, Stop, choices_of, fingerprint, part_hash, part_hashes, region_hash,
    regions_hash, vec_bytes_after, world_bytes,
};

/// Levels of the depth-first path reserved at the start.
const PATH_RESERVE: usize = 1024;

/// Memory the depth-first path's worlds take unless [`Bounds::path_bytes`] says otherwise.
const PATH_BYTES: usize = 256 << 20;

/// A state to search from: its id, the hashes of its regions and parts, the world.
pub(super) type Item<SS, KS> = (u32, u128, PartHashes, World<SS, KS>);

/// What a [`Record`] says of the state a step reached.
pub(super) enum Visit {
    /// Known before (the transition is recorded).
    Known,
    /// New, with this id and verdict (the transition and the state are recorded).
    New(u32, Option<Verdict>),
    /// New, and it breaks a state invariant.
    Broken(Violation),
    /// New, but the exploration holds [`Bounds::max_states`] states.
    Full,
}

/// Where a search records the states and transitions it finds, and where states it does not
/// search from itself go.
pub(super) trait Record<SS, KS> {
    /// Starts loading where [`Record::visit`] will look for `fp`.
    fn prefetch(&self, fp: u128);
    /// A step from `from` by `c` reached the state `fp`; when it is new, `new` checks its state
    /// invariants and gives its verdict.
    fn visit(
        &mut self,
        from: u32,
        c: Choice,
        fp: u128,
        new: &mut dyn FnMut() -> Result<Option<Verdict>, Violation>,
    ) -> Visit;
    /// Whether [`Record::check`] is due before the next transition is recorded.
    fn check_due(&self) -> bool;
    /// The stop and memory checks; `one` is the bytes of the largest world copy seen, `held(k)`
    /// the bytes the search holds with `k` more states on its path.
    fn check(&mut self, bounds: &Bounds, one: usize, held: &dyn Fn(usize) -> usize)
    -> Option<Stop>;
    /// Whether the next new state the search would descend into should go to another worker.
    fn share(&self) -> bool;
    /// A state whose successors another search, or this one later, explores.
    fn set_aside(&mut self, item: Item<SS, KS>);
    /// The next state to search from once the path is done; `None`: the search is over.
    fn take(&mut self) -> Option<Item<SS, KS>>;
    /// The search found another 65,536 new states; its path is `path` worlds long.
    fn report(&mut self, path: usize);
}

/// How a search ended.
pub(super) enum Ended {
    /// Nothing left to search ([`Record::take`] said so).
    Done,
    /// A bound or the stop flag.
    Stopped(Stop),
    /// A broken invariant: the state it was reached from, the choice, what broke.
    Broken(Broken),
}

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
        reduce: bool,
    ) -> Frame {
        let mut choices = [Choice::Vcpu(0); MAX_CHOICES];
        let n = choices_of(w, reduce, &mut choices);
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

/// The path's depth for `path_bytes` of worlds of `one` bytes each.
fn depth_for(path_bytes: usize, one: usize) -> usize {
    (path_bytes / one.max(1)).max(2)
}

/// Bytes a search holds once `k` more states are on its path: the path's worlds (each world's
/// storage beyond what its vector holds of it), the frames, the scratch world.
fn held_bytes<SS: SeptStorage + Clone, KS: KvmStorage + Clone>(
    path: &Vec<World<SS, KS>>,
    frames: &Vec<Frame>,
    one: usize,
    k: usize,
) -> usize {
    let storage = one.saturating_sub(size_of::<World<SS, KS>>());
    vec_bytes_after(path, k) + (path.len() + k) * storage + vec_bytes_after(frames, k) + one
}

/// A depth-first search: one scratch world is stepped through each choice and put back, and
/// the worlds on the current path are kept one per depth and updated by what each step
/// changed, so nothing is copied whole and what is touched stays in cache.
pub(super) struct Search<SS: SeptStorage + Clone, KS: KvmStorage + Clone> {
    /// path[d] is the state at depth d of the current path (a state whose last choice is
    /// taken gives its place to the state that choice reaches). Each copy past the first
    /// differs from the one before it only where its change record says, so a revert to that
    /// one, or to a state stepped from it, copies just that; the search keeps this true.
    path: Vec<World<SS, KS>>,
    frames: Vec<Frame>,
    /// The scratch world: path[d], stepped through each choice and put back.
    s: World<SS, KS>,
    m: Metrics,
    /// Transitions taken (including back into known states).
    pub(super) transitions: u64,
    /// The path's depth is bounded by its bytes: a copy's size grows with the tables its pools
    /// take, so the bound follows the largest copy seen so far (`one`).
    max_depth: usize,
    path_bytes: usize,
    /// Bytes of the largest copy of the world seen.
    pub(super) one: usize,
    /// New states found since the last report.
    found: usize,
    /// [`Bounds::reduce`].
    reduce: bool,
}

impl<SS, KS> Search<SS, KS>
where
    SS: SeptStorage + Clone + Hash + PartialEq,
    KS: KvmStorage + Clone + Hash + PartialEq,
{
    /// A search with nothing on its path yet, its copies shaped like `start`.
    pub(super) fn new(start: &World<SS, KS>, bounds: &Bounds) -> Self {
        let path_bytes = if bounds.path_bytes == 0 {
            PATH_BYTES
        } else {
            bounds.path_bytes
        };
        let one = world_bytes(start);
        let max_depth = depth_for(path_bytes, one);
        // Room for a path as deep as a small world's, taken up front (pages the path does not
        // reach are never touched) rather than by moving every world to a bigger vector.
        let mut path = Vec::with_capacity(max_depth.min(PATH_RESERVE));
        path.push(start.clone());
        let mut s = start.clone();
        s.clear_changes();
        Search {
            path,
            frames: Vec::new(),
            s,
            m: Metrics::default(),
            transitions: 0,
            max_depth,
            path_bytes,
            one,
            found: 0,
            reduce: bounds.reduce,
        }
    }

    /// Puts `item` at the root of the path, to search from next.
    pub(super) fn begin(&mut self, (id, regions, parts, w): Item<SS, KS>) {
        self.path.truncate(1);
        match self.path.first_mut() {
            Some(root) => *root = w,
            None => self.path.push(w),
        }
        if let Some(root) = self.path.first() {
            self.s.clone_from(root);
            self.s.clear_changes();
            self.frames
                .push(Frame::of(id, regions, parts, root, self.reduce));
        }
    }

    /// Bytes the search holds now ([`held_bytes`]).
    pub(super) fn held(&self) -> usize {
        held_bytes(&self.path, &self.frames, self.one, 0)
    }

    /// Choices not yet taken from the states on the path.
    pub(super) fn pending(&self) -> usize {
        self.frames
            .iter()
            .map(|f| usize::from(f.n.saturating_sub(f.next)))
            .sum()
    }

    /// The path's length.
    pub(super) fn path_len(&self) -> usize {
        self.path.len()
    }

    /// Searches until `rec` has nothing more to give, a bound stops it, or an invariant breaks.
    pub(super) fn run<R: Record<SS, KS>>(
        &mut self,
        rec: &mut R,
        bounds: &Bounds,
    ) -> Result<Ended, KvmError> {
        loop {
            let d = self.frames.len().saturating_sub(1);
            let Some(f) = self.frames.last_mut() else {
                // The path is done: go on from a state set aside.
                let Some(item) = rec.take() else {
                    return Ok(Ended::Done);
                };
                self.begin(item);
                continue;
            };
            if f.next >= f.n {
                self.frames.pop();
                if d > 0 {
                    // `s` equals path[d]; it and path[d] go back to path[d - 1] by what
                    // path[d]'s record says, and the copy past path[d] now differs from it by
                    // that too.
                    let (before, here) = self.path.split_at_mut(d);
                    let (Some(parent), [here, past @ ..]) = (before.last(), here) else {
                        return Err(KvmError::Inconsistent);
                    };
                    let changes = here.changes();
                    self.s.absorb_changes(&changes);
                    self.s.revert_to(parent);
                    self.s.clear_changes();
                    if let Some(past) = past.first_mut() {
                        past.absorb_changes(&changes);
                    }
                    here.revert_to(parent);
                    here.clear_changes();
                }
                continue;
            }
            // Last enabled first: the first choice, a vCPU running on, is most often the long
            // continuation, and the choice taken last gives the new state its state's level,
            // so chains deepen the path far less (td-shim's 6,156-step chain: about 500
            // worlds on the path instead of 3,077).
            let c = f.choices[usize::from(f.n - 1 - f.next)];
            f.next += 1;
            let last = f.next >= f.n;
            let Some(w) = self.path.get(d) else {
                return Err(KvmError::Inconsistent);
            };
            let s = &mut self.s;
            // Tests: every revert, sync and copy of what changed left the scratch world equal
            // to the state it is stepped from.
            if bounds.verify_fingerprints && *s != *w {
                return Err(KvmError::Inconsistent);
            }
            let stepped = s.step(c, &mut self.m)?;
            self.transitions += 1;
            if matches!(stepped, Stepped::Invalid) {
                s.revert_to(w);
                s.clear_changes();
                continue;
            }
            // The transition's invariants (before the fingerprint's slot is looked up, which
            // gives its load time to arrive; before renumbering epochs, when that happens);
            // the state's once it proves new.
            let mut changed = s.changed_regions();
            let renumber = s.sept().epochs().rebase_offset() != 0;
            if renumber {
                if let Err(v) = s.check_step_transition_in(w, &changed) {
                    return Ok(Ended::Broken((f.id, c, v)));
                }
                s.canonicalize();
                changed = s.changed_regions();
            }
            // The fingerprint, updated by the regions and parts the step changed (from
            // scratch when it cannot tell, or after renumbering epochs).
            let s_regions = if renumber || changed.is_all() {
                regions_hash(s)
            } else {
                let mut acc = f.regions;
                for &r in changed.regions() {
                    acc ^= f.region_hash(w, r) ^ region_hash(s, r as usize);
                }
                acc
            };
            let s_parts = if renumber {
                part_hashes(s)
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
                    *h = part_hash(s, k);
                }
                p
            };
            // Tests: the incremental parts against hashes from scratch, and the full checks
            // (which include the tables' digests against their entries).
            if bounds.verify_fingerprints
                && (s_regions != regions_hash(s) || s_parts != part_hashes(s) || s.check().is_err())
            {
                return Err(KvmError::Inconsistent);
            }
            let fp = fingerprint(&s_parts, s_regions);
            rec.prefetch(fp);
            if !renumber && let Err(v) = s.check_step_transition_in(w, &changed) {
                return Ok(Ended::Broken((f.id, c, v)));
            }
            let id = f.id;
            if rec.check_due() {
                self.one = self.one.max(world_bytes(s));
                self.max_depth = self.max_depth.min(depth_for(self.path_bytes, self.one));
                let (path, frames, one) = (&self.path, &self.frames, self.one);
                let held = |k| held_bytes(path, frames, one, k);
                if let Some(why) = rec.check(bounds, one, &held) {
                    return Ok(Ended::Stopped(why));
                }
            }
            let s = &mut self.s;
            let visit = rec.visit(id, c, fp, &mut || {
                s.check_step_state_in(&changed)?;
                Ok(s.ended())
            });
            let (new, verdict) = match visit {
                Visit::Known => {
                    s.revert_to(w);
                    s.clear_changes();
                    continue;
                }
                Visit::Broken(v) => return Ok(Ended::Broken((id, c, v))),
                Visit::Full => return Ok(Ended::Stopped(Stop::MaxStates)),
                Visit::New(new, verdict) => (new, verdict),
            };
            self.found += 1;
            if self.found >= 1 << 16 {
                self.found = 0;
                rec.report(self.path.len());
            }
            if verdict.is_some() {
                s.revert_to(w);
                s.clear_changes();
                continue;
            }
            let next = Frame::of(new, s_regions, s_parts, s, self.reduce);
            if last {
                // path[d] has no choice left: the new state takes its place. Relative to
                // path[d - 1] it differs where path[d] did and where the step changed; the
                // copy past it, where it did and where the step changed.
                let step = s.changes();
                let (here, past) = self.path.split_at_mut(d + 1);
                let Some(here) = here.last_mut() else {
                    return Err(KvmError::Inconsistent);
                };
                let before = here.changes();
                if let Some(past) = past.first_mut() {
                    past.absorb_changes(&step);
                }
                here.sync_from(s);
                here.absorb_changes(&before);
                s.clear_changes();
                if let Some(f) = self.frames.last_mut() {
                    *f = next;
                }
                continue;
            }
            if d + 1 >= self.max_depth || rec.share() {
                rec.set_aside((new, s_regions, s_parts, s.clone()));
                s.revert_to(w);
                s.clear_changes();
                continue;
            }
            // Descend: path[d + 1] becomes the new state, by what differs from it.
            match self.path.get_mut(d + 1..) {
                Some([next, past @ ..]) => {
                    next.absorb_changes(&s.changes());
                    if let Some(past) = past.first_mut() {
                        past.absorb_changes(&next.changes());
                    }
                    next.revert_to(s);
                }
                _ => self.path.push(s.clone()),
            }
            s.clear_changes();
            self.frames.push(next);
        }
    }
}
