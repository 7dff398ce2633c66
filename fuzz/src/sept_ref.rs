//! A deliberately simple reference model of the TDX module's Secure EPT, for the `sept_ops`
//! target's differential check of `hugesept_core::sept`.
//!
//! It is written from shared/reference/tdx-module.md and the module source it cites (tag
//! TDX_1.5.01: tdg_mem_page_accept.c, tdh_mem_*.c, tdx_locks.h, helpers.c), not from the
//! core's code, and it keeps its state in the plainest form there is: **every 4K page of the
//! window carries the whole chain of entries above it** — the 1G entry, the 2M entry and the 4K
//! entry that cover it, each `None` where its parent is not a table — and its own content. An
//! entry of a larger level is therefore stored 512 or 262,144 times, and writing it means
//! writing every copy; a walk is a read of one page's chain. Nothing is shared, pooled, digested
//! or tracked for change, so the core's storage tricks (tables from a pool, per-region content,
//! digests, change records) have nothing to hide behind.
//!
//! Statuses are built as raw 64-bit values from the module's error-code table
//! (include/auto_gen/tdx_error_codes_defs.h), exits as raw exit-qualification and extended
//! exit-qualification words (td_other_exits.c), so the comparison is of what a VMM or a guest
//! would read in its registers.
//!
//! What the module does that the reference follows and the core's doc table does not spell
//! out: PAGE.ADD holds the TDR lock exclusively and every other SEAMCALL holds it shared
//! (`check_lock_and_map_explicit_tdr`, TDX_LOCK_EXCLUSIVE in tdh_mem_page_add.c, shared
//! elsewhere), so PAGE.ADD and any other SEAMCALL in flight at once make the later one fail
//! with TDX_OPERAND_BUSY | RDX (the TDR operand), before any other check; TDH.MEM.TRACK takes
//! it shared and TDH.MR.FINALIZE exclusively (their TDR operand is RCX).

use hugesept_core::abi::SeptEntryState as St;

/// The window's first GPA: 1 GiB, so the window is the start of one 1G entry.
pub const BASE: u64 = 0x4000_0000;
/// 2M regions in the window.
pub const REGIONS: usize = 4;
/// 4K pages in the window.
pub const PAGES: usize = REGIONS * 512;
/// The 1G entry's first GPA (the window's).
pub const GIG: u64 = BASE;

/// TDX S-EPT levels: 0 = 4K, 1 = 2M, 2 = 1G (tdx-module.md, "Levels and operands").
pub type Level = usize;
/// 4K.
pub const L4K: Level = 0;
/// 2M.
pub const L2M: Level = 1;
/// 1G.
pub const L1G: Level = 2;

/// Bytes covered by an entry of `level`.
pub const fn size(level: Level) -> u64 {
    1u64 << (12 + 9 * level)
}

// Status codes (bits 63:32) and operand ids, from tdx_error_codes_defs.h.
const SUCCESS: u64 = 0;
const OPERAND_INVALID: u64 = 0xC000_0100;
const OPERAND_BUSY: u64 = 0x8000_0200;
const OP_STATE_INCORRECT: u64 = 0xC000_0608;
const EPT_WALK_FAILED: u64 = 0xC000_0B00;
const GPA_RANGE_NOT_BLOCKED: u64 = 0xC000_0B06;
const GPA_RANGE_ALREADY_BLOCKED: u64 = 0x0000_0B07;
const TLB_TRACKING_NOT_DONE: u64 = 0xC000_0B08;
const EPT_INVALID_PROMOTE_CONDITIONS: u64 = 0xC000_0B09;
const PAGE_ALREADY_ACCEPTED: u64 = 0x0000_0B0A;
const PAGE_SIZE_MISMATCH: u64 = 0xC000_0B0B;
const EPT_ENTRY_STATE_INCORRECT: u64 = 0xC000_0B0D;
const EPT_PAGE_NOT_FREE: u64 = 0xC000_0B0E;
const PREVIOUS_TLB_EPOCH_BUSY: u64 = 0x8000_0201;
const INTERRUPTED_RESTARTABLE: u64 = 0x8000_0004;
const OPERAND_RCX: u64 = 1;
const OPERAND_RDX: u64 = 2;
const OPERAND_SEPT_TREE: u64 = 0x92;

