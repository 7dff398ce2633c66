//! A vCPU's program: the core's own guest strategy ([`hugesept_core::guest::Guest`]) built from
//! the boot block, each [`GuestOp`] turned into the real instruction and each result handed to
//! `complete`, stage after stage as the VMM says, counted into the report.
//!
//! - ACCEPT (valid or raw operand): TDG.MEM.PAGE.ACCEPT, the status as RAX returned it.
//! - read, write, verify: real loads and stores (src/memory.rs) between the hugesept calls that
//!   announce the operation and report what it saw; the event comes from what the loads
//!   returned, or #VE when one took it.
//! - lazy-accept claims: the hugesept unit call (the unaccepted bitmap lives with the model).
//! - the program's end: the hugesept end call, whose answer starts the next stage or ends.

use hugesept_core::abi::{Gpa, PageLevel};
use hugesept_core::guest::{GuestEvent, GuestOp, GuestStep};
use hugesept_core::payload::{
    AccessAnswer, AccessKind, AccessRequest, AccessResult, BootInfo, Call, EndCode, Report,
};
use hugesept_core::sept::Content;

use crate::memory::{Touch, Window};
use crate::tdcall;

/// Why a program stopped before its end.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// The VMM said the VM is over.
    Stopped,
    /// The VMM refused a call or answered something this payload cannot use.
    Protocol,
}

/// Runs vCPU `index`'s program to its end; the report says how it went. `publish` gets the
/// report after every operation that retired (with the end "stopped" until the program
/// ends), so the VMM finds it current even if this vCPU never runs again.
pub fn run(info: &BootInfo, index: usize, window: Window, publish: &dyn Fn(&Report)) -> Report {
    let mut report = Report {
        vcpu: index as u32,
        end: EndCode::Stopped.code() as u32,
        ..Report::default()
    };
    publish(&report);
    let (end, detail) = match run_stages(info, index, window, &mut report, publish) {
        Ok(e) => e,
        Err(Stop::Stopped) => (EndCode::Stopped, 0),
        Err(Stop::Protocol) => (EndCode::Fault, hugesept_core::payload::FAULT_PROTOCOL),
    };
    report.end = end.code() as u32;
    report.detail = detail;
    report
}

fn run_stages(
    info: &BootInfo,
    index: usize,
    window: Window,
    report: &mut Report,
    publish: &dyn Fn(&Report),
) -> Result<(EndCode, u64), Stop> {
    let program = info.program(index).ok_or(Stop::Protocol)?;
    let mut stage = 0usize;
    loop {
        let mut guest = program.stage(stage).ok_or(Stop::Protocol)?.guest();
        let end = loop {
            match guest.next_op() {
                GuestStep::End(end) => break end,
                GuestStep::Op(op) => {
                    let ev = perform(op, window)?;
                    report.count(op, ev);
                    publish(report);
                    guest.complete(ev);
                }
            }
        };
        let (code, detail) = EndCode::of(end);
        if code == EndCode::Done {
            report.stages_done = report.stages_done.saturating_add(1);
            publish(report);
        }
        let [answer, _, _] =
            tdcall::hugesept(Call::ProgramEnd, code.code(), detail).ok_or(Stop::Protocol)?;
        match answer {
            0 if code == EndCode::Done => stage = stage.saturating_add(1),
            1 => return Ok((code, detail)),
            3 => return Err(Stop::Stopped),
            _ => return Err(Stop::Protocol),
        }
    }
}

/// Performs one operation for real; what came back.
fn perform(op: GuestOp, window: Window) -> Result<GuestEvent, Stop> {
    match op {
        GuestOp::Accept(a) => Ok(GuestEvent::Status(tdcall::accept(a.encode()))),
        GuestOp::AcceptRaw(rcx) => Ok(GuestEvent::Status(tdcall::accept(rcx))),
        GuestOp::Read(gpa) => access(
            AccessRequest {
                kind: AccessKind::Read,
                level: PageLevel::Size4K,
                content: Content::NONE,
                gpa,
            },
            window,
        ),
        GuestOp::Write {
            gpa,
            level,
            content,
        } => access(
            AccessRequest {
                kind: AccessKind::Write,
                level,
                content,
                gpa,
            },
            window,
        ),
        GuestOp::Verify {
            gpa,
            level,
            content,
        } => access(
            AccessRequest {
                kind: AccessKind::Verify,
                level,
                content,
                gpa,
            },
            window,
        ),
        GuestOp::ClaimUnit(unit) => unit_call(0, unit),
        GuestOp::ReleaseUnit(unit) => unit_call(1, unit),
    }
}

