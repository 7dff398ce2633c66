//! The `sept_ops` target: arbitrary SEAMCALL and TDCALL sequences, two-phase operations
//! interleaved, run on `hugesept_core::sept` and on the independent reference model in
//! [`crate::sept_ref`] side by side, compared after every operation.
//!
//! An input is a module profile and a list of operations: a host SEAMCALL begun, or begun and
//! ended at once; any operation in flight ended (a SEAMCALL possibly with an interrupt pending,
//! an ACCEPT possibly interrupted after some pages); an ACCEPT by a vCPU at a level and GPA, or
//! with raw RCX bits; a guest read or write; a vCPU entering or leaving the TD; TDH.MEM.TRACK;
//! finalization. Every result is compared word for word (the status a SEAMCALL or ACCEPT
//! returns, an exit's qualification, extended qualification and GPA, an access's content),
//! the core's structural invariants are checked, and the entries the operation could reach
//! (the 1G entry, every 2M entry, the 4K entries of the region it named) are compared field
//! by field; at the end every entry and the content of every accepted page are.
//!
//! What the harness keeps to, as the module's callers do: at most [`MAX_FLIGHTS`] operations
//! in flight (the core's slots); a vCPU issues guest operations only while it is inside the TD
//! (after TDH.VP.ENTER, once the TD is runnable), one ACCEPT at a time, and leaves only when its
//! ACCEPT has ended (a TDCALL runs to its end or to a TD exit before the vCPU can be counted
//! out of its TLB epoch); host SEAMCALLs name GPAs in the window, or the 1G entry over it, since
//! the core models only the window. A 1G leaf over memory the window does not hold (1G AUG on the accept-1g
//! profile) is where both models stop: the core says `OutsideModel`, the reference `Capacity`.

use hugesept_core::abi::{Gpa, PageLevel, SeptEntryState};
use hugesept_core::sept::{
    AcceptOp, AcceptOutcome, AcceptStart, AccessOutcome, ArrayStorage, Content, EpochTicket,
    HostCall, HostCallKind, HostOp, HostStart, ModuleProfile, Sept, SeptConfig, SeptError,
};

use crate::sept_ref::{self as r, AcceptEnd, Access, Call, RefSept, Start};

/// Operations in flight at once (the core's `MAX_IN_FLIGHT`).
pub const MAX_FLIGHTS: usize = 8;
/// vCPUs an input can use.
pub const VCPUS: usize = 4;
/// Operations one input runs at most.
pub const MAX_OPS: usize = 96;

/// The core's storage for the window: one 1G entry, four regions, one table per region (a
/// pool that size never runs out: `Sept::can_demote_2m`; running out here is a failure).
pub type OpsStorage = ArrayStorage<1, { r::REGIONS }, { r::REGIONS }>;

/// The module profiles an input picks from (the core's names).
pub const PROFILES: [&str; 5] = [
    "tdx-1.5",
    "explicit-demotion",
    "non-blocking-resize",
    "accept-1g",
    "no-demote-interruptibility",
];

/// One operation of an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A SEAMCALL on the entry at `level` over window page `page` (the 1G entry for 1G);
    /// `both`: both phases at once.
    Host {
        /// Which call (index into the nine).
        call: u8,
        /// TDX level, 0 to 2.
        level: u8,
        /// 4K page index in the window.
        page: u32,
        /// PAGE.ADD's source content tag.
        tag: u8,
        /// Both phases at once.
        both: bool,
    },
    /// Ends operation `slot` (modulo those in flight): a SEAMCALL with `interrupted`, an
    /// ACCEPT interrupted after `after` pages when `interrupted`.
    End {
        /// Which operation in flight.
        slot: u8,
        /// An interrupt is pending.
        interrupted: bool,
        /// Pages an ACCEPT zeroes before the interrupt.
        after: u16,
    },
    /// An ACCEPT by `vcpu` at `level` of page `page` (pages past the window lie in the same
    /// 1G range, outside the model's window).
    Accept {
        /// The vCPU.
        vcpu: u8,
        /// TDX level, 0 to 2.
        level: u8,
        /// 4K page index from the window's start.
        page: u32,
        /// Both phases at once.
        both: bool,
    },
    /// An ACCEPT with arbitrary RCX.
    AcceptRaw {
        /// The vCPU.
        vcpu: u8,
        /// RCX.
        rcx: u64,
    },
    /// A guest read.
    Read {
        /// The vCPU.
        vcpu: u8,
        /// 4K page index from the window's start.
        page: u32,
    },
    /// A guest write of data `tag` over the 4K or 2M page.
    Write {
        /// The vCPU.
        vcpu: u8,
        /// 0 for 4K, 1 for 2M.
        level: u8,
        /// 4K page index from the window's start.
        page: u32,
        /// The data tag.
        tag: u8,
    },
    /// TDH.VP.ENTER of `vcpu`.
    Enter(u8),
    /// A TD exit of `vcpu`.
    Exit(u8),
    /// TDH.MEM.TRACK.
    Track,
    /// TDH.MR.FINALIZE.
    Finalize,
}

