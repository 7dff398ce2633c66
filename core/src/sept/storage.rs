//! Storage for the S-EPT model: entries at 1G, 2M and 4K, and where they live.
//!
//! The model covers a window of guest physical memory made of whole 2 MiB *regions*. Each region
//! holds its 2M-level entry and the content of its 512 4K pages: one uniform value while the
//! content is the same everywhere (a region never split costs 20 bytes), or a 4K table taken from
//! a pool when the region is split (the table is then the S-EPT page table) or when its content
//! differs page by page. Each 1 GiB range the window touches has a 1G-level entry. Levels above
//! 1G (the PML4/PML5 tables) are taken as present: KVM links them once and never removes them
//! while a TD runs.
//!
//! The caller provides the memory: [`ArrayStorage`] sizes it with const generics (and is
//! `Clone + Eq + Hash`, for explorers), [`SliceStorage`] borrows slices (for a VMM covering
//! gigabytes).

use crate::abi::{ENTRIES_PER_TABLE, SeptEntryState};

use super::Content;

/// Entry-lock bits of one S-EPT entry (tdx-module src/common/helpers/tdx_locks.h: TDEL is bit 11
/// of the entry, the host-priority bit HP is bit 52).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EntryLock(pub(crate) u8);

impl EntryLock {
    const LOCKED: u8 = 1;
    const HOST_PRIORITY: u8 = 2;

    /// Whether the entry lock is held.
    pub const fn is_locked(self) -> bool {
        self.0 & Self::LOCKED != 0
    }

    /// Whether a host SEAMCALL found the lock held and asked guests to back off.
    pub const fn host_priority(self) -> bool {
        self.0 & Self::HOST_PRIORITY != 0
    }

    pub(crate) const fn with_locked(self, locked: bool) -> Self {
        if locked {
            EntryLock(self.0 | Self::LOCKED)
        } else {
            EntryLock(self.0 & !Self::LOCKED)
        }
    }

    pub(crate) const fn with_host_priority(self, hp: bool) -> Self {
        if hp {
            EntryLock(self.0 | Self::HOST_PRIORITY)
        } else {
            EntryLock(self.0 & !Self::HOST_PRIORITY)
        }
    }
}

/// A 2M- or 1G-level S-EPT entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HugeEntry {
    /// The entry's state.
    pub state: SeptEntryState,
    /// Its lock bits.
    pub lock: EntryLock,
    /// The TD epoch RANGE.BLOCK recorded (the module keeps it in the PAMT entry).
    pub bepoch: u32,
    /// 4K pages an interrupted ACCEPT has zeroed (the module keeps it in bits 20:12 of a PENDING
    /// 2M entry, `accept_counter`).
    pub accept_counter: u32,
}

impl HugeEntry {
    /// Its fields in two words, losslessly (state, lock and recorded epoch; the accept
    /// counter): a state hashes one entry in two writes, not four.
    const fn packed(&self) -> [u64; 2] {
        let HugeEntry {
            state,
            lock,
            bepoch,
            accept_counter,
        } = *self;
        [
            (state as u64) | ((lock.0 as u64) << 8) | ((bepoch as u64) << 16),
            accept_counter as u64,
        ]
    }

    /// A FREE, unlocked entry.
    pub const FREE: HugeEntry = HugeEntry {
        state: SeptEntryState::Free,
        lock: EntryLock(0),
        bepoch: 0,
        accept_counter: 0,
    };
}

/// A 4K-level S-EPT entry and the content of its page.
#[derive(Clone, Copy, Debug)]
pub struct Entry4K {
    /// The entry's state (FREE while the table only records content).
    pub state: SeptEntryState,
    /// Its lock bits.
    pub lock: EntryLock,
    /// The page's content.
    pub content: Content,
    /// The TD epoch RANGE.BLOCK recorded.
    pub bepoch: u32,
}

impl Entry4K {
    /// All fields in one word (for hashing: one write per entry).
    pub const fn packed(&self) -> u64 {
        (self.state as u64)
            | ((self.lock.0 as u64) << 8)
            | ((self.content.raw() as u64) << 16)
            | ((self.bepoch as u64) << 32)
    }
}

