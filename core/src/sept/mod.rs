//! The TDX module's Secure EPT: entry states at 1G, 2M and 4K, TDG.MEM.PAGE.ACCEPT, the host
//! SEAMCALLs that change the tree, entry locks, TLB-tracking epochs, the TD's op state, page
//! content and module profiles.
//!
//! Every rule here follows the TDX 1.5 module source as summarised in
//! shared/reference/tdx-module.md; each function names the source file it models. Operations
//! that hold an entry lock across time are split in two (`*_begin` takes the locks and checks
//! the preconditions, `*_finish`/`host_end` applies the change and unlocks), so a world that
//! interleaves a host SEAMCALL with a guest ACCEPT on the same entry sees TDX_OPERAND_BUSY
//! exactly where the module would.
//!
//! What is left out, deliberately: HPAs and the PAMT (pages are assumed contiguous and the host
//! is assumed to pass valid pages), migration states, L2 VMs, the host-priority timeout
//! (TDX_HOST_PRIORITY_BUSY_TIMEOUT after HP_LOCK_TIMEOUT), and the zero-step mitigation's tree
//! lock taken by TDH.VP.ENTER.

mod accept;
mod content;
mod dirty;
mod epoch;
mod host;
pub mod outcomes;
mod profile;
mod storage;

use core::fmt;

pub use accept::{AcceptOp, AcceptOutcome, AcceptStart, AccessOutcome, EptViolationExit};
pub use content::Content;
pub use dirty::Dirty;
pub(crate) use dirty::copy_changed_regions;
pub(crate) use dirty::{PageCopy, copy_entries};
pub use epoch::{EpochTicket, TlbEpochs};
pub use host::{HostCall, HostCallKind, HostOp, HostStart};
pub use profile::{ModuleProfile, UnknownProfile};
pub use storage::{
    ArrayStorage, Entry4K, EntryLock, HugeEntry, Region, SeptStorage, SliceStorage, Storage,
    Table4K, TableRef,
};
pub(crate) use storage::{Digested, TableMut, digest_of, digest_update};

use crate::abi::{
    ENTRIES_PER_TABLE, Gpa, Gpaw, PAGE_SIZE_1G, PAGE_SIZE_2M, PageLevel, SeptEntryState,
};

/// The TD's op state, as far as the S-EPT cares (tdx-module include/auto_gen/op_state_lookup.c).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpState {
    /// INITIALIZED: build time, before TDH.MR.FINALIZE. PAGE.ADD works; BLOCK and TLB tracking
    /// are not required before REMOVE, DEMOTE, PROMOTE or SEPT.REMOVE.
    BuildTime,
    /// RUNNABLE: after finalization.
    Runnable,
}

impl OpState {
    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            OpState::BuildTime => "build-time",
            OpState::Runnable => "runnable",
        }
    }
}

/// Errors of the model itself (misuse or capacity), as opposed to TDX statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeptError {
    /// The window is not 2M-aligned, is empty, or leaves the GPA space.
    InvalidWindow,
    /// The storage slices do not match the window (1G entries or regions).
    StorageMismatch,
    /// A host operation names memory outside the modelled window.
    OutsideModel,
    /// No 4K table left in the pool.
    TablePoolExhausted,
    /// A `*_finish`/`host_end` for an operation that is not in flight.
    StaleOperation,
    /// The storage contradicts itself (a table entry with no table).
    StorageInconsistent,
    /// The TD epoch or a vCPU count would overflow.
    EpochOverflow,
    /// A TD exit with a ticket no vCPU holds.
    UnknownTicket,
    /// A guest access to a shared GPA (the S-EPT only maps private memory).
    NotPrivate,
    /// `arrange` was asked for a state its parent entry cannot hold, or called while an
    /// operation is in flight.
    ArrangeConflict,
    /// More operations in flight at once than the model tracks ([`MAX_IN_FLIGHT`]).
    TooManyInFlight,
}

impl SeptError {
    /// A one-line description.
    pub const fn describe(self) -> &'static str {
        match self {
            SeptError::InvalidWindow => "model window is not 2M-aligned, empty or too large",
            SeptError::StorageMismatch => "storage sizes do not match the model window",
            SeptError::OutsideModel => "address outside the modelled window",
            SeptError::TablePoolExhausted => "no 4K table left in the model's pool",
            SeptError::StaleOperation => "operation is not in flight",
            SeptError::StorageInconsistent => "model storage is inconsistent",
            SeptError::EpochOverflow => "TD epoch or vCPU count overflow",
            SeptError::UnknownTicket => "TD exit with an unknown epoch ticket",
            SeptError::NotPrivate => "shared GPA given where a private one is needed",
            SeptError::ArrangeConflict => {
                "arranged state conflicts with its parent entry or an operation in flight"
            }
            SeptError::TooManyInFlight => "too many operations in flight",
        }
    }
}

impl fmt::Display for SeptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The shape of a model: which TD and which part of its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeptConfig {
    /// The module the model behaves as.
    pub profile: ModuleProfile,
    /// The TD's GPA width.
    pub gpaw: Gpaw,
    /// First GPA of the window (2M-aligned).
    pub base: Gpa,
    /// Number of 2 MiB regions in the window.
    pub regions: u32,
    /// The TD attribute SEPT_VE_DISABLE (PENDING_VE_DISABLE): a guest access to a PENDING page
    /// exits to the VMM instead of raising #VE. QEMU and Linux set it by default.
    pub pending_ve_disable: bool,
}

impl SeptConfig {
    /// A TDX 1.5, GPAW-48, #VE-disabled TD whose window is `regions` regions from `base`.
    pub const fn new(base: Gpa, regions: u32) -> Self {
        SeptConfig {
            profile: ModuleProfile::TDX_1_5,
            gpaw: Gpaw::Bits48,
            base,
            regions,
            pending_ve_disable: true,
        }
    }