/// A status word: code in bits 63:32, operand id or level below.
pub const fn status(code: u64, detail: u64) -> u64 {
    (code << 32) | detail
}

/// The public state code the module reports (sept_state_lookup.h).
fn public_code(s: St) -> u64 {
    match s {
        St::Free => 0,
        St::Blocked => 1,
        St::Pending => 2,
        St::PendingBlocked => 3,
        St::Mapped => 4,
        St::NlMapped => 0x84,
        St::NlBlocked => 0x81,
    }
}

fn is_leaf(s: St) -> bool {
    matches!(
        s,
        St::Mapped | St::Blocked | St::Pending | St::PendingBlocked
    )
}

fn is_table(s: St) -> bool {
    matches!(s, St::NlMapped | St::NlBlocked)
}

fn is_blocked(s: St) -> bool {
    matches!(s, St::NlBlocked | St::Blocked | St::PendingBlocked)
}

/// RANGE.BLOCK's change (tdx-module.md, "Host SEAMCALLs").
fn block_of(s: St) -> Option<St> {
    match s {
        St::NlMapped => Some(St::NlBlocked),
        St::Mapped => Some(St::Blocked),
        St::Pending => Some(St::PendingBlocked),
        _ => None,
    }
}

/// RANGE.UNBLOCK's change, and the state DEMOTE gives the children.
fn unblock_of(s: St) -> St {
    match s {
        St::NlBlocked => St::NlMapped,
        St::Blocked => St::Mapped,
        St::PendingBlocked => St::Pending,
        other => other,
    }
}

/// One S-EPT entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its state.
    pub state: St,
    /// The entry lock (TDEL).
    pub locked: bool,
    /// The host-priority bit (TDHP).
    pub hp: bool,
    /// The TD epoch it was blocked in; 0 in an entry that is not blocked.
    pub bepoch: u64,
    /// A 2M ACCEPT's progress; 0 but in a PENDING entry an interrupted ACCEPT left (RANGE.BLOCK,
    /// DEMOTE, PROMOTE and REMOVE reset it: `sept_cleanup_if_pending`).
    pub counter: u32,
}

impl Entry {
    /// A fresh entry in `state`: unlocked, no host priority, no epoch, no progress.
    pub const fn fresh(state: St) -> Entry {
        Entry {
            state,
            locked: false,
            hp: false,
            bepoch: 0,
            counter: 0,
        }
    }
}

/// Content of a 4K page: 0 none, 1 zeroed, n + 2 data tag n (the core's `Content` raw form).
pub type Content = u16;
/// No content.
pub const NONE: Content = 0;
/// Zeroed by ACCEPT.
pub const ZERO: Content = 1;

#[derive(Clone, Copy, Debug)]
struct Page {
    /// The entries covering this page, by level (index 0 = 4K, 1 = 2M, 2 = 1G); `None` where
    /// the level above is not a table.
    chain: [Option<Entry>; 3],
    content: Content,
}

/// The module profile (the proposals the core's profiles name).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    /// ACCEPT smaller than a PENDING leaf returns SIZE_MISMATCH instead of exiting.
    pub explicit_demotion: bool,
    /// DEMOTE of an unblocked leaf is allowed once runnable.
    pub non_blocking_resize: bool,
    /// 1G AUG and ACCEPT.
    pub accept_1g: bool,
    /// DEMOTE is not restarted by a pending interrupt (TDX_FEATURES0 bit 51).
    pub demote_interruptibility: bool,
}

/// A host SEAMCALL's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// TDH.MEM.PAGE.ADD with the source page's content.
    PageAdd(Content),
    /// TDH.MEM.SEPT.ADD.
    SeptAdd,
    /// TDH.MEM.PAGE.AUG.
    PageAug,
    /// TDH.MEM.RANGE.BLOCK.
    RangeBlock,
    /// TDH.MEM.RANGE.UNBLOCK.
    RangeUnblock,
    /// TDH.MEM.PAGE.DEMOTE.
    PageDemote,
    /// TDH.MEM.PAGE.PROMOTE.
    PagePromote,
    /// TDH.MEM.PAGE.REMOVE.
    PageRemove,
    /// TDH.MEM.SEPT.REMOVE.
    SeptRemove,
}