impl PartialEq for Entry4K {
    fn eq(&self, o: &Self) -> bool {
        self.packed() == o.packed()
    }
}

impl Eq for Entry4K {}

impl core::hash::Hash for Entry4K {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.packed());
    }
}

impl Entry4K {
    /// A FREE, unlocked entry with no content.
    pub const FREE: Entry4K = Entry4K {
        state: SeptEntryState::Free,
        lock: EntryLock(0),
        content: Content::NONE,
        bepoch: 0,
    };
}

/// Index of a table in the pool, plus one; zero means none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TableRef(u32);

impl TableRef {
    /// No table.
    pub const NONE: TableRef = TableRef(0);

    pub(crate) fn to(index: usize) -> TableRef {
        TableRef(u32::try_from(index).map_or(0, |i| i.saturating_add(1)))
    }

    /// The pool index, if any.
    pub fn index(self) -> Option<usize> {
        usize::try_from(self.0).ok()?.checked_sub(1)
    }
}

impl core::hash::Hash for HugeEntry {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        let [a, b] = self.packed();
        h.write_u64(a);
        h.write_u64(b);
    }
}

/// One 2 MiB region of the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// The 2M-level entry (FREE while the 1G entry above is a leaf or not present).
    pub entry: HugeEntry,
    /// The content of all 512 pages, while `table` is none.
    pub content: Content,
    /// The 4K table: the S-EPT page table when `entry` is a table, else per-page content only.
    pub table: TableRef,
}

impl core::hash::Hash for Region {
    /// In two words, losslessly: the entry's state, lock and epoch with the content; its
    /// accept counter with the table reference.
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        let Region {
            entry,
            content,
            table,
        } = *self;
        let [a, b] = entry.packed();
        // `a` uses its low 48 bits.
        h.write_u64(a | (u64::from(content.raw()) << 48));
        h.write_u64(b | (u64::from(table.0) << 32));
    }
}

impl Region {
    /// An empty region.
    pub const EMPTY: Region = Region {
        entry: HugeEntry::FREE,
        content: Content::NONE,
        table: TableRef::NONE,
    };
}

/// A 4K table: 512 entries and the pool's free-list link. A table in the free pool is EMPTY
/// but for its link (freeing resets it, and the full checks hold the pool to that), so it
/// compares and hashes by its link alone.
///
/// A table in use hashes by its digest ([`Table4K::computed_digest`]: a weighted sum of a key
/// per entry), which every write through the model keeps current (one entry's change updates
/// it in a few operations), so hashing a table costs the same however many entries it has.
/// Code that writes entries outside the model calls [`Table4K::refresh_digest`].
#[derive(Clone, Debug)]
pub struct Table4K {
    /// The entries.
    pub entries: [Entry4K; ENTRIES_PER_TABLE as usize],
    /// Free: the next free table. In use: the region that owns it.
    pub(crate) link: TableRef,
    pub(crate) in_use: bool,
    digest: [u64; 2],
}

impl Table4K {
    /// An unused table.
    pub const EMPTY: Table4K = Table4K {
        entries: [Entry4K::FREE; ENTRIES_PER_TABLE as usize],
        link: TableRef::NONE,
        in_use: false,
        digest: [0; 2],
    };

    /// The weighted sum over the entries of their keys, from scratch.
    pub fn computed_digest(&self) -> [u64; 2] {
        digest_of(&self.entries, Entry4K::digest_value)
    }

    /// Recomputes the digest after writes to the entries.
    pub fn refresh_digest(&mut self) {
        self.digest = self.computed_digest();
    }

    /// Whether the two hash alike: the same use and link, and in use, the same digest. Cheaper
    /// than comparing the entries, and what hashing sees.
    pub fn same_hash(&self, o: &Self) -> bool {
        self.in_use == o.in_use && self.link == o.link && (!self.in_use || self.digest == o.digest)
    }

    /// Whether every entry is FREE and the digest zero, as a table in the free pool must be
    /// (a consistency check, cheaper than recomputing the digest).
    pub fn is_clean(&self) -> bool {
        let free = Entry4K::FREE.packed();
        self.digest == [0; 2] && self.entries.iter().all(|e| e.packed() == free)
    }

