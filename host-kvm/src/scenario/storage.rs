//! Host-owned storage for the core's models, sized by a scenario at run time: the core's
//! generic `Storage` over boxed slices for the 1G and 2M records, and pools of 4K tables that
//! grow as the world takes tables, up to one per region. A world (and every copy an explorer
//! keeps of it) then holds the tables it ever used, not one per region of its window.

use hugesept_core::kvm::{KvmGig, KvmRegion, MirrorTable};
use hugesept_core::sept::{HugeEntry, Region, Storage, Table4K, TablePool};

/// A pool of tables that grows by one when the model takes a table and none is free, up to
/// `limit` (the scenario's `tables`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GrowingTables<T> {
    tables: Vec<T>,
    limit: usize,
}

impl<T> GrowingTables<T> {
    /// An empty pool that may hold `limit` tables.
    pub fn new(limit: usize) -> Self {
        GrowingTables {
            tables: Vec::new(),
            limit,
        }
    }

    /// Tables it may hold at most.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl<T> AsRef<[T]> for GrowingTables<T> {
    fn as_ref(&self) -> &[T] {
        &self.tables
    }
}

impl<T> AsMut<[T]> for GrowingTables<T> {
    fn as_mut(&mut self) -> &mut [T] {
        &mut self.tables
    }
}

impl<T: Clone> TablePool<T> for GrowingTables<T> {
    fn grow(&mut self, empty: T) -> Option<usize> {
        if self.tables.len() >= self.limit {
            return None;
        }
        self.tables.push(empty);
        Some(self.tables.len() - 1)
    }

    fn can_grow(&self) -> bool {
        self.tables.len() < self.limit
    }

    fn resize(&mut self, n: usize, empty: T) {
        self.tables.resize(n.min(self.limit), empty);
    }
}

/// S-EPT storage: boxed 1G entries and regions, a growing pool of 4K tables.
pub type BoxedSept = Storage<Box<[HugeEntry]>, Box<[Region]>, GrowingTables<Table4K>>;

/// KVM storage: boxed 1G and 2M records, a growing pool of mirror tables.
pub type BoxedKvm = Storage<Box<[KvmGig]>, Box<[KvmRegion]>, GrowingTables<MirrorTable>>;

/// S-EPT storage for `gigs` 1G entries, `regions` regions and at most `tables` 4K tables.
pub fn boxed_sept(gigs: usize, regions: usize, tables: usize) -> BoxedSept {
    Storage::from_parts(
        vec![HugeEntry::FREE; gigs].into_boxed_slice(),
        vec![Region::EMPTY; regions].into_boxed_slice(),
        GrowingTables::new(tables),
    )
}

/// KVM storage for `gigs` 1G records, `regions` regions and at most `tables` mirror tables.
pub fn boxed_kvm(gigs: usize, regions: usize, tables: usize) -> BoxedKvm {
    Storage::from_parts(
        vec![KvmGig::EMPTY; gigs].into_boxed_slice(),
        vec![KvmRegion::EMPTY; regions].into_boxed_slice(),
        GrowingTables::new(tables),
    )
}
