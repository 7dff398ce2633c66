//! The explorer's incremental-state plumbing for a world: its change record (the models'
//! records and the actors steps ran), copies by what changed, hashing part by part.

use crate::kvm::KvmStorage;
use crate::sept::SeptStorage;
use crate::snapshot::Snapshot;

use super::{MAX_HOSTS, World};

/// A world's change record: the regions each model changed since it was cleared
/// ([`Snapshot::changes`](crate::snapshot::Snapshot::changes)).
#[derive(Clone, Copy, Debug, Default)]
pub struct Changes {
    sept: crate::sept::Dirty,
    kvm: crate::sept::Dirty,
    touched: Touched,
}

/// The part ([`World::hash_part`]) that holds the design and the lazy-accept bitmap: a step
/// that claims or releases a unit marks it, so a copy by what changed copies the bitmap only
/// then.
pub(super) const LAZY_PART: usize = 2;

/// Words of [`Touched`]: a bit for every part of the widest world.
const TOUCHED_WORDS: usize = (3 + super::MAX_WORLD_VCPUS + MAX_HOSTS).div_ceil(64);

/// Actor slots a world's steps touched, as parts ([`World::hash_part`]) bits. Bookkeeping, not
/// state: it compares equal and hashes to nothing, as the models' change records do.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Touched([u64; TOUCHED_WORDS]);

impl PartialEq for Touched {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Touched {}

impl core::hash::Hash for Touched {
    fn hash<H: core::hash::Hasher>(&self, _: &mut H) {}
}

impl Touched {
    /// Everything.
    pub(super) const ALL: Touched = Touched([u64::MAX; TOUCHED_WORDS]);

    fn is_all(&self) -> bool {
        self.0 == Self::ALL.0
    }

    pub(super) fn vcpu(&mut self, i: usize) {
        self.part(i.saturating_add(3));
    }

    /// Host actor `i` of a world with room for `vcpus` vCPUs.
    pub(super) fn host(&mut self, vcpus: usize, i: usize) {
        self.part(i.saturating_add(3).saturating_add(vcpus));
    }

    /// Marks part `k` (every part, for one past the widest world's).
    pub(super) fn part(&mut self, k: usize) {
        match self.0.get_mut(k / 64) {
            Some(w) => *w |= 1u64 << (k % 64),
            None => *self = Self::ALL,
        }
    }

    pub(super) fn has(self, k: usize) -> bool {
        self.0
            .get(k / 64)
            .is_none_or(|w| w & (1u64 << (k % 64)) != 0)
    }

