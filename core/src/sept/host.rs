//! The host side: the SEAMCALLs KVM uses to change the Secure EPT, their checks and their
//! locks (what each call then changes is in host_apply.rs).
//!
//! Every call runs the module's checks in the module's order (tdx-module
//! src/vmm_dispatcher/api_calls/tdh_mem_*.c, helpers.c `check_state_map_tdcs_and_lock`,
//! `lock_sept_check_and_walk_private_gpa`, include/auto_gen/sept_state_lookup.c):
//! 0. the TDR lock (`check_lock_and_map_explicit_tdr`): PAGE.ADD takes it exclusively, every
//!    other SEAMCALL shared, so PAGE.ADD and another SEAMCALL in flight at once make the later
//!    one fail with TDX_OPERAND_BUSY | RDX (the TDR's operand) before anything else;
//! 1. op state (TDX_OP_STATE_INCORRECT);
//! 2. the GPA/level operand (TDX_OPERAND_INVALID | RCX);
//! 3. the S-EPT tree lock, shared or exclusive per call (TDX_OPERAND_BUSY | SEPT_TREE);
//! 4. the walk to the requested level (TDX_EPT_WALK_FAILED | RCX);
//! 5. the entry lock, host side: on contention set the host-priority bit and return
//!    TDX_OPERAND_BUSY | RCX; on success clear it (tdx_locks.h `sept_lock_acquire_host`);
//! 6. the state table (TDX_EPT_ENTRY_STATE_INCORRECT | RCX, or the ALREADY_BLOCKED warning);
//! 7. once the TD is runnable, block and TLB tracking for DEMOTE, PROMOTE, PAGE.REMOVE,
//!    SEPT.REMOVE (TDX_GPA_RANGE_NOT_BLOCKED, TDX_TLB_TRACKING_NOT_DONE | RCX) and tracking for
//!    UNBLOCK (TDX_TLB_TRACKING_NOT_DONE | SEPT_TREE);
//! 8. the call's own checks.
//!
//! [`Sept::host_begin`] runs the checks and takes the locks; [`Sept::host_end`] applies the
//! change and releases them. [`Sept::seamcall`] does both.

use crate::abi::{
    ENTRIES_PER_TABLE, Gpa, OperandId, PageLevel, SeamcallLeaf, SeptEntryState, StatusCode,
    TdxStatus,
};

use super::{Content, Flight, Loc, OpState, Sept, SeptError, SeptStorage, TableRef, View};

/// Which SEAMCALL, with the operands only some calls have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostCallKind {
    /// TDH.MEM.PAGE.ADD: build time, 4K, FREE → MAPPED with `content` copied from the source.
    PageAdd {
        /// The source page's content.
        content: Content,
    },
    /// TDH.MEM.SEPT.ADD: link a new table under the FREE entry at the level (2M or 1G).
    SeptAdd,
    /// TDH.MEM.PAGE.AUG: FREE → PENDING (4K or 2M; 1G with the accept-1g profile).
    PageAug,
    /// TDH.MEM.RANGE.BLOCK.
    RangeBlock,
    /// TDH.MEM.RANGE.UNBLOCK.
    RangeUnblock,
    /// TDH.MEM.PAGE.DEMOTE: split the leaf at the level (2M or 1G) into 512 leaves.
    PageDemote,
    /// TDH.MEM.PAGE.PROMOTE: merge the 512 leaves under the table entry at the level.
    PagePromote,
    /// TDH.MEM.PAGE.REMOVE: leaf → FREE.
    PageRemove,
    /// TDH.MEM.SEPT.REMOVE: remove the all-FREE table under the entry at the level.
    SeptRemove,
}

/// A host SEAMCALL on the Secure EPT: which call, and its GPA and level operands (RCX).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostCall {
    /// Which call.
    pub kind: HostCallKind,
    /// The GPA operand.
    pub gpa: Gpa,
    /// The level operand: the level of the entry the call acts on.
    pub level: PageLevel,
}