/// What a guest sees of an ACCEPT, or what its exit tells the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptEnd {
    /// Retired with this status.
    Status(u64),
    /// EPT-violation exit: exit qualification, extended exit qualification, GPA.
    Exit(u64, u64, u64),
    /// Not retired: interrupted with progress kept.
    Interrupted,
}

/// The first phase of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start<T> {
    /// Ended at once.
    Done(T),
    /// In flight, with this id; `zeroing` for an ACCEPT of a PENDING entry.
    Started {
        /// The id `finish_*` takes.
        id: usize,
        /// An ACCEPT that zeroes (else one that reads the entry under its lock).
        zeroing: bool,
    },
    /// Beyond what a window-sized model holds (a 1G leaf over memory outside the window).
    Capacity,
}

/// What a guest access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Happened; the page's content (after a write, the new one).
    Done(Content),
    /// #VE for a PENDING page.
    Ve,
    /// EPT-violation exit: exit qualification, extended exit qualification, GPA.
    Exit(u64, u64, u64),
}

#[derive(Clone, Copy, Debug)]
enum Flight {
    Accept { gpa: u64, level: Level },
    Host { call: Call, gpa: u64, level: Level },
}

/// Where a walk stopped.
#[derive(Clone, Copy, Debug)]
struct Stop {
    level: Level,
    entry: Entry,
    reached: bool,
}

/// The reference Secure EPT.
#[derive(Clone, Debug)]
pub struct RefSept {
    pages: Vec<Page>,
    /// TDX_PROFILE.
    pub profile: Profile,
    /// SEPT_VE_DISABLE.
    pub ve_disable: bool,
    /// The TD is runnable (finalized).
    pub runnable: bool,
    epoch: u64,
    /// vCPUs inside the guest, by the epoch they entered in.
    inside: Vec<u64>,
    tree_shared: u32,
    tree_exclusive: bool,
    tdr_shared: u32,
    tdr_exclusive: bool,
    flights: Vec<Option<Flight>>,
}

impl RefSept {
    /// A TD at build time whose memory is all FREE (no 1G entry present).
    pub fn new(profile: Profile, ve_disable: bool) -> RefSept {
        let free = Page {
            chain: [None, None, Some(Entry::fresh(St::Free))],
            content: NONE,
        };
        RefSept {
            pages: vec![free; PAGES],
            profile,
            ve_disable,
            runnable: false,
            epoch: 1,
            inside: Vec::new(),
            tree_shared: 0,
            tree_exclusive: false,
            tdr_shared: 0,
            tdr_exclusive: false,
            flights: Vec::new(),
        }
    }

    fn page_index(gpa: u64) -> Option<usize> {
        let off = gpa.checked_sub(BASE)?;
        let i = usize::try_from(off >> 12).ok()?;
        (i < PAGES).then_some(i)
    }

    /// The entry at `level` over `gpa`, as a structure (through blocked tables too); `None`
    /// where the level above is not a table. Outside the window: the 1G entry over it if it is
    /// the window's, a FREE 2M entry under a table 1G entry, nothing below that; beyond the
    /// window's 1G entry, a FREE 1G entry.
    pub fn entry(&self, gpa: u64, level: Level) -> Option<Entry> {
        if let Some(i) = Self::page_index(gpa) {
            return self.pages[i].chain[level];
        }
        let in_gig = gpa >= GIG && gpa - GIG < size(L1G);
        let gig = self.pages[0].chain[L1G];
        match level {
            L1G if in_gig => gig,
            L1G => Some(Entry::fresh(St::Free)),
            L2M if in_gig && gig.is_some_and(|g| is_table(g.state)) => Some(Entry::fresh(St::Free)),
            _ => None,
        }
    }

    /// The content of the 4K page at `gpa` in the window.
    pub fn content(&self, gpa: u64) -> Option<Content> {
        Self::page_index(gpa).map(|i| self.pages[i].content)
    }

    /// Writes the entry at `level` over `gpa` into every page it covers.
    fn set_entry(&mut self, gpa: u64, level: Level, e: Option<Entry>) {
        let start = gpa & !(size(level) - 1);
        for p in self.pages_of(start, level) {
            self.pages[p].chain[level] = e;
        }
    }

