//! The per-VM state KVM's TDX private fault path reads and changes: the mirror page table,
//! memslots and their guest_memfd folio orders, private/shared attributes, lpage_info, mmu_lock,
//! and the flags that end a VM.
//!
//! Storage follows the S-EPT model's: per 2 MiB region a few bytes (the 2M mirror SPTE,
//! attributes, lpage_info, folio level) and a 4K table from a pool only where the region's
//! mirror is split or its attributes are mixed; per 1 GiB range the 1G SPTE and lpage_info.

use crate::abi::{Gfn, Gpa, PageLevel};
use crate::sept::{SeptConfig, SeptError, TableRef};

use super::{Attrs, KvmGig, KvmRegion, KvmStorage, LpageInfo, MirrorTable, MmuLock, Spte};

/// A memslot: a GFN range, backed (for private memory) by guest_memfd or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Memslot {
    /// First GFN.
    pub base: Gfn,
    /// Number of 4K pages.
    pub pages: u64,
    /// Whether the slot has a guest_memfd (private memory needs one).
    pub guest_memfd: bool,
}

impl Memslot {
    /// Whether `gfn` lies in the slot.
    pub const fn contains(&self, gfn: Gfn) -> bool {
        gfn.raw() >= self.base.raw() && gfn.raw().wrapping_sub(self.base.raw()) < self.pages
    }
}

/// Memslots a VM may have in the model.
pub const MAX_MEMSLOTS: usize = 8;

/// Errors of KVM's model itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvmError {
    /// The storage does not match the window.
    StorageMismatch,
    /// A GFN outside the window.
    OutsideModel,
    /// No table left in the pool (KVM's page allocation failed).
    TablePoolExhausted,
    /// No memslot slot left, or slots overlap.
    BadMemslot,
    /// The storage contradicts itself.
    Inconsistent,
    /// The S-EPT model failed.
    Sept(SeptError),
    /// The policy cannot run on this module.
    Policy(crate::policy::PolicyError),
}

impl From<SeptError> for KvmError {
    fn from(e: SeptError) -> Self {
        KvmError::Sept(e)
    }
}

/// KVM's per-VM state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kvm<S> {
    pub(super) base: Gpa,
    pub(super) memslots: [Option<Memslot>; MAX_MEMSLOTS],
    /// A digest of the memslots (kept with them, for hashing them in two words).
    pub(super) memslots_digest: [u64; 2],
    /// mmu_lock.
    pub mmu_lock: MmuLock,
    /// An invalidation (conversion, punch hole) in progress over [start, end): faults there
    /// retry (mmu_invalidate_in_progress).
    pub invalidation: Option<(Gfn, Gfn)>,
    /// KVM_BUG_ON hit: the VM is bugged and dead.
    pub bugged: bool,
    /// The VM was killed (e.g. the guest touched unaccepted memory with #VE disabled).
    pub killed: bool,
    /// A request to kick every vCPU out of the guest is pending (KVM_REQ_OUTSIDE_GUEST_MODE).
    pub kick_pending: bool,
    /// Regions changed since the last [`Snapshot::clear_changes`](crate::snapshot::Snapshot::clear_changes) (not state).
    pub(super) dirty: crate::sept::Dirty,
    pub(super) storage: S,
}

impl<S: KvmStorage> Kvm<S> {
    /// KVM's state for the window of `window` (the same window as the S-EPT model's), all
    /// private, backed by 2M folios, with no memslot yet.
    pub fn new(window: &SeptConfig, mut storage: S) -> Result<Self, KvmError> {
        if storage.gigs().len() != window.gigs_needed()?
            || storage.regions().len() != window.regions_len()?
        {
            return Err(KvmError::StorageMismatch);
        }
        storage.gigs_mut().fill(KvmGig::EMPTY);
        storage.regions_mut().fill(KvmRegion::EMPTY);
        for t in storage.tables_mut() {
            *t = MirrorTable::EMPTY;
        }
        Ok(Kvm {
            base: window.base,
            memslots: [None; MAX_MEMSLOTS],
            memslots_digest: memslots_digest(&[None; MAX_MEMSLOTS]),
            mmu_lock: MmuLock::default(),
            invalidation: None,
            bugged: false,
            killed: false,
            kick_pending: false,
            dirty: crate::sept::Dirty::ALL,
            storage,
        })
    }