    /// Whether the digest matches the entries (a consistency check).
    pub fn digest_is_current(&self) -> bool {
        self.digest == self.computed_digest()
    }

    /// Changes entry `i` by `f`, keeping the digest current. `None` when there is no entry `i`.
    pub(crate) fn update_entry<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Entry4K) -> R,
    ) -> Option<R> {
        let e = self.entries.get_mut(i)?;
        let before = e.digest_value();
        let r = f(e);
        digest_update(&mut self.digest, i, before, e.digest_value());
        Some(r)
    }
}

impl Entry4K {
    /// How it differs from a FREE entry, as its digest key takes it (zero when FREE, so the
    /// EMPTY table's digest is zero).
    fn digest_value(&self) -> u64 {
        self.packed() ^ Entry4K::FREE.packed()
    }
}

/// A table's digest from scratch: over its positions, the sum of [`value_key`] of what `x`
/// says each entry holds times the position's [`weight`], in two lanes (a multilinear hash).
/// A whole table holding one value (what DEMOTE and a split write) sums in one step.
pub(crate) fn digest_of<E>(entries: &[E], x: impl Fn(&E) -> u64) -> [u64; 2] {
    if entries.len() == ENTRIES_PER_TABLE as usize
        && let Some(first) = entries.first().map(&x)
        && entries.iter().all(|e| x(e) == first)
    {
        let [a, b] = value_key(first);
        return [
            a.wrapping_mul(WEIGHT_SUMS[0]),
            b.wrapping_mul(WEIGHT_SUMS[1]),
        ];
    }
    let mut d = [0u64; 2];
    for (i, e) in entries.iter().enumerate() {
        let [a, b] = value_key(x(e));
        d[0] = d[0].wrapping_add(a.wrapping_mul(weight(i as u64, 0)));
        d[1] = d[1].wrapping_add(b.wrapping_mul(weight(i as u64, 1)));
    }
    d
}

/// Updates `digest` for position `i` going from holding `before` to holding `after`.
pub(crate) fn digest_update(digest: &mut [u64; 2], i: usize, before: u64, after: u64) {
    if before != after {
        let [a0, b0] = value_key(before);
        let [a1, b1] = value_key(after);
        let i = i as u64;
        digest[0] = digest[0].wrapping_add(a1.wrapping_sub(a0).wrapping_mul(weight(i, 0)));
        digest[1] = digest[1].wrapping_add(b1.wrapping_sub(b0).wrapping_mul(weight(i, 1)));
    }
}

/// What an entry's value `x` (its difference from the table's empty value) adds to a digest
/// before its position's weight: two bijections of `x` (multiply, xorshift, multiply,
/// xorshift, with different constants), zero for `x == 0`, so an EMPTY table's digest is zero.
/// Tables that differ in one position never collide (a bijection times an odd weight); in
/// more, a collision needs the weighted differences to cancel in both 64-bit lanes.
const fn value_key(x: u64) -> [u64; 2] {
    let mut a = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    a ^= a >> 32;
    a = a.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    a ^= a >> 29;
    let mut b = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    b ^= b >> 31;
    b = b.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    b ^= b >> 33;
    [a, b]
}

/// Position `i`'s weight in lane `lane`: odd and pseudo-random (SplitMix64 of the position).
const fn weight(i: u64, lane: u64) -> u64 {
    let mut z = i
        .wrapping_mul(2)
        .wrapping_add(lane)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

/// The sum of a table's weights in each lane.
const WEIGHT_SUMS: [u64; 2] = {
    let mut sums = [0u64; 2];
    let mut i = 0;
    while i < ENTRIES_PER_TABLE as u64 {
        sums[0] = sums[0].wrapping_add(weight(i, 0));
        sums[1] = sums[1].wrapping_add(weight(i, 1));
        i += 1;
    }
    sums
};

impl super::dirty::PageCopy for Table4K {
    fn copy_pages(&mut self, src: &Self, pages: &[u16]) {
        super::dirty::copy_entries(&mut self.entries, &src.entries, pages);
        // Every other entry is equal: the source's digest is this table's.
        self.digest = src.digest;
        self.link = src.link;
        self.in_use = src.in_use;
    }
}

/// A table whose hash is a digest its writers keep current.
pub(crate) trait Digested {
    /// Recomputes the digest after writes to the entries.
    fn refresh(&mut self);
}

impl Digested for Table4K {
    fn refresh(&mut self) {
        self.refresh_digest();
    }
}

/// A table handed out for writing: its digest is recomputed when the writing is done.
pub(crate) struct TableMut<'a, T: Digested>(pub(crate) &'a mut T);