    /// Changes the entry at `level` over `gpa` in place.
    fn update(&mut self, gpa: u64, level: Level, f: impl Fn(&mut Entry)) {
        let start = gpa & !(size(level) - 1);
        for p in self.pages_of(start, level) {
            if let Some(e) = self.pages[p].chain[level].as_mut() {
                f(e);
            }
        }
    }

    /// The window's pages in the `level`-sized range from `start`.
    fn pages_of(&self, start: u64, level: Level) -> std::ops::Range<usize> {
        let first = start.saturating_sub(BASE) >> 12;
        let end = (start + size(level)).saturating_sub(BASE) >> 12;
        let clamp = |v: u64| usize::try_from(v).unwrap_or(PAGES).min(PAGES);
        if start + size(level) <= BASE {
            return 0..0;
        }
        clamp(first)..clamp(end)
    }

    /// secure_ept_walk: from 1G down; stops at the requested level whatever the entry holds,
    /// or earlier at any entry that is not NL_MAPPED (tdx-module.md, "ACCEPT").
    fn walk(&self, gpa: u64, target: Level) -> Stop {
        let mut level = L1G;
        loop {
            let entry = self.entry(gpa, level).unwrap_or(Entry::fresh(St::Free));
            if level == target {
                return Stop {
                    level,
                    entry,
                    reached: true,
                };
            }
            if entry.state != St::NlMapped || level == L4K {
                return Stop {
                    level,
                    entry,
                    reached: false,
                };
            }
            level -= 1;
        }
    }

    // ----- epochs (tdh_mem_track.c, helpers.h is_tlb_tracked) -----

    /// TDH.VP.ENTER: the epoch the vCPU entered in.
    pub fn vcpu_enter(&mut self) -> u64 {
        self.inside.push(self.epoch);
        self.epoch
    }

    /// A TD exit of a vCPU that entered in `epoch`.
    pub fn vcpu_exit(&mut self, epoch: u64) {
        if let Some(k) = self.inside.iter().position(|&e| e == epoch) {
            self.inside.swap_remove(k);
        }
    }

    /// TDH.MEM.TRACK: it takes the TDR shared (tdh_mem_track.c, operand RCX).
    pub fn track(&mut self) -> u64 {
        if self.tdr_exclusive {
            return status(OPERAND_BUSY, OPERAND_RCX);
        }
        let previous = self.epoch - 1;
        if self.inside.contains(&previous) {
            return status(PREVIOUS_TLB_EPOCH_BUSY, 0);
        }
        self.epoch += 1;
        SUCCESS
    }

    fn tracked(&self, bepoch: u64) -> bool {
        let previous = self.epoch - 1;
        bepoch < previous || (bepoch == previous && !self.inside.contains(&bepoch))
    }

    /// TDH.MR.FINALIZE: it takes the TDR exclusively (tdh_mr_finalize.c, operand RCX).
    pub fn finalize(&mut self) -> u64 {
        if self.tdr_exclusive || self.tdr_shared > 0 {
            return status(OPERAND_BUSY, OPERAND_RCX);
        }
        if self.runnable {
            return status(OP_STATE_INCORRECT, 0);
        }
        self.runnable = true;
        SUCCESS
    }

    fn new_flight(&mut self, f: Flight) -> usize {
        if let Some(k) = self.flights.iter().position(Option::is_none) {
            self.flights[k] = Some(f);
            k
        } else {
            self.flights.push(Some(f));
            self.flights.len() - 1
        }
    }

    /// Operations in flight.
    pub fn in_flight(&self) -> usize {
        self.flights.iter().flatten().count()
    }

    // ----- TDG.MEM.PAGE.ACCEPT (tdg_mem_page_accept.c) -----