impl HostCall {
    /// A call.
    pub const fn new(kind: HostCallKind, gpa: Gpa, level: PageLevel) -> Self {
        HostCall { kind, gpa, level }
    }

    /// TDH.MEM.PAGE.ADD with the source page's content.
    pub const fn add(gpa: Gpa, level: PageLevel, content: Content) -> Self {
        Self::new(HostCallKind::PageAdd { content }, gpa, level)
    }

    /// TDH.MEM.SEPT.ADD.
    pub const fn sept_add(gpa: Gpa, level: PageLevel) -> Self {
        Self::new(HostCallKind::SeptAdd, gpa, level)
    }

    /// TDH.MEM.PAGE.AUG.
    pub const fn aug(gpa: Gpa, level: PageLevel) -> Self {
        Self::new(HostCallKind::PageAug, gpa, level)
    }

    /// TDH.MEM.RANGE.BLOCK.
    pub const fn block(gpa: Gpa, level: PageLevel) -> Self {
        Self::new(HostCallKind::RangeBlock, gpa, level)
    }

    /// TDH.MEM.RANGE.UNBLOCK.
    pub const fn unblock(gpa: Gpa, level: PageLevel) -> Self {
        Self::new(HostCallKind::RangeUnblock, gpa, level)
    }

    /// TDH.MEM.PAGE.DEMOTE.
    pub const fn demote(gpa: Gpa, level: PageLevel) -> Self {
        Self::new(HostCallKind::PageDemote, gpa, level)
    }

    /// TDH.MEM.PAGE.PROMOTE.
    pub const fn promote(gpa: Gpa, level: PageLevel) -> Self {
        Self::new(HostCallKind::PagePromote, gpa, level)
    }

    /// TDH.MEM.PAGE.REMOVE.
    pub const fn remove(gpa: Gpa, level: PageLevel) -> Self {
        Self::new(HostCallKind::PageRemove, gpa, level)
    }

    /// TDH.MEM.SEPT.REMOVE.
    pub const fn sept_remove(gpa: Gpa, level: PageLevel) -> Self {
        Self::new(HostCallKind::SeptRemove, gpa, level)
    }

    /// The SEAMCALL leaf.
    pub const fn leaf(&self) -> SeamcallLeaf {
        match self.kind {
            HostCallKind::PageAdd { .. } => SeamcallLeaf::MemPageAdd,
            HostCallKind::SeptAdd => SeamcallLeaf::MemSeptAdd,
            HostCallKind::PageAug => SeamcallLeaf::MemPageAug,
            HostCallKind::RangeBlock => SeamcallLeaf::MemRangeBlock,
            HostCallKind::RangeUnblock => SeamcallLeaf::MemRangeUnblock,
            HostCallKind::PageDemote => SeamcallLeaf::MemPageDemote,
            HostCallKind::PagePromote => SeamcallLeaf::MemPagePromote,
            HostCallKind::PageRemove => SeamcallLeaf::MemPageRemove,
            HostCallKind::SeptRemove => SeamcallLeaf::MemSeptRemove,
        }
    }

    /// Whether the call takes the S-EPT tree lock exclusively (RANGE.BLOCK, RANGE.UNBLOCK,
    /// SEPT.REMOVE) or shared (per
    /// <https://lore.kernel.org/all/aC6fmIuKgDYHcaLp@yzhao56-desk.sh.intel.com/>). PAGE.ADD
    /// takes no tree lock: it holds the TDR exclusively, which excludes every other SEAMCALL
    /// (tdh_mem_page_add.c: "SEPT tree is implicitly locked in exclusive mode").
    pub const fn tree_exclusive(&self) -> bool {
        matches!(
            self.kind,
            HostCallKind::RangeBlock | HostCallKind::RangeUnblock | HostCallKind::SeptRemove
        )
    }

    /// Whether the call holds the TDR exclusively (PAGE.ADD) rather than shared.
    pub const fn tdr_exclusive(&self) -> bool {
        matches!(self.kind, HostCallKind::PageAdd { .. })
    }

