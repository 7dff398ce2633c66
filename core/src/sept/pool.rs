//! The 4K-table pool and page content: taking and freeing tables, setting region and page
//! content, compacting a uniform table back into its region.

use crate::abi::Gpa;

use super::{Content, Sept, SeptError, SeptStorage, Table4K, TableRef, page_index};
impl<S: SeptStorage, const F: usize> Sept<S, F> {
    /// Takes a table from the pool for region `owner`.
    pub(crate) fn alloc_table(&mut self, owner: usize) -> Result<usize, SeptError> {
        // A free table is EMPTY: taking it changes its use, link and digest, not its entries
        // (the owner's record says so; see `copy_changed`).
        self.dirty.mark_record(owner);
        let idx = match self.free_tables.index() {
            Some(i) => i,
            // None free: a pool that may grow appends one (EMPTY, linked to nothing).
            None => self
                .storage
                .grow_tables()
                .ok_or(SeptError::TablePoolExhausted)?,
        };
        // A free table is EMPTY already (freeing resets it; the full checks hold the pool to
        // it), digest included.
        let t = self.table_raw_mut(idx)?;
        let next = t.link;
        t.in_use = true;
        t.link = TableRef::to(owner);
        self.dirty.mark_fields();
        self.free_tables = next;
        self.tables_in_use = self.tables_in_use.saturating_add(1);
        Ok(idx)
    }

    pub(crate) fn free_table(&mut self, idx: usize) -> Result<(), SeptError> {
        let head = self.free_tables;
        let t = self.table_raw_mut(idx)?;
        if !t.in_use {
            return Err(SeptError::StorageInconsistent);
        }
        *t = Table4K::EMPTY;
        t.link = head;
        self.dirty.mark_fields();
        self.free_tables = TableRef::to(idx);
        self.tables_in_use = self.tables_in_use.saturating_sub(1);
        Ok(())
    }

    /// Sets every page of region `r` to `c`, releasing a content-only table. The region must
    /// not be a table (its 4K entries would be lost).
    pub(crate) fn set_region_content(&mut self, r: usize, c: Content) -> Result<(), SeptError> {
        let region = self.region(r)?;
        if region.entry.state.is_table() {
            let t = region.table.index().ok_or(SeptError::StorageInconsistent)?;
            for e in self.table_mut(t)?.entries.iter_mut() {
                e.content = c;
            }
            return Ok(());
        }
        if let Some(t) = region.table.index() {
            self.free_table(t)?;
        }
        let region = self.region_mut(r)?;
        region.table = TableRef::NONE;
        region.content = c;
        Ok(())
    }

    /// Sets the content of one 4K page, taking a content table from the pool if the region's
    /// content stops being uniform.
    pub(crate) fn set_page_content(&mut self, gpa: Gpa, c: Content) -> Result<(), SeptError> {
        let r = self.region_index(gpa).ok_or(SeptError::OutsideModel)?;
        let region = *self.region(r)?;
        let t = match region.table.index() {
            Some(t) => t,
            None => {
                if region.content == c {
                    return Ok(());
                }
                // A DEMOTE in flight on the leaf hands over the table it reserved.
                let t = match self.take_demote_reservation(r)? {
                    Some(t) => t,
                    None => self.alloc_table(r)?,
                };
                for e in self.table_mut(t)?.entries.iter_mut() {
                    e.content = region.content;
                }
                let reg = self.region_mut(r)?;
                reg.table = TableRef::to(t);
                reg.content = Content::NONE;
                t
            }
        };
        self.update_entry(t, page_index(gpa), |e| e.content = c)
    }

    /// Turns a content-only table whose pages all hold one value back into a uniform region.
    pub(crate) fn compact_region(&mut self, r: usize) -> Result<(), SeptError> {
        let region = *self.region(r)?;
        if region.entry.state.is_table() {
            return Ok(());
        }
        let Some(t) = region.table.index() else {
            return Ok(());
        };
        let table = self.table(t)?;
        let first = table.entries.first().map(|e| e.content).unwrap_or_default();
        if table.entries.iter().all(|e| e.content == first) {
            self.free_table(t)?;
            let reg = self.region_mut(r)?;
            reg.table = TableRef::NONE;
            reg.content = first;
        }
        Ok(())
    }

    // ----- direct set-up -----
}
