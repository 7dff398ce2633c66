//! The host SEAMCALLs' effects: what each call changes in the Secure EPT once it has passed its
//! checks and holds its locks, applied by [`Sept::host_end`] (tdx-module
//! src/vmm_dispatcher/api_calls/tdh_mem_*.c).

use crate::abi::{PageLevel, SeptEntryState};

use super::{
    Content, EntryLock, HostCall, HostCallKind, Loc, Sept, SeptError, SeptStorage, TableRef, View,
};

/// The entry after a call: `state`, its lock released, no block epoch, no accept counter.
fn released(state: SeptEntryState, lock: EntryLock) -> View {
    View {
        state,
        lock,
        bepoch: 0,
        counter: 0,
    }
}

impl<S: SeptStorage, const F: usize> Sept<S, F> {
    /// Applies a call that passed its checks and releases its entry lock (the tree lock is
    /// [`Sept::host_end`]'s).
    pub(super) fn apply(
        &mut self,
        call: HostCall,
        loc: Loc,
        table: TableRef,
        v: View,
    ) -> Result<(), SeptError> {
        let unlocked = v.lock.with_locked(false);
        match call.kind {
            HostCallKind::PageAdd { content } => {
                self.store(loc, released(SeptEntryState::Mapped, unlocked))?;
                self.set_page_content(call.gpa, content)
            }
            HostCallKind::SeptAdd => self.apply_sept_add(loc, table, unlocked),
            HostCallKind::PageAug => self.store(loc, released(SeptEntryState::Pending, unlocked)),
            HostCallKind::RangeBlock => self.apply_block(loc, v, unlocked),
            // UNBLOCK changes the state bits alone: the accept counter stays (BLOCK reset it).
            HostCallKind::RangeUnblock => self.store(
                loc,
                View {
                    counter: v.counter,
                    ..released(v.state.unblocked(), unlocked)
                },
            ),
            HostCallKind::PageDemote => self.apply_demote(loc, table, v),
            HostCallKind::PagePromote => self.apply_promote(loc, unlocked),
            HostCallKind::PageRemove => self.apply_page_remove(call, loc, unlocked),
            HostCallKind::SeptRemove => self.apply_sept_remove(loc, unlocked),
        }
    }

    /// SEPT.ADD: the FREE entry becomes NL_MAPPED over the table taken in the first phase,
    /// whose 512 entries are all FREE and unlocked (tdh_mem_sept_add.c initialises the new
    /// page): at 1G the regions' entries start afresh, whatever lock bits the entries of an
    /// earlier table there (one SEPT.REMOVE took away) were left with.
    fn apply_sept_add(
        &mut self,
        loc: Loc,
        table: TableRef,
        lock: EntryLock,
    ) -> Result<(), SeptError> {
        if let Loc::Gig(g) = loc {
            for r in self.regions_of_gig(g) {
                self.store(Loc::Region(r), View::FREE)?;
            }
        }
        if let Loc::Region(r) = loc {
            // A FREE region holds no content table; keep the pool exact anyway.
            if let Some(old) = self.region(r)?.table.index() {
                self.free_table(old)?;
            }
            let reg = self.region_mut(r)?;
            reg.table = table;
            reg.content = Content::NONE;
        }
        self.store(loc, released(SeptEntryState::NlMapped, lock))
    }

    /// RANGE.BLOCK: the entry becomes its blocked state.
    fn apply_block(&mut self, loc: Loc, v: View, lock: EntryLock) -> Result<(), SeptError> {
        // block_sept_entry: sept_cleanup_if_pending resets the accept counter; the TD
        // epoch is recorded as the block epoch.
        let blocked = v.state.blocked().ok_or(SeptError::StaleOperation)?;
        let counter = if crate::broken::active(crate::broken::Variant::BlockKeepsAcceptCounter) {
            v.counter
        } else {
            0
        };
        self.store(
            loc,
            View {
                state: blocked,
                lock,
                bepoch: self.epochs.epoch(),
                counter,
            },
        )
    }

    /// PAGE.REMOVE: the leaf becomes FREE and the content under it is lost.
    fn apply_page_remove(
        &mut self,
        call: HostCall,
        loc: Loc,
        lock: EntryLock,
    ) -> Result<(), SeptError> {
        let (gpa, level) = (call.gpa, call.level);
        self.store(loc, released(SeptEntryState::Free, lock))?;
        match (level, loc) {
            (PageLevel::Size4K, _) => self.set_page_content(gpa, Content::NONE)?,
            (PageLevel::Size2M, Loc::Region(r)) => self.set_region_content(r, Content::NONE)?,
            (_, Loc::Gig(g)) => {
                for r in self.regions_of_gig(g) {
                    self.set_region_content(r, Content::NONE)?;
                }
            }
            _ => return Err(SeptError::StorageInconsistent),
        }
        if let Some(r) = self.region_index(gpa) {
            self.compact_region(r)?;
        }
        Ok(())
    }