/// A decoded input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ops {
    /// Index into [`PROFILES`].
    pub profile: u8,
    /// SEPT_VE_DISABLE.
    pub ve_disable: bool,
    /// Finalized before the first operation.
    pub runnable: bool,
    /// The 1G table is linked (TDH.MEM.SEPT.ADD at 1G, compared like any operation) before the
    /// first operation.
    pub gig_table: bool,
    /// The operations.
    pub ops: Vec<Op>,
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.next()?, self.next()?]))
    }
}

/// The pages inside a region an operand byte can name: the edges and a few neighbours, so
/// that operations meet on the same entries often.
const OFFSETS: [u32; 8] = [0, 1, 2, 3, 4, 255, 256, 511];

/// A page from its operand byte: bits 2-0 the offset in the region ([`OFFSETS`]), bits 7-3
/// the region modulo 5 — the window's four, then one past it (ACCEPTs and accesses only; a
/// SEAMCALL takes the page modulo the window).
fn page_of(b: u8) -> u32 {
    let region = u32::from(b >> 3) % (r::REGIONS as u32 + 1);
    region * 512 + OFFSETS[usize::from(b & 7)]
}

/// The operand byte of `page` (for the seeds; a page no byte names panics).
fn byte_of(page: u32) -> u8 {
    let (region, offset) = (page / 512, page % 512);
    let k = OFFSETS
        .iter()
        .position(|&o| o == offset)
        .unwrap_or_else(|| panic!("page {page} has no operand byte"));
    ((region as u8) << 3) | k as u8
}

impl Ops {
    /// Decodes an input: a flags byte (bits 0-2 profile mod 5, bit 5 no 1G table at the
    /// start, bit 6 build time at the start, bit 7 #VE instead of SEPT_VE_DISABLE), then
    /// operations, each an opcode byte (mod 11) and its operands (a page is one byte:
    /// `page_of`); a truncated operation ends the list.
    pub fn decode(data: &[u8]) -> Ops {
        let mut b = Bytes(data);
        let flags = b.next().unwrap_or(0);
        let mut ops = Vec::new();
        while ops.len() < MAX_OPS {
            let Some(op) = Self::decode_op(&mut b) else {
                break;
            };
            ops.push(op);
        }
        Ops {
            profile: (flags & 7) % PROFILES.len() as u8,
            ve_disable: flags & 0x80 == 0,
            runnable: flags & 0x40 == 0,
            gig_table: flags & 0x20 == 0,
            ops,
        }
    }

    fn decode_op(b: &mut Bytes) -> Option<Op> {
        let code = b.next()? % 11;
        Some(match code {
            0 | 1 => {
                let call = b.next()? % 9;
                let level = b.next()? % 3;
                let page = page_of(b.next()?) % r::PAGES as u32;
                let tag = if call == 0 { b.next()? } else { 0 };
                Op::Host {
                    call,
                    level,
                    page,
                    tag,
                    both: code == 1,
                }
            }
            2 => {
                let slot = b.next()?;
                let after = b.u16()?;
                Op::End {
                    slot: slot & 0x7F,
                    interrupted: slot & 0x80 != 0,
                    after,
                }
            }
            3 | 4 => {
                let v = b.next()?;
                Op::Accept {
                    vcpu: v % VCPUS as u8,
                    level: (v >> 2) % 3,
                    page: page_of(b.next()?),
                    both: code == 4,
                }
            }
            5 => {
                let vcpu = b.next()? % VCPUS as u8;
                let mut w = [0u8; 8];
                for x in &mut w {
                    *x = b.next()?;
                }
                Op::AcceptRaw {
                    vcpu,
                    rcx: u64::from_le_bytes(w),
                }
            }
            6 => Op::Read {
                vcpu: b.next()? % VCPUS as u8,
                page: page_of(b.next()?),
            },
            7 => {
                let v = b.next()?;
                Op::Write {
                    vcpu: v % VCPUS as u8,
                    level: (v >> 2) & 1,
                    page: page_of(b.next()?),
                    tag: b.next()?,
                }
            }
            8 => {
                let v = b.next()?;
                if v & 0x80 == 0 {
                    Op::Enter(v % VCPUS as u8)
                } else {
                    Op::Exit(v % VCPUS as u8)
                }
            }
            9 => Op::Track,
            _ => Op::Finalize,
        })
    }