    /// The storage (read-only).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Whether the VM can still run.
    pub fn alive(&self) -> bool {
        !self.bugged && !self.killed
    }

    // ----- memslots and backing -----

    /// Adds a memslot; misaligned edges count in the first/last huge range's lpage_info at each
    /// level (kvm_alloc_memslot_metadata: `linfo[0].disallow_lpage = 1` when `base_gfn` is not
    /// aligned, likewise the last).
    pub fn add_memslot(&mut self, slot: Memslot) -> Result<(), KvmError> {
        let end = slot
            .base
            .raw()
            .checked_add(slot.pages)
            .ok_or(KvmError::BadMemslot)?;
        if slot.pages == 0
            || self.memslots.iter().flatten().any(|m| {
                m.base.raw() < end && slot.base.raw() < m.base.raw().saturating_add(m.pages)
            })
        {
            return Err(KvmError::BadMemslot);
        }
        let free = self
            .memslots
            .iter_mut()
            .find(|m| m.is_none())
            .ok_or(KvmError::BadMemslot)?;
        *free = Some(slot);
        self.memslots_digest = memslots_digest(&self.memslots);
        self.dirty.mark_fields();
        for level in [PageLevel::Size2M, PageLevel::Size1G] {
            let mask = u64::from(level.pages_4k()).wrapping_sub(1);
            if slot.base.raw() & mask != 0 {
                self.disallow_edge(slot.base, level);
            }
            if end & mask != 0 {
                self.disallow_edge(Gfn(end.wrapping_sub(1)), level);
            }
        }
        Ok(())
    }

    /// A memslot edge inside the huge range: the slot's lpage_info there is 1.
    fn disallow_edge(&mut self, gfn: Gfn, level: PageLevel) {
        if let Some(l) = self.lpage_mut(gfn, level)
            && l.count() == 0
        {
            *l = l.incremented();
        }
    }

    /// The memslot holding `gfn`.
    pub fn memslot(&self, gfn: Gfn) -> Option<Memslot> {
        self.memslots
            .iter()
            .flatten()
            .copied()
            .find(|m| m.contains(gfn))
    }

    /// The mapping level a guest_memfd folio of `order` allows: order ≥ 18 → 1G, ≥ 9 → 2M,
    /// else 4K (shared/reference/kvm-fault-path.md, fault-in).
    pub const fn folio_level(order: u8) -> PageLevel {
        if order >= 18 {
            PageLevel::Size1G
        } else if order >= 9 {
            PageLevel::Size2M
        } else {
            PageLevel::Size4K
        }
    }

    /// Sets the guest_memfd folio level backing the region of `gfn`.
    pub fn set_folio(&mut self, gfn: Gfn, folio: PageLevel) -> Result<(), KvmError> {
        let r = self.region_index(gfn).ok_or(KvmError::OutsideModel)?;
        self.region_mut(r)?.folio = folio;
        Ok(())
    }

    // ----- locations -----

    pub(crate) fn region_index(&self, gfn: Gfn) -> Option<usize> {
        let off = gfn.raw().checked_sub(self.base.gfn().raw())?;
        let i = usize::try_from(off >> 9).ok()?;
        (i < self.storage.regions().len()).then_some(i)
    }

    pub(crate) fn gig_index(&self, gfn: Gfn) -> Option<usize> {
        let first = self.base.gfn().round_for_level(PageLevel::Size1G);
        let off = gfn.raw().checked_sub(first.raw())?;
        let i = usize::try_from(off >> 18).ok()?;
        (i < self.storage.gigs().len()).then_some(i)
    }

    pub(crate) fn region(&self, r: usize) -> Result<&KvmRegion, KvmError> {
        self.storage.regions().get(r).ok_or(KvmError::Inconsistent)
    }

