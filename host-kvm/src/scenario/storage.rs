//! Host-owned storage for the core's models, sized by a scenario at run time: the core's
//! generic `Storage` over boxed slices.

use hugesept_core::kvm::{KvmGig, KvmRegion, MirrorTable};
use hugesept_core::sept::{HugeEntry, Region, Storage, Table4K};

/// S-EPT storage in boxed slices.
pub type BoxedSept = Storage<Box<[HugeEntry]>, Box<[Region]>, Box<[Table4K]>>;

/// KVM storage in boxed slices.
pub type BoxedKvm = Storage<Box<[KvmGig]>, Box<[KvmRegion]>, Box<[MirrorTable]>>;

/// S-EPT storage for `gigs` 1G entries, `regions` regions and `tables` 4K tables.
pub fn boxed_sept(gigs: usize, regions: usize, tables: usize) -> BoxedSept {
    Storage::from_parts(
        vec![HugeEntry::FREE; gigs].into_boxed_slice(),
        vec![Region::EMPTY; regions].into_boxed_slice(),
        vec![Table4K::EMPTY; tables].into_boxed_slice(),
    )
}

/// KVM storage for `gigs` 1G records, `regions` regions and `tables` mirror tables.
pub fn boxed_kvm(gigs: usize, regions: usize, tables: usize) -> BoxedKvm {
    Storage::from_parts(
        vec![KvmGig::EMPTY; gigs].into_boxed_slice(),
        vec![KvmRegion::EMPTY; regions].into_boxed_slice(),
        vec![MirrorTable::EMPTY; tables].into_boxed_slice(),
    )
}