    /// The input bytes of these operations ([`Ops::decode`] gives them back).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![
            self.profile
                | (u8::from(!self.gig_table) << 5)
                | (u8::from(!self.runnable) << 6)
                | (u8::from(!self.ve_disable) << 7),
        ];
        for op in &self.ops {
            match *op {
                Op::Host {
                    call,
                    level,
                    page,
                    tag,
                    both,
                } => {
                    out.extend([u8::from(both), call, level]);
                    out.push(byte_of(page));
                    if call == 0 {
                        out.push(tag);
                    }
                }
                Op::End {
                    slot,
                    interrupted,
                    after,
                } => {
                    out.extend([2, slot | (u8::from(interrupted) << 7)]);
                    out.extend(after.to_le_bytes());
                }
                Op::Accept {
                    vcpu,
                    level,
                    page,
                    both,
                } => {
                    out.extend([3 + u8::from(both), vcpu | (level << 2)]);
                    out.push(byte_of(page));
                }
                Op::AcceptRaw { vcpu, rcx } => {
                    out.extend([5, vcpu]);
                    out.extend(rcx.to_le_bytes());
                }
                Op::Read { vcpu, page } => {
                    out.extend([6, vcpu]);
                    out.push(byte_of(page));
                }
                Op::Write {
                    vcpu,
                    level,
                    page,
                    tag,
                } => {
                    out.extend([7, vcpu | (level << 2)]);
                    out.push(byte_of(page));
                    out.push(tag);
                }
                Op::Enter(v) => out.extend([8, v]),
                Op::Exit(v) => out.extend([8, v | 0x80]),
                Op::Track => out.push(9),
                Op::Finalize => out.push(10),
            }
        }
        out
    }
}

/// The SEAMCALL names, by the input's call index.
pub const CALL_NAMES: [&str; 9] = [
    "TDH.MEM.PAGE.ADD",
    "TDH.MEM.SEPT.ADD",
    "TDH.MEM.PAGE.AUG",
    "TDH.MEM.RANGE.BLOCK",
    "TDH.MEM.RANGE.UNBLOCK",
    "TDH.MEM.PAGE.DEMOTE",
    "TDH.MEM.PAGE.PROMOTE",
    "TDH.MEM.PAGE.REMOVE",
    "TDH.MEM.SEPT.REMOVE",
];

const LEVEL_NAMES: [&str; 3] = ["4K", "2M", "1G"];

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = |l: u8| LEVEL_NAMES[usize::from(l % 3)];
        match *self {
            Op::Host {
                call,
                level: l,
                page,
                tag,
                both,
            } => {
                let name = CALL_NAMES[usize::from(call % 9)];
                let gpa = gpa_of(page, usize::from(l % 3));
                write!(f, "{name} {gpa:#x} {}", level(l))?;
                if call == 0 {
                    write!(f, " source data:{tag}")?;
                }
                f.write_str(if both { "" } else { " (begins)" })
            }
            Op::End {
                slot,
                interrupted,
                after,
            } => {
                write!(f, "end operation in flight #{slot}")?;
                if interrupted {
                    write!(
                        f,
                        " with an interrupt pending (an ACCEPT after {after} pages)"
                    )?;
                }
                Ok(())
            }
            Op::Accept {
                vcpu,
                level: l,
                page,
                both,
            } => {
                let gpa = gpa_of(page, usize::from(l % 3));
                write!(f, "vCPU {vcpu}: TDG.MEM.PAGE.ACCEPT {gpa:#x} {}", level(l))?;
                f.write_str(if both { "" } else { " (begins)" })
            }
            Op::AcceptRaw { vcpu, rcx } => {
                write!(f, "vCPU {vcpu}: TDG.MEM.PAGE.ACCEPT rcx {rcx:#x} (begins)")
            }
            Op::Read { vcpu, page } => write!(f, "vCPU {vcpu}: read {:#x}", gpa_of(page, 0)),
            Op::Write {
                vcpu,
                level: l,
                page,
                tag,
            } => write!(
                f,
                "vCPU {vcpu}: write data:{tag} over {:#x} {}",
                gpa_of(page, usize::from(l & 1)),
                level(l & 1)
            ),
            Op::Enter(v) => write!(f, "vCPU {v}: TDH.VP.ENTER"),
            Op::Exit(v) => write!(f, "vCPU {v}: TD exit"),
            Op::Track => f.write_str("TDH.MEM.TRACK"),
            Op::Finalize => f.write_str("TDH.MR.FINALIZE"),
        }
    }
}

fn level_of(l: usize) -> PageLevel {
    match l {
        0 => PageLevel::Size4K,
        1 => PageLevel::Size2M,
        _ => PageLevel::Size1G,
    }
}

fn call_of(call: u8, tag: u8) -> (HostCallKind, Call) {
    let content = Content::data(u16::from(tag));
    match call {
        0 => (
            HostCallKind::PageAdd { content },
            Call::PageAdd(content.raw()),
        ),
        1 => (HostCallKind::SeptAdd, Call::SeptAdd),
        2 => (HostCallKind::PageAug, Call::PageAug),
        3 => (HostCallKind::RangeBlock, Call::RangeBlock),
        4 => (HostCallKind::RangeUnblock, Call::RangeUnblock),
        5 => (HostCallKind::PageDemote, Call::PageDemote),
        6 => (HostCallKind::PagePromote, Call::PagePromote),
        7 => (HostCallKind::PageRemove, Call::PageRemove),
        _ => (HostCallKind::SeptRemove, Call::SeptRemove),
    }
}