    pub(crate) fn region_mut(&mut self, r: usize) -> Result<&mut KvmRegion, KvmError> {
        self.dirty.mark(r);
        self.storage
            .regions_mut()
            .get_mut(r)
            .ok_or(KvmError::Inconsistent)
    }

    /// Region `r`'s record for a change to its own fields (mirror SPTE, lpage_info): not its
    /// table reference nor its table's entries, which [`Kvm::region_mut`] is for.
    fn region_record_mut(&mut self, r: usize) -> Result<&mut KvmRegion, KvmError> {
        self.dirty.mark_record(r);
        self.storage
            .regions_mut()
            .get_mut(r)
            .ok_or(KvmError::Inconsistent)
    }

    pub(crate) fn gig_mut(&mut self, g: usize) -> Result<&mut KvmGig, KvmError> {
        self.dirty.mark_gigs();
        self.storage
            .gigs_mut()
            .get_mut(g)
            .ok_or(KvmError::Inconsistent)
    }

    /// The region record for `gfn`.
    pub fn region_of(&self, gfn: Gfn) -> Option<&KvmRegion> {
        self.storage.regions().get(self.region_index(gfn)?)
    }

    /// The 1G record for `gfn`.
    pub fn gig_of(&self, gfn: Gfn) -> Option<&KvmGig> {
        self.storage.gigs().get(self.gig_index(gfn)?)
    }

    /// lpage_info for the `level` range holding `gfn` (2M or 1G).
    pub fn lpage(&self, gfn: Gfn, level: PageLevel) -> Option<LpageInfo> {
        match level {
            PageLevel::Size2M => self.region_of(gfn).map(|r| r.lpage),
            PageLevel::Size1G => self.gig_of(gfn).map(|g| g.lpage),
            PageLevel::Size4K => None,
        }
    }

    pub(crate) fn lpage_mut(&mut self, gfn: Gfn, level: PageLevel) -> Option<&mut LpageInfo> {
        match level {
            PageLevel::Size2M => {
                let r = self.region_index(gfn)?;
                self.region_record_mut(r).ok().map(|r| &mut r.lpage)
            }
            PageLevel::Size1G => {
                let g = self.gig_index(gfn)?;
                self.dirty.mark_gigs();
                self.storage.gigs_mut().get_mut(g).map(|g| &mut g.lpage)
            }
            PageLevel::Size4K => None,
        }
    }

    /// Sets GUEST_INHIBIT at `level` for the range holding `gfn` (one-way).
    pub fn set_guest_inhibit(&mut self, gfn: Gfn, level: PageLevel) {
        if let Some(l) = self.lpage_mut(gfn, level) {
            *l = l.with_guest_inhibit();
        }
    }

    // ----- mirror tables -----