    /// The levels the module accepts for this call.
    fn level_allowed(&self, accept_1g: bool) -> bool {
        let l = self.level;
        match self.kind {
            HostCallKind::PageAdd { .. } => l == PageLevel::Size4K,
            HostCallKind::PageAug => l != PageLevel::Size1G || accept_1g,
            HostCallKind::SeptAdd
            | HostCallKind::PageDemote
            | HostCallKind::PagePromote
            | HostCallKind::SeptRemove => l != PageLevel::Size4K,
            HostCallKind::RangeBlock | HostCallKind::RangeUnblock | HostCallKind::PageRemove => {
                true
            }
        }
    }

    /// The entry states the call may find (sept_state_lookup.c, non-migration subset).
    fn state_allowed(&self, s: SeptEntryState) -> bool {
        use SeptEntryState as St;
        match self.kind {
            HostCallKind::PageAdd { .. } | HostCallKind::SeptAdd | HostCallKind::PageAug => {
                s == St::Free
            }
            HostCallKind::RangeBlock => matches!(s, St::NlMapped | St::Mapped | St::Pending),
            HostCallKind::RangeUnblock => s.is_blocked(),
            HostCallKind::PageDemote | HostCallKind::PageRemove => s.is_leaf(),
            HostCallKind::PagePromote | HostCallKind::SeptRemove => s.is_table(),
        }
    }

    /// Check 6, the state table: the entry state the call found, if it may not find it, as
    /// TDX_EPT_ENTRY_STATE_INCORRECT (RANGE.BLOCK of a blocked entry: the ALREADY_BLOCKED
    /// warning).
    #[inline(always)]
    fn check_state(&self, s: SeptEntryState) -> Option<TdxStatus> {
        if self.state_allowed(s) {
            return None;
        }
        if matches!(self.kind, HostCallKind::RangeBlock) && s.is_blocked() {
            return Some(rcx(StatusCode::GpaRangeAlreadyBlocked));
        }
        Some(rcx(StatusCode::EptEntryStateIncorrect))
    }
}

/// A SEAMCALL that has passed its checks and holds its locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostOp {
    slot: u8,
    call: HostCall,
}

impl HostOp {
    /// The call in flight.
    pub fn call(&self) -> HostCall {
        self.call
    }
}

/// The first phase of a SEAMCALL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostStart {
    /// The call completed without changing the tree (an error or a warning).
    Done(TdxStatus),
    /// The call holds its locks; [`Sept::host_end`] completes it.
    Started(HostOp),
}

fn rcx(code: StatusCode) -> TdxStatus {
    TdxStatus::with_operand(code, OperandId::RCX)
}

impl<S: SeptStorage, const F: usize> Sept<S, F> {
    /// A SEAMCALL, first phase: checks in the module's order, then the locks.
    pub fn host_begin(&mut self, call: HostCall) -> Result<HostStart, SeptError> {
        // The model's own bound, before anything changes.
        let slot = self.free_slot()?;
        let slot_id = u8::try_from(slot).map_err(|_| SeptError::TooManyInFlight)?;
        // 1.–3. Op state, operand, tree lock.
        if let Some(s) = self.check_call(call) {
            return Ok(HostStart::Done(s));
        }
        // 4. Walk.
        let stop = self.walk(call.gpa, call.level)?;
        if !stop.reached {
            return Ok(HostStart::Done(rcx(StatusCode::EptWalkFailed)));
        }
        let loc = stop.loc.ok_or(SeptError::OutsideModel)?;
        let v = stop.view;
        // 5. Entry lock (PAGE.ADD holds the TDR exclusively instead).
        if !matches!(call.kind, HostCallKind::PageAdd { .. })
            && let Some(s) = self.check_entry_lock_host(loc, v)?
        {
            return Ok(HostStart::Done(s));
        }
        // 6. State.
        if let Some(s) = call.check_state(v.state) {
            return Ok(HostStart::Done(s));
        }
        // 7. Block and TLB tracking, once runnable.
        if self.op_state == OpState::Runnable
            && let Some(s) = self.check_block_and_tracking(call, v)
        {
            return Ok(HostStart::Done(s));
        }
        // 8. The call's own checks.
        if let Some(s) = self.check_call_own(call, loc)? {
            return Ok(HostStart::Done(s));
        }
        let table = self.reserve_table(call, loc)?;
        self.take_host_locks(call, loc)?;
        self.set_flight(slot, Some(Flight::Host { call, loc, table }))?;
        Ok(HostStart::Started(HostOp {
            slot: slot_id,
            call,
        }))
    }