/// The GPA of `page` at `level` (aligned down; the 1G entry's for 1G).
fn gpa_of(page: u32, level: usize) -> u64 {
    let gpa = r::BASE + (u64::from(page) << 12);
    gpa & !(r::size(level) - 1)
}

#[derive(Clone, Copy, Debug)]
enum ModelOp {
    Accept(AcceptOp),
    Host(HostOp),
}

#[derive(Clone, Copy, Debug)]
struct Flight {
    model: ModelOp,
    reference: usize,
    vcpu: Option<u8>,
    gpa: u64,
}

/// Both models and what the harness keeps beside them.
struct Pair {
    model: Sept<OpsStorage>,
    reference: RefSept,
    /// Per vCPU inside the TD: the core's ticket and the reference's epoch.
    inside: [Option<(EpochTicket, u64)>; VCPUS],
    flights: Vec<Flight>,
    log: Vec<String>,
    /// The entry (GPA and level) the last operation acted on, for [`Pair::compare_near`].
    touched: Option<(u64, usize)>,
}

fn accept_end(o: AcceptOutcome) -> AcceptEnd {
    match o {
        AcceptOutcome::Completed(s) => AcceptEnd::Status(s.raw()),
        AcceptOutcome::Exit(e) => {
            AcceptEnd::Exit(e.exit_qualification.bits(), e.eeq.encode(), e.gpa.raw())
        }
        AcceptOutcome::Interrupted => AcceptEnd::Interrupted,
    }
}

fn access(o: AccessOutcome) -> Access {
    match o {
        AccessOutcome::Accessible(c) => Access::Done(c.raw()),
        AccessOutcome::VirtualizationException => Access::Ve,
        AccessOutcome::Exit(e) => {
            Access::Exit(e.exit_qualification.bits(), e.eeq.encode(), e.gpa.raw())
        }
    }
}

/// Why a run stopped early without a disagreement.
enum Stop {
    /// Both models reached what a window-sized model cannot hold.
    Capacity,
}

type Step = Result<(), Stop>;

impl Pair {
    fn fail(&self, what: String) -> ! {
        panic!(
            "sept_ops: the core and the reference disagree: {what}\noperations so far:\n  {}",
            self.log.join("\n  ")
        );
    }