impl<T: Digested> core::ops::Deref for TableMut<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0
    }
}

impl<T: Digested> core::ops::DerefMut for TableMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0
    }
}

impl<T: Digested> Drop for TableMut<'_, T> {
    fn drop(&mut self) {
        self.0.refresh();
    }
}

impl PartialEq for Table4K {
    fn eq(&self, o: &Self) -> bool {
        self.in_use == o.in_use
            && self.link == o.link
            && (!self.in_use || self.entries == o.entries)
    }
}

impl Eq for Table4K {}

impl core::hash::Hash for Table4K {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(u64::from(self.in_use) | (u64::from(self.link.0) << 1));
        if self.in_use {
            h.write_u64(self.digest[0]);
            h.write_u64(self.digest[1]);
        }
    }
}

impl Default for Table4K {
    fn default() -> Self {
        Table4K::EMPTY
    }
}

/// The container a model's 4K tables live in: a slice of fixed length, or a pool that grows by
/// one free table when the model takes a table and none is free, up to a limit. A host that
/// copies worlds (an explorer) sizes its pools by what a run takes rather than by the window:
/// a copy holds the tables the world ever used, not one per region.
pub trait TablePool<T>: AsRef<[T]> + AsMut<[T]> {
    /// Appends `empty` if the pool may still grow, and gives its index; `None` at its limit,
    /// or for a fixed slice.
    fn grow(&mut self, empty: T) -> Option<usize> {
        let _ = empty;
        None
    }

    /// Whether [`TablePool::grow`] would append a table.
    fn can_grow(&self) -> bool {
        false
    }

    /// Makes the pool `n` tables long, dropping its last tables or appending `empty` ones (a
    /// fixed slice keeps its length): a copy of a model by what changed brings its pool to the
    /// other copy's length before it copies tables by index.
    fn resize(&mut self, n: usize, empty: T) {
        let _ = (n, empty);
    }
}

impl<T, const N: usize> TablePool<T> for [T; N] {}

impl<T> TablePool<T> for &mut [T] {}

/// Where the model keeps its entries. The 1G entries and the regions keep their lengths; the
/// pool of tables may grow ([`TablePool`]).
pub trait SeptStorage {
    /// The 1G-level entries, one per 1 GiB range the window touches.
    fn gigs(&self) -> &[HugeEntry];
    /// Mutable 1G-level entries.
    fn gigs_mut(&mut self) -> &mut [HugeEntry];
    /// The 2 MiB regions of the window.
    fn regions(&self) -> &[Region];
    /// Mutable regions.
    fn regions_mut(&mut self) -> &mut [Region];
    /// The pool of 4K tables.
    fn tables(&self) -> &[Table4K];
    /// Mutable pool.
    fn tables_mut(&mut self) -> &mut [Table4K];
    /// The regions and the pool, mutable together.
    fn regions_and_tables_mut(&mut self) -> (&mut [Region], &mut [Table4K]);
    /// Appends a free table to a pool that may grow (see [`TablePool`]), and gives its index.
    fn grow_tables(&mut self) -> Option<usize> {
        None
    }
    /// Whether the pool may still grow.
    fn can_grow_tables(&self) -> bool {
        false
    }
    /// Brings a pool that may grow to `n` tables (see [`TablePool::resize`]).
    fn set_table_count(&mut self, n: usize) {
        let _ = n;
    }
}

/// The model's storage in any containers of its three kinds of record: arrays sized at compile
/// time ([`ArrayStorage`], `Clone + Eq + Hash` for explorers), slices the caller owns
/// ([`SliceStorage`]), or boxed slices a host allocates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Storage<G, R, T> {
    gigs: G,
    regions: R,
    tables: T,
}