    /// Decodes RCX as `verify_page_info_input` and `check_gpa_validity` do for GPAW 48: bits
    /// 2:0 level (0 or 1; 2 with the 1G proposal), 11:3 and 63:52 zero, aligned, below 2^48,
    /// private (bit 47 clear).
    fn accept_operand(&self, rcx: u64) -> Option<(u64, Level)> {
        let level = usize::try_from(rcx & 7).ok()?;
        let gpa = rcx & 0x000F_FFFF_FFFF_F000;
        let ok = rcx & (0xFF8 | 0xFFF0_0000_0000_0000) == 0
            && (level <= L2M || (level == L1G && self.profile.accept_1g))
            && gpa & (size(level.min(L1G)) - 1) == 0
            && gpa >> 48 == 0
            && gpa & (1 << 47) == 0;
        ok.then_some((gpa, level))
    }

    fn accept_exit(gpa: u64, requested: Level, stop: &Stop) -> AcceptEnd {
        // async_tdexit_ept_violation: a write; EEQ type ACCEPT with req_sept_level [2:0],
        // err_sept_level [5:3], err_sept_state [13:6], err_sept_is_leaf [14].
        let info = (requested as u64)
            | ((stop.level as u64) << 3)
            | (public_code(stop.entry.state) << 6)
            | (u64::from(is_leaf(stop.entry.state)) << 14);
        AcceptEnd::Exit(1 << 1, 1 | (info << 32), gpa)
    }

    /// TDG.MEM.PAGE.ACCEPT, first phase: up to holding the entry lock at the requested level.
    pub fn accept_begin(&mut self, rcx: u64) -> Start<AcceptEnd> {
        let Some((gpa, level)) = self.accept_operand(rcx) else {
            return Start::Done(AcceptEnd::Status(status(OPERAND_INVALID, OPERAND_RCX)));
        };
        let stop = self.walk(gpa, level);
        if !stop.reached {
            return Start::Done(match stop.entry.state {
                // Case 1.1: a guest-accessible leaf above the requested level.
                St::Mapped => AcceptEnd::Status(status(PAGE_ALREADY_ACCEPTED, stop.level as u64)),
                // The explicit-demotion proposal: tell the guest the size that would work.
                St::Pending if self.profile.explicit_demotion => {
                    AcceptEnd::Status(status(PAGE_SIZE_MISMATCH, stop.level as u64))
                }
                // Cases 1.2 and 2.
                _ => Self::accept_exit(gpa, level, &stop),
            });
        }
        // sept_lock_acquire_guest: a held lock, or the host-priority bit, is BUSY (the
        // TDCALL path reports BUSY_HOST_PRIORITY to the guest as OPERAND_BUSY).
        if stop.entry.locked || stop.entry.hp {
            return Start::Done(AcceptEnd::Status(status(OPERAND_BUSY, OPERAND_RCX)));
        }
        self.update(gpa, level, |e| e.locked = true);
        let zeroing = stop.entry.state == St::Pending;
        let id = self.new_flight(Flight::Accept { gpa, level });
        Start::Started { id, zeroing }
    }

    /// TDG.MEM.PAGE.ACCEPT, second phase. `interrupt_after`: an interrupt becomes pending
    /// after that many more pages (the module checks after every page of a 2M accept but the
    /// last, and always zeroes at least one).
    pub fn accept_finish(&mut self, id: usize, interrupt_after: Option<u32>) -> AcceptEnd {
        let Some(Flight::Accept { gpa, level }) = self.flights.get(id).copied().flatten() else {
            panic!("reference: accept {id} is not in flight");
        };
        self.flights[id] = None;
        let e = self
            .entry(gpa, level)
            .unwrap_or_else(|| panic!("reference: the entry an ACCEPT holds is gone"));
        self.update(gpa, level, |e| e.locked = false);
        match e.state {
            St::Pending => {}
            // Case 3: a table at the requested level: mapped smaller.
            St::NlMapped | St::NlBlocked => {
                return AcceptEnd::Status(status(PAGE_SIZE_MISMATCH, level as u64));
            }
            St::Mapped => return AcceptEnd::Status(status(PAGE_ALREADY_ACCEPTED, level as u64)),
            // FREE, BLOCKED, PENDING_BLOCKED: not acceptable, unlock and exit.
            _ => {
                let stop = Stop {
                    level,
                    entry: e,
                    reached: true,
                };
                return Self::accept_exit(gpa, level, &stop);
            }
        }
        let total = 1u32 << (9 * level);
        if let Some(n) = interrupt_after {
            let done = e.counter.saturating_add(n.max(1));
            if done < total {
                self.update(gpa, level, |e| e.counter = done);
                return AcceptEnd::Interrupted;
            }
        }
        self.update(gpa, level, |e| {
            e.state = St::Mapped;
            e.counter = 0;
            e.bepoch = 0;
        });
        for p in self.pages_of(gpa, level) {
            self.pages[p].content = ZERO;
        }
        AcceptEnd::Status(SUCCESS)
    }