    fn model_err<T>(&self, what: &str, r: Result<T, SeptError>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => self.fail(format!("{what}: the core failed as a model: {e}")),
        }
    }

    /// Adds what the last operation returned to its log line.
    fn note(&mut self, what: impl std::fmt::Display) {
        if let Some(l) = self.log.last_mut() {
            use std::fmt::Write as _;
            let _ = write!(l, " -> {what}");
        }
    }

    fn runnable(&self) -> bool {
        self.reference.runnable
    }

    fn vcpu_busy(&self, v: u8) -> bool {
        self.flights.iter().any(|f| f.vcpu == Some(v))
    }

    fn host(&mut self, call: u8, level: u8, page: u32, tag: u8, both: bool) -> Step {
        if self.flights.len() >= MAX_FLIGHTS {
            return Ok(());
        }
        let level = usize::from(level);
        let gpa = gpa_of(page, level);
        let (kind, rcall) = call_of(call, tag);
        self.touched = Some((gpa, level));
        let mcall = HostCall::new(kind, Gpa(gpa), level_of(level));
        let m = self.model.host_begin(mcall);
        let rr = self.reference.host_begin(rcall, gpa, level);
        let what = format!("{rcall:?} {gpa:#x} level {level}");
        let (op, id) = match (m, rr) {
            (Ok(HostStart::Done(s)), Start::Done(x)) if s.raw() == x => {
                self.note(s);
                return Ok(());
            }
            (Ok(HostStart::Started(op)), Start::Started { id, .. }) => (op, id),
            (Err(SeptError::OutsideModel), Start::Capacity) => {
                self.note("beyond the window (both models stop)");
                return Err(Stop::Capacity);
            }
            (m, rr) => self.fail(format!("{what}: core {m:?}, reference {rr:?}")),
        };
        if both {
            self.end_host(op, id, false, &what);
        } else {
            self.note(format!("in flight as #{}", self.flights.len()));
            self.flights.push(Flight {
                model: ModelOp::Host(op),
                reference: id,
                vcpu: None,
                gpa,
            });
        }
        Ok(())
    }

    fn end_host(&mut self, op: HostOp, id: usize, interrupted: bool, what: &str) {
        let m = self.model.host_end(op, interrupted);
        let m = self.model_err(what, m);
        let x = self.reference.host_end(id, interrupted);
        if m.raw() != x {
            self.fail(format!(
                "{what} ended (interrupted {interrupted}): core {m} ({:#x}), reference {x:#x}",
                m.raw()
            ));
        }
        self.note(m);
    }

    fn end(&mut self, slot: u8, interrupted: bool, after: u16) {
        if self.flights.is_empty() {
            return;
        }
        let k = usize::from(slot) % self.flights.len();
        let f = self.flights.remove(k);
        self.touched = Some(match f.model {
            ModelOp::Host(op) => (op.call().gpa.raw(), op.call().level.tdx().raw() as usize),
            ModelOp::Accept(op) => (op.gpa().raw(), op.level().tdx().raw() as usize),
        });
        match f.model {
            ModelOp::Host(op) => {
                let what = format!("{:?}", op.call());
                self.end_host(op, f.reference, interrupted, &what);
            }
            ModelOp::Accept(op) => {
                let after = interrupted.then_some(u32::from(after));
                self.end_accept(op, f.reference, after, f.gpa);
            }
        }
    }

    fn end_accept(&mut self, op: AcceptOp, id: usize, after: Option<u32>, gpa: u64) {
        let outcome = self.model.accept_finish(op, after);
        let outcome = self.model_err("ACCEPT end", outcome);
        let m = accept_end(outcome);
        let x = self.reference.accept_finish(id, after);
        if m != x {
            self.fail(format!(
                "ACCEPT {gpa:#x} ended (interrupt after {after:?}): core {m:?}, reference {x:?}"
            ));
        }
        self.note(outcome);
    }

    /// A guest operation runs on a vCPU inside the TD: one that is not enters first (as
    /// its own, compared operation). Whether the operation can run.
    fn on_vcpu(&mut self, vcpu: u8) -> bool {
        if !self.runnable() {
            return false;
        }
        if self.inside[usize::from(vcpu)].is_none() {
            // The entry goes in the log before the operation that needed it.
            let line = self.log.pop();
            let _ = self.step(Op::Enter(vcpu));
            self.log.extend(line);
        }
        self.inside[usize::from(vcpu)].is_some()
    }

    fn accept(&mut self, vcpu: u8, rcx: u64, both: bool) {
        if !self.on_vcpu(vcpu) || self.vcpu_busy(vcpu) || self.flights.len() >= MAX_FLIGHTS {
            return;
        }
        self.touched = Some((
            rcx & 0x000F_FFFF_FFFF_F000,
            usize::from((rcx & 7) as u8).min(2),
        ));
        let m = self.model.accept_begin(rcx);
        let m = self.model_err("ACCEPT", m);
        let x = self.reference.accept_begin(rcx);
        let gpa = rcx & !0xFFF;
        let what = format!("ACCEPT rcx {rcx:#x}");
        let (op, id) = match (m, x) {
            (AcceptStart::Done(o), Start::Done(e)) if accept_end(o) == e => {
                self.note(o);
                return;
            }
            (AcceptStart::Zeroing(op), Start::Started { id, zeroing: true })
            | (AcceptStart::Checking(op), Start::Started { id, zeroing: false }) => (op, id),
            // Outside the window the core answers at once (no operation can hold an entry
            // there); the reference locks the FREE entry and reports at its second phase.
            (AcceptStart::Done(o), Start::Started { id, zeroing: false })
                if !self.model.contains(Gpa(gpa)) =>
            {
                let e = self.reference.accept_finish(id, None);
                if accept_end(o) != e {
                    self.fail(format!("{what}: core {o:?}, reference {e:?}"));
                }
                self.note(o);
                return;
            }
            (m, x) => self.fail(format!("{what}: core {m:?}, reference {x:?}")),
        };
        if both {
            self.end_accept(op, id, None, gpa);
        } else {
            self.note(format!("in flight as #{}", self.flights.len()));
            self.flights.push(Flight {
                model: ModelOp::Accept(op),
                reference: id,
                vcpu: Some(vcpu),
                gpa,
            });
        }
    }

    fn read(&mut self, vcpu: u8, page: u32) {
        if !self.on_vcpu(vcpu) {
            return;
        }
        let gpa = gpa_of(page, 0);
        self.touched = Some((gpa, 0));
        let m = self.model.guest_read(Gpa(gpa));
        let m = access(self.model_err("read", m));
        let x = self.reference.guest_read(gpa);
        if m != x {
            self.fail(format!("read {gpa:#x}: core {m:?}, reference {x:?}"));
        }
        self.note(format!("{x:?}"));
    }

    fn write(&mut self, vcpu: u8, level: u8, page: u32, tag: u8) {
        if !self.on_vcpu(vcpu) {
            return;
        }
        let level = usize::from(level);
        let gpa = gpa_of(page, level);
        let content = Content::data(u16::from(tag));
        self.touched = Some((gpa, level));
        let m = self.model.guest_write(Gpa(gpa), level_of(level), content);
        let m = access(self.model_err("write", m));
        let x = self.reference.guest_write(gpa, level, content.raw());
        if m != x {
            self.fail(format!(
                "write {gpa:#x} level {level}: core {m:?}, reference {x:?}"
            ));
        }
        self.note(format!("{x:?}"));
    }

    fn step(&mut self, op: Op) -> Step {
        self.log.push(op.to_string());
        self.touched = None;
        match op {
            Op::Host {
                call,
                level,
                page,
                tag,
                both,
            } => self.host(call, level, page, tag, both)?,
            Op::End {
                slot,
                interrupted,
                after,
            } => self.end(slot, interrupted, after),
            Op::Accept {
                vcpu,
                level,
                page,
                both,
            } => {
                let level = usize::from(level);
                self.accept(vcpu, gpa_of(page, level) | level as u64, both);
            }
            Op::AcceptRaw { vcpu, rcx } => self.accept(vcpu, rcx, false),
            Op::Read { vcpu, page } => self.read(vcpu, page),
            Op::Write {
                vcpu,
                level,
                page,
                tag,
            } => self.write(vcpu, level, page, tag),
            Op::Enter(v) => {
                let k = usize::from(v);
                if self.runnable() && self.inside[k].is_none() {
                    let t = self.model.vcpu_enter();
                    let t = self.model_err("TDH.VP.ENTER", t);
                    let e = self.reference.vcpu_enter();
                    self.inside[k] = Some((t, e));
                }
            }
            Op::Exit(v) => {
                let k = usize::from(v);
                if let Some((t, e)) = self.inside[k]
                    && !self.vcpu_busy(v)
                {
                    let m = self.model.vcpu_exit(t);
                    self.model_err("TD exit", m);
                    self.reference.vcpu_exit(e);
                    self.inside[k] = None;
                }
            }
            Op::Track => {
                let m = self.model.track();
                let m = self.model_err("TDH.MEM.TRACK", m);
                let x = self.reference.track();
                if m.raw() != x {
                    self.fail(format!("TDH.MEM.TRACK: core {m}, reference {x:#x}"));
                }
                self.note(m);
            }
            Op::Finalize => {
                let m = self.model.finalize();
                let x = self.reference.finalize();
                if m.raw() != x {
                    self.fail(format!("TDH.MR.FINALIZE: core {m}, reference {x:#x}"));
                }
                self.note(m);
            }
        }
        let idle = self.flights.is_empty();
        if let Err(e) = self.model.check_consistency(idle) {
            self.fail(format!("the core's invariants after {op:?}: {e}"));
        }
        self.compare_near();
        Ok(())
    }

    /// Compares one entry.
    fn compare_entry(&self, gpa: u64, level: usize) {
        let m = self.model.entry(Gpa(gpa), level_of(level));
        let m = self.model_err("entry", m);
        let x = self.reference.entry(gpa, level);
        let same = match (m, x) {
            (None, None) => true,
            (Some(m), Some(x)) => {
                m.state == x.state
                    && m.lock.is_locked() == x.locked
                    && m.lock.host_priority() == x.hp
                    && u64::from(m.bepoch) == x.bepoch
                    && m.accept_counter == x.counter
            }
            _ => false,
        };
        if !same {
            self.fail(format!(
                "the entry at {gpa:#x} level {level}: core {m:?}, reference {x:?}"
            ));
        }
    }

    /// The entries an operation can reach: the 1G entry and every 2M entry, and below the
    /// entry it acted on, the 4K entries it covers in the window (one for a 4K operation, a
    /// region's 512 for a 2M one, every region's for 1G).
    fn compare_near(&self) {
        self.compare_entry(r::GIG, 2);
        for k in 0..r::REGIONS as u64 {
            self.compare_entry(r::BASE + (k << 21), 1);
        }
        let Some((gpa, level)) = self.touched else {
            return;
        };
        let start = gpa & !(r::size(level) - 1);
        let lo = start.max(r::BASE);
        let hi = (start + r::size(level)).min(r::BASE + (r::PAGES as u64) * 4096);
        for page in (lo..hi).step_by(4096) {
            self.compare_entry(page, 0);
        }
    }

    /// Every entry, and the content of every page whose leaf is accepted (MAPPED or BLOCKED).
    fn compare_all(&self) {
        self.compare_entry(r::GIG, 2);
        for p in 0..r::PAGES as u64 {
            let gpa = r::BASE + (p << 12);
            if p % 512 == 0 {
                self.compare_entry(gpa, 1);
            }
            self.compare_entry(gpa, 0);
            let leaf = (0..3)
                .filter_map(|l| self.reference.entry(gpa, l))
                .find(|e| {
                    !matches!(
                        e.state,
                        SeptEntryState::NlMapped | SeptEntryState::NlBlocked
                    )
                });
            if leaf.is_some_and(|e| {
                matches!(e.state, SeptEntryState::Mapped | SeptEntryState::Blocked)
            }) {
                let m = self.model.content(Gpa(gpa));
                let m = self.model_err("content", m).raw();
                let x = self.reference.content(gpa).unwrap_or(r::NONE);
                if m != x {
                    self.fail(format!("the content of {gpa:#x}: core {m}, reference {x}"));
                }
            }
        }
    }
}