    /// One past the window's last GPA.
    pub fn end(&self) -> Result<Gpa, SeptError> {
        let bytes = u64::from(self.regions)
            .checked_mul(PAGE_SIZE_2M)
            .ok_or(SeptError::InvalidWindow)?;
        self.base
            .checked_add(bytes)
            .map_err(|_| SeptError::InvalidWindow)
    }

    /// The number of 1G-level entries the window touches.
    pub fn gigs_needed(&self) -> Result<usize, SeptError> {
        if self.regions == 0 || !self.base.is_aligned(PageLevel::Size2M) {
            return Err(SeptError::InvalidWindow);
        }
        let end = self.end()?;
        if !Gpa(end.raw().wrapping_sub(1)).is_within(self.gpaw)
            || Gpa(end.raw().wrapping_sub(1)).is_shared(self.gpaw)
        {
            return Err(SeptError::InvalidWindow);
        }
        let first = self.base.index(PageLevel::Size1G);
        let last = end.raw().wrapping_sub(1) >> PageLevel::Size1G.shift();
        usize::try_from(last.wrapping_sub(first).wrapping_add(1))
            .map_err(|_| SeptError::InvalidWindow)
    }

    /// The number of regions, as a length.
    pub fn regions_len(&self) -> Result<usize, SeptError> {
        usize::try_from(self.regions).map_err(|_| SeptError::InvalidWindow)
    }
}

/// Where an entry lives in storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Loc {
    Gig(usize),
    Region(usize),
    Page {
        region: usize,
        table: usize,
        index: usize,
    },
}

/// The fields every entry has, whatever its level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct View {
    pub(crate) state: SeptEntryState,
    pub(crate) lock: EntryLock,
    pub(crate) bepoch: u32,
    pub(crate) counter: u32,
}

impl View {
    const FREE: View = View {
        state: SeptEntryState::Free,
        lock: EntryLock(0),
        bepoch: 0,
        counter: 0,
    };
}

/// Operations (ACCEPTs and SEAMCALLs between their two phases) the model tracks at once. A
/// world has at most one in flight per actor (`world::MAX_VCPUS` + `world::MAX_HOSTS`): a vCPU
/// is inside an ACCEPT or its fault path is inside a SEAMCALL, never both, and a host actor runs
/// one operation at a time. Every slot is part of the state an explorer copies, compares and
/// hashes (eight rather than sixteen took a tenth off its instructions per state).
pub const MAX_IN_FLIGHT: usize = 8;

/// An operation between its two phases: what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Flight {
    /// An ACCEPT holding the entry lock at the requested level: zeroing a PENDING entry, or
    /// (`zeroing` false) reading any other entry before it unlocks and reports.
    Accept {
        gpa: Gpa,
        level: PageLevel,
        loc: Loc,
        zeroing: bool,
    },
    /// A SEAMCALL holding the tree lock, its entry lock (not PAGE.ADD), PROMOTE's children, and
    /// possibly a table from the pool.
    Host {
        call: host::HostCall,
        loc: Loc,
        table: TableRef,
    },
}

/// Where a walk towards a level stopped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WalkStop {
    pub(crate) level: PageLevel,
    /// None: the entry lies outside the window (and reads as FREE).
    pub(crate) loc: Option<Loc>,
    pub(crate) view: View,
    /// Whether the walk got to the requested level.
    pub(crate) reached: bool,
}

/// The leaf (or missing entry) that maps one GPA, as TDG.MEM.PAGE.ATTR.RD or an EPT walk sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// The level where the walk stopped.
    pub level: PageLevel,
    /// The entry's state there.
    pub state: SeptEntryState,
}

/// The TDX module's Secure EPT for one TD, over storage `S`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sept<S> {
    config: SeptConfig,
    op_state: OpState,
    epochs: TlbEpochs,
    tree_shared: u16,
    tree_exclusive: bool,
    free_tables: TableRef,
    tables_in_use: u32,
    in_flight: [Option<Flight>; MAX_IN_FLIGHT],
    /// Regions changed since the last [`Sept::clear_dirty`] (not state).
    dirty: Dirty,
    storage: S,
}

