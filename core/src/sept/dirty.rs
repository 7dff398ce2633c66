//! Which regions a step changed, so that checks and copies after it can look at those alone.
//!
//! A model marks a region when it hands out a mutable record of it; only the record when it
//! writes the region's 2M entry, and only a page when it writes one 4K entry of the region's
//! table (then the table reference and the table's other entries are unchanged, and checks and
//! copies look at the record and those pages alone); a change it cannot place marks
//! everything. The S-EPT also marks when its own fields change. The set is bookkeeping, not
//! state: every `Dirty` compares equal and hashes to nothing, so two states that differ only
//! in it are the same state.

/// Regions tracked one by one before the set gives up and says "all" (a step touches one or
/// two; the set is copied and merged on every explored transition, so it is kept small:
/// four measured as fast as eight on the Linux-boot world, and faster on the seed).
pub(crate) const TRACKED: usize = 4;
/// Pages tracked one by one in a region before the whole region counts as changed.
const PAGES: usize = 4;
/// A region's page count when anything in it may have changed.
const WHOLE: u8 = u8::MAX;

/// The regions changed since the last [`Dirty::clear`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Dirty {
    regions: [u32; TRACKED],
    /// Per tracked region: the pages of its table that changed (the first `counts` of them),
    /// or anything when its count is `WHOLE`.
    pages: [[u16; PAGES]; TRACKED],
    counts: [u8; TRACKED],
    len: u8,
    all: bool,
    gigs: bool,
    /// The model's own fields (outside its regions and 1G records) changed.
    fields: bool,
}

impl PartialEq for Dirty {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Dirty {}

impl core::hash::Hash for Dirty {
    fn hash<H: core::hash::Hasher>(&self, _: &mut H) {}
}

impl Dirty {
    /// Everything changed (a fresh model, or a change not placed).
    pub const ALL: Dirty = Dirty {
        regions: [0; TRACKED],
        pages: [[0; PAGES]; TRACKED],
        counts: [0; TRACKED],
        len: 0,
        all: true,
        gigs: true,
        fields: true,
    };

    /// The slot tracking region `r`, taken if new (`None` once everything counts as changed).
    fn slot(&mut self, r: usize) -> Option<usize> {
        if self.all {
            return None;
        }
        let Ok(r) = u32::try_from(r) else {
            self.all = true;
            return None;
        };
        let len = usize::from(self.len);
        if let Some(k) = self
            .regions
            .get(..len)
            .and_then(|s| s.iter().position(|&x| x == r))
        {
            return Some(k);
        }
        match (self.regions.get_mut(len), self.counts.get_mut(len)) {
            (Some(slot), Some(count)) => {
                *slot = r;
                *count = 0;
                self.len = self.len.saturating_add(1);
                Some(len)
            }
            _ => {
                self.all = true;
                None
            }
        }
    }

    /// Region `r` changed: its record, its table, anything in it.
    pub fn mark(&mut self, r: usize) {
        if let Some(c) = self.slot(r).and_then(|k| self.counts.get_mut(k)) {
            *c = WHOLE;
        }
    }

    /// Only region `r`'s record changed (its entry's state, lock or epoch; not the table it
    /// references, nor that table's entries).
    pub fn mark_record(&mut self, r: usize) {
        let _ = self.slot(r);
    }

    /// Only 4K entry `page` of region `r`'s table changed (and perhaps the region's record).
    pub fn mark_page(&mut self, r: usize, page: usize) {
        let Some(k) = self.slot(r) else {
            return;
        };
        let (Some(c), Some(list), Ok(page)) = (
            self.counts.get_mut(k),
            self.pages.get_mut(k),
            u16::try_from(page),
        ) else {
            self.all = true;
            return;
        };
        if *c == WHOLE
            || list
                .get(..usize::from(*c))
                .is_some_and(|l| l.contains(&page))
        {
            return;
        }
        match list.get_mut(usize::from(*c)) {
            Some(slot) => {
                *slot = page;
                *c = c.saturating_add(1);
            }
            None => *c = WHOLE,
        }
    }

    /// A 1G-level record changed.
    pub fn mark_gigs(&mut self) {
        self.gigs = true;
    }

    /// The model's own fields changed (for the S-EPT: its op state, TLB epochs, tree lock,
    /// table pool counters and operations in flight; for KVM: its memslots).
    pub fn mark_fields(&mut self) {
        self.fields = true;
    }

    /// Whether the model's own fields or a 1G record may have changed.
    pub fn fields(&self) -> bool {
        self.fields || self.gigs || self.all
    }

    /// Everything changed.
    pub fn mark_all(&mut self) {
        *self = Dirty::ALL;
    }

    /// Forget what changed (the slots past `len` are never read, so they stay as they are).
    pub fn clear(&mut self) {
        self.len = 0;
        self.all = false;
        self.gigs = false;
        self.fields = false;
    }