/// Runs `ops` on both models, panicking at the first disagreement; the operations run, each
/// with what it returned.
pub fn run(ops: &Ops) -> Vec<String> {
    let name = PROFILES[usize::from(ops.profile) % PROFILES.len()];
    let Ok(profile) = ModuleProfile::parse(name) else {
        panic!("sept_ops: profile {name} unknown to the core");
    };
    let mut config = SeptConfig::new(Gpa(r::BASE), r::REGIONS as u32);
    config.profile = profile;
    config.pending_ve_disable = ops.ve_disable;
    let model = match Sept::new(config, OpsStorage::new()) {
        Ok(s) => s,
        Err(e) => panic!("sept_ops: the core's window: {e}"),
    };
    let reference = RefSept::new(
        r::Profile {
            explicit_demotion: profile.explicit_demotion,
            non_blocking_resize: profile.non_blocking_resize,
            accept_1g: profile.accept_1g,
            demote_interruptibility: profile.demote_interruptibility,
        },
        ops.ve_disable,
    );
    let mut pair = Pair {
        model,
        reference,
        inside: [None; VCPUS],
        flights: Vec::new(),
        log: Vec::new(),
        touched: None,
    };
    if ops.gig_table {
        let _ = pair.step(Op::Host {
            call: 1,
            level: 2,
            page: 0,
            tag: 0,
            both: true,
        });
    }
    if ops.runnable {
        let _ = pair.step(Op::Finalize);
    }
    for &op in &ops.ops {
        if pair.step(op).is_err() {
            break;
        }
    }
    pair.compare_all();
    pair.log
}