impl<S: SeptStorage> Sept<S> {
    /// A TD at build time whose window is all FREE. The storage is reset; it must hold
    /// [`SeptConfig::gigs_needed`] 1G entries and [`SeptConfig::regions`] regions.
    pub fn new(config: SeptConfig, mut storage: S) -> Result<Self, SeptError> {
        if storage.gigs().len() != config.gigs_needed()?
            || storage.regions().len() != config.regions_len()?
        {
            return Err(SeptError::StorageMismatch);
        }
        storage.gigs_mut().fill(HugeEntry::FREE);
        storage.regions_mut().fill(Region::EMPTY);
        let n = storage.tables().len();
        for (i, t) in storage.tables_mut().iter_mut().enumerate() {
            *t = Table4K::EMPTY;
            let next = i.wrapping_add(1);
            t.link = if next < n {
                TableRef::to(next)
            } else {
                TableRef::NONE
            };
        }
        let free_tables = if n > 0 {
            TableRef::to(0)
        } else {
            TableRef::NONE
        };
        Ok(Sept {
            config,
            op_state: OpState::BuildTime,
            epochs: TlbEpochs::new(),
            tree_shared: 0,
            tree_exclusive: false,
            free_tables,
            tables_in_use: 0,
            in_flight: [None; MAX_IN_FLIGHT],
            dirty: Dirty::ALL,
            storage,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SeptConfig {
        &self.config
    }

    /// The module profile.
    pub fn profile(&self) -> ModuleProfile {
        self.config.profile
    }

    /// The TD's op state.
    pub fn op_state(&self) -> OpState {
        self.op_state
    }

    /// TDH.MR.FINALIZE: the TD becomes runnable. Returns TDX_OP_STATE_INCORRECT if it already is.
    pub fn finalize(&mut self) -> crate::abi::TdxStatus {
        match self.op_state {
            OpState::BuildTime => {
                self.dirty.mark_fields();
                self.op_state = OpState::Runnable;
                crate::abi::TdxStatus::SUCCESS
            }
            OpState::Runnable => {
                crate::abi::TdxStatus::new(crate::abi::StatusCode::OpStateIncorrect, 0)
            }
        }
    }

    /// The TLB epoch state.
    pub fn epochs(&self) -> &TlbEpochs {
        &self.epochs
    }

    /// TDH.VP.ENTER: a vCPU enters the guest in the current epoch.
    pub fn vcpu_enter(&mut self) -> Result<EpochTicket, SeptError> {
        self.dirty.mark_fields();
        self.epochs.enter()
    }

    /// A TD exit: the vCPU leaves the epoch it entered in.
    pub fn vcpu_exit(&mut self, ticket: EpochTicket) -> Result<(), SeptError> {
        self.dirty.mark_fields();
        self.epochs.exit(ticket)
    }

    /// TDH.MEM.TRACK (tdh_mem_track.c): advance the epoch, or TDX_PREVIOUS_TLB_EPOCH_BUSY.
    pub fn track(&mut self) -> Result<crate::abi::TdxStatus, SeptError> {
        self.dirty.mark_fields();
        self.epochs.track()
    }

    /// Whether the pool has a free 4K table (a 2M DEMOTE or SEPT.ADD needs one).
    pub fn has_free_table(&self) -> bool {
        self.free_tables.index().is_some()
    }

    /// 4K tables taken from the pool (S-EPT page tables and per-page content records).
    pub fn tables_in_use(&self) -> u32 {
        self.tables_in_use
    }

    /// Whether the tree lock is held (shared holders, exclusive).
    pub fn tree_lock(&self) -> (u16, bool) {
        (self.tree_shared, self.tree_exclusive)
    }

    /// Renumbers the TLB epochs so that the current one is 2 or 3 (see
    /// [`TlbEpochs::rebase_offset`]): the same behaviour under smaller numbers, so an explorer
    /// sees states that differ only in how many TRACKs happened as one. Returns the offset, to
    /// apply to the [`EpochTicket`]s vCPUs hold ([`TlbEpochs::rebased`]).
    pub fn rebase_epochs(&mut self) -> u32 {
        let offset = self.epochs.rebase_offset();
        if offset == 0 {
            return 0;
        }
        let epochs = self.epochs;
        let fix = |b: &mut u32| *b = epochs.rebased(*b, offset);
        for g in self.storage.gigs_mut() {
            fix(&mut g.bepoch);
        }
        for r in self.storage.regions_mut() {
            fix(&mut r.entry.bepoch);
        }
        for t in self.storage.tables_mut() {
            if t.in_use {
                for e in t.entries.iter_mut() {
                    fix(&mut e.bepoch);
                }
                t.refresh_digest();
            }
        }
        self.epochs.apply_rebase(offset);
        self.dirty.mark_all();
        offset
    }

    /// Hashes everything but the regions and their tables, and but the configuration, fixed
    /// when the model is built (for a fingerprint built region by region: this, plus
    /// [`Sept::hash_region`] of every region, tells apart every two states of one model).
    pub fn hash_small<H: core::hash::Hasher>(&self, h: &mut H) {
        use core::hash::Hash;
        self.op_state.hash(h);
        self.epochs.hash(h);
        self.tree_shared.hash(h);
        self.tree_exclusive.hash(h);
        self.free_tables.hash(h);
        self.tables_in_use.hash(h);
        // The slots in use, each with its index (most are empty).
        self.in_flight_count().hash(h);
        for (i, f) in self.in_flight.iter().enumerate() {
            if let Some(f) = f {
                i.hash(h);
                f.hash(h);
            }
        }
        self.storage.gigs().hash(h);
        // Tables held by operations in flight belong to no region.
        for f in self.in_flight.iter().flatten() {
            if let Flight::Host { table, .. } = f
                && let Some(t) = table.index().and_then(|i| self.storage.tables().get(i))
            {
                t.hash(h);
            }
        }
    }

    /// Whether everything [`Sept::hash_small`] hashes is equal in both (a table held by an
    /// operation in flight by what its hash sees: [`Table4K::same_hash`]).
    pub fn small_eq(&self, o: &Self) -> bool {
        self.op_state == o.op_state
            && self.epochs == o.epochs
            && self.tree_shared == o.tree_shared
            && self.tree_exclusive == o.tree_exclusive
            && self.free_tables == o.free_tables
            && self.tables_in_use == o.tables_in_use
            && self.in_flight == o.in_flight
            && self.storage.gigs() == o.storage.gigs()
            && self.in_flight.iter().flatten().all(|f| match f {
                Flight::Host { table, .. } => table.index().is_none_or(|i| {
                    match (self.storage.tables().get(i), o.storage.tables().get(i)) {
                        (Some(a), Some(b)) => a.same_hash(b),
                        (a, b) => a.is_none() && b.is_none(),
                    }
                }),
                _ => true,
            })
    }

    /// Hashes region `r`'s record and its table.
    pub fn hash_region<H: core::hash::Hasher>(&self, r: usize, h: &mut H) {
        use core::hash::Hash;
        if let Some(region) = self.storage.regions().get(r) {
            region.hash(h);
            if let Some(t) = region
                .table
                .index()
                .and_then(|i| self.storage.tables().get(i))
            {
                t.hash(h);
            }
        }
    }

    /// Whether anything [`Sept::hash_small`] hashes may have changed since the last
    /// [`Sept::clear_dirty`] (its fields, a 1G entry, or a table an operation in flight holds).
    pub fn small_changed(&self) -> bool {
        self.dirty.fields()
            || !self.dirty.regions().is_empty()
                && self.in_flight.iter().any(|f| match f {
                    Some(Flight::Host { table, .. }) => table
                        .index()
                        .and_then(|t| self.owner(t))
                        .is_some_and(|o| self.dirty.has(o)),
                    _ => false,
                })
    }

    /// The region that owns table `t` here: an in-use table's link.
    fn owner(&self, t: usize) -> Option<usize> {
        self.storage
            .tables()
            .get(t)
            .filter(|t| t.in_use)
            .and_then(|t| t.link.index())
    }

    /// The regions changed since the last [`Sept::clear_dirty`].
    pub fn dirty(&self) -> Dirty {
        self.dirty
    }

    /// Starts a new record of changed regions.
    pub fn clear_dirty(&mut self) {
        self.dirty.clear();
    }

    /// Adds `d` to the record of changed regions (an explorer moving a record between
    /// copies).
    pub(crate) fn absorb_dirty(&mut self, d: &Dirty) {
        self.dirty.absorb(d);
    }

    /// Makes `self` equal to `other`, given that `self` equals what `other` was when its
    /// changed-regions record was last cleared: copies the fields, the 1G entries, and the
    /// changed regions with the tables either side references. Copies everything when the
    /// record says everything.
    pub fn sync_from(&mut self, other: &Self)
    where
        S: Clone,
    {
        self.copy_changed(other, other.dirty);
    }

    /// Undoes the changes recorded since the record was last cleared, given that `original`
    /// is the state from then: copies back what changed.
    pub fn revert_to(&mut self, original: &Self)
    where
        S: Clone,
    {
        let d = self.dirty;
        self.copy_changed(original, d);
    }

    /// Copies what `d` names from `other`: the changed regions with their tables, the tables
    /// operations in flight hold, and the fields outside the regions when `d` says they
    /// changed.
    fn copy_changed(&mut self, other: &Self, d: crate::sept::Dirty)
    where
        S: Clone,
    {
        let fields = d.fields();
        let Some(whole) = copy_changed_regions(
            self.storage.regions_and_tables_mut(),
            (other.storage.regions(), other.storage.tables()),
            &d,
            |r| r.table,
        ) else {
            self.clone_from(other);
            return;
        };
        self.dirty = other.dirty;
        if fields {
            self.config = other.config;
            self.op_state = other.op_state;
            self.epochs = other.epochs;
            self.tree_shared = other.tree_shared;
            self.tree_exclusive = other.tree_exclusive;
            self.free_tables = other.free_tables;
            self.tables_in_use = other.tables_in_use;
            self.storage
                .gigs_mut()
                .copy_from_slice(other.storage.gigs());
        }
        // Tables held by operations in flight (on either side) belong to no region yet. A
        // write to one marks the region its link names (on the side where it is in use) whole
        // or by page, so only those are copied whole (unless the regions' copy took them
        // already); taking one from the pool marks only the owner's record, and changes only
        // the table's use, link and digest.
        if !d.regions().is_empty() {
            for (here, f) in self
                .in_flight
                .iter()
                .map(|f| (true, f))
                .chain(other.in_flight.iter().map(|f| (false, f)))
            {
                let Some(Flight::Host { table, .. }) = *f else {
                    continue;
                };
                let (Some(t), false) = (table.index(), whole.contains(table)) else {
                    continue;
                };
                let owner = if here { self.owner(t) } else { other.owner(t) };
                let Some(owner) = owner.filter(|&o| d.has(o)) else {
                    continue;
                };
                let touched = d.table_touched(owner);
                let (Some(dt), Some(st)) = (
                    self.storage.tables_mut().get_mut(t),
                    other.storage.tables().get(t),
                ) else {
                    continue;
                };
                if touched {
                    dt.clone_from(st);
                } else {
                    dt.copy_pages(st, &[]);
                }
            }
        }
        if fields {
            self.in_flight = other.in_flight;
        }
    }

    /// The storage (read-only).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Operations between their two phases.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.iter().filter(|f| f.is_some()).count()
    }

    /// A free slot for an operation about to start.
    pub(crate) fn free_slot(&self) -> Result<usize, SeptError> {
        self.in_flight
            .iter()
            .position(Option::is_none)
            .ok_or(SeptError::TooManyInFlight)
    }

    pub(crate) fn flight(&self, slot: u8) -> Option<Flight> {
        self.in_flight.get(usize::from(slot)).copied().flatten()
    }

    pub(crate) fn set_flight(&mut self, slot: usize, f: Option<Flight>) -> Result<(), SeptError> {
        self.dirty.mark_fields();
        *self
            .in_flight
            .get_mut(slot)
            .ok_or(SeptError::StorageInconsistent)? = f;
        Ok(())
    }

    /// Whether `gpa` lies in the window.
    pub fn contains(&self, gpa: Gpa) -> bool {
        self.region_index(gpa).is_some()
    }

    // ----- locations -----

    pub(crate) fn region_index(&self, gpa: Gpa) -> Option<usize> {
        let off = gpa.raw().checked_sub(self.config.base.raw())?;
        let idx = usize::try_from(off >> PageLevel::Size2M.shift()).ok()?;
        (idx < self.storage.regions().len()).then_some(idx)
    }

    pub(crate) fn gig_index(&self, gpa: Gpa) -> Option<usize> {
        let first = self.config.base.align_down(PageLevel::Size1G).raw();
        let off = gpa.raw().checked_sub(first)?;
        let idx = usize::try_from(off >> PageLevel::Size1G.shift()).ok()?;
        (idx < self.storage.gigs().len()).then_some(idx)
    }

    /// The regions (indices) under 1G entry `gig` that lie in the window.
    pub(crate) fn regions_of_gig(&self, gig: usize) -> core::ops::Range<usize> {
        let first_gig_base = self.config.base.align_down(PageLevel::Size1G).raw();
        let gig_base = (gig as u64)
            .checked_mul(PAGE_SIZE_1G)
            .and_then(|o| o.checked_add(first_gig_base));
        let Some(gig_base) = gig_base else {
            return 0..0;
        };
        let lo = gig_base.max(self.config.base.raw());
        let hi = gig_base.saturating_add(PAGE_SIZE_1G);
        let start = self.region_index(Gpa(lo));
        let end = match self.region_index(Gpa(hi)) {
            Some(e) => e,
            None => self.storage.regions().len(),
        };
        match start {
            Some(s) if s <= end => s..end,
            _ => 0..0,
        }
    }

    /// Whether the whole 1 GiB range of entry `gig` lies in the window.
    pub(crate) fn gig_fully_modelled(&self, gig: usize) -> bool {
        self.regions_of_gig(gig).len() == ENTRIES_PER_TABLE as usize
    }

    pub(crate) fn load(&self, loc: Loc) -> Result<View, SeptError> {
        match loc {
            Loc::Gig(i) => {
                let e = self
                    .storage
                    .gigs()
                    .get(i)
                    .ok_or(SeptError::StorageInconsistent)?;
                Ok(View {
                    state: e.state,
                    lock: e.lock,
                    bepoch: e.bepoch,
                    counter: e.accept_counter,
                })
            }
            Loc::Region(i) => {
                let e = &self
                    .storage
                    .regions()
                    .get(i)
                    .ok_or(SeptError::StorageInconsistent)?
                    .entry;
                Ok(View {
                    state: e.state,
                    lock: e.lock,
                    bepoch: e.bepoch,
                    counter: e.accept_counter,
                })
            }
            Loc::Page { table, index, .. } => {
                let e = self
                    .storage
                    .tables()
                    .get(table)
                    .and_then(|t| t.entries.get(index))
                    .ok_or(SeptError::StorageInconsistent)?;
                Ok(View {
                    state: e.state,
                    lock: e.lock,
                    bepoch: e.bepoch,
                    counter: 0,
                })
            }
        }
    }

    pub(crate) fn store(&mut self, loc: Loc, v: View) -> Result<(), SeptError> {
        match loc {
            Loc::Gig(_) => self.dirty.mark_gigs(),
            Loc::Region(i) => self.dirty.mark_record(i),
            Loc::Page { region, index, .. } => self.dirty.mark_page(region, index),
        }
        match loc {
            Loc::Gig(i) => {
                let e = self
                    .storage
                    .gigs_mut()
                    .get_mut(i)
                    .ok_or(SeptError::StorageInconsistent)?;
                e.state = v.state;
                e.lock = v.lock;
                e.bepoch = v.bepoch;
                e.accept_counter = v.counter;
            }
            Loc::Region(i) => {
                let e = &mut self
                    .storage
                    .regions_mut()
                    .get_mut(i)
                    .ok_or(SeptError::StorageInconsistent)?
                    .entry;
                e.state = v.state;
                e.lock = v.lock;
                e.bepoch = v.bepoch;
                e.accept_counter = v.counter;
            }
            Loc::Page { table, index, .. } => {
                self.storage
                    .tables_mut()
                    .get_mut(table)
                    .and_then(|t| {
                        t.update_entry(index, |e| {
                            e.state = v.state;
                            e.lock = v.lock;
                            e.bepoch = v.bepoch;
                        })
                    })
                    .ok_or(SeptError::StorageInconsistent)?;
            }
        }
        Ok(())
    }

    pub(crate) fn region(&self, i: usize) -> Result<&Region, SeptError> {
        self.storage
            .regions()
            .get(i)
            .ok_or(SeptError::StorageInconsistent)
    }

    pub(crate) fn region_mut(&mut self, i: usize) -> Result<&mut Region, SeptError> {
        self.dirty.mark(i);
        self.storage
            .regions_mut()
            .get_mut(i)
            .ok_or(SeptError::StorageInconsistent)
    }

    /// Table `t` for writing, with the change recorded against the region that owns it (an
    /// in-use table belongs to the region its link names): all of it, or with `page` that
    /// entry alone.
    fn table_in_record(
        &mut self,
        t: usize,
        page: Option<usize>,
    ) -> Result<&mut Table4K, SeptError> {
        let table = self
            .storage
            .tables_mut()
            .get_mut(t)
            .ok_or(SeptError::StorageInconsistent)?;
        if let Some(owner) = table.link.index().filter(|_| table.in_use) {
            match page {
                Some(p) => self.dirty.mark_page(owner, p),
                None => self.dirty.mark(owner),
            }
        }
        Ok(table)
    }

    /// Table `t` for writing whole (the caller keeps its digest current).
    fn table_raw_mut(&mut self, t: usize) -> Result<&mut Table4K, SeptError> {
        self.table_in_record(t, None)
    }

    /// Table `t` for writing (its digest is brought up to date when the writing is done).
    pub(crate) fn table_mut(
        &mut self,
        t: usize,
    ) -> Result<storage::TableMut<'_, Table4K>, SeptError> {
        Ok(storage::TableMut(self.table_raw_mut(t)?))
    }

    /// Changes entry `i` of table `t` by `f`, keeping the table's digest current.
    pub(crate) fn update_entry(
        &mut self,
        t: usize,
        i: usize,
        f: impl FnOnce(&mut Entry4K),
    ) -> Result<(), SeptError> {
        self.table_in_record(t, Some(i))?
            .update_entry(i, f)
            .ok_or(SeptError::StorageInconsistent)
    }

    pub(crate) fn table(&self, t: usize) -> Result<&Table4K, SeptError> {
        self.storage
            .tables()
            .get(t)
            .ok_or(SeptError::StorageInconsistent)
    }

    /// The walk of the module's `secure_ept_walk` (sept_manager.c): from the 1G level down, it
    /// stops at the requested level whatever the entry holds, or earlier at any entry that is
    /// not NL_MAPPED (not present, blocked, or a leaf).
    pub(crate) fn walk(&self, gpa: Gpa, target: PageLevel) -> Result<WalkStop, SeptError> {
        let outside = |level: PageLevel| WalkStop {
            level,
            loc: None,
            view: View::FREE,
            reached: level == target,
        };
        let Some(gig) = self.gig_index(gpa) else {
            return Ok(outside(PageLevel::Size1G));
        };
        let gv = self.load(Loc::Gig(gig))?;
        if target == PageLevel::Size1G || !gv.state.is_walkable() {
            return Ok(WalkStop {
                level: PageLevel::Size1G,
                loc: Some(Loc::Gig(gig)),
                view: gv,
                reached: target == PageLevel::Size1G,
            });
        }
        let Some(region) = self.region_index(gpa) else {
            return Ok(outside(PageLevel::Size2M));
        };
        let rv = self.load(Loc::Region(region))?;
        if target == PageLevel::Size2M || !rv.state.is_walkable() {
            return Ok(WalkStop {
                level: PageLevel::Size2M,
                loc: Some(Loc::Region(region)),
                view: rv,
                reached: target == PageLevel::Size2M,
            });
        }
        let table = self
            .region(region)?
            .table
            .index()
            .ok_or(SeptError::StorageInconsistent)?;
        let index = page_index(gpa);
        let loc = Loc::Page {
            region,
            table,
            index,
        };
        Ok(WalkStop {
            level: PageLevel::Size4K,
            loc: Some(loc),
            view: self.load(loc)?,
            reached: true,
        })
    }

    // ----- queries -----

    /// The state of the entry at `level` for `gpa`, or None when no table holds such an entry
    /// (its parent is not a table) or it lies outside the window.
    pub fn entry_state(
        &self,
        gpa: Gpa,
        level: PageLevel,
    ) -> Result<Option<SeptEntryState>, SeptError> {
        let w = self.walk_through_blocked(gpa, level)?;
        Ok(match w {
            Some(stop) if stop.reached && stop.loc.is_some() => Some(stop.view.state),
            _ => None,
        })
    }

    /// The full entry at `level` for `gpa` (state, lock, epoch, accept counter), if it exists.
    pub fn entry(&self, gpa: Gpa, level: PageLevel) -> Result<Option<HugeEntry>, SeptError> {
        let w = self.walk_through_blocked(gpa, level)?;
        Ok(match w {
            Some(stop) if stop.reached && stop.loc.is_some() => Some(HugeEntry {
                state: stop.view.state,
                lock: stop.view.lock,
                bepoch: stop.view.bepoch,
                accept_counter: stop.view.counter,
            }),
            _ => None,
        })
    }

    /// Like `walk`, but descending through NL_BLOCKED tables too: the structure, not the
    /// hardware walk. None when the parent chain ends above `level`.
    fn walk_through_blocked(
        &self,
        gpa: Gpa,
        level: PageLevel,
    ) -> Result<Option<WalkStop>, SeptError> {
        let Some(gig) = self.gig_index(gpa) else {
            return Ok(None);
        };
        let gv = self.load(Loc::Gig(gig))?;
        if level == PageLevel::Size1G {
            return Ok(Some(WalkStop {
                level,
                loc: Some(Loc::Gig(gig)),
                view: gv,
                reached: true,
            }));
        }
        if !gv.state.is_table() {
            return Ok(None);
        }
        let Some(region) = self.region_index(gpa) else {
            return Ok(None);
        };
        let rv = self.load(Loc::Region(region))?;
        if level == PageLevel::Size2M {
            return Ok(Some(WalkStop {
                level,
                loc: Some(Loc::Region(region)),
                view: rv,
                reached: true,
            }));
        }
        if !rv.state.is_table() {
            return Ok(None);
        }
        let table = self
            .region(region)?
            .table
            .index()
            .ok_or(SeptError::StorageInconsistent)?;
        let loc = Loc::Page {
            region,
            table,
            index: page_index(gpa),
        };
        Ok(Some(WalkStop {
            level,
            loc: Some(loc),
            view: self.load(loc)?,
            reached: true,
        }))
    }

    /// The entry a hardware walk for `gpa` ends at: a leaf, or the first entry that is not
    /// present (TDG.MEM.PAGE.ATTR.RD's view, tdg_mem_page_attr_rd.c).
    pub fn mapping(&self, gpa: Gpa) -> Result<Mapping, SeptError> {
        let stop = self.walk(gpa, PageLevel::Size4K)?;
        Ok(Mapping {
            level: stop.level,
            state: stop.view.state,
        })
    }

    /// The 512 4K entries of the table under the 2M entry of `gpa`'s region, when that entry is
    /// a table (NL_MAPPED or NL_BLOCKED) and the 1G entry above is one too.
    pub fn table_4k(&self, gpa: Gpa) -> Result<Option<&[Entry4K]>, SeptError> {
        let Some(gig) = self.gig_index(gpa) else {
            return Ok(None);
        };
        let Some(r) = self.region_index(gpa) else {
            return Ok(None);
        };
        let region = self.region(r)?;
        if !self.load(Loc::Gig(gig))?.state.is_table() || !region.entry.state.is_table() {
            return Ok(None);
        }
        let t = region.table.index().ok_or(SeptError::StorageInconsistent)?;
        Ok(Some(&self.table(t)?.entries[..]))
    }

    /// The content of the 4K page at `gpa`.
    pub fn content(&self, gpa: Gpa) -> Result<Content, SeptError> {
        let Some(r) = self.region_index(gpa) else {
            return Ok(Content::NONE);
        };
        let region = self.region(r)?;
        match region.table.index() {
            Some(t) => Ok(self
                .table(t)?
                .entries
                .get(page_index(gpa))
                .ok_or(SeptError::StorageInconsistent)?
                .content),
            None => Ok(region.content),
        }
    }

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
        after: &Sept<S>,
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
        after: &Sept<S>,
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
        after: &Sept<S>,
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

    /// Takes a table from the pool for region `owner`.
    pub(crate) fn alloc_table(&mut self, owner: usize) -> Result<usize, SeptError> {
        // A free table is EMPTY: taking it changes its use, link and digest, not its entries
        // (the owner's record says so; see `copy_changed`).
        self.dirty.mark_record(owner);
        let idx = self
            .free_tables
            .index()
            .ok_or(SeptError::TablePoolExhausted)?;
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
                let t = self.alloc_table(r)?;
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

    /// Puts the entry at `level` for `gpa` in `state` directly, bypassing the module's rules:
    /// for conformance tables, scenario set-up and the outcome matrix. The parent must be a
    /// table (NL_MAPPED or NL_BLOCKED). A table state creates an all-FREE table below unless one
    /// is there; a leaf or FREE state drops what was below. MAPPED and BLOCKED leaves hold zeroed
    /// content; blocked states record the current epoch (not yet tracked). Locks are cleared.
    pub fn arrange(
        &mut self,
        gpa: Gpa,
        level: PageLevel,
        state: SeptEntryState,
    ) -> Result<(), SeptError> {
        if self.in_flight_count() > 0 {
            return Err(SeptError::ArrangeConflict);
        }
        let content = match state {
            SeptEntryState::Mapped | SeptEntryState::Blocked => Content::ZERO,
            _ => Content::NONE,
        };
        let view = View {
            state,
            lock: EntryLock::default(),
            bepoch: if state.is_blocked() {
                self.epochs.epoch()
            } else {
                0
            },
            counter: 0,
        };
        match level {
            PageLevel::Size1G => {
                let gig = self.gig_index(gpa).ok_or(SeptError::OutsideModel)?;
                if state.is_leaf() && !self.gig_fully_modelled(gig) {
                    return Err(SeptError::OutsideModel);
                }
                let was_table = self.load(Loc::Gig(gig))?.state.is_table();
                if !(state.is_table() && was_table) {
                    for r in self.regions_of_gig(gig) {
                        if let Some(t) = self.region(r)?.table.index() {
                            self.free_table(t)?;
                        }
                        *self.region_mut(r)? = Region {
                            content,
                            ..Region::EMPTY
                        };
                    }
                }
                self.store(Loc::Gig(gig), view)
            }
            PageLevel::Size2M => {
                let gig = self.gig_index(gpa).ok_or(SeptError::OutsideModel)?;
                if !self.load(Loc::Gig(gig))?.state.is_table() {
                    return Err(SeptError::ArrangeConflict);
                }
                let r = self.region_index(gpa).ok_or(SeptError::OutsideModel)?;
                let region = *self.region(r)?;
                if state.is_table() {
                    if !region.entry.state.is_table() {
                        if let Some(old) = region.table.index() {
                            self.free_table(old)?;
                        }
                        let t = self.alloc_table(r)?;
                        let reg = self.region_mut(r)?;
                        reg.table = TableRef::to(t);
                        reg.content = Content::NONE;
                    }
                } else {
                    if let Some(t) = region.table.index() {
                        self.free_table(t)?;
                    }
                    let reg = self.region_mut(r)?;
                    reg.table = TableRef::NONE;
                    reg.content = content;
                }
                self.store(Loc::Region(r), view)
            }
            PageLevel::Size4K => {
                let stop = self
                    .walk_through_blocked(gpa, PageLevel::Size4K)?
                    .ok_or(SeptError::ArrangeConflict)?;
                if state.is_table() {
                    return Err(SeptError::ArrangeConflict);
                }
                let loc = stop.loc.ok_or(SeptError::OutsideModel)?;
                self.store(loc, view)?;
                if let Loc::Page { table, index, .. } = loc {
                    self.update_entry(table, index, |e| e.content = content)?;
                }
                Ok(())
            }
        }
    }

    /// Checks the storage's structural invariants: entries below a FREE or leaf 1G entry are
    /// FREE; a 2M table entry has a table; every table in use is owned by the one region that
    /// refers to it (or by a SEAMCALL in flight) and is counted; content-only tables hold no
    /// entry state; with `idle`, no operation is in flight and no lock is held anywhere.
    pub fn check_consistency(&self, idle: bool) -> Result<(), SeptError> {
        // Every table in use hashes by a digest its writes keep current; every free one is
        // EMPTY but for its link (taking it from the pool relies on that).
        if self.storage.tables().iter().any(|t| {
            if t.in_use {
                !t.digest_is_current()
            } else {
                !t.is_clean()
            }
        }) {
            return Err(SeptError::StorageInconsistent);
        }
        let mut referenced: u32 = 0;
        for (g, gig) in self.storage.gigs().iter().enumerate() {
            if idle && gig.lock.is_locked() {
                return Err(SeptError::StorageInconsistent);
            }
            for r in self.regions_of_gig(g) {
                if self.check_region(gig, r, idle, None)? {
                    referenced = referenced.saturating_add(1);
                }
            }
        }
        self.check_pool(referenced, idle)
    }

    /// [`Sept::check_consistency`] (not idle) over the regions changed since the record was
    /// last cleared, and the pool's counts; everything when the record says everything or a
    /// 1G entry changed.
    pub fn check_changed_consistency(&self) -> Result<(), SeptError> {
        if self.dirty.is_all() || self.dirty.gigs() {
            return self.check_consistency(false);
        }
        for &r in self.dirty.regions() {
            let r = r as usize;
            let gpa = Gpa(self
                .config
                .base
                .raw()
                .saturating_add((r as u64) << PageLevel::Size2M.shift()));
            let g = self.gig_index(gpa).ok_or(SeptError::StorageInconsistent)?;
            let gig = *self
                .storage
                .gigs()
                .get(g)
                .ok_or(SeptError::StorageInconsistent)?;
            self.check_region(&gig, r, false, self.dirty.pages_of(r))?;
        }
        let referenced = self
            .storage
            .regions()
            .iter()
            .filter(|r| r.table.index().is_some())
            .count();
        self.check_pool(u32::try_from(referenced).unwrap_or(u32::MAX), false)
    }

    /// Region `r` under 1G entry `gig`; whether it references a table.
    /// With `pages`, only those entries of the table changed since it was last checked: the
    /// others are not looked at.
    fn check_region(
        &self,
        gig: &HugeEntry,
        r: usize,
        idle: bool,
        pages: Option<&[u16]>,
    ) -> Result<bool, SeptError> {
        let bad = Err(SeptError::StorageInconsistent);
        let region = self.region(r)?;
        if idle && region.entry.lock.is_locked() {
            return bad;
        }
        if !gig.state.is_table() && region.entry.state != SeptEntryState::Free {
            return bad;
        }
        if gig.state == SeptEntryState::Free
            && (region.content != Content::NONE || region.table.index().is_some())
        {
            return bad;
        }
        match region.table.index() {
            None if region.entry.state.is_table() => bad,
            None => Ok(false),
            Some(t) => {
                let table = self.table(t)?;
                if !table.in_use || table.link != TableRef::to(r) {
                    return bad;
                }
                let content_only = !region.entry.state.is_table();
                let wrong = |e: &Entry4K| {
                    (content_only
                        && (e.state != SeptEntryState::Free || e.lock != EntryLock::default()))
                        || (idle && e.lock.is_locked())
                        || e.state.is_table()
                };
                let any_wrong = match pages {
                    Some(pages) => pages
                        .iter()
                        .any(|&p| table.entries.get(usize::from(p)).is_none_or(wrong)),
                    None => table.entries.iter().any(wrong),
                };
                if any_wrong {
                    return bad;
                }
                Ok(true)
            }
        }
    }

    /// The pool's counts against `referenced` tables held by regions.
    fn check_pool(&self, mut referenced: u32, idle: bool) -> Result<(), SeptError> {
        let bad = Err(SeptError::StorageInconsistent);
        // Tables taken by SEAMCALLs in flight belong to no region yet.
        for f in self.in_flight.iter().flatten() {
            if let Flight::Host { table, .. } = f
                && table.index().is_some()
            {
                referenced = referenced.saturating_add(1);
            }
        }
        let in_use = self.storage.tables().iter().filter(|t| t.in_use).count();
        if u32::try_from(in_use).ok() != Some(referenced) || referenced != self.tables_in_use {
            return bad;
        }
        if idle && (self.tree_shared != 0 || self.tree_exclusive || self.in_flight_count() != 0) {
            return bad;
        }
        Ok(())
    }

    /// Sets the op state directly (for set-up; [`Sept::finalize`] is the module's way).
    pub fn arrange_op_state(&mut self, op_state: OpState) {
        self.dirty.mark_fields();
        self.op_state = op_state;
    }
}

/// The index of `gpa`'s 4K entry in its table.
pub(crate) const fn page_index(gpa: Gpa) -> usize {
    ((gpa.raw() >> PageLevel::Size4K.shift()) & 0x1FF) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_regions() -> Sept<ArrayStorage<1, 2, 2>> {
        Sept::new(SeptConfig::new(Gpa(0x4000_0000), 2), ArrayStorage::new()).unwrap()
    }

    #[test]
    fn the_full_check_holds_free_tables_clean() {
        let mut s = two_regions();
        assert_eq!(s.check_consistency(false), Ok(()));
        // Taking a table from the pool relies on a free table holding nothing.
        s.storage.tables_mut()[1].entries[5].state = SeptEntryState::Pending;
        assert_eq!(
            s.check_consistency(false),
            Err(SeptError::StorageInconsistent)
        );
    }

    #[test]
    fn the_change_record_says_when_the_modules_own_fields_change() {
        let mut s = two_regions();
        s.clear_dirty();
        assert!(!s.small_changed());
        let ticket = s.vcpu_enter().unwrap();
        assert!(s.small_changed());
        // A copy synced by the record takes the fields (the epoch's vCPU count).
        let mut copy = two_regions();
        copy.sync_from(&s);
        assert_eq!(copy, s);
        s.clear_dirty();
        s.vcpu_exit(ticket).unwrap();
        assert!(s.small_changed());
        s.clear_dirty();
        s.track().unwrap();
        assert!(s.small_changed());
    }
}