    /// Mirror table `t` for writing (its digest is brought up to date when the writing is
    /// done).
    pub(crate) fn table_mut(
        &mut self,
        t: usize,
    ) -> Result<crate::sept::TableMut<'_, MirrorTable>, KvmError> {
        Ok(crate::sept::TableMut(self.table_raw_mut(t)?))
    }

    /// Mirror table `t` for writing whole (the caller keeps its digest current).
    fn table_raw_mut(&mut self, t: usize) -> Result<&mut MirrorTable, KvmError> {
        self.storage
            .tables_mut()
            .get_mut(t)
            .ok_or(KvmError::Inconsistent)
    }

    /// Whether splitting the 2M mirror leaf of `gfn`'s region would find a table: the region
    /// has one (mixed attributes), the pool has a free one, or it may grow by one.
    pub fn can_split(&self, gfn: Gfn) -> bool {
        self.region_of(gfn)
            .is_some_and(|r| r.table.index().is_some())
            || self.storage.tables().iter().any(|t| !t.in_use)
            || self.storage.can_grow_tables()
    }

    fn alloc_table(&mut self) -> Result<usize, KvmError> {
        let free = self.storage.tables().iter().position(|t| !t.in_use);
        let t = match free {
            Some(t) => t,
            // None free: a pool that may grow appends one.
            None => self
                .storage
                .grow_tables()
                .ok_or(KvmError::TablePoolExhausted)?,
        };
        // Reset whole to EMPTY, whose digest is current.
        let table = self.table_raw_mut(t)?;
        *table = MirrorTable::EMPTY;
        table.in_use = true;
        Ok(t)
    }

    fn free_table(&mut self, t: usize) -> Result<(), KvmError> {
        *self.table_raw_mut(t)? = MirrorTable::EMPTY;
        Ok(())
    }

    /// The table of region `r`, created (with the region's uniform attribute) if missing.
    pub(crate) fn ensure_table(&mut self, r: usize) -> Result<usize, KvmError> {
        self.dirty.mark(r);
        let region = *self.region(r)?;
        if let Some(t) = region.table.index() {
            return Ok(t);
        }
        let t = self.alloc_table()?;
        // A new table is EMPTY: all private and not present.
        if region.attrs == Attrs::Shared {
            for e in self.table_mut(t)?.entries.iter_mut() {
                *e = Spte::NOT_PRESENT.with_shared(true);
            }
        }
        self.region_mut(r)?.table = TableRef::to(t);
        Ok(t)
    }

    /// Drops region `r`'s table when it holds neither SPTEs nor mixed attributes.
    pub(crate) fn compact_table(&mut self, r: usize) -> Result<(), KvmError> {
        let region = *self.region(r)?;
        if region.mirror.is_table() || region.attrs == Attrs::Mixed {
            return Ok(());
        }
        if let Some(t) = region.table.index() {
            self.free_table(t)?;
            self.region_mut(r)?.table = TableRef::NONE;
        }
        Ok(())
    }

    // ----- the mirror -----

    /// The mirror SPTE at `level` for `gfn`, if the level above is a table (or it is 1G).
    pub fn mirror(&self, gfn: Gfn, level: PageLevel) -> Option<Spte> {
        match level {
            PageLevel::Size1G => self.gig_of(gfn).map(|g| g.mirror),
            PageLevel::Size2M => {
                let g = self.gig_of(gfn)?;
                g.mirror.is_table().then_some(())?;
                self.region_of(gfn).map(|r| r.mirror)
            }
            PageLevel::Size4K => {
                let r = self.region_of(gfn)?;
                r.mirror.is_table().then_some(())?;
                let t = self.storage.tables().get(r.table.index()?)?;
                t.entries
                    .get(page_index(gfn))
                    .map(|e| e.kind().frozen(e.is_frozen()))
            }
        }
    }

    /// Sets the mirror SPTE at `level` for `gfn` (the attribute bit of a 4K entry is kept).
    pub(crate) fn set_mirror(
        &mut self,
        gfn: Gfn,
        level: PageLevel,
        spte: Spte,
    ) -> Result<(), KvmError> {
        match level {
            PageLevel::Size1G => {
                let g = self.gig_index(gfn).ok_or(KvmError::OutsideModel)?;
                self.gig_mut(g)?.mirror = spte;
            }
            PageLevel::Size2M => {
                let r = self.region_index(gfn).ok_or(KvmError::OutsideModel)?;
                self.region_record_mut(r)?.mirror = spte;
                if spte.is_table() {
                    self.ensure_table(r)?;
                } else if !spte.is_frozen() {
                    // A leaf or nothing: the 4K SPTEs below are gone.
                    if let Some(t) = self.region(r)?.table.index() {
                        self.dirty.mark(r);
                        for e in self.table_mut(t)?.entries.iter_mut() {
                            *e = e.with_kind(Spte::NOT_PRESENT);
                        }
                    }
                    self.compact_table(r)?;
                }
            }
            PageLevel::Size4K => {
                let r = self.region_index(gfn).ok_or(KvmError::OutsideModel)?;
                // One 4K SPTE of the region's table: that page alone changed.
                self.dirty.mark_page(r, page_index(gfn));
                let t = self
                    .region(r)?
                    .table
                    .index()
                    .ok_or(KvmError::Inconsistent)?;
                self.table_raw_mut(t)?
                    .update_entry(page_index(gfn), |e| e.with_kind(spte))
                    .ok_or(KvmError::Inconsistent)?;
            }
        }
        Ok(())
    }

    // ----- attributes -----

    /// Whether `gfn` is private (KVM_MEMORY_ATTRIBUTE_PRIVATE).
    pub fn is_private(&self, gfn: Gfn) -> bool {
        let Some(r) = self.region_of(gfn) else {
            return false;
        };
        match r.attrs {
            Attrs::Private => true,
            Attrs::Shared => false,
            Attrs::Mixed => r
                .table
                .index()
                .and_then(|t| self.storage.tables().get(t))
                .and_then(|t| t.entries.get(page_index(gfn)))
                .is_some_and(|e| !e.shared()),
        }
    }

    /// Sets the attribute of [start, end) (KVM_SET_MEMORY_ATTRIBUTES) and recomputes MIXED at
    /// 2M and 1G for the ranges touched (`hugepage_has_attrs`).
    pub fn set_private(&mut self, start: Gfn, end: Gfn, private: bool) -> Result<(), KvmError> {
        let mut gfn = start;
        while gfn.raw() < end.raw() {
            let r = self.region_index(gfn).ok_or(KvmError::OutsideModel)?;
            let region_start = gfn.round_for_level(PageLevel::Size2M);
            let region_end = Gfn(region_start.raw().saturating_add(512));
            let stop = Gfn(region_end.raw().min(end.raw()));
            let whole = gfn == region_start && stop == region_end;
            let want = if private {
                Attrs::Private
            } else {
                Attrs::Shared
            };
            if whole {
                let region = self.region_mut(r)?;
                region.attrs = want;
                // Keep the mirror entries, drop the per-GFN attribute bits.
                if let Some(t) = region.table.index() {
                    for e in self.table_mut(t)?.entries.iter_mut() {
                        *e = e.with_shared(!private);
                    }
                }
            } else if self.region(r)?.attrs != want {
                let t = self.ensure_table(r)?;
                let (first, uniform) = {
                    let mut table = self.table_mut(t)?;
                    let lo = (gfn.raw() & 511) as usize;
                    let hi = lo.saturating_add(stop.raw().wrapping_sub(gfn.raw()) as usize);
                    for e in table.entries.iter_mut().take(hi).skip(lo) {
                        *e = e.with_shared(!private);
                    }
                    let first = table.entries.first().map(|e| e.shared()).unwrap_or(false);
                    (first, table.entries.iter().all(|e| e.shared() == first))
                };
                self.region_mut(r)?.attrs = if !uniform {
                    Attrs::Mixed
                } else if first {
                    Attrs::Shared
                } else {
                    Attrs::Private
                };
            }
            self.compact_table(r)?;
            let mixed = self.region(r)?.attrs == Attrs::Mixed
                && !crate::broken::active(crate::broken::Variant::MixedNotSet);
            let l = &mut self.region_mut(r)?.lpage;
            *l = l.with_mixed(mixed);
            self.update_gig_mixed(gfn)?;
            gfn = stop;
        }
        Ok(())
    }

    fn update_gig_mixed(&mut self, gfn: Gfn) -> Result<(), KvmError> {
        let Some(g) = self.gig_index(gfn) else {
            return Ok(());
        };
        let first = gfn.round_for_level(PageLevel::Size1G);
        let mut kinds = (false, false, false);
        for i in 0..512u64 {
            let Some(r) = self.region_of(Gfn(first.raw().saturating_add(i << 9))) else {
                continue;
            };
            match r.attrs {
                Attrs::Private => kinds.0 = true,
                Attrs::Shared => kinds.1 = true,
                Attrs::Mixed => kinds.2 = true,
            }
        }
        let mixed = kinds.2 || (kinds.0 && kinds.1);
        let l = &mut self.gig_mut(g)?.lpage;
        *l = l.with_mixed(mixed);
        Ok(())
    }
}