/// What each seed's run must show (a line of [`run`]'s log), so that the seeds keep reaching
/// what they are there for.
pub const SEED_LINES: [(&str, &str); 11] = [
    (
        "seed-split-for-4k-accept",
        "TDH.MEM.PAGE.PROMOTE 0x40400000 2M -> TDX_SUCCESS",
    ),
    (
        "seed-block-resets-accept-counter",
        "(an ACCEPT after 400 pages) -> interrupted",
    ),
    (
        "seed-interrupted-2m-accept",
        "ACCEPT 0x402ff000 4K -> TDX_PAGE_ALREADY_ACCEPTED",
    ),
    (
        "seed-host-priority",
        "vCPU 1: TDG.MEM.PAGE.ACCEPT 0x40200000 2M -> TDX_OPERAND_BUSY",
    ),
    (
        "seed-promote-remove",
        "TDH.MEM.SEPT.REMOVE 0x40000000 2M -> TDX_SUCCESS",
    ),
    (
        "seed-explicit-demotion",
        "ACCEPT 0x40300000 4K -> TDX_PAGE_SIZE_MISMATCH",
    ),
    ("seed-non-blocking-demote", "read 0x40204000 -> Done(11)"),
    ("seed-demote-restartable", "-> TDX_INTERRUPTED_RESTARTABLE"),
    (
        "seed-accept-1g",
        "ACCEPT 0x40000000 1G -> TDX_PAGE_SIZE_MISMATCH",
    ),
    ("seed-build-time-add", "operand RDX"),
    (
        "seed-aug-1g-capacity",
        "TDH.MEM.PAGE.AUG 0x40000000 1G -> beyond the window",
    ),
];

