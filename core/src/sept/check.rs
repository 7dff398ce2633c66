//! The S-EPT storage's structural invariants, in full and over the regions a step changed.

use crate::abi::{Gpa, PageLevel, SeptEntryState};

use super::{
    Content, Entry4K, EntryLock, Flight, HugeEntry, Sept, SeptError, SeptStorage, TableRef,
};
impl<S: SeptStorage, const F: usize> Sept<S, F> {
    /// Checks the storage's structural invariants: entries below a FREE or leaf 1G entry are
    /// FREE; a 2M table entry has a table; every table in use is owned by the one region that
    /// refers to it (or by a SEAMCALL in flight) and is counted; content-only tables hold no
    /// entry state; with `idle`, no operation is in flight and no lock is held anywhere.
    pub fn check_consistency(&self, idle: bool) -> Result<(), SeptError> {
        // Every table in use hashes by a digest its writes keep current; every free one is
        // EMPTY but for its link (taking it from the pool relies on that).
        if self.storage.tables().iter().any(|t| {
            if t.in_use {
                !t.digest_is_current()
            } else {
                !t.is_clean()
            }
        }) {
            return Err(SeptError::StorageInconsistent);
        }
        let mut referenced: u32 = 0;
        for (g, gig) in self.storage.gigs().iter().enumerate() {
            if idle && gig.lock.is_locked() {
                return Err(SeptError::StorageInconsistent);
            }
            for r in self.regions_of_gig(g) {
                if self.check_region(gig, r, idle, None)? {
                    referenced = referenced.saturating_add(1);
                }
            }
        }
        self.check_pool(referenced, idle)
    }

    /// [`Sept::check_consistency`] (not idle) over the regions changed since the record was
    /// last cleared; everything when the record says everything or a 1G entry changed. The
    /// pool's counts, which only a count over the whole window could check from the state
    /// alone, are checked by the step that changed them ([`Sept::check_pool_step`]): a step's
    /// checks cost what it changed, not the window.
    pub fn check_changed_consistency(&self) -> Result<(), SeptError> {
        if self.dirty.is_all() || self.dirty.gigs() {
            return self.check_consistency(false);
        }
        for &r in self.dirty.regions() {
            let r = r as usize;
            let gpa = Gpa(self
                .config
                .base
                .raw()
                .saturating_add((r as u64) << PageLevel::Size2M.shift()));
            let g = self.gig_index(gpa).ok_or(SeptError::StorageInconsistent)?;
            let gig = *self
                .storage
                .gigs()
                .get(g)
                .ok_or(SeptError::StorageInconsistent)?;
            self.check_region(&gig, r, false, self.dirty.pages_of(r))?;
        }
        Ok(())
    }

    /// The pool's counts after a step from `before`, this state's change record naming what
    /// the step changed: the step changes by the same amount how many tables the regions and
    /// the operations in flight reference, how many tables are in use, and the pool's count
    /// of them. With `before` consistent ([`Sept::check_consistency`]'s counts), they agree
    /// after the step too. Only the changed regions, the operations in flight and the tables
    /// they reference before or after are read: a table changes only with the region or
    /// operation that references it (the change record's promise, which the full checks
    /// verify). When the record says everything, or a 1G entry changed, the state's check
    /// counts from scratch instead.
    #[inline]
    pub fn check_pool_step(&self, before: &Self) -> Result<(), SeptError> {
        // The state's own check counts everything then ([`Sept::check_changed_consistency`]).
        if self.dirty.is_all() || self.dirty.gigs() {
            return Ok(());
        }
        // Most steps take, return and move no table: the same references and the same count.
        let flight_table = |f: &Option<Flight>| match f {
            Some(Flight::Host { table, .. }) => *table,
            _ => TableRef::NONE,
        };
        // (Operations in flight change only with the module's fields.)
        if self.tables_in_use == before.tables_in_use
            && self.dirty.regions().iter().all(|&r| {
                let r = r as usize;
                let now = self.storage.regions().get(r).map(|x| x.table);
                now.is_some() && now == before.storage.regions().get(r).map(|x| x.table)
            })
            && (!self.dirty.fields()
                || self
                    .in_flight
                    .iter()
                    .zip(&before.in_flight)
                    .all(|(a, b)| flight_table(a) == flight_table(b)))
        {
            return Ok(());
        }
        self.check_pool_counts(before)
    }