impl<G, R, T> Storage<G, R, T> {
    /// Storage over these containers; [`super::Sept::new`] checks their lengths against the
    /// window and resets them.
    pub const fn from_parts(gigs: G, regions: R, tables: T) -> Self {
        Storage {
            gigs,
            regions,
            tables,
        }
    }
}

impl<G, R, T> Storage<G, R, T> {
    /// The three containers.
    pub fn parts(&self) -> (&G, &R, &T) {
        (&self.gigs, &self.regions, &self.tables)
    }

    /// The three containers, mutably.
    pub fn parts_mut(&mut self) -> (&mut G, &mut R, &mut T) {
        (&mut self.gigs, &mut self.regions, &mut self.tables)
    }
}

impl<G, R, T> SeptStorage for Storage<G, R, T>
where
    G: AsRef<[HugeEntry]> + AsMut<[HugeEntry]>,
    R: AsRef<[Region]> + AsMut<[Region]>,
    T: TablePool<Table4K>,
{
    fn gigs(&self) -> &[HugeEntry] {
        self.gigs.as_ref()
    }
    fn gigs_mut(&mut self) -> &mut [HugeEntry] {
        self.gigs.as_mut()
    }
    fn regions(&self) -> &[Region] {
        self.regions.as_ref()
    }
    fn regions_mut(&mut self) -> &mut [Region] {
        self.regions.as_mut()
    }
    fn tables(&self) -> &[Table4K] {
        self.tables.as_ref()
    }
    fn tables_mut(&mut self) -> &mut [Table4K] {
        self.tables.as_mut()
    }
    fn regions_and_tables_mut(&mut self) -> (&mut [Region], &mut [Table4K]) {
        (self.regions.as_mut(), self.tables.as_mut())
    }
    fn grow_tables(&mut self) -> Option<usize> {
        self.tables.grow(Table4K::EMPTY)
    }
    fn can_grow_tables(&self) -> bool {
        self.tables.can_grow()
    }
    fn set_table_count(&mut self, n: usize) {
        self.tables.resize(n, Table4K::EMPTY);
    }
}

/// Storage sized at compile time: `GIGS` 1G entries, `REGIONS` 2M regions, `TABLES` 4K tables.
pub type ArrayStorage<const GIGS: usize, const REGIONS: usize, const TABLES: usize> =
    Storage<[HugeEntry; GIGS], [Region; REGIONS], [Table4K; TABLES]>;

impl<const GIGS: usize, const REGIONS: usize, const TABLES: usize>
    Storage<[HugeEntry; GIGS], [Region; REGIONS], [Table4K; TABLES]>
{
    /// Empty storage.
    pub const fn new() -> Self {
        Storage::from_parts(
            [HugeEntry::FREE; GIGS],
            [Region::EMPTY; REGIONS],
            [const { Table4K::EMPTY }; TABLES],
        )
    }
}

impl<const GIGS: usize, const REGIONS: usize, const TABLES: usize> Default
    for Storage<[HugeEntry; GIGS], [Region; REGIONS], [Table4K; TABLES]>
{
    fn default() -> Self {
        Self::new()
    }
}

/// Storage in slices the caller owns (e.g. boxed by a VMM for gigabytes of guest memory).
pub type SliceStorage<'a> = Storage<&'a mut [HugeEntry], &'a mut [Region], &'a mut [Table4K]>;

