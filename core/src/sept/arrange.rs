//! Arranging a state by hand, bypassing the module's rules (tests and tools).

use crate::abi::{Gpa, PageLevel, SeptEntryState};

use super::{
    Content, EntryLock, Loc, OpState, Region, Sept, SeptError, SeptStorage, TableRef, View,
};
impl<S: SeptStorage, const F: usize> Sept<S, F> {
    /// Puts the entry at `level` for `gpa` in `state` directly, bypassing the module's rules:
    /// for conformance tables, scenario set-up and the outcome matrix. The parent must be a
    /// table (NL_MAPPED or NL_BLOCKED). A table state creates an all-FREE table below unless one
    /// is there; a leaf or FREE state drops what was below. MAPPED and BLOCKED leaves hold zeroed
    /// content; blocked states record the current epoch (not yet tracked). Locks are cleared.
    pub fn arrange(
        &mut self,
        gpa: Gpa,
        level: PageLevel,
        state: SeptEntryState,
    ) -> Result<(), SeptError> {
        if self.in_flight_count() > 0 {
            return Err(SeptError::ArrangeConflict);
        }
        let content = match state {
            SeptEntryState::Mapped | SeptEntryState::Blocked => Content::ZERO,
            _ => Content::NONE,
        };
        let view = View {
            state,
            lock: EntryLock::default(),
            bepoch: if state.is_blocked() {
                self.epochs.epoch()
            } else {
                0
            },
            counter: 0,
        };
        match level {
            PageLevel::Size1G => self.arrange_1g(gpa, state, view, content),
            PageLevel::Size2M => self.arrange_2m(gpa, state, view, content),
            PageLevel::Size4K => self.arrange_4k(gpa, state, view, content),
        }
    }

    /// [`Sept::arrange`] at 1G: a 1G leaf must lie wholly in the model; what was below goes
    /// unless a table stays a table.
    fn arrange_1g(
        &mut self,
        gpa: Gpa,
        state: SeptEntryState,
        view: View,
        content: Content,
    ) -> Result<(), SeptError> {
        let gig = self.gig_index(gpa).ok_or(SeptError::OutsideModel)?;
        if state.is_leaf() && !self.gig_fully_modelled(gig) {
            return Err(SeptError::OutsideModel);
        }
        let was_table = self.load(Loc::Gig(gig))?.state.is_table();
        if !(state.is_table() && was_table) {
            for r in self.regions_of_gig(gig) {
                if let Some(t) = self.region(r)?.table.index() {
                    self.free_table(t)?;
                }
                *self.region_mut(r)? = Region {
                    content,
                    ..Region::EMPTY
                };
            }
        }
        self.store(Loc::Gig(gig), view)
    }

    /// [`Sept::arrange`] at 2M, under a 1G table: a table state takes a table from the pool
    /// unless the region is a table already; a leaf or FREE state gives its table back.
    fn arrange_2m(
        &mut self,
        gpa: Gpa,
        state: SeptEntryState,
        view: View,
        content: Content,
    ) -> Result<(), SeptError> {
        let gig = self.gig_index(gpa).ok_or(SeptError::OutsideModel)?;
        if !self.load(Loc::Gig(gig))?.state.is_table() {
            return Err(SeptError::ArrangeConflict);
        }
        let r = self.region_index(gpa).ok_or(SeptError::OutsideModel)?;
        let region = *self.region(r)?;
        if state.is_table() {
            if !region.entry.state.is_table() {
                if let Some(old) = region.table.index() {
                    self.free_table(old)?;
                }
                let t = self.alloc_table(r)?;
                let reg = self.region_mut(r)?;
                reg.table = TableRef::to(t);
                reg.content = Content::NONE;
            }
        } else {
            if let Some(t) = region.table.index() {
                self.free_table(t)?;
            }
            let reg = self.region_mut(r)?;
            reg.table = TableRef::NONE;
            reg.content = content;
        }
        self.store(Loc::Region(r), view)
    }

    /// [`Sept::arrange`] at 4K, under a 2M table (blocked or not): a leaf or FREE state only.
    fn arrange_4k(
        &mut self,
        gpa: Gpa,
        state: SeptEntryState,
        view: View,
        content: Content,
    ) -> Result<(), SeptError> {
        let stop = self
            .walk_through_blocked(gpa, PageLevel::Size4K)?
            .ok_or(SeptError::ArrangeConflict)?;
        if state.is_table() {
            return Err(SeptError::ArrangeConflict);
        }
        let loc = stop.loc.ok_or(SeptError::OutsideModel)?;
        self.store(loc, view)?;
        if let Loc::Page { table, index, .. } = loc {
            self.update_entry(table, index, |e| e.content = content)?;
        }
        Ok(())
    }

    /// Sets the op state directly (for set-up; [`Sept::finalize`] is the module's way).
    pub fn arrange_op_state(&mut self, op_state: OpState) {
        self.dirty.mark_fields();
        self.op_state = op_state;
    }
}