    /// Whether the set gave up (check everything).
    pub fn is_all(&self) -> bool {
        self.all
    }

    /// Whether a 1G-level record changed.
    pub fn gigs(&self) -> bool {
        self.gigs || self.all
    }

    /// The slot tracking region `r`, if it is marked.
    fn index_of(&self, r: usize) -> Option<usize> {
        let r = u32::try_from(r).ok()?;
        self.regions().iter().position(|&x| x == r)
    }

    /// Whether region `r` may have changed (it is marked, or everything is).
    pub fn has(&self, r: usize) -> bool {
        self.all || self.index_of(r).is_some()
    }

    /// Whether an entry of a table region `r` owns may have changed: everything counts as
    /// changed, or the region is marked whole or with pages (not only its record).
    pub fn table_touched(&self, r: usize) -> bool {
        self.all
            || self
                .index_of(r)
                .and_then(|k| self.counts.get(k))
                .is_some_and(|&c| c != 0)
    }

    /// The regions marked (meaningless when [`Dirty::is_all`]).
    pub fn regions(&self) -> &[u32] {
        self.regions.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// When region `r`'s table reference did not change and only some of its table's entries
    /// did, those pages (none when only the record changed); `None` when anything in it may
    /// have changed (or it is not in the set).
    pub fn pages_of(&self, r: usize) -> Option<&[u16]> {
        if self.all {
            return None;
        }
        self.pages_at(self.index_of(r)?)
    }

    /// Both sets together.
    #[inline]
    pub fn union(&self, o: &Dirty) -> Dirty {
        let mut u = *self;
        u.absorb(o);
        u
    }

    /// Adds `o` to this set (in place: a set is a hundred bytes, and copies of it add up).
    #[inline]
    pub fn absorb(&mut self, o: &Dirty) {
        if o.all {
            self.mark_all();
            return;
        }
        self.gigs |= o.gigs;
        self.fields |= o.fields;
        if self.all || o.len == 0 {
            return;
        }
        for (k, &r) in o.regions().iter().enumerate() {
            match o.pages_at(k) {
                Some(pages) => {
                    self.mark_record(r as usize);
                    for &p in pages {
                        self.mark_page(r as usize, usize::from(p));
                    }
                }
                None => self.mark(r as usize),
            }
        }
    }

    /// The pages of the `k`-th tracked region, `None` for the whole region.
    fn pages_at(&self, k: usize) -> Option<&[u16]> {
        let c = *self.counts.get(k)?;
        if c == WHOLE {
            return None;
        }
        self.pages.get(k)?.get(..usize::from(c))
    }
}

/// Copies entries `pages` of `src` into `dst` (two tables' entries, indexed alike).
pub(crate) fn copy_entries<E: Copy>(dst: &mut [E], src: &[E], pages: &[u16]) {
    for &p in pages {
        if let (Some(d), Some(s)) = (dst.get_mut(usize::from(p)), src.get(usize::from(p))) {
            *d = *s;
        }
    }
}

/// A table that can take some of its entries from another (keeping what its hash sees right).
pub(crate) trait PageCopy {
    /// Copies entries `pages` of `src` (a table that differs from this one in those alone and
    /// perhaps in its bookkeeping: digest, use, link), and that bookkeeping.
    fn copy_pages(&mut self, src: &Self, pages: &[u16]);
}

/// Copies the pool tables `refs` name from `src` to `dst` (two pools indexed alike).
pub(crate) fn copy_tables<T: Clone>(dst: &mut [T], src: &[T], refs: &[super::TableRef]) {
    for i in refs.iter().filter_map(|t| t.index()) {
        if let (Some(d), Some(s)) = (dst.get_mut(i), src.get(i)) {
            d.clone_from(s);
        }
    }
}

/// The tables [`copy_changed_regions`] copied whole.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WholeCopies {
    tables: [super::TableRef; 2 * TRACKED],
    len: usize,
}

impl WholeCopies {
    fn push(&mut self, t: super::TableRef) {
        if t.index().is_some()
            && !self.contains(t)
            && let Some(slot) = self.tables.get_mut(self.len)
        {
            *slot = t;
            self.len = self.len.saturating_add(1);
        }
    }