    /// Checks 0 to 3, before the walk: the TDR lock, the op state, the GPA/level operand, the
    /// S-EPT tree lock.
    #[inline(always)]
    fn check_call(&self, call: HostCall) -> Option<TdxStatus> {
        // 0. The TDR lock.
        if self.tdr_held(call.tdr_exclusive()) {
            return Some(TdxStatus::with_operand(
                StatusCode::OperandBusy,
                OperandId::RDX,
            ));
        }
        // 1. Op state: PAGE.ADD only at build time; the others in both op states modelled.
        if matches!(call.kind, HostCallKind::PageAdd { .. }) && self.op_state != OpState::BuildTime
        {
            return Some(TdxStatus::new(StatusCode::OpStateIncorrect, 0));
        }
        // 2. Operand.
        let gpa = call.gpa;
        if !call.level_allowed(self.config.profile.accept_1g)
            || !gpa.is_aligned(call.level)
            || !gpa.is_within(self.config.gpaw)
            || gpa.is_shared(self.config.gpaw)
        {
            return Some(rcx(StatusCode::OperandInvalid));
        }
        // 3. Tree lock (PAGE.ADD's TDR excludes every holder already).
        if !call.tdr_exclusive()
            && (self.tree_exclusive || (call.tree_exclusive() && self.tree_shared > 0))
        {
            return Some(TdxStatus::with_operand(
                StatusCode::OperandBusy,
                OperandId::SEPT_TREE,
            ));
        }
        None
    }

    /// Check 5, the entry lock, host side (tdx_locks.h `sept_lock_acquire_host`): a held lock
    /// gets the host-priority bit and the call returns BUSY; otherwise the bit clears.
    #[inline(always)]
    fn check_entry_lock_host(&mut self, loc: Loc, v: View) -> Result<Option<TdxStatus>, SeptError> {
        if v.lock.is_locked() {
            self.store(
                loc,
                View {
                    lock: v.lock.with_host_priority(true),
                    ..v
                },
            )?;
            return Ok(Some(rcx(StatusCode::OperandBusy)));
        }
        // A successful host acquire clears the host-priority bit, whatever follows.
        self.store(
            loc,
            View {
                lock: v.lock.with_host_priority(false),
                ..v
            },
        )?;
        Ok(None)
    }

    /// Check 7, once the TD is runnable: DEMOTE, PROMOTE, PAGE.REMOVE and SEPT.REMOVE need the
    /// entry blocked and its blocking epoch tracked; UNBLOCK needs the epoch tracked.
    #[inline(always)]
    fn check_block_and_tracking(&self, call: HostCall, v: View) -> Option<TdxStatus> {
        let needs_block = match call.kind {
            HostCallKind::PagePromote | HostCallKind::PageRemove | HostCallKind::SeptRemove => true,
            // The non-blocking-resize proposal lets an unblocked leaf be demoted.
            HostCallKind::PageDemote => {
                !self.config.profile.non_blocking_resize || v.state.is_blocked()
            }
            _ => false,
        };
        if needs_block {
            if !v.state.is_blocked() {
                return Some(rcx(StatusCode::GpaRangeNotBlocked));
            }
            if !self.epochs.is_tracked(v.bepoch) {
                return Some(rcx(StatusCode::TlbTrackingNotDone));
            }
        }
        if matches!(call.kind, HostCallKind::RangeUnblock) && !self.epochs.is_tracked(v.bepoch) {
            return Some(TdxStatus::with_operand(
                StatusCode::TlbTrackingNotDone,
                OperandId::SEPT_TREE,
            ));
        }
        None
    }