impl<'a> Storage<&'a mut [HugeEntry], &'a mut [Region], &'a mut [Table4K]> {
    /// Wraps the slices; [`super::Sept::new`] checks their lengths against the window and
    /// resets them.
    pub fn new(
        gigs: &'a mut [HugeEntry],
        regions: &'a mut [Region],
        tables: &'a mut [Table4K],
    ) -> Self {
        Storage::from_parts(gigs, regions, tables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_of_one_repeated_entry_digests_as_its_entries_one_by_one() {
        // The one-step sum (what DEMOTE's and a split's writes take) against the digest built
        // entry by entry from an EMPTY table, whose digest is zero.
        for e in [
            Entry4K {
                state: SeptEntryState::Pending,
                content: Content::data(7),
                ..Entry4K::FREE
            },
            Entry4K {
                state: SeptEntryState::Mapped,
                lock: EntryLock(1),
                bepoch: u32::MAX,
                ..Entry4K::FREE
            },
        ] {
            let mut by_entry = Table4K::EMPTY;
            for i in 0..ENTRIES_PER_TABLE as usize {
                by_entry.update_entry(i, |x| *x = e).unwrap();
            }
            assert_eq!(by_entry.digest, by_entry.computed_digest());
            // One entry different: no longer one repeated entry, the same either way.
            by_entry.update_entry(3, |x| x.bepoch = 1).unwrap();
            assert_eq!(by_entry.digest, by_entry.computed_digest());
            assert_ne!(by_entry.digest, [0; 2]);
        }
    }

    #[test]
    fn packed_entries_and_regions_keep_every_field() {
        let base = HugeEntry {
            state: SeptEntryState::Pending,
            lock: EntryLock(1),
            bepoch: 7,
            accept_counter: 3,
        };
        let variants = [
            base,
            HugeEntry {
                state: SeptEntryState::Mapped,
                ..base
            },
            HugeEntry {
                lock: EntryLock(3),
                ..base
            },
            HugeEntry {
                bepoch: u32::MAX,
                ..base
            },
            HugeEntry {
                accept_counter: u32::MAX,
                ..base
            },
        ];
        for (i, a) in variants.iter().enumerate() {
            for (j, b) in variants.iter().enumerate() {
                assert_eq!(i == j, a.packed() == b.packed(), "{a:?} {b:?}");
            }
        }
        // A region's content and table sit beside the entry's fields, not over them.
        let words = |r: &Region| {
            let mut w = [0u64; 2];
            let mut k = 0;
            struct Words<'a>(&'a mut [u64; 2], &'a mut usize);
            impl core::hash::Hasher for Words<'_> {
                fn finish(&self) -> u64 {
                    0
                }
                fn write(&mut self, _: &[u8]) {
                    // Regions hash in words: a byte write fails the count below.
                    *self.1 += 100;
                }
                fn write_u64(&mut self, x: u64) {
                    self.0[*self.1] = x;
                    *self.1 += 1;
                }
            }
            core::hash::Hash::hash(r, &mut Words(&mut w, &mut k));
            assert_eq!(k, 2);
            w
        };
        let r = Region {
            entry: HugeEntry {
                bepoch: u32::MAX,
                accept_counter: u32::MAX,
                ..base
            },
            content: Content::NONE,
            table: TableRef::NONE,
        };
        let with_content = Region {
            content: Content::data(Content::MAX_TAG),
            ..r
        };
        let with_table = Region {
            table: TableRef(u32::MAX),
            ..r
        };
        assert_ne!(words(&r), words(&with_content));
        assert_ne!(words(&r), words(&with_table));
        assert_ne!(words(&with_content), words(&with_table));
    }

    #[test]
    fn a_tables_digest_follows_its_entries() {
        let mut t = Table4K::EMPTY;
        assert_eq!(t.computed_digest(), [0, 0]);
        t.in_use = true;
        let before = t.digest;
        t.update_entry(7, |e| e.state = SeptEntryState::Pending);
        assert_ne!(t.digest, before);
        assert!(t.digest_is_current());
        // The same change at another position is another digest.
        let mut u = Table4K::EMPTY;
        u.update_entry(8, |e| e.state = SeptEntryState::Pending);
        assert_ne!(u.digest, t.digest);
        // Undoing the change gives the digest back.
        t.update_entry(7, |e| e.state = SeptEntryState::Free);
        assert_eq!(t.digest, before);
        assert_eq!(t.update_entry(512, |_| ()), None);
        // A write behind the model's back is seen, and a refresh mends it.
        t.entries[3].bepoch = 9;
        assert!(!t.digest_is_current());
        t.refresh_digest();
        assert!(t.digest_is_current());
        // A guard refreshes when the writing is done.
        {
            let mut g = TableMut(&mut t);
            g.entries[4].bepoch = 2;
        }
        assert!(t.digest_is_current());
    }
}
