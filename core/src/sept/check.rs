//! The S-EPT storage's structural invariants, in full and over the regions a step changed.

use crate::abi::{Gpa, PageLevel, SeptEntryState};

use super::{
    Content, Entry4K, EntryLock, Flight, HugeEntry, Sept, SeptError, SeptStorage, TableRef,
};
impl<S: SeptStorage> Sept<S> {
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
    /// last cleared, and the pool's counts; everything when the record says everything or a
    /// 1G entry changed.
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
        let referenced = self
            .storage
            .regions()
            .iter()
            .filter(|r| r.table.index().is_some())
            .count();
        self.check_pool(u32::try_from(referenced).unwrap_or(u32::MAX), false)
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