    /// Check 8, the call's own: SEPT.REMOVE's all-FREE table, PROMOTE's children (locked on
    /// success), a 1G AUG or DEMOTE wholly inside the model.
    #[inline(always)]
    fn check_call_own(&mut self, call: HostCall, loc: Loc) -> Result<Option<TdxStatus>, SeptError> {
        match call.kind {
            HostCallKind::SeptRemove if !self.children_all_free(loc)? => {
                return Ok(Some(rcx(StatusCode::EptPageNotFree)));
            }
            HostCallKind::PagePromote => {
                if let Some(status) = self.promote_check_and_lock(loc)? {
                    return Ok(Some(status));
                }
            }
            HostCallKind::PageAug | HostCallKind::PageDemote if call.level == PageLevel::Size1G => {
                // A 1G leaf must lie wholly in the model.
                if let Loc::Gig(g) = loc
                    && !self.gig_fully_modelled(g)
                {
                    return Err(SeptError::OutsideModel);
                }
            }
            _ => {}
        }
        Ok(None)
    }

    /// The table a call that passed its checks takes from the pool, if it needs one.
    #[inline(always)]
    fn reserve_table(&mut self, call: HostCall, loc: Loc) -> Result<TableRef, SeptError> {
        // Take a table from the pool where the call needs one (KVM allocates the S-EPT page
        // before the SEAMCALL; running out is KVM's allocation failure, not a module status):
        // SEPT.ADD always (a FREE region holds none); DEMOTE at 2M only for a leaf without
        // per-page content (with it, its content table becomes the page table). A guest may
        // still write the leaf while the DEMOTE is in flight (non-blocking resize, build
        // time): a 4K write then makes the reserved table the region's content table, and a
        // 2M write may give the region's back (`set_page_content`, `apply_demote`), so a
        // region never holds two.
        let needs = match (call.kind, loc) {
            (HostCallKind::SeptAdd, Loc::Region(_)) => true,
            (HostCallKind::PageDemote, Loc::Region(r)) => self.region(r)?.table.index().is_none(),
            _ => false,
        };
        match loc {
            Loc::Region(r) if needs => Ok(TableRef::to(self.alloc_table(r)?)),
            _ => Ok(TableRef::NONE),
        }
    }

    /// The table a 2M DEMOTE in flight on region `r` reserved, handed over (the flight keeps
    /// none): a guest write gives the leaf per-page content while the DEMOTE is in flight.
    pub(super) fn take_demote_reservation(&mut self, r: usize) -> Result<Option<usize>, SeptError> {
        let slot = self.in_flight.iter().position(|f| {
            matches!(f, Some(Flight::Host { call, loc: Loc::Region(x), table })
                if matches!(call.kind, HostCallKind::PageDemote) && *x == r && table.index().is_some())
        });
        let Some(k) = slot else {
            return Ok(None);
        };
        let Some(Flight::Host { call, loc, table }) = self.in_flight.get(k).copied().flatten()
        else {
            return Ok(None);
        };
        self.set_flight(
            k,
            Some(Flight::Host {
                call,
                loc,
                table: TableRef::NONE,
            }),
        )?;
        Ok(table.index())
    }