    // ----- guest accesses (td_ept_violation.c) -----

    fn access_check(&self, page: u64, write: bool) -> Option<Access> {
        let stop = self.walk(page, L4K);
        let qual = if write { 1 << 1 } else { 1 };
        match stop.entry.state {
            St::Mapped => None,
            // PENDING_EPT_VIOLATION (EEQ type 6) with SEPT_VE_DISABLE, else #VE.
            St::Pending if self.ve_disable => Some(Access::Exit(qual, 6, page)),
            St::Pending => Some(Access::Ve),
            // An ordinary EPT violation, no EEQ.
            _ => Some(Access::Exit(qual, 0, page)),
        }
    }

    /// A guest read of the private 4K page at `gpa`.
    pub fn guest_read(&self, gpa: u64) -> Access {
        let page = gpa & !0xFFF;
        match self.access_check(page, false) {
            Some(a) => a,
            None => Access::Done(self.content(page).unwrap_or(NONE)),
        }
    }

    /// A guest write of `content` over the `level`-sized page at `gpa`, 4K page by 4K page:
    /// the pages before the first one that faults are written.
    pub fn guest_write(&mut self, gpa: u64, level: Level, content: Content) -> Access {
        let start = gpa & !(size(level) - 1);
        for k in 0..(1u64 << (9 * level)) {
            let page = start + (k << 12);
            if let Some(a) = self.access_check(page, true) {
                return a;
            }
            if let Some(i) = Self::page_index(page) {
                self.pages[i].content = content;
            }
        }
        Access::Done(content)
    }

    // ----- host SEAMCALLs (tdh_mem_*.c) -----

    fn level_allowed(&self, call: Call, level: Level) -> bool {
        match call {
            Call::PageAdd(_) => level == L4K,
            Call::PageAug => level != L1G || self.profile.accept_1g,
            Call::SeptAdd | Call::PageDemote | Call::PagePromote | Call::SeptRemove => level != L4K,
            Call::RangeBlock | Call::RangeUnblock | Call::PageRemove => true,
        }
    }

    fn tree_exclusive(call: Call) -> bool {
        matches!(
            call,
            Call::RangeBlock | Call::RangeUnblock | Call::SeptRemove
        )
    }

    /// The state table (sept_state_lookup.c, non-migration subset).
    fn state_allowed(call: Call, s: St) -> bool {
        match call {
            Call::PageAdd(_) | Call::SeptAdd | Call::PageAug => s == St::Free,
            Call::RangeBlock => matches!(s, St::NlMapped | St::Mapped | St::Pending),
            Call::RangeUnblock => is_blocked(s),
            Call::PageDemote | Call::PageRemove => is_leaf(s),
            Call::PagePromote | Call::SeptRemove => is_table(s),
        }
    }