    /// The first 32 parts' bits.
    fn low(self) -> u32 {
        self.0.first().map_or(u32::MAX, |&w| w as u32)
    }
}

impl<
    SS: SeptStorage + Clone,
    KS: KvmStorage + Clone,
    const V: usize,
    const F: usize,
    const L: usize,
> World<SS, KS, V, F, L>
{
    /// Parts outside the regions ([`World::hash_part`]): [`super::PARTS`] at the default
    /// capacity.
    pub const PARTS: usize = 3 + V + MAX_HOSTS;

    /// The parts ([`World::hash_part`]) that may differ from the state the change record was
    /// cleared in, as bits: the S-EPT model's fields when its record says so, KVM's fields and
    /// the shared guest state always (they are not tracked), and each actor a step ran or
    /// kicked (every part after [`World::canonicalize`] renumbered, or when nothing was
    /// cleared yet). An explorer rehashes only these. Only the first 32 parts have a bit: all
    /// there are in a world of the default capacity ([`super::PARTS`]).
    pub fn touched_parts(&self) -> u32 {
        self.touched.low() | 0b110 | u32::from(self.sept.small_changed())
    }

    /// Copies everything outside the two models: the shared guest state, and the actors
    /// `touched` names (the others are equal, as the change record says); takes `other`'s
    /// record of touched actors, as the models take its change records.
    fn copy_actors(&mut self, other: &Self, touched: Touched) {
        self.policy = other.policy;
        self.reentered = other.reentered;
        if touched.has(LAZY_PART) {
            self.lazy = other.lazy;
        }
        if touched.is_all() {
            self.vcpus = other.vcpus;
            self.hosts = other.hosts;
        } else {
            for (k, (v, o)) in self.vcpus.iter_mut().zip(&other.vcpus).enumerate() {
                if touched.has(k.saturating_add(3)) {
                    *v = *o;
                }
            }
            for (k, (h, o)) in self.hosts.iter_mut().zip(&other.hosts).enumerate() {
                if touched.has(k.saturating_add(3).saturating_add(V)) {
                    *h = *o;
                }
            }
        }
        self.touched = other.touched;
    }

    /// Hashes part `k` of what lies outside the regions: 0 the S-EPT model's fields and 1G
    /// records, 1 KVM's, 2 the design and the guests' shared state, then each actor slot
    /// (vCPUs, then host actors); nothing past them. What is fixed when the world is built is
    /// in no part: the states of one world share the vCPUs' later stage programs, the S-EPT
    /// model's configuration and KVM's window.
    pub fn hash_part<H: core::hash::Hasher>(&self, k: usize, h: &mut H) {
        use core::hash::Hash;
        match k {
            0 => self.sept.hash_small(h),
            1 => self.kvm.hash_small(h),
            2 => {
                self.policy.hash(h);
                self.lazy.hash(h);
            }
            _ => match k.saturating_sub(3).checked_sub(V) {
                None => match self.vcpus.get(k.saturating_sub(3)) {
                    Some(Some(v)) => v.hash_progress(h),
                    Some(None) => 0u8.hash(h),
                    None => {}
                },
                Some(j) => self.hosts.get(j).hash(h),
            },
        }
    }

    /// Whether part `k` (as in [`World::hash_part`]) is the same in both worlds: an explorer
    /// keeps a state's part hashes and rehashes only the parts a step changed.
    pub fn same_part(&self, other: &Self, k: usize) -> bool {
        match k {
            0 => self.sept.small_eq(&other.sept),
            1 => self.kvm.small_eq(&other.kvm),
            2 => self.policy == other.policy && self.lazy == other.lazy,
            _ => match k.saturating_sub(3).checked_sub(V) {
                None => self.vcpus.get(k.saturating_sub(3)) == other.vcpus.get(k.saturating_sub(3)),
                Some(j) => self.hosts.get(j) == other.hosts.get(j),
            },
        }
    }

    /// The regions either model changed since the record was cleared.
    pub fn changed_regions(&self) -> crate::sept::Dirty {
        self.kvm.changes().union(&self.sept.changes())
    }

    /// Regions in the window.
    pub fn regions(&self) -> usize {
        self.sept.config().regions as usize
    }
}

impl<
    SS: SeptStorage + Clone,
    KS: KvmStorage + Clone,
    const V: usize,
    const F: usize,
    const L: usize,
> Snapshot for World<SS, KS, V, F, L>
{
    type Changes = Changes;

    /// What its change record names (both models, and the actors steps ran or kicked).
    fn changes(&self) -> Changes {
        Changes {
            sept: self.sept.changes(),
            kvm: self.kvm.changes(),
            touched: self.touched,
        }
    }

    /// Starts a new record of what the next steps change (see [`World::check_step`]).
    fn clear_changes(&mut self) {
        self.sept.clear_changes();
        self.kvm.clear_changes();
        self.touched = Touched::default();
    }

    /// An explorer keeping one copy of each state on a path uses it to widen what a later
    /// revert or sync copies.
    fn absorb_changes(&mut self, changes: &Changes) {
        self.sept.absorb_changes(&changes.sept);
        self.kvm.absorb_changes(&changes.kvm);
        for (a, b) in self.touched.0.iter_mut().zip(changes.touched.0) {
            *a |= b;
        }
    }

    /// Each model copies what its record names; the actors the record names are copied.
    fn copy_changed(&mut self, other: &Self, changes: &Changes) {
        self.sept.copy_changed(&other.sept, &changes.sept);
        self.kvm.copy_changed(&other.kvm, &changes.kvm);
        self.copy_actors(other, changes.touched);
    }

    /// Hashes everything but the regions' records and tables: with [`World::hash_region`] of
    /// every region, the whole state — so an explorer can update a fingerprint by the regions
    /// a step changed ([`World::changed_regions`]). It is [`World::hash_part`] of every part
    /// in order.
    fn hash_small<H: core::hash::Hasher>(&self, h: &mut H) {
        for k in 0..Self::PARTS {
            self.hash_part(k, h);
        }
    }

    fn small_eq(&self, other: &Self) -> bool {
        (0..Self::PARTS).all(|k| self.same_part(other, k))
    }

    /// Hashes region `r` in both models.
    fn hash_region<H: core::hash::Hasher>(&self, r: usize, h: &mut H) {
        use core::hash::Hash;
        r.hash(h);
        self.sept.hash_region(r, h);
        self.kvm.hash_region(r, h);
    }
}