    /// Takes the locks of a call that passed its checks: the tree lock in the call's mode and
    /// the entry lock (PAGE.ADD holds the TDR exclusively instead).
    #[inline(always)]
    fn take_host_locks(&mut self, call: HostCall, loc: Loc) -> Result<(), SeptError> {
        self.dirty.mark_fields();
        // The TDR is held by being in flight (`tdr_held` reads the slots); PAGE.ADD takes
        // no tree lock.
        if call.tree_exclusive() {
            self.tree_exclusive = true;
        } else if !call.tdr_exclusive() {
            // At most MAX_IN_FLIGHT holders.
            self.tree_shared = self.tree_shared.saturating_add(1);
        }
        if !matches!(call.kind, HostCallKind::PageAdd { .. }) {
            let v = self.load(loc)?;
            self.store(
                loc,
                View {
                    lock: v.lock.with_locked(true),
                    ..v
                },
            )?;
        }
        Ok(())
    }

    /// A SEAMCALL, second phase: apply and unlock. `interrupted` says an interrupt became
    /// pending meanwhile: DEMOTE on a module without demote interruptibility, and PROMOTE, then
    /// return TDX_INTERRUPTED_RESTARTABLE and change nothing. A token that names no operation in
    /// flight is [`SeptError::StaleOperation`] and changes nothing.
    pub fn host_end(&mut self, op: HostOp, interrupted: bool) -> Result<TdxStatus, SeptError> {
        let (loc, table) = match self.flight(op.slot) {
            Some(Flight::Host { call, loc, table }) if call == op.call => (loc, table),
            _ => return Err(SeptError::StaleOperation),
        };
        self.set_flight(usize::from(op.slot), None)?;
        let v = self.load(loc)?;
        let abort = interrupted
            && match op.call.kind {
                HostCallKind::PageDemote => !self.config.profile.demote_interruptibility,
                HostCallKind::PagePromote => true,
                _ => false,
            };
        let result = if abort {
            self.abort_host(op.call, loc, table, v)
                .map(|()| TdxStatus::new(StatusCode::InterruptedRestartable, 0))
        } else {
            match self.apply(op.call, loc, table, v) {
                Ok(()) => Ok(TdxStatus::SUCCESS),
                Err(e) => {
                    // Release what the call held even though the model failed.
                    let _ = self.abort_host(op.call, loc, TableRef::NONE, v);
                    Err(e)
                }
            }
        };
        self.dirty.mark_fields();
        if op.call.tree_exclusive() {
            self.tree_exclusive = false;
        } else if !op.call.tdr_exclusive() {
            self.tree_shared = self.tree_shared.saturating_sub(1);
        }
        result
    }

    /// Undoes what `host_begin` took: the table, PROMOTE's child locks, the entry lock.
    fn abort_host(
        &mut self,
        call: HostCall,
        loc: Loc,
        table: TableRef,
        v: View,
    ) -> Result<(), SeptError> {
        if let Some(t) = table.index() {
            self.free_table(t)?;
        }
        if matches!(call.kind, HostCallKind::PagePromote) {
            self.unlock_children(loc, usize::MAX)?;
        }
        self.store(
            loc,
            View {
                lock: v.lock.with_locked(false),
                ..v
            },
        )
    }

    /// Whether a SEAMCALL in flight holds the TDR so that a new one taking it `exclusive`ly
    /// (or shared, when `exclusive` is false) cannot: any holder excludes an exclusive taker,
    /// an exclusive holder (PAGE.ADD) excludes everyone.
    pub(crate) fn tdr_held(&self, exclusive: bool) -> bool {
        self.in_flight.iter().flatten().any(|f| match f {
            Flight::Host { call, .. } => exclusive || call.tdr_exclusive(),
            Flight::Accept { .. } => false,
        })
    }

    /// A SEAMCALL with nothing interleaved: both phases.
    pub fn seamcall(&mut self, call: HostCall) -> Result<TdxStatus, SeptError> {
        match self.host_begin(call)? {
            HostStart::Done(s) => Ok(s),
            HostStart::Started(op) => self.host_end(op, false),
        }
    }