    /// SEPT.REMOVE: the all-FREE table is released and the entry becomes FREE.
    fn apply_sept_remove(&mut self, loc: Loc, lock: EntryLock) -> Result<(), SeptError> {
        if let Loc::Region(r) = loc {
            if let Some(t) = self.region(r)?.table.index() {
                self.free_table(t)?;
            }
            let reg = self.region_mut(r)?;
            reg.table = TableRef::NONE;
            reg.content = Content::NONE;
        }
        self.store(loc, released(SeptEntryState::Free, lock))
    }

    /// DEMOTE: the parent becomes a table and all 512 children get the parent's *unblocked*
    /// state (BLOCKED → MAPPED, PENDING_BLOCKED → PENDING); content stays where it is; the
    /// accept counter is reset (tdh_mem_page_demote.c, `sept_cleanup_if_pending`).
    fn apply_demote(&mut self, loc: Loc, reserved: TableRef, v: View) -> Result<(), SeptError> {
        let child = match v.state.unblocked() {
            SeptEntryState::Mapped
                if crate::broken::active(crate::broken::Variant::DemoteChildrenPending) =>
            {
                SeptEntryState::Pending
            }
            s => s,
        };
        match loc {
            Loc::Region(r) => {
                let region = *self.region(r)?;
                // Per-page content, if the region has it, already sits in a table: that one
                // becomes the page table. Otherwise the table reserved at the start; or, when
                // a 2M write gave the region's content table back while the DEMOTE was in
                // flight, a table from the pool, which that gave one back to.
                let (t, content) = match (region.table.index(), reserved.index()) {
                    (Some(t), Some(extra)) => {
                        self.free_table(extra)?;
                        (t, None)
                    }
                    (Some(t), None) => (t, None),
                    (None, Some(t)) => (t, Some(region.content)),
                    (None, None) => (self.alloc_table(r)?, Some(region.content)),
                };
                // One pass (and one digest) over the 512 children.
                for e in self.table_mut(t)?.entries.iter_mut() {
                    if let Some(c) = content {
                        e.content = c;
                    }
                    e.state = child;
                    e.lock = EntryLock::default();
                    e.bepoch = 0;
                }
                let reg = self.region_mut(r)?;
                reg.table = TableRef::to(t);
                reg.content = Content::NONE;
            }
            Loc::Gig(g) => {
                for r in self.regions_of_gig(g) {
                    self.store(
                        Loc::Region(r),
                        View {
                            state: child,
                            lock: EntryLock::default(),
                            bepoch: 0,
                            counter: 0,
                        },
                    )?;
                }
            }
            Loc::Page { .. } => return Err(SeptError::StorageInconsistent),
        }
        self.store(
            loc,
            View {
                state: SeptEntryState::NlMapped,
                lock: v.lock.with_locked(false),
                bepoch: 0,
                counter: 0,
            },
        )
    }

    /// PROMOTE: the children were checked identical (all MAPPED or all PENDING) and locked; the
    /// table entry becomes a leaf in their state and the children's table is released
    /// (tdh_mem_page_promote.c). The model takes the children's HPAs as contiguous.
    fn apply_promote(&mut self, loc: Loc, lock: EntryLock) -> Result<(), SeptError> {
        let state = match loc {
            Loc::Region(r) => {
                let t = self
                    .region(r)?
                    .table
                    .index()
                    .ok_or(SeptError::StorageInconsistent)?;
                let state = self
                    .table(t)?
                    .entries
                    .first()
                    .map(|e| e.state)
                    .ok_or(SeptError::StorageInconsistent)?;
                // The table now only records content; compact it if the content is uniform.
                for e in self.table_mut(t)?.entries.iter_mut() {
                    e.state = SeptEntryState::Free;
                    e.lock = EntryLock::default();
                    e.bepoch = 0;
                }
                self.store(
                    loc,
                    View {
                        state,
                        lock,
                        bepoch: 0,
                        counter: 0,
                    },
                )?;
                self.compact_region(r)?;
                return Ok(());
            }
            Loc::Gig(g) => {
                let mut state = SeptEntryState::Free;
                for r in self.regions_of_gig(g) {
                    let v = self.load(Loc::Region(r))?;
                    state = v.state;
                    self.store(Loc::Region(r), View::FREE)?;
                }
                state
            }
            Loc::Page { .. } => return Err(SeptError::StorageInconsistent),
        };
        self.store(
            loc,
            View {
                state,
                lock,
                bepoch: 0,
                counter: 0,
            },
        )
    }
}
