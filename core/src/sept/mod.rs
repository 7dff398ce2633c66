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
mod arrange;
mod check;
mod content;
mod dirty;
mod epoch;
mod host;
mod host_apply;
mod loss;
pub mod outcomes;
mod pool;
mod profile;
mod snapshot;
mod storage;
mod walk;

use core::fmt;

pub use accept::{AcceptOp, AcceptOutcome, AcceptStart, AccessOutcome, EptViolationExit};
pub use content::Content;
pub use dirty::Dirty;
pub(crate) use dirty::{PageCopy, copy_entries};
pub(crate) use dirty::{copy_changed_regions, hash_region_and_table};
pub use epoch::{EpochTicket, TlbEpochs};
pub use host::{HostCall, HostCallKind, HostOp, HostStart};
pub use profile::{ModuleProfile, UnknownProfile};
pub use storage::{
    ArrayStorage, Entry4K, EntryLock, HugeEntry, Region, SeptStorage, SliceStorage, Storage,
    Table4K, TablePool, TableRef,
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
    pub(crate) const FREE: View = View {
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

/// Slots a [`Sept`] can have at most: operations name their slot by a byte.
pub const MAX_SLOTS: usize = 256;

/// The slot of the caller [`Sept::set_caller`] named. Bookkeeping, not state: it compares
/// equal and hashes to nothing, as [`Dirty`] does.
#[derive(Clone, Copy, Debug)]
struct Caller(Option<u8>);

impl PartialEq for Caller {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Caller {}

impl core::hash::Hash for Caller {
    fn hash<H: core::hash::Hasher>(&self, _: &mut H) {}
}

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

/// The TDX module's Secure EPT for one TD, over storage `S`, with `F` slots for operations in
/// flight (one per caller: [`MAX_IN_FLIGHT`] for worlds of up to four vCPUs, more for larger
/// ones, at most [`MAX_SLOTS`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sept<S, const F: usize = MAX_IN_FLIGHT> {
    config: SeptConfig,
    op_state: OpState,
    epochs: TlbEpochs,
    tree_shared: u16,
    tree_exclusive: bool,
    free_tables: TableRef,
    tables_in_use: u32,
    in_flight: [Option<Flight>; F],
    /// Whose calls run next, and so which slot an operation they start takes (not state).
    caller: Caller,
    /// Regions changed since the last [`Snapshot::clear_changes`](crate::snapshot::Snapshot::clear_changes) (not state).
    dirty: Dirty,
    storage: S,
}

impl<S: SeptStorage> Sept<S> {
    /// A TD at build time whose window is all FREE, with [`MAX_IN_FLIGHT`] slots. The storage
    /// is reset; it must hold [`SeptConfig::gigs_needed`] 1G entries and
    /// [`SeptConfig::regions`] regions.
    pub fn new(config: SeptConfig, storage: S) -> Result<Self, SeptError> {
        Self::with_slots(config, storage)
    }
}

impl<S: SeptStorage, const F: usize> Sept<S, F> {
    /// Like [`Sept::new`], with `F` slots for operations in flight (at most [`MAX_SLOTS`]: a
    /// slot is numbered by a byte).
    pub fn with_slots(config: SeptConfig, mut storage: S) -> Result<Self, SeptError> {
        if F > MAX_SLOTS {
            return Err(SeptError::TooManyInFlight);
        }
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
            in_flight: [None; F],
            caller: Caller(None),
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

    /// TDH.MR.FINALIZE: the TD becomes runnable. It takes the TDR exclusively (tdh_mr_finalize.c):
    /// TDX_OPERAND_BUSY | RCX while a SEAMCALL is in flight; then TDX_OP_STATE_INCORRECT if the
    /// TD is runnable already.
    pub fn finalize(&mut self) -> crate::abi::TdxStatus {
        if self.tdr_held(true) {
            return crate::abi::TdxStatus::with_operand(
                crate::abi::StatusCode::OperandBusy,
                crate::abi::OperandId::RCX,
            );
        }
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

    /// TDH.MEM.TRACK (tdh_mem_track.c): advance the epoch, or TDX_PREVIOUS_TLB_EPOCH_BUSY. It
    /// takes the TDR shared: TDX_OPERAND_BUSY | RCX while PAGE.ADD holds it.
    pub fn track(&mut self) -> Result<crate::abi::TdxStatus, SeptError> {
        if self.tdr_held(false) {
            return Ok(crate::abi::TdxStatus::with_operand(
                crate::abi::StatusCode::OperandBusy,
                crate::abi::OperandId::RCX,
            ));
        }
        self.dirty.mark_fields();
        self.epochs.track()
    }

    /// Whether a 2M DEMOTE of the leaf over `gpa` can have its page table: the region's own
    /// content table, or one from the pool. A pool of one table per region never runs out: a
    /// region holds at most one (an S-EPT page table, or the per-page content of its 2M leaf),
    /// SEPT.ADD takes one for a FREE region, which has none, and DEMOTE takes one only for a
    /// leaf without per-page content, handing it to the region if a guest write makes some
    /// while it is in flight.
    pub fn can_demote_2m(&self, gpa: Gpa) -> bool {
        let own = self
            .region_index(gpa)
            .and_then(|r| self.region(r).ok())
            .is_some_and(|r| r.table.index().is_some());
        own || self.has_free_table()
    }

    /// Whether the pool has a free 4K table, or may grow by one (SEPT.ADD needs one).
    pub fn has_free_table(&self) -> bool {
        self.free_tables.index().is_some() || self.storage.can_grow_tables()
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

    /// The storage (read-only).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Operations between their two phases.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.iter().filter(|f| f.is_some()).count()
    }

    /// SEAMCALLs between their two phases (ACCEPTs in flight left out): while one is, KVM's
    /// mirror and the S-EPT may disagree over what it changes.
    pub fn host_ops_in_flight(&self) -> usize {
        self.in_flight
            .iter()
            .filter(|f| matches!(f, Some(Flight::Host { .. })))
            .count()
    }

    /// A free slot for an operation about to start: the caller's own slot when one is set
    /// ([`Sept::set_caller`]), else the first free one.
    pub(crate) fn free_slot(&self) -> Result<usize, SeptError> {
        match self.caller.0 {
            Some(s) => match self.in_flight.get(usize::from(s)) {
                Some(None) => Ok(usize::from(s)),
                _ => Err(SeptError::TooManyInFlight),
            },
            None => self
                .in_flight
                .iter()
                .position(Option::is_none)
                .ok_or(SeptError::TooManyInFlight),
        }
    }

    /// Names who makes the calls that follow: with `Some(s)`, an operation they start holds
    /// slot `s` (below `F`) between its phases; with `None`, the first free
    /// slot. The slot is the model's own bookkeeping for an operation it splits in two (the
    /// module runs each call to its end on the logical processor that made it), so it belongs
    /// to the caller. A world gives each actor its own slot, so the slot an operation holds
    /// does not depend on the order in which actors started theirs: states that differ only
    /// in that order are one state, and steps of different actors commute.
    pub fn set_caller(&mut self, slot: Option<usize>) {
        self.caller = Caller(slot.filter(|&s| s < F).and_then(|s| u8::try_from(s).ok()));
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
}

/// The index of `gpa`'s 4K entry in its table.
pub(crate) const fn page_index(gpa: Gpa) -> usize {
    ((gpa.raw() >> PageLevel::Size4K.shift()) & 0x1FF) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;

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
    fn a_step_that_drops_a_table_without_returning_it_breaks_the_pool_counts() {
        let base = Gpa(0x4000_0000);
        let mut s = two_regions();
        s.arrange(base, PageLevel::Size1G, SeptEntryState::NlMapped)
            .unwrap();
        // A real SEPT.ADD of region 1's 4K table keeps the counts.
        let before = s.clone();
        s.clear_changes();
        let status = s
            .seamcall(host::HostCall::sept_add(
                Gpa(0x4020_0000),
                PageLevel::Size2M,
            ))
            .unwrap();
        assert_eq!(status, crate::abi::TdxStatus::SUCCESS);
        assert_eq!(s.check_changed_consistency(), Ok(()));
        assert_eq!(s.check_pool_step(&before), Ok(()));
        // A step that forgets region 1's table without returning it to the pool: each
        // changed region is consistent on its own, but the pool now counts a table nobody
        // references, which only the step's view of the counts sees.
        let before = s.clone();
        s.clear_changes();
        let region = &mut s.storage.regions_mut()[1];
        region.entry.state = SeptEntryState::Free;
        region.table = TableRef::NONE;
        s.dirty.mark(1);
        assert_eq!(s.check_changed_consistency(), Ok(()));
        assert_eq!(
            s.check_pool_step(&before),
            Err(SeptError::StorageInconsistent)
        );
        assert_eq!(
            s.check_consistency(false),
            Err(SeptError::StorageInconsistent)
        );
    }

    #[test]
    fn the_change_record_says_when_the_modules_own_fields_change() {
        let mut s = two_regions();
        s.clear_changes();
        assert!(!s.small_changed());
        let ticket = s.vcpu_enter().unwrap();
        assert!(s.small_changed());
        // A copy synced by the record takes the fields (the epoch's vCPU count).
        let mut copy = two_regions();
        copy.sync_from(&s);
        assert_eq!(copy, s);
        s.clear_changes();
        s.vcpu_exit(ticket).unwrap();
        assert!(s.small_changed());
        s.clear_changes();
        s.track().unwrap();
        assert!(s.small_changed());
    }
}