    fn children_all_free(&self, loc: Loc) -> Result<bool, SeptError> {
        match loc {
            Loc::Region(r) => {
                let t = self
                    .region(r)?
                    .table
                    .index()
                    .ok_or(SeptError::StorageInconsistent)?;
                Ok(self
                    .table(t)?
                    .entries
                    .iter()
                    .all(|e| e.state == SeptEntryState::Free))
            }
            Loc::Gig(g) => {
                for r in self.regions_of_gig(g) {
                    if self.load(Loc::Region(r))?.state != SeptEntryState::Free {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Loc::Page { .. } => Err(SeptError::StorageInconsistent),
        }
    }

    /// `is_sept_page_valid_for_merge` (tdh_mem_page_promote.c), child by child: host-lock the
    /// child (held: set its HP bit, release the children locked so far, TDX_OPERAND_BUSY | RCX;
    /// acquired: its HP bit clears), then check it — child 0 MAPPED or PENDING, every other child
    /// identical to child 0 — else release and TDX_EPT_INVALID_PROMOTE_CONDITIONS | RCX. On
    /// success all 512 children stay locked until [`Sept::host_end`].
    fn promote_check_and_lock(&mut self, loc: Loc) -> Result<Option<TdxStatus>, SeptError> {
        let children = self.child_locs(loc)?;
        let mut first: Option<SeptEntryState> = None;
        let mut locked = 0usize;
        let mut failure = None;
        for c in children.iter() {
            let v = self.load(c)?;
            if v.lock.is_locked() {
                self.store(
                    c,
                    View {
                        lock: v.lock.with_host_priority(true),
                        ..v
                    },
                )?;
                failure = Some(StatusCode::OperandBusy);
                break;
            }
            self.store(
                c,
                View {
                    lock: v.lock.with_locked(true).with_host_priority(false),
                    ..v
                },
            )?;
            locked = locked.saturating_add(1);
            let ok = match first {
                None => matches!(v.state, SeptEntryState::Mapped | SeptEntryState::Pending),
                Some(s) => s == v.state,
            };
            first.get_or_insert(v.state);
            if !ok {
                failure = Some(StatusCode::EptInvalidPromoteConditions);
                break;
            }
        }
        if failure.is_none() && locked != ENTRIES_PER_TABLE as usize {
            // A 1G range the window does not wholly cover cannot be merged in the model.
            failure = Some(StatusCode::EptInvalidPromoteConditions);
        }
        match failure {
            None => Ok(None),
            Some(code) => {
                self.unlock_children(loc, locked)?;
                Ok(Some(rcx(code)))
            }
        }
    }

    /// Releases the first `n` children's locks.
    fn unlock_children(&mut self, loc: Loc, n: usize) -> Result<(), SeptError> {
        let children = self.child_locs(loc)?;
        for c in children.iter().take(n) {
            let v = self.load(c)?;
            self.store(
                c,
                View {
                    lock: v.lock.with_locked(false),
                    ..v
                },
            )?;
        }
        Ok(())
    }

    fn child_locs(&self, loc: Loc) -> Result<Children, SeptError> {
        match loc {
            Loc::Region(r) => {
                let t = self
                    .region(r)?
                    .table
                    .index()
                    .ok_or(SeptError::StorageInconsistent)?;
                Ok(Children::Pages {
                    region: r,
                    table: t,
                })
            }
            Loc::Gig(g) => Ok(Children::Regions(self.regions_of_gig(g))),
            Loc::Page { .. } => Err(SeptError::StorageInconsistent),
        }
    }
}

/// The 512 child entries of a table entry.
enum Children {
    Pages { region: usize, table: usize },
    Regions(core::ops::Range<usize>),
}

impl Children {
    fn iter(&self) -> impl Iterator<Item = Loc> + '_ {
        let (pages, regions) = match self {
            Children::Pages { region, table } => (
                Some((0..ENTRIES_PER_TABLE as usize).map(move |index| Loc::Page {
                    region: *region,
                    table: *table,
                    index,
                })),
                None,
            ),
            Children::Regions(range) => (None, Some(range.clone().map(Loc::Region))),
        };
        pages
            .into_iter()
            .flatten()
            .chain(regions.into_iter().flatten())
    }
}