/// The digest of a VM's memslots: each slot as three words (base with a presence bit, pages,
/// guest_memfd; all zero when empty), each word keyed by its position.
pub(super) fn memslots_digest(slots: &[Option<Memslot>; MAX_MEMSLOTS]) -> [u64; 2] {
    let words = |m: &Option<Memslot>| match m {
        Some(m) => [m.base.raw() | 1 << 63, m.pages, u64::from(m.guest_memfd)],
        None => [0; 3],
    };
    let mut all = [0u64; 3 * MAX_MEMSLOTS];
    for (w, m) in all.chunks_exact_mut(3).zip(slots) {
        w.copy_from_slice(&words(m));
    }
    crate::sept::digest_of(&all, |&w| w)
}

/// The index of `gfn`'s 4K entry in its region's table.
pub(crate) const fn page_index(gfn: Gfn) -> usize {
    (gfn.raw() & 0x1FF) as usize
}

impl core::fmt::Display for KvmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KvmError::StorageMismatch => f.write_str("KVM storage does not match the window"),
            KvmError::OutsideModel => f.write_str("GFN outside the modelled window"),
            KvmError::TablePoolExhausted => f.write_str("no mirror table left in the model's pool"),
            KvmError::BadMemslot => f.write_str("memslot overlaps another or no slot is free"),
            KvmError::Inconsistent => f.write_str("KVM model storage is inconsistent"),
            KvmError::Sept(e) => write!(f, "S-EPT model: {e}"),
            KvmError::Policy(e) => write!(f, "policy: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kvm::KvmArrayStorage;
    use crate::snapshot::Snapshot;

    #[test]
    fn mirror_digests_follow_writes_and_the_check_sees_one_behind() {
        let window = SeptConfig::new(Gpa(0x4000_0000), 2);
        let mut kvm: Kvm<KvmArrayStorage<1, 2, 2>> =
            Kvm::new(&window, KvmArrayStorage::new()).unwrap();
        let gfn = Gpa(0x4000_1000).gfn();
        kvm.set_mirror(gfn, PageLevel::Size2M, Spte::TABLE_SPTE)
            .unwrap();
        kvm.clear_changes();
        kvm.set_mirror(gfn, PageLevel::Size4K, Spte::LEAF_SPTE)
            .unwrap();
        assert!(kvm.digests_current());
        // Only that page is in the change record.
        assert_eq!(kvm.changes().pages_of(0), Some(&[1][..]));
        // A write that bypasses the model leaves the digest behind.
        let t = kvm.region(0).unwrap().table.index().unwrap();
        kvm.storage.tables_mut()[t].entries[2] = Spte::LEAF_SPTE;
        assert!(!kvm.digests_current());
    }

    #[test]
    fn memslots_hash_by_a_digest_adding_one_keeps_current_and_records() {
        let window = SeptConfig::new(Gpa(0x4000_0000), 2);
        let mut kvm: Kvm<KvmArrayStorage<1, 2, 2>> =
            Kvm::new(&window, KvmArrayStorage::new()).unwrap();
        assert!(kvm.digests_current());
        let before = kvm.clone();
        kvm.clear_changes();
        let slot = Memslot {
            base: Gpa(0x4000_0000).gfn(),
            pages: 512,
            guest_memfd: true,
        };
        kvm.add_memslot(slot).unwrap();
        assert!(kvm.digests_current());
        assert!(kvm.changes().fields());
        assert_ne!(kvm.memslots_digest, before.memslots_digest);
        assert!(!kvm.small_eq(&before));
        // A copy brought back by the record takes the memslots and their digest.
        let mut back = kvm.clone();
        back.revert_to(&before);
        assert_eq!(back, before);
        // The same slot without guest_memfd is another digest; a write behind the model is
        // seen.
        let mut other = before.clone();
        other
            .add_memslot(Memslot {
                guest_memfd: false,
                ..slot
            })
            .unwrap();
        assert_ne!(other.memslots_digest, kvm.memslots_digest);
        kvm.memslots[1] = Some(Memslot {
            base: Gpa(0x4020_0000).gfn(),
            ..slot
        });
        assert!(!kvm.digests_current());
    }
}