    /// [`Sept::check_pool_step`] for a step that took, returned or moved a table.
    #[inline(never)]
    fn check_pool_counts(&self, before: &Self) -> Result<(), SeptError> {
        let bad = Err(SeptError::StorageInconsistent);
        // The tables the step can have taken, returned or moved: those the changed regions and
        // the operations in flight reference, after and before. Each is counted once (its
        // first occurrence in this sequence), without a set sized for the most slots a world
        // can have.
        let candidates = || {
            self.changed_region_tables(self)
                .chain(self.changed_region_tables(before))
                .chain(self.flight_tables())
                .chain(before.flight_tables())
        };
        // Counts after and before the step over what it can have changed; the deltas are
        // compared as sums (after + other's before) so nothing is subtracted.
        let (mut ref_after, mut ref_before) = (0u64, 0u64);
        for &r in self.dirty.regions() {
            let (now, then) = (
                self.region(r as usize)?.table,
                before.region(r as usize)?.table,
            );
            ref_after = ref_after.saturating_add(u64::from(now.index().is_some()));
            ref_before = ref_before.saturating_add(u64::from(then.index().is_some()));
        }
        ref_after = ref_after.saturating_add(self.flight_tables().count() as u64);
        ref_before = ref_before.saturating_add(before.flight_tables().count() as u64);
        let (mut in_after, mut in_before) = (0u64, 0u64);
        for (k, t) in candidates().enumerate() {
            if candidates().take(k).any(|u| u == t) {
                continue;
            }
            in_after = in_after.saturating_add(u64::from(self.table(t)?.in_use));
            // A table the step grew the pool by is not in `before` at all: not in use there.
            let was = before.storage.tables().get(t).is_some_and(|x| x.in_use);
            in_before = in_before.saturating_add(u64::from(was));
        }
        let (pool_after, pool_before) = (
            u64::from(self.tables_in_use),
            u64::from(before.tables_in_use),
        );
        if ref_after.saturating_add(in_before) != in_after.saturating_add(ref_before)
            || in_after.saturating_add(pool_before) != pool_after.saturating_add(in_before)
        {
            return bad;
        }
        Ok(())
    }

    /// The tables the operations in flight hold.
    fn flight_tables(&self) -> impl Iterator<Item = usize> + '_ {
        self.in_flight.iter().filter_map(|f| match f {
            Some(Flight::Host { table, .. }) => table.index(),
            _ => None,
        })
    }

    /// The tables that the regions this state's change record names reference in `of`.
    fn changed_region_tables<'a>(&'a self, of: &'a Self) -> impl Iterator<Item = usize> + 'a {
        self.dirty
            .regions()
            .iter()
            .filter_map(move |&r| of.region(r as usize).ok().and_then(|x| x.table.index()))
    }

    /// Region `r` under 1G entry `gig`; whether it references a table.
    /// With `pages`, only those entries of the table changed since it was last checked: the
    /// others are not looked at.
    fn check_region(
        &self,
        gig: &HugeEntry,
        r: usize,
        idle: bool,
        pages: Option<&[u16]>,
    ) -> Result<bool, SeptError> {
        let bad = Err(SeptError::StorageInconsistent);
        let region = self.region(r)?;
        if idle && region.entry.lock.is_locked() {
            return bad;
        }
        if !gig.state.is_table() && region.entry.state != SeptEntryState::Free {
            return bad;
        }
        if gig.state == SeptEntryState::Free
            && (region.content != Content::NONE || region.table.index().is_some())
        {
            return bad;
        }
        match region.table.index() {
            None if region.entry.state.is_table() => bad,
            None => Ok(false),
            Some(t) => {
                let table = self.table(t)?;
                if !table.in_use || table.link != TableRef::to(r) {
                    return bad;
                }
                let content_only = !region.entry.state.is_table();
                let wrong = |e: &Entry4K| {
                    (content_only
                        && (e.state != SeptEntryState::Free || e.lock != EntryLock::default()))
                        || (idle && e.lock.is_locked())
                        || e.state.is_table()
                };
                let any_wrong = match pages {
                    Some(pages) => pages
                        .iter()
                        .any(|&p| table.entries.get(usize::from(p)).is_none_or(wrong)),
                    None => table.entries.iter().any(wrong),
                };
                if any_wrong {
                    return bad;
                }
                Ok(true)
            }
        }
    }

    /// The pool's counts against `referenced` tables held by regions.
    fn check_pool(&self, mut referenced: u32, idle: bool) -> Result<(), SeptError> {
        let bad = Err(SeptError::StorageInconsistent);
        // Tables taken by SEAMCALLs in flight belong to no region yet.
        for f in self.in_flight.iter().flatten() {
            if let Flight::Host { table, .. } = f
                && table.index().is_some()
            {
                referenced = referenced.saturating_add(1);
            }
        }
        let in_use = self.storage.tables().iter().filter(|t| t.in_use).count();
        if u32::try_from(in_use).ok() != Some(referenced) || referenced != self.tables_in_use {
            return bad;
        }
        if idle && (self.tree_shared != 0 || self.tree_exclusive || self.in_flight_count() != 0) {
            return bad;
        }
        Ok(())
    }
}