    /// A SEAMCALL, first phase: the checks in the module's order, then the locks.
    pub fn host_begin(&mut self, call: Call, gpa: u64, level: Level) -> Start<u64> {
        let rcx = |code| Start::Done(status(code, OPERAND_RCX));
        // The TDR: PAGE.ADD exclusive, the others shared (check_lock_and_map_explicit_tdr).
        let add = matches!(call, Call::PageAdd(_));
        if self.tdr_exclusive || (add && self.tdr_shared > 0) {
            return Start::Done(status(OPERAND_BUSY, OPERAND_RDX));
        }
        // Op state: PAGE.ADD only before finalization.
        if add && self.runnable {
            return Start::Done(status(OP_STATE_INCORRECT, 0));
        }
        // The GPA/level operand (verify_page_info_input, check_gpa_validity).
        if !self.level_allowed(call, level)
            || gpa & (size(level) - 1) != 0
            || gpa >> 48 != 0
            || gpa & (1 << 47) != 0
        {
            return rcx(OPERAND_INVALID);
        }
        // The tree lock: exclusive for BLOCK, UNBLOCK, SEPT.REMOVE; shared for the rest
        // (PAGE.ADD excludes everything through the TDR already).
        if !add && (self.tree_exclusive || (Self::tree_exclusive(call) && self.tree_shared > 0)) {
            return Start::Done(status(OPERAND_BUSY, OPERAND_SEPT_TREE));
        }
        // The walk.
        let stop = self.walk(gpa, level);
        if !stop.reached {
            return rcx(EPT_WALK_FAILED);
        }
        let e = stop.entry;
        // The entry lock, host side (sept_lock_acquire_host); PAGE.ADD holds the TDR instead.
        if !add {
            if e.locked {
                self.update(gpa, level, |e| e.hp = true);
                return rcx(OPERAND_BUSY);
            }
            self.update(gpa, level, |e| e.hp = false);
        }
        // The state.
        if !Self::state_allowed(call, e.state) {
            if call == Call::RangeBlock && is_blocked(e.state) {
                return rcx(GPA_RANGE_ALREADY_BLOCKED);
            }
            return rcx(EPT_ENTRY_STATE_INCORRECT);
        }
        // Blocking and TLB tracking, once runnable.
        if self.runnable {
            let needs_block = match call {
                Call::PagePromote | Call::PageRemove | Call::SeptRemove => true,
                Call::PageDemote => !self.profile.non_blocking_resize || is_blocked(e.state),
                _ => false,
            };
            if needs_block {
                if !is_blocked(e.state) {
                    return rcx(GPA_RANGE_NOT_BLOCKED);
                }
                if !self.tracked(e.bepoch) {
                    return rcx(TLB_TRACKING_NOT_DONE);
                }
            }
            if call == Call::RangeUnblock && !self.tracked(e.bepoch) {
                return Start::Done(status(TLB_TRACKING_NOT_DONE, OPERAND_SEPT_TREE));
            }
        }
        // The call's own checks.
        match call {
            Call::SeptRemove => {
                let below = level - 1;
                let all_free = (0..512u64).all(|k| {
                    self.entry(gpa + k * size(below), below)
                        .is_none_or(|c| c.state == St::Free)
                });
                if !all_free {
                    return rcx(EPT_PAGE_NOT_FREE);
                }
            }
            Call::PagePromote => {
                if let Some(code) = self.promote_children(gpa, level) {
                    return rcx(code);
                }
            }
            Call::PageAug | Call::PageDemote if level == L1G => return Start::Capacity,
            _ => {}
        }
        if add {
            self.tdr_exclusive = true;
        } else {
            self.tdr_shared += 1;
            if Self::tree_exclusive(call) {
                self.tree_exclusive = true;
            } else {
                self.tree_shared += 1;
            }
            self.update(gpa, level, |e| e.locked = true);
        }
        let id = self.new_flight(Flight::Host { call, gpa, level });
        Start::Started { id, zeroing: false }
    }

    /// PROMOTE's children (`is_sept_page_valid_for_merge`): host-lock each in order (a held
    /// one gets its HP bit, the ones locked so far are released, BUSY); child 0 must be MAPPED
    /// or PENDING and every other the same, else release and INVALID_PROMOTE_CONDITIONS. On
    /// success they stay locked until the call ends.
    fn promote_children(&mut self, gpa: u64, level: Level) -> Option<u64> {
        let below = level - 1;
        let child = |k: u64| gpa + k * size(below);
        let mut first = None;
        let mut failure = None;
        let mut locked = 0u64;
        for k in 0..512u64 {
            let c = self
                .entry(child(k), below)
                .unwrap_or(Entry::fresh(St::Free));
            if c.locked {
                self.update(child(k), below, |e| e.hp = true);
                failure = Some(OPERAND_BUSY);
                break;
            }
            if Self::page_index(child(k)).is_some() {
                self.update(child(k), below, |e| {
                    e.locked = true;
                    e.hp = false;
                });
                locked += 1;
            }
            let ok = match first {
                None => matches!(c.state, St::Mapped | St::Pending),
                Some(s) => s == c.state,
            };
            first.get_or_insert(c.state);
            if !ok {
                failure = Some(EPT_INVALID_PROMOTE_CONDITIONS);
                break;
            }
        }
        if failure.is_some() {
            for k in 0..locked {
                self.update(child(k), below, |e| e.locked = false);
            }
        }
        failure
    }

