//! Reading the Secure EPT: the module's walk (secure_ept_walk), entry lookups, the mapping a
//! hardware walk ends at, a region's 4K table and a page's content.

use crate::abi::{Gpa, PageLevel, SeptEntryState};

use super::{
    Content, Entry4K, HugeEntry, Loc, Mapping, Sept, SeptError, SeptStorage, View, WalkStop,
    page_index,
};
impl<S: SeptStorage, const F: usize> Sept<S, F> {
    /// The walk of the module's `secure_ept_walk` (sept_manager.c): from the 1G level down, it
    /// stops at the requested level whatever the entry holds, or earlier at any entry that is
    /// not NL_MAPPED (not present, blocked, or a leaf).
    pub(crate) fn walk(&self, gpa: Gpa, target: PageLevel) -> Result<WalkStop, SeptError> {
        let outside = |level: PageLevel| WalkStop {
            level,
            loc: None,
            view: View::FREE,
            reached: level == target,
        };
        let Some(gig) = self.gig_index(gpa) else {
            return Ok(outside(PageLevel::Size1G));
        };
        let gv = self.load(Loc::Gig(gig))?;
        if target == PageLevel::Size1G || !gv.state.is_walkable() {
            return Ok(WalkStop {
                level: PageLevel::Size1G,
                loc: Some(Loc::Gig(gig)),
                view: gv,
                reached: target == PageLevel::Size1G,
            });
        }
        let Some(region) = self.region_index(gpa) else {
            return Ok(outside(PageLevel::Size2M));
        };
        let rv = self.load(Loc::Region(region))?;
        if target == PageLevel::Size2M || !rv.state.is_walkable() {
            return Ok(WalkStop {
                level: PageLevel::Size2M,
                loc: Some(Loc::Region(region)),
                view: rv,
                reached: target == PageLevel::Size2M,
            });
        }
        let table = self
            .region(region)?
            .table
            .index()
            .ok_or(SeptError::StorageInconsistent)?;
        let index = page_index(gpa);
        let loc = Loc::Page {
            region,
            table,
            index,
        };
        Ok(WalkStop {
            level: PageLevel::Size4K,
            loc: Some(loc),
            view: self.load(loc)?,
            reached: true,
        })
    }

    // ----- queries -----

    /// The state of the entry at `level` for `gpa`, or None when no table holds such an entry
    /// (its parent is not a table) or it lies outside the window.
    pub fn entry_state(
        &self,
        gpa: Gpa,
        level: PageLevel,
    ) -> Result<Option<SeptEntryState>, SeptError> {
        let w = self.walk_through_blocked(gpa, level)?;
        Ok(match w {
            Some(stop) if stop.reached && stop.loc.is_some() => Some(stop.view.state),
            _ => None,
        })
    }

    /// The full entry at `level` for `gpa` (state, lock, epoch, accept counter), if it exists.
    pub fn entry(&self, gpa: Gpa, level: PageLevel) -> Result<Option<HugeEntry>, SeptError> {
        let w = self.walk_through_blocked(gpa, level)?;
        Ok(match w {
            Some(stop) if stop.reached && stop.loc.is_some() => Some(HugeEntry {
                state: stop.view.state,
                lock: stop.view.lock,
                bepoch: stop.view.bepoch,
                accept_counter: stop.view.counter,
            }),
            _ => None,
        })
    }

    /// Like `walk`, but descending through NL_BLOCKED tables too: the structure, not the
    /// hardware walk. None when the parent chain ends above `level`.
    pub(super) fn walk_through_blocked(
        &self,
        gpa: Gpa,
        level: PageLevel,
    ) -> Result<Option<WalkStop>, SeptError> {
        let Some(gig) = self.gig_index(gpa) else {
            return Ok(None);
        };
        let gv = self.load(Loc::Gig(gig))?;
        if level == PageLevel::Size1G {
            return Ok(Some(WalkStop {
                level,
                loc: Some(Loc::Gig(gig)),
                view: gv,
                reached: true,
            }));
        }
        if !gv.state.is_table() {
            return Ok(None);
        }
        let Some(region) = self.region_index(gpa) else {
            return Ok(None);
        };
        let rv = self.load(Loc::Region(region))?;
        if level == PageLevel::Size2M {
            return Ok(Some(WalkStop {
                level,
                loc: Some(Loc::Region(region)),
                view: rv,
                reached: true,
            }));
        }
        if !rv.state.is_table() {
            return Ok(None);
        }
        let table = self
            .region(region)?
            .table
            .index()
            .ok_or(SeptError::StorageInconsistent)?;
        let loc = Loc::Page {
            region,
            table,
            index: page_index(gpa),
        };
        Ok(Some(WalkStop {
            level,
            loc: Some(loc),
            view: self.load(loc)?,
            reached: true,
        }))
    }

    /// The entry a hardware walk for `gpa` ends at: a leaf, or the first entry that is not
    /// present (TDG.MEM.PAGE.ATTR.RD's view, tdg_mem_page_attr_rd.c).
    pub fn mapping(&self, gpa: Gpa) -> Result<Mapping, SeptError> {
        let stop = self.walk(gpa, PageLevel::Size4K)?;
        Ok(Mapping {
            level: stop.level,
            state: stop.view.state,
        })
    }

    /// The 512 4K entries of the table under the 2M entry of `gpa`'s region, when that entry is
    /// a table (NL_MAPPED or NL_BLOCKED) and the 1G entry above is one too.
    pub fn table_4k(&self, gpa: Gpa) -> Result<Option<&[Entry4K]>, SeptError> {
        let Some(gig) = self.gig_index(gpa) else {
            return Ok(None);
        };
        let Some(r) = self.region_index(gpa) else {
            return Ok(None);
        };
        let region = self.region(r)?;
        if !self.load(Loc::Gig(gig))?.state.is_table() || !region.entry.state.is_table() {
            return Ok(None);
        }
        let t = region.table.index().ok_or(SeptError::StorageInconsistent)?;
        Ok(Some(&self.table(t)?.entries[..]))
    }

    /// The content of the 4K page at `gpa`.
    pub fn content(&self, gpa: Gpa) -> Result<Content, SeptError> {
        let Some(r) = self.region_index(gpa) else {
            return Ok(Content::NONE);
        };
        let region = self.region(r)?;
        match region.table.index() {
            Some(t) => Ok(self
                .table(t)?
                .entries
                .get(page_index(gpa))
                .ok_or(SeptError::StorageInconsistent)?
                .content),
            None => Ok(region.content),
        }
    }
}