/// The known sequences, as inputs: the committed seed corpus (`corpus/sept_ops/seed-*`).
pub fn seeds() -> Vec<(&'static str, Ops)> {
    let host = |call, level, page, both| Op::Host {
        call,
        level,
        page,
        tag: if call == 0 { 7 } else { 0 },
        both,
    };
    let accept = |vcpu, level, page, both| Op::Accept {
        vcpu,
        level,
        page,
        both,
    };
    let end = |slot, interrupted, after| Op::End {
        slot,
        interrupted,
        after,
    };
    let (sept_add, aug, block, unblock, demote, promote, remove, sept_remove) =
        (1, 2, 3, 4, 5, 6, 7, 8);
    let runnable = |profile, ops| Ops {
        profile,
        ve_disable: true,
        runnable: true,
        gig_table: true,
        ops,
    };
    let build_time = |ops| Ops {
        runnable: false,
        ..runnable(0, ops)
    };
    // A 2M PENDING leaf at region 1 (under the 1G table), a vCPU inside.
    let aug_2m = |mut rest: Vec<Op>| {
        let mut v = vec![host(aug, 1, 512, true), Op::Enter(0)];
        v.append(&mut rest);
        v
    };
    vec![
        (
            // KVM's split of a pending 2M leaf for a 4K ACCEPT: the exit, BLOCK, TRACK with
            // the vCPU out, DEMOTE, then the 4K ACCEPT succeeds and the 2M one mismatches;
            // then the 511 pending pages and the accepted one cannot be promoted, while the
            // second 2M leaf, demoted whole, can.
            "seed-split-for-4k-accept",
            runnable(
                0,
                aug_2m(vec![
                    accept(0, 0, 513, true),
                    Op::Exit(0),
                    host(block, 1, 512, true),
                    Op::Track,
                    host(demote, 1, 512, true),
                    Op::Enter(0),
                    accept(0, 0, 513, true),
                    accept(0, 1, 512, true),
                    Op::Write {
                        vcpu: 0,
                        level: 0,
                        page: 513,
                        tag: 3,
                    },
                    Op::Read { vcpu: 0, page: 513 },
                    Op::Exit(0),
                    host(block, 1, 512, true),
                    Op::Track,
                    host(promote, 1, 512, true),
                    host(aug, 1, 1024, true),
                    host(block, 1, 1024, true),
                    Op::Track,
                    host(demote, 1, 1024, true),
                    host(block, 1, 1024, true),
                    Op::Track,
                    host(promote, 1, 1024, true),
                ]),
            ),
        ),
        (
            // RANGE.BLOCK resets an interrupted 2M ACCEPT's counter: after BLOCK, TRACK and
            // UNBLOCK the ACCEPT starts over.
            "seed-block-resets-accept-counter",
            runnable(
                0,
                aug_2m(vec![
                    accept(0, 1, 512, false),
                    end(0, true, 200),
                    Op::Exit(0),
                    host(block, 1, 512, true),
                    Op::Track,
                    host(unblock, 1, 512, true),
                    accept(0, 1, 512, false),
                    end(0, true, 400),
                ]),
            ),
        ),
        (
            // A 2M ACCEPT interrupted twice, then completed; a 4K ACCEPT inside reads it as
            // ALREADY_ACCEPTED at 2M.
            "seed-interrupted-2m-accept",
            runnable(
                0,
                aug_2m(vec![
                    accept(0, 1, 512, false),
                    end(0, true, 100),
                    accept(0, 1, 512, false),
                    end(0, true, 300),
                    accept(0, 1, 512, true),
                    accept(0, 0, 767, true),
                ]),
            ),
        ),
        (
            // A SEAMCALL racing an ACCEPT on the same entry: PAGE.AUG-side BUSY sets host
            // priority, so the next ACCEPT backs off with BUSY too.
            "seed-host-priority",
            runnable(
                0,
                aug_2m(vec![
                    accept(0, 1, 512, false),
                    host(block, 1, 512, true),
                    end(0, false, 0),
                    Op::Enter(1),
                    accept(1, 1, 512, true),
                    host(block, 1, 512, true),
                ]),
            ),
        ),
        (
            // PROMOTE of 512 accepted 4K pages back to 2M, then REMOVE and SEPT.REMOVE.
            "seed-promote-remove",
            build_time(vec![
                host(sept_add, 1, 0, true),
                host(aug, 0, 0, true),
                host(promote, 1, 0, true),
                Op::Finalize,
                host(block, 1, 0, true),
                Op::Track,
                Op::Track,
                host(promote, 1, 0, true),
                host(unblock, 1, 0, true),
                host(block, 0, 0, true),
                Op::Track,
                host(remove, 0, 0, true),
                host(block, 1, 0, true),
                Op::Track,
                host(sept_remove, 1, 0, true),
            ]),
        ),
        (
            // Explicit demotion: a 4K ACCEPT inside a pending 2M leaf is told SIZE_MISMATCH.
            "seed-explicit-demotion",
            runnable(1, aug_2m(vec![accept(0, 0, 768, true)])),
        ),
        (
            // Non-blocking resize: DEMOTE of an unblocked mapped leaf while a write runs.
            "seed-non-blocking-demote",
            runnable(
                2,
                aug_2m(vec![
                    accept(0, 1, 512, true),
                    host(demote, 1, 512, false),
                    Op::Write {
                        vcpu: 0,
                        level: 0,
                        page: 516,
                        tag: 9,
                    },
                    end(0, false, 0),
                    Op::Read { vcpu: 0, page: 516 },
                ]),
            ),
        ),
        (
            // A module without demote interruptibility restarts an interrupted DEMOTE.
            "seed-demote-restartable",
            runnable(
                4,
                aug_2m(vec![
                    Op::Exit(0),
                    host(block, 1, 512, true),
                    Op::Track,
                    host(demote, 1, 512, false),
                    end(0, true, 0),
                    host(demote, 1, 512, true),
                ]),
            ),
        ),
        (
            // 1G: the accept-1g profile's AUG of the whole 1G range is beyond the window.
            "seed-accept-1g",
            runnable(
                3,
                vec![Op::Enter(0), accept(0, 2, 0, true), host(aug, 2, 0, true)],
            ),
        ),
        (
            // With no 1G table: a 1G ACCEPT exits at the FREE 1G entry, and a 1G AUG (the
            // accept-1g proposal) would make a 1G leaf over memory outside the window, where
            // both models stop.
            "seed-aug-1g-capacity",
            Ops {
                gig_table: false,
                ..runnable(
                    3,
                    vec![accept(0, 2, 0, true), host(aug, 2, 0, true), Op::Track],
                )
            },
        ),
        (
            // Build time: PAGE.ADD, and PAGE.ADD against another SEAMCALL in flight (the
            // TDR lock).
            "seed-build-time-add",
            build_time(vec![
                host(sept_add, 1, 0, true),
                host(0, 0, 3, true),
                host(aug, 0, 4, false),
                host(0, 0, 255, true),
                end(0, false, 0),
                host(0, 0, 255, false),
                host(block, 0, 3, true),
                end(0, false, 0),
                Op::Finalize,
                Op::Enter(2),
                Op::Read { vcpu: 2, page: 3 },
            ]),
        ),
    ]
}