    /// Whether table `t` is among them.
    pub(crate) fn contains(&self, t: super::TableRef) -> bool {
        self.tables.get(..self.len).is_some_and(|l| l.contains(&t))
    }
}

/// Hashes region record `r` and the pool table it references: the per-region part of a
/// model's fingerprint ([`crate::snapshot::Snapshot::hash_region`]), the same for the S-EPT's
/// regions and KVM's mirror.
#[inline]
pub(crate) fn hash_region_and_table<
    R: core::hash::Hash,
    T: core::hash::Hash,
    H: core::hash::Hasher,
>(
    (regions, tables): (&[R], &[T]),
    r: usize,
    table_of: impl Fn(&R) -> super::TableRef,
    h: &mut H,
) {
    if let Some(region) = regions.get(r) {
        region.hash(h);
        if let Some(t) = table_of(region).index().and_then(|i| tables.get(i)) {
            t.hash(h);
        }
    }
}

/// Copies the region records `d` names from `src` to `dst`, with the pool tables the record
/// references on either side (the table a region held before a step or holds after it), and
/// says which tables it copied whole. Both stores must have the same sizes; when they do not,
/// or `d` says everything, nothing is copied and the answer is `None`: the caller copies the
/// whole model then.
pub(crate) fn copy_changed_regions<R: Copy, T: Clone + PageCopy>(
    (dst_regions, dst_tables): (&mut [R], &mut [T]),
    (src_regions, src_tables): (&[R], &[T]),
    d: &Dirty,
    table_of: impl Fn(&R) -> super::TableRef,
) -> Option<WholeCopies> {
    if d.is_all() || dst_regions.len() != src_regions.len() || dst_tables.len() != src_tables.len()
    {
        return None;
    }
    let mut whole = WholeCopies {
        tables: [super::TableRef::NONE; 2 * TRACKED],
        len: 0,
    };
    for (k, &r) in d.regions().iter().enumerate() {
        let (Some(dst), Some(src)) = (dst_regions.get_mut(r as usize), src_regions.get(r as usize))
        else {
            continue;
        };
        let (td, ts) = (table_of(dst), table_of(src));
        match (d.pages_at(k), td.index()) {
            // Only some entries of the table both sides reference.
            (Some(pages), Some(t)) if td == ts => {
                if let (Some(dt), Some(st)) = (dst_tables.get_mut(t), src_tables.get(t)) {
                    dt.copy_pages(st, pages);
                }
            }
            _ => {
                for t in [td, ts] {
                    if !whole.contains(t) {
                        copy_tables(dst_tables, src_tables, &[t]);
                        whole.push(t);
                    }
                }
            }
        }
        *dst = *src;
    }
    Some(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_up_to_the_limit_then_everything() {
        let mut d = Dirty::default();
        d.mark(3);
        d.mark(3);
        d.mark(5);
        assert_eq!(d.regions(), &[3, 5]);
        assert!(!d.is_all() && !d.gigs());
        for r in 10..20 {
            d.mark(r);
        }
        assert!(d.is_all());
        d.clear();
        assert!(d.regions().is_empty() && !d.is_all());
        assert_eq!(Dirty::ALL, d);
    }

    #[test]
    fn pages_up_to_the_limit_then_the_whole_region() {
        let mut d = Dirty::default();
        d.mark_page(2, 7);
        d.mark_page(2, 7);
        d.mark_page(2, 9);
        assert_eq!(d.regions(), &[2]);
        assert_eq!(d.pages_of(2), Some(&[7, 9][..]));
        assert_eq!(d.pages_of(3), None);
        for p in 10..12 {
            d.mark_page(2, p);
        }
        assert_eq!(d.pages_of(2), Some(&[7, 9, 10, 11][..]));
        d.mark_page(2, 12);
        assert_eq!(d.pages_of(2), None);
        // A region marked whole stays whole.
        let mut e = Dirty::default();
        e.mark(4);
        e.mark_page(4, 1);
        assert_eq!(e.pages_of(4), None);
        // A record alone: no pages.
        let mut r = Dirty::default();
        r.mark_record(6);
        assert_eq!(r.pages_of(6), Some(&[][..]));
        r.mark_page(6, 1);
        assert_eq!(r.pages_of(6), Some(&[1][..]));
        let mut only = Dirty::default();
        only.mark_record(7);
        assert_eq!(Dirty::default().union(&only).regions(), &[7]);
        assert_eq!(e.union(&only).pages_of(7), Some(&[][..]));
        // The fields flag survives a union either way round.
        let mut fields = Dirty::default();
        assert!(!fields.fields());
        fields.mark_fields();
        assert!(Dirty::default().union(&fields).fields());
        assert!(fields.union(&Dirty::default()).fields());
        assert!(Dirty::ALL.fields());
        // Union keeps pages apart from whole regions.
        let mut f = Dirty::default();
        f.mark_page(4, 2);
        f.mark_page(5, 3);
        let mut g = Dirty::default();
        g.mark_page(5, 6);
        let u = f.union(&g);
        assert_eq!(u.regions(), &[4, 5]);
        assert_eq!(u.pages_of(4), Some(&[2][..]));
        assert_eq!(u.pages_of(5), Some(&[3, 6][..]));
        assert_eq!(u.union(&e).pages_of(4), None);
    }
}
