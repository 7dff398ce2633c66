//! The explorer's incremental-state plumbing for the S-EPT model: hashing its fields and
//! regions apart, its change record, and copies by what changed.

use crate::snapshot::{Snapshot, change_record_in};

use super::{
    Dirty, Flight, PageCopy, Sept, SeptStorage, copy_changed_regions, hash_region_and_table,
};
impl<S: SeptStorage, const F: usize> Sept<S, F> {
    /// Whether anything [`Snapshot::hash_small`] hashes may have changed since the last
    /// [`Snapshot::clear_changes`] (its fields, a 1G entry, or a table an operation in flight holds).
    pub fn small_changed(&self) -> bool {
        self.dirty.fields()
            || !self.dirty.regions().is_empty()
                && self.in_flight.iter().any(|f| match f {
                    Some(Flight::Host { table, .. }) => table
                        .index()
                        .and_then(|t| self.owner(t))
                        .is_some_and(|o| self.dirty.has(o)),
                    _ => false,
                })
    }

    /// The region that owns table `t` here: an in-use table's link.
    fn owner(&self, t: usize) -> Option<usize> {
        self.storage
            .tables()
            .get(t)
            .filter(|t| t.in_use)
            .and_then(|t| t.link.index())
    }
}

impl<S: SeptStorage + Clone, const F: usize> Snapshot for Sept<S, F> {
    type Changes = Dirty;

    change_record_in!(dirty: Dirty);

    /// Copies what `d` names from `other`: the changed regions with their tables, the tables
    /// operations in flight hold, and the fields outside the regions when `d` says they
    /// changed.
    fn copy_changed(&mut self, other: &Self, d: &Dirty) {
        let d = *d;
        let fields = d.fields();
        // A pool that grew (or, reverted, shrinks back) first: tables are copied by index.
        let n = other.storage.tables().len();
        if self.storage.tables().len() != n {
            self.storage.set_table_count(n);
        }
        let Some(whole) = copy_changed_regions(
            self.storage.regions_and_tables_mut(),
            (other.storage.regions(), other.storage.tables()),
            &d,
            |r| r.table,
        ) else {
            self.clone_from(other);
            return;
        };
        self.dirty = other.dirty;
        if fields {
            self.config = other.config;
            self.op_state = other.op_state;
            self.epochs = other.epochs;
            self.tree_shared = other.tree_shared;
            self.tree_exclusive = other.tree_exclusive;
            self.free_tables = other.free_tables;
            self.tables_in_use = other.tables_in_use;
            self.storage
                .gigs_mut()
                .copy_from_slice(other.storage.gigs());
        }
        // Tables held by operations in flight (on either side) belong to no region yet. A
        // write to one marks the region its link names (on the side where it is in use) whole
        // or by page, so only those are copied whole (unless the regions' copy took them
        // already); taking one from the pool marks only the owner's record, and changes only
        // the table's use, link and digest.
        if !d.regions().is_empty() {
            for (here, f) in self
                .in_flight
                .iter()
                .map(|f| (true, f))
                .chain(other.in_flight.iter().map(|f| (false, f)))
            {
                let Some(Flight::Host { table, .. }) = *f else {
                    continue;
                };
                let (Some(t), false) = (table.index(), whole.contains(table)) else {
                    continue;
                };
                let owner = if here { self.owner(t) } else { other.owner(t) };
                let Some(owner) = owner.filter(|&o| d.has(o)) else {
                    continue;
                };
                let touched = d.table_touched(owner);
                let (Some(dt), Some(st)) = (
                    self.storage.tables_mut().get_mut(t),
                    other.storage.tables().get(t),
                ) else {
                    continue;
                };
                if touched {
                    dt.clone_from(st);
                } else {
                    dt.copy_pages(st, &[]);
                }
            }
        }
        if fields {
            self.in_flight = other.in_flight;
        }
    }

    /// Hashes everything but the regions and their tables, and but the configuration, fixed
    /// when the model is built (for a fingerprint built region by region: this, plus
    /// [`Sept::hash_region`] of every region, tells apart every two states of one model).
    fn hash_small<H: core::hash::Hasher>(&self, h: &mut H) {
        use core::hash::Hash;
        self.op_state.hash(h);
        self.epochs.hash(h);
        self.tree_shared.hash(h);
        self.tree_exclusive.hash(h);
        self.free_tables.hash(h);
        self.tables_in_use.hash(h);
        // The slots in use, each with its index (most are empty).
        self.in_flight_count().hash(h);
        for (i, f) in self.in_flight.iter().enumerate() {
            if let Some(f) = f {
                i.hash(h);
                f.hash(h);
            }
        }
        self.storage.gigs().hash(h);
        // Tables held by operations in flight belong to no region.
        for f in self.in_flight.iter().flatten() {
            if let Flight::Host { table, .. } = f
                && let Some(t) = table.index().and_then(|i| self.storage.tables().get(i))
            {
                t.hash(h);
            }
        }
    }

    /// Whether everything [`Snapshot::hash_small`] hashes is equal in both (a table held by an
    /// operation in flight by what its hash sees: `Table4K::same_hash`).
    fn small_eq(&self, o: &Self) -> bool {
        self.op_state == o.op_state
            && self.epochs == o.epochs
            && self.tree_shared == o.tree_shared
            && self.tree_exclusive == o.tree_exclusive
            && self.free_tables == o.free_tables
            && self.tables_in_use == o.tables_in_use
            && self.in_flight == o.in_flight
            && self.storage.gigs() == o.storage.gigs()
            && self.in_flight.iter().flatten().all(|f| match f {
                Flight::Host { table, .. } => table.index().is_none_or(|i| {
                    match (self.storage.tables().get(i), o.storage.tables().get(i)) {
                        (Some(a), Some(b)) => a.same_hash(b),
                        (a, b) => a.is_none() && b.is_none(),
                    }
                }),
                _ => true,
            })
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
