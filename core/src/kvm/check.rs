//! The mirror checked against the S-EPT (design.md's first invariant), in full and over the
//! regions a step changed.

use crate::abi::{Gpa, PageLevel};

use super::vm::memslots_digest;
use super::{Kvm, KvmStorage, Spte};
/// Where the mirror and the S-EPT disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MirrorMismatch {
    /// The GPA of the entry.
    pub gpa: Gpa,
    /// Its level.
    pub level: PageLevel,
    /// The mirror SPTE (None: no table holds the entry).
    pub mirror: Option<Spte>,
    /// The S-EPT entry's state (None: no table holds the entry).
    pub sept: Option<crate::abi::SeptEntryState>,
}

impl<S: KvmStorage> Kvm<S> {
    /// Whether every mirror table in use has a current digest (a consistency check).
    pub fn digests_current(&self) -> bool {
        self.memslots_digest == memslots_digest(&self.memslots)
            && self
                .storage
                .tables()
                .iter()
                .all(|t| !t.in_use || t.digest_is_current())
    }

    /// design.md's first invariant: the mirror and the S-EPT agree on the presence and level of
    /// every leaf and table, except entries an operation has frozen. Call it when no SEAMCALL is
    /// in flight.
    pub fn check_against_sept<SS: crate::sept::SeptStorage, const F: usize>(
        &self,
        sept: &crate::sept::Sept<SS, F>,
    ) -> Result<(), MirrorMismatch> {
        for r in 0..self.storage.regions().len() {
            self.check_region_against_sept(sept, r, true, None)?;
        }
        Ok(())
    }

    /// [`Kvm::check_against_sept`] over the regions either model changed since their records
    /// were last cleared (and the 1G entries when one changed); everything when either record
    /// says everything.
    pub fn check_changed_against_sept<SS: crate::sept::SeptStorage + Clone, const F: usize>(
        &self,
        sept: &crate::sept::Sept<SS, F>,
    ) -> Result<(), MirrorMismatch> {
        use crate::snapshot::Snapshot;
        self.check_changed_against_sept_in(sept, &self.dirty.union(&sept.changes()))
    }

    /// [`Kvm::check_changed_against_sept`] given both models' changes together.
    pub(crate) fn check_changed_against_sept_in<SS: crate::sept::SeptStorage, const F: usize>(
        &self,
        sept: &crate::sept::Sept<SS, F>,
        d: &crate::sept::Dirty,
    ) -> Result<(), MirrorMismatch> {
        if d.is_all() {
            return self.check_against_sept(sept);
        }
        if d.gigs() {
            for r in 0..self.storage.regions().len() {
                let gpa = Gpa(self.base.raw().saturating_add((r as u64) << 21));
                if r == 0 || gpa.is_aligned(PageLevel::Size1G) {
                    self.check_region_against_sept(sept, r, false, None)?;
                }
            }
        }
        for &r in d.regions() {
            self.check_region_against_sept(sept, r as usize, true, d.pages_of(r as usize))?;
        }
        Ok(())
    }

    /// Region `r`'s 1G entry (when it starts the window or a 1 GiB range) and, with `below`,
    /// its 2M entry and 4K table (with `pages`, only those entries of it: the others did not
    /// change).
    fn check_region_against_sept<SS: crate::sept::SeptStorage, const F: usize>(
        &self,
        sept: &crate::sept::Sept<SS, F>,
        r: usize,
        below: bool,
        pages: Option<&[u16]>,
    ) -> Result<(), MirrorMismatch> {
        let gpa = Gpa(self.base.raw().saturating_add((r as u64) << 21));
        let gfn = gpa.gfn();
        let mut levels = core::iter::empty().collect::<LevelList>();
        if below {
            levels.push((PageLevel::Size2M, gpa));
        }
        if r == 0 || gpa.is_aligned(PageLevel::Size1G) {
            levels.push((PageLevel::Size1G, gpa.align_down(PageLevel::Size1G)));
        }
        for &(level, at) in levels.iter() {
            let m = self.mirror(at.gfn(), level);
            let s = sept.entry_state(at, level).ok().flatten();
            if !agree(m, s) {
                return Err(MirrorMismatch {
                    gpa: at,
                    level,
                    mirror: m,
                    sept: s,
                });
            }
        }
        if below
            && self
                .mirror(gfn, PageLevel::Size2M)
                .is_some_and(Spte::is_table)
        {
            return self.check_table_against_sept(sept, gpa, pages);
        }
        Ok(())
    }

