//! KVM's per-VM storage: the mirror SPTE, a region's and a 1 GiB range's records, the mirror's
//! 4K tables with their digests, and the storage trait over fixed arrays or slices.

use crate::abi::{ENTRIES_PER_TABLE, PageLevel};
use crate::sept::{Storage, TablePool, TableRef};

use super::LpageInfo;
/// A mirror SPTE, as far as the fault path cares: not present, a leaf, or a table; and whether
/// another thread has frozen it mid-update (FROZEN_SPTE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Spte(u8);

impl Spte {
    /// How it differs from a not-present SPTE, as a mirror table's digest key takes it.
    fn digest_value(&self) -> u64 {
        u64::from(self.0 ^ Spte::NOT_PRESENT.0)
    }

    const KIND: u8 = 0b11;
    const LEAF: u8 = 1;
    const TABLE: u8 = 2;
    const FROZEN: u8 = 1 << 2;
    /// In a 4K table only: the GFN's attribute is shared.
    const SHARED: u8 = 1 << 3;

    /// Not present.
    pub const NOT_PRESENT: Spte = Spte(0);
    /// A present leaf.
    pub const LEAF_SPTE: Spte = Spte(Self::LEAF);
    /// A present table.
    pub const TABLE_SPTE: Spte = Spte(Self::TABLE);

    /// Whether it is a present leaf.
    pub const fn is_leaf(self) -> bool {
        self.0 & Self::KIND == Self::LEAF
    }
    /// Whether it points to a table.
    pub const fn is_table(self) -> bool {
        self.0 & Self::KIND == Self::TABLE
    }
    /// Whether it is present.
    pub const fn is_present(self) -> bool {
        self.0 & Self::KIND != 0
    }
    /// Whether another thread holds it frozen.
    pub const fn is_frozen(self) -> bool {
        self.0 & Self::FROZEN != 0
    }
    /// The SPTE with the frozen bit set or cleared.
    pub const fn frozen(self, on: bool) -> Spte {
        if on {
            Spte(self.0 | Self::FROZEN)
        } else {
            Spte(self.0 & !Self::FROZEN)
        }
    }
    /// The mapping part (kind), without the frozen and attribute bits.
    pub const fn kind(self) -> Spte {
        Spte(self.0 & Self::KIND)
    }
    pub(super) const fn shared(self) -> bool {
        self.0 & Self::SHARED != 0
    }
    pub(super) const fn with_shared(self, on: bool) -> Spte {
        if on {
            Spte(self.0 | Self::SHARED)
        } else {
            Spte(self.0 & !Self::SHARED)
        }
    }
    /// Replaces the mapping part, keeping the attribute bit.
    pub(crate) const fn with_kind(self, kind: Spte) -> Spte {
        Spte((self.0 & Self::SHARED) | (kind.0 & !Self::SHARED))
    }
}

/// The memory attributes of a region's 512 GFNs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Attrs {
    /// Every GFN private.
    #[default]
    Private,
    /// Every GFN shared.
    Shared,
    /// Mixed: per GFN in the region's 4K table.
    Mixed,
}

/// KVM's record of one 2 MiB region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvmRegion {
    /// The mirror SPTE at 2M.
    pub mirror: Spte,
    /// The region's attributes.
    pub attrs: Attrs,
    /// lpage_info at 2M.
    pub lpage: LpageInfo,
    /// The largest guest_memfd folio backing the region (4K, 2M or 1G).
    pub folio: PageLevel,
    /// The 4K table: mirror SPTEs when `mirror` is a table, per-GFN attributes when mixed.
    pub table: TableRef,
}

impl core::hash::Hash for KvmRegion {
    /// In two words, losslessly: the mirror SPTE, attributes, folio level and lpage_info word;
    /// the table reference.
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        let KvmRegion {
            mirror,
            attrs,
            lpage,
            folio,
            table,
        } = *self;
        h.write_u64(
            u64::from(mirror.0)
                | ((attrs as u64) << 8)
                | ((folio as u64) << 16)
                | (u64::from(lpage.raw()) << 32),
        );
        table.hash(h);
    }
}

impl KvmRegion {
    /// A private region backed by 2M folios, nothing mapped.
    pub const EMPTY: KvmRegion = KvmRegion {
        mirror: Spte::NOT_PRESENT,
        attrs: Attrs::Private,
        lpage: LpageInfo::ZERO,
        folio: PageLevel::Size2M,
        table: TableRef::NONE,
    };
}

/// KVM's record of one 1 GiB range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KvmGig {
    /// The mirror SPTE at 1G.
    pub mirror: Spte,
    /// lpage_info at 1G.
    pub lpage: LpageInfo,
}

impl KvmGig {
    /// Nothing mapped.
    pub const EMPTY: KvmGig = KvmGig {
        mirror: Spte::NOT_PRESENT,
        lpage: LpageInfo::ZERO,
    };
}

/// A 4K table of mirror SPTEs (and per-GFN attributes). It hashes by a digest its writes keep
/// current, as the S-EPT's tables do (`sept::Table4K`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorTable {
    /// The entries.
    pub entries: [Spte; ENTRIES_PER_TABLE as usize],
    pub(crate) in_use: bool,
    digest: [u64; 2],
}

impl core::hash::Hash for MirrorTable {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        self.in_use.hash(h);
        // A free table is always EMPTY (freeing resets it).
        if self.in_use {
            h.write_u64(self.digest[0]);
            h.write_u64(self.digest[1]);
        }
    }
}