    /// A SEAMCALL, second phase: apply and release. With `interrupted`, DEMOTE on a module
    /// without demote interruptibility and PROMOTE return INTERRUPTED_RESTARTABLE and change
    /// nothing.
    pub fn host_end(&mut self, id: usize, interrupted: bool) -> u64 {
        let Some(Flight::Host { call, gpa, level }) = self.flights.get(id).copied().flatten()
        else {
            panic!("reference: SEAMCALL {id} is not in flight");
        };
        self.flights[id] = None;
        let add = matches!(call, Call::PageAdd(_));
        if add {
            self.tdr_exclusive = false;
        } else {
            self.tdr_shared -= 1;
            if Self::tree_exclusive(call) {
                self.tree_exclusive = false;
            } else {
                self.tree_shared -= 1;
            }
        }
        let abort = interrupted
            && match call {
                Call::PageDemote => !self.profile.demote_interruptibility,
                Call::PagePromote => true,
                _ => false,
            };
        let e = self
            .entry(gpa, level)
            .unwrap_or_else(|| panic!("reference: the entry a SEAMCALL holds is gone"));
        let below = level.wrapping_sub(1);
        if abort {
            if call == Call::PagePromote {
                for k in 0..512u64 {
                    self.update(gpa + k * size(below), below, |c| c.locked = false);
                }
            }
            self.update(gpa, level, |e| e.locked = false);
            return status(INTERRUPTED_RESTARTABLE, 0);
        }
        // The entry's host-priority bit outlives the call (a SEAMCALL that found it locked
        // meanwhile set it); BLOCK also resets a PENDING entry's accept counter
        // (sept_cleanup_if_pending), as every fresh entry has none.
        let keep_hp = |state: St| Entry {
            hp: e.hp,
            ..Entry::fresh(state)
        };
        match call {
            Call::PageAdd(content) => {
                self.set_entry(gpa, level, Some(keep_hp(St::Mapped)));
                for p in self.pages_of(gpa, level) {
                    self.pages[p].content = content;
                }
            }
            Call::SeptAdd => {
                self.set_entry(gpa, level, Some(keep_hp(St::NlMapped)));
                for k in 0..512u64 {
                    self.set_entry(gpa + k * size(below), below, Some(Entry::fresh(St::Free)));
                }
            }
            Call::PageAug => self.set_entry(gpa, level, Some(keep_hp(St::Pending))),
            Call::RangeBlock => {
                let blocked = block_of(e.state).unwrap_or(e.state);
                let epoch = self.epoch;
                self.set_entry(
                    gpa,
                    level,
                    Some(Entry {
                        bepoch: epoch,
                        ..keep_hp(blocked)
                    }),
                );
            }
            Call::RangeUnblock => self.set_entry(gpa, level, Some(keep_hp(unblock_of(e.state)))),
            Call::PageDemote => {
                // All 512 children take the parent's unblocked state; content stays.
                let child = unblock_of(e.state);
                self.set_entry(gpa, level, Some(keep_hp(St::NlMapped)));
                for k in 0..512u64 {
                    self.set_entry(gpa + k * size(below), below, Some(Entry::fresh(child)));
                }
            }
            Call::PagePromote => {
                let state = self.entry(gpa, below).map_or(St::Free, |c| c.state);
                for k in 0..512u64 {
                    self.set_entry(gpa + k * size(below), below, None);
                }
                self.set_entry(gpa, level, Some(keep_hp(state)));
            }
            Call::PageRemove => {
                self.set_entry(gpa, level, Some(keep_hp(St::Free)));
                for p in self.pages_of(gpa, level) {
                    self.pages[p].content = NONE;
                }
            }
            Call::SeptRemove => {
                for k in 0..512u64 {
                    self.set_entry(gpa + k * size(below), below, None);
                }
                self.set_entry(gpa, level, Some(keep_hp(St::Free)));
            }
        }
        SUCCESS
    }
}
