//! Host-owned storage for the core's models, sized by a scenario at run time.

use hugesept_core::kvm::{KvmGig, KvmRegion, KvmStorage, MirrorTable};
use hugesept_core::sept::{HugeEntry, Region, SeptStorage, Table4K};

/// S-EPT storage in boxed slices.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BoxedSept {
    gigs: Box<[HugeEntry]>,
    regions: Box<[Region]>,
    tables: Box<[Table4K]>,
}

impl BoxedSept {
    /// Storage for `gigs` 1G entries, `regions` regions and `tables` 4K tables.
    pub fn new(gigs: usize, regions: usize, tables: usize) -> Self {
        BoxedSept {
            gigs: vec![HugeEntry::FREE; gigs].into_boxed_slice(),
            regions: vec![Region::EMPTY; regions].into_boxed_slice(),
            tables: vec![Table4K::EMPTY; tables].into_boxed_slice(),
        }
    }
}

impl SeptStorage for BoxedSept {
    fn gigs(&self) -> &[HugeEntry] {
        &self.gigs
    }
    fn gigs_mut(&mut self) -> &mut [HugeEntry] {
        &mut self.gigs
    }
    fn regions(&self) -> &[Region] {
        &self.regions
    }
    fn regions_mut(&mut self) -> &mut [Region] {
        &mut self.regions
    }
    fn tables(&self) -> &[Table4K] {
        &self.tables
    }
    fn tables_mut(&mut self) -> &mut [Table4K] {
        &mut self.tables
    }
}

/// KVM storage in boxed slices.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BoxedKvm {
    gigs: Box<[KvmGig]>,
    regions: Box<[KvmRegion]>,
    tables: Box<[MirrorTable]>,
}

impl BoxedKvm {
    /// Storage for `gigs` 1G records, `regions` regions and `tables` mirror tables.
    pub fn new(gigs: usize, regions: usize, tables: usize) -> Self {
        BoxedKvm {
            gigs: vec![KvmGig::EMPTY; gigs].into_boxed_slice(),
            regions: vec![KvmRegion::EMPTY; regions].into_boxed_slice(),
            tables: vec![MirrorTable::EMPTY; tables].into_boxed_slice(),
        }
    }
}

impl KvmStorage for BoxedKvm {
    fn gigs(&self) -> &[KvmGig] {
        &self.gigs
    }
    fn gigs_mut(&mut self) -> &mut [KvmGig] {
        &mut self.gigs
    }
    fn regions(&self) -> &[KvmRegion] {
        &self.regions
    }
    fn regions_mut(&mut self) -> &mut [KvmRegion] {
        &mut self.regions
    }
    fn tables(&self) -> &[MirrorTable] {
        &self.tables
    }
    fn tables_mut(&mut self) -> &mut [MirrorTable] {
        &mut self.tables
    }
}
