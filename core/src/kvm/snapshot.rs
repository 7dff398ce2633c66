//! The explorer's incremental-state plumbing for KVM's model: hashing its fields and regions
//! apart, its change record, and copies by what changed.

use crate::sept::{Dirty, copy_changed_regions, hash_region_and_table};
use crate::snapshot::{Snapshot, change_record_in};

use super::{Kvm, KvmStorage};
impl<S: KvmStorage + Clone> Snapshot for Kvm<S> {
    type Changes = Dirty;

    change_record_in!(dirty: Dirty);

    /// Copies what `d` names from `other`, and the fields outside the regions.
    fn copy_changed(&mut self, other: &Self, d: &Dirty) {
        let d = *d;
        // A pool that grew (or, reverted, shrinks back) first: tables are copied by index.
        let n = other.storage.tables().len();
        if self.storage.tables().len() != n {
            self.storage.set_table_count(n);
        }
        if copy_changed_regions(
            self.storage.regions_and_tables_mut(),
            (other.storage.regions(), other.storage.tables()),
            &d,
            |r| r.table,
        )
        .is_none()
        {
            self.clone_from(other);
            return;
        }
        self.dirty = other.dirty;
        // The window and the memslots change only where the record says so (adding a
        // memslot); the other fields are not tracked.
        if d.fields() {
            self.base = other.base;
            self.memslots = other.memslots;
            self.memslots_digest = other.memslots_digest;
        }
        self.mmu_lock = other.mmu_lock;
        self.invalidation = other.invalidation;
        self.bugged = other.bugged;
        self.killed = other.killed;
        self.kick_pending = other.kick_pending;
        self.storage
            .gigs_mut()
            .copy_from_slice(other.storage.gigs());
    }

    /// Hashes everything but the regions and their tables (see `Sept::hash_small`): the
    /// memslots by their digest, the window's base not at all (fixed when the model is built).
    fn hash_small<H: core::hash::Hasher>(&self, h: &mut H) {
        use core::hash::Hash;
        self.memslots_digest.hash(h);
        self.mmu_lock.hash(h);
        self.invalidation.hash(h);
        self.bugged.hash(h);
        self.killed.hash(h);
        self.kick_pending.hash(h);
        self.storage.gigs().hash(h);
    }

    /// Whether everything [`Snapshot::hash_small`](crate::snapshot::Snapshot::hash_small) hashes is equal in both.
    fn small_eq(&self, o: &Self) -> bool {
        self.memslots_digest == o.memslots_digest
            && self.mmu_lock == o.mmu_lock
            && self.invalidation == o.invalidation
            && self.bugged == o.bugged
            && self.killed == o.killed
            && self.kick_pending == o.kick_pending
            && self.storage.gigs() == o.storage.gigs()
    }

    /// Hashes region `r`'s record and its table.
    fn hash_region<H: core::hash::Hasher>(&self, r: usize, h: &mut H) {
        hash_region_and_table(
            (self.storage.regions(), self.storage.tables()),
            r,
            |region| region.table,
            h,
        );
    }
}