impl MirrorTable {
    /// An unused table.
    pub const EMPTY: MirrorTable = MirrorTable {
        entries: [Spte::NOT_PRESENT; ENTRIES_PER_TABLE as usize],
        in_use: false,
        digest: [0; 2],
    };

    /// The weighted sum over the entries of their keys, from scratch (`digest_of`).
    pub fn computed_digest(&self) -> [u64; 2] {
        crate::sept::digest_of(&self.entries, Spte::digest_value)
    }

    /// Whether the digest matches the entries (a consistency check).
    pub fn digest_is_current(&self) -> bool {
        self.digest == self.computed_digest()
    }

    /// Recomputes the digest after writes to the entries.
    pub fn refresh_digest(&mut self) {
        self.digest = self.computed_digest();
    }

    /// Sets entry `i` to `f` of it, keeping the digest current. `None` when there is no entry
    /// `i`.
    pub(crate) fn update_entry(&mut self, i: usize, f: impl FnOnce(Spte) -> Spte) -> Option<()> {
        let e = self.entries.get_mut(i)?;
        let before = e.digest_value();
        *e = f(*e);
        crate::sept::digest_update(&mut self.digest, i, before, e.digest_value());
        Some(())
    }
}

impl crate::sept::PageCopy for MirrorTable {
    fn copy_pages(&mut self, src: &Self, pages: &[u16]) {
        crate::sept::copy_entries(&mut self.entries, &src.entries, pages);
        // Every other entry is equal: the source's digest is this table's.
        self.digest = src.digest;
        self.in_use = src.in_use;
    }
}

impl crate::sept::Digested for MirrorTable {
    fn refresh(&mut self) {
        self.refresh_digest();
    }
}

/// Where KVM's per-range records live. The 1G and 2M records keep their lengths; the pool of
/// mirror tables may grow ([`TablePool`](crate::sept::TablePool)).
pub trait KvmStorage {
    /// 1G records, one per 1 GiB range the window touches.
    fn gigs(&self) -> &[KvmGig];
    /// Mutable 1G records.
    fn gigs_mut(&mut self) -> &mut [KvmGig];
    /// 2M records.
    fn regions(&self) -> &[KvmRegion];
    /// Mutable 2M records.
    fn regions_mut(&mut self) -> &mut [KvmRegion];
    /// The table pool.
    fn tables(&self) -> &[MirrorTable];
    /// Mutable table pool.
    fn tables_mut(&mut self) -> &mut [MirrorTable];
    /// The regions and the pool, mutable together.
    fn regions_and_tables_mut(&mut self) -> (&mut [KvmRegion], &mut [MirrorTable]);
    /// Appends a free table to a pool that may grow, and gives its index.
    fn grow_tables(&mut self) -> Option<usize> {
        None
    }
    /// Whether the pool may still grow.
    fn can_grow_tables(&self) -> bool {
        false
    }
    /// Brings a pool that may grow to `n` tables.
    fn set_table_count(&mut self, n: usize) {
        let _ = n;
    }
}

impl<G, R, T> KvmStorage for Storage<G, R, T>
where
    G: AsRef<[KvmGig]> + AsMut<[KvmGig]>,
    R: AsRef<[KvmRegion]> + AsMut<[KvmRegion]>,
    T: TablePool<MirrorTable>,
{
    fn gigs(&self) -> &[KvmGig] {
        self.parts().0.as_ref()
    }
    fn gigs_mut(&mut self) -> &mut [KvmGig] {
        self.parts_mut().0.as_mut()
    }
    fn regions(&self) -> &[KvmRegion] {
        self.parts().1.as_ref()
    }
    fn regions_mut(&mut self) -> &mut [KvmRegion] {
        self.parts_mut().1.as_mut()
    }
    fn tables(&self) -> &[MirrorTable] {
        self.parts().2.as_ref()
    }
    fn tables_mut(&mut self) -> &mut [MirrorTable] {
        self.parts_mut().2.as_mut()
    }
    fn regions_and_tables_mut(&mut self) -> (&mut [KvmRegion], &mut [MirrorTable]) {
        let (_, r, t) = self.parts_mut();
        (r.as_mut(), t.as_mut())
    }
    fn grow_tables(&mut self) -> Option<usize> {
        self.parts_mut().2.grow(MirrorTable::EMPTY)
    }
    fn can_grow_tables(&self) -> bool {
        self.parts().2.can_grow()
    }
    fn set_table_count(&mut self, n: usize) {
        self.parts_mut().2.resize(n, MirrorTable::EMPTY);
    }
}

/// KVM storage sized at compile time (the S-EPT model's [`Storage`] over KVM's records).
pub type KvmArrayStorage<const GIGS: usize, const REGIONS: usize, const TABLES: usize> =
    Storage<[KvmGig; GIGS], [KvmRegion; REGIONS], [MirrorTable; TABLES]>;

impl<const G: usize, const R: usize, const T: usize>
    Storage<[KvmGig; G], [KvmRegion; R], [MirrorTable; T]>
{
    /// Empty storage.
    pub const fn new() -> Self {
        Storage::from_parts(
            [KvmGig::EMPTY; G],
            [KvmRegion::EMPTY; R],
            [const { MirrorTable::EMPTY }; T],
        )
    }
}

impl<const G: usize, const R: usize, const T: usize> Default
    for Storage<[KvmGig; G], [KvmRegion; R], [MirrorTable; T]>
{
    fn default() -> Self {
        Self::new()
    }
}