fn unit_call(what: u64, unit: Gpa) -> Result<GuestEvent, Stop> {
    let [answer, _, _] = tdcall::hugesept(Call::Unit, what, unit.raw()).ok_or(Stop::Protocol)?;
    match (what, answer) {
        (0, 0) => Ok(GuestEvent::UnitClaimed),
        (0, 1) => Ok(GuestEvent::UnitAccepted),
        (1, 2) => Ok(GuestEvent::UnitReleased),
        (_, 3) => Err(Stop::Stopped),
        _ => Err(Stop::Protocol),
    }
}

/// A memory operation: announced, then the real loads or stores, then their result reported.
/// A load or store may take #VE (the page is PENDING and #VE is enabled): the operation stops
/// there and the guest strategy gets [`GuestEvent::VirtualizationException`].
fn access(req: AccessRequest, window: Window) -> Result<GuestEvent, Stop> {
    let (r12, r13) = req.encode();
    let [answer, _, _] = tdcall::hugesept(Call::AccessBegin, r12, r13).ok_or(Stop::Protocol)?;
    match AccessAnswer::from_code(answer).ok_or(Stop::Protocol)? {
        AccessAnswer::Go => {}
        AccessAnswer::Stop => return Err(Stop::Stopped),
    }
    let pages = req.level.pages_4k();
    let (result, ev) = match req.kind {
        AccessKind::Read => match window.read(req.gpa).map_err(|_| Stop::Protocol)? {
            Touch::Done(found) => (
                AccessResult {
                    kind: req.kind,
                    found,
                    page: req.gpa,
                    ve: false,
                },
                GuestEvent::Read(found.unwrap_or(Content::NONE)),
            ),
            Touch::Ve(at) => took_ve(req, at)?,
        },
        AccessKind::Write => match window
            .write(req.gpa, pages, req.content)
            .map_err(|_| Stop::Protocol)?
        {
            Touch::Done(()) => (
                AccessResult {
                    kind: req.kind,
                    found: Some(req.content),
                    page: Gpa(0),
                    ve: false,
                },
                GuestEvent::Wrote,
            ),
            Touch::Ve(at) => took_ve(req, at)?,
        },
        AccessKind::Verify => verify(req, pages, window)?,
    };
    let (a, b) = result.encode();
    let [answer, _, _] = tdcall::hugesept(Call::AccessEnd, a, b).ok_or(Stop::Protocol)?;
    match answer {
        0 => Ok(ev),
        3 => Err(Stop::Stopped),
        _ => Err(Stop::Protocol),
    }
}

/// The result of an access whose load or store at `at` took #VE: the handler must have
/// recorded #VE information naming that address (the window is identity-mapped, so linear and
/// physical addresses agree) and the kind of access (exit qualification bit 0 a read, bit 1 a
/// write).
fn took_ve(req: AccessRequest, at: u64) -> Result<(AccessResult, GuestEvent), Stop> {
    let write = req.kind == AccessKind::Write;
    match crate::cpu::take_ve() {
        Some((gla, gpa, qualification))
            if gla == at
                && gpa & !0xfff == at & !0xfff
                && qualification & 2 == u64::from(write) << 1 => {}
        _ => return Err(Stop::Protocol),
    }
    Ok((
        AccessResult {
            kind: req.kind,
            found: None,
            page: Gpa(at & !0xfff),
            ve: true,
        },
        GuestEvent::VirtualizationException,
    ))
}

/// Reads back every 4K page of a verify: the first without its marker is the mismatch.
fn verify(
    req: AccessRequest,
    pages: u32,
    window: Window,
) -> Result<(AccessResult, GuestEvent), Stop> {
    for p in 0..u64::from(pages) {
        let page = Gpa(req.gpa.raw().saturating_add(p << 12));
        let found = match window.read(page).map_err(|_| Stop::Protocol)? {
            Touch::Done(found) => found,
            Touch::Ve(at) => return took_ve(req, at),
        };
        if found != Some(req.content) {
            return Ok((
                AccessResult {
                    kind: req.kind,
                    found,
                    page,
                    ve: false,
                },
                GuestEvent::Mismatch {
                    gpa: page,
                    found: found.unwrap_or(Content::NONE),
                },
            ));
        }
    }
    Ok((
        AccessResult {
            kind: req.kind,
            found: Some(req.content),
            page: Gpa(0),
            ve: false,
        },
        GuestEvent::Verified,
    ))
}