    /// The 4K table of the region at `gpa`, whose 2M mirror SPTE is a table, against the
    /// S-EPT's (with `pages`, only those entries).
    fn check_table_against_sept<SS: crate::sept::SeptStorage, const F: usize>(
        &self,
        sept: &crate::sept::Sept<SS, F>,
        gpa: Gpa,
        pages: Option<&[u16]>,
    ) -> Result<(), MirrorMismatch> {
        // Both tables at once, entry by entry.
        let mirror = self
            .region_of(gpa.gfn())
            .and_then(|r| r.table.index())
            .and_then(|t| self.storage.tables().get(t));
        let sept_table = sept.table_4k(gpa).ok().flatten();
        // The whole of two tables that agree, in one pass without the per-entry
        // bookkeeping (a disagreement is found and reported by the loop below).
        let entry = |e: &Spte| e.kind().frozen(e.is_frozen());
        if pages.is_none()
            && let (Some(mt), Some(st)) = (mirror, sept_table)
            && mt.entries.len() == st.len()
            && mt
                .entries
                .iter()
                .zip(st)
                .all(|(m, s)| agree(Some(entry(m)), Some(s.state)))
        {
            return Ok(());
        }
        let mut all = 0..512u16;
        let mut some = pages.unwrap_or(&[]).iter().copied();
        let pages: &mut dyn Iterator<Item = u16> = match pages {
            None => &mut all,
            Some(_) => &mut some,
        };
        for p in pages.map(usize::from) {
            let m = mirror.and_then(|t| t.entries.get(p)).map(entry);
            let s = sept_table.and_then(|t| t.get(p)).map(|e| e.state);
            if !agree(m, s) {
                return Err(MirrorMismatch {
                    gpa: Gpa(gpa.raw().saturating_add((p as u64) << 12)),
                    level: PageLevel::Size4K,
                    mirror: m,
                    sept: s,
                });
            }
        }
        Ok(())
    }
}

/// Whether a mirror SPTE and an S-EPT entry state agree (None: no table holds the entry): a
/// frozen SPTE agrees with anything; otherwise leaf with leaf and table with table, and an
/// entry no table holds with a non-present SPTE or a FREE entry.
fn agree(m: Option<Spte>, s: Option<crate::abi::SeptEntryState>) -> bool {
    match (m, s) {
        (Some(m), _) if m.is_frozen() => true,
        (Some(m), Some(s)) => m.is_leaf() == s.is_leaf() && m.is_table() == s.is_table(),
        (Some(m), None) => !m.is_present(),
        (None, Some(s)) => s == crate::abi::SeptEntryState::Free,
        (None, None) => true,
    }
}

/// Up to two (level, GPA) pairs to compare.
struct LevelList {
    items: [(PageLevel, Gpa); 2],
    len: usize,
}

impl LevelList {
    fn push(&mut self, item: (PageLevel, Gpa)) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = item;
            self.len = self.len.saturating_add(1);
        }
    }
    fn iter(&self) -> impl Iterator<Item = &(PageLevel, Gpa)> {
        self.items.iter().take(self.len)
    }
}

impl FromIterator<(PageLevel, Gpa)> for LevelList {
    fn from_iter<I: IntoIterator<Item = (PageLevel, Gpa)>>(iter: I) -> Self {
        let mut l = LevelList {
            items: [(PageLevel::Size4K, Gpa(0)); 2],
            len: 0,
        };
        for i in iter {
            l.push(i);
        }
        l
    }
}
