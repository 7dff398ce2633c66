//! Lost content: the first page whose accepted content one state holds and a later one lost
//! (the data-loss invariant's search).

use crate::abi::{Gpa, PageLevel};

use super::{Content, Entry4K, Region, Sept, SeptError, SeptStorage};
impl<S: SeptStorage, const F: usize> Sept<S, F> {
    fn entries_of(&self, r: &Region) -> Result<Option<&[Entry4K]>, SeptError> {
        Ok(match r.table.index() {
            Some(t) => Some(&self.table(t)?.entries[..]),
            None => None,
        })
    }

    /// [`Sept::first_lost_content`] over the regions `after` changed since its record was
    /// last cleared (all of them when it says everything).
    pub fn first_lost_content_changed(
        &self,
        after: &Sept<S, F>,
        allowed: impl Fn(Gpa) -> bool,
    ) -> Result<Option<Gpa>, SeptError> {
        if after.dirty.is_all() {
            return self.first_lost_content(after, allowed);
        }
        for &r in after.dirty.regions() {
            let pages = after.dirty.pages_of(r as usize);
            if let Some(g) = self.lost_in_region(after, r as usize, &allowed, pages)? {
                return Ok(Some(g));
            }
        }
        Ok(None)
    }

    /// The first page (in GPA order) whose content `self` holds and `after` lost (reads as
    /// never written) where `allowed` does not permit it; regions whose record and table are
    /// unchanged are skipped. Both must be over the same window.
    pub fn first_lost_content(
        &self,
        after: &Sept<S, F>,
        allowed: impl Fn(Gpa) -> bool,
    ) -> Result<Option<Gpa>, SeptError> {
        for r in 0..self.storage.regions().len() {
            if let Some(g) = self.lost_in_region(after, r, &allowed, None)? {
                return Ok(Some(g));
            }
        }
        Ok(None)
    }

    /// With `pages`, only those entries of the region's table changed (the record and table
    /// reference did not): the others are not looked at.
    fn lost_in_region(
        &self,
        after: &Sept<S, F>,
        i: usize,
        allowed: &impl Fn(Gpa) -> bool,
        pages: Option<&[u16]>,
    ) -> Result<Option<Gpa>, SeptError> {
        let (Some(was), Some(is)) = (
            self.storage.regions().get(i),
            after.storage.regions().get(i),
        ) else {
            return Ok(None);
        };
        let tw = self.entries_of(was)?;
        let ti = after.entries_of(is)?;
        let base = self
            .config
            .base
            .raw()
            .saturating_add((i as u64) << PageLevel::Size2M.shift());
        let count = crate::abi::ENTRIES_PER_TABLE as usize;
        // Page p held content before and reads as never written after.
        let lost_at = |p: usize| -> Option<Gpa> {
            let gpa = Gpa(base.saturating_add((p as u64) << 12));
            (!allowed(gpa)).then_some(gpa)
        };
        let none = Content::NONE;
        let first = match (tw, ti) {
            (Some(a), Some(b)) if pages.is_some() => pages
                .unwrap_or(&[])
                .iter()
                .map(|&p| usize::from(p))
                .filter(|&p| {
                    a.get(p).is_some_and(|x| x.content != none)
                        && b.get(p).is_some_and(|y| y.content == none)
                })
                .find_map(lost_at),
            (Some(a), Some(b)) => a
                .iter()
                .zip(b)
                .enumerate()
                .filter(|(_, (x, y))| x.content != none && y.content == none)
                .find_map(|(p, _)| lost_at(p)),
            (Some(a), None) if is.content == none => a
                .iter()
                .enumerate()
                .filter(|(_, x)| x.content != none)
                .find_map(|(p, _)| lost_at(p)),
            (None, Some(b)) if was.content != none => b
                .iter()
                .enumerate()
                .filter(|(_, y)| y.content == none)
                .find_map(|(p, _)| lost_at(p)),
            (None, None) if was.content != none && is.content == none => {
                (0..count).find_map(lost_at)
            }
            _ => None,
        };
        Ok(first)
    }

    // ----- content and table pool -----
}
