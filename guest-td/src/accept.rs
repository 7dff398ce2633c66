//! The accept loop: accepts a GPA range with real TDG.MEM.PAGE.ACCEPT calls, largest level
//! first, and prints every status it gets.
//!
//! The fallback rules are tdx-guest 0.6.0's (`accept_memory` / `try_accept_one`, the
//! "tdx-guest" row of shared/reference/guests.md), read from the core's own table
//! ([`hugesept_core::guest::rules::react`]), starting at 2M instead of 1G:
//! - a level is skipped without a TDCALL when the position is not aligned to it or less than
//!   one page of it remains;
//! - PAGE_SIZE_MISMATCH or OPERAND_INVALID at 2M: try 4K at the same position;
//! - PAGE_ALREADY_ACCEPTED at 4K counts as accepted; at 2M the page is redone 4K by 4K, as
//!   tdx-guest does (512 TDCALLs for a 2M page that is already accepted);
//! - anything else, or SIZE_MISMATCH/OPERAND_INVALID at 4K, stops the loop with an error.

use hugesept_core::abi::{AcceptOperand, Gpa, PAGE_SIZE_4K, PageLevel, StatusCode, TdxStatus};
use hugesept_core::guest::GuestKind;
use hugesept_core::guest::rules::{self, Reaction};

use crate::{println, tdcall};

/// The range to accept (placeholder until the VMM passes one): 4 MiB at 128 MiB.
pub const ACCEPT_START: Gpa = Gpa(0x0800_0000);
/// Length of the range to accept.
pub const ACCEPT_BYTES: u64 = 4 << 20;

const _: () = assert!(
    ACCEPT_START.is_aligned(PageLevel::Size4K) && ACCEPT_BYTES.is_multiple_of(PAGE_SIZE_4K)
);

/// Levels tried at each position, largest first.
const LEVELS: [PageLevel; 2] = [PageLevel::Size2M, PageLevel::Size4K];

/// Why the loop stopped early.
#[derive(Clone, Copy)]
pub enum Failure {
    /// A TDCALL failed in a way the strategy does not recover from.
    Status {
        /// The operand of the failed call.
        op: AcceptOperand,
        /// Its status.
        status: TdxStatus,
    },
    /// No level fits the position (misaligned, or less than 4K left).
    NoLevelFits(Gpa),
    /// The range overlaps this image, or wraps around the address space.
    BadRange,
}

/// Counters for the summary line.
#[derive(Clone, Copy, Default)]
pub struct Summary {
    /// TDCALLs issued.
    pub tdcalls: u32,
    /// Pages accepted by this run, 2M and 4K.
    pub accepted_2m: u32,
    /// See `accepted_2m`.
    pub accepted_4k: u32,
    /// 4K pages found already accepted.
    pub already_accepted: u32,
    /// Calls that sent the strategy to a smaller level.
    pub fallbacks: u32,
    /// Bytes of the range dealt with (accepted now or before).
    pub done_bytes: u64,
    /// Set when the loop stopped early.
    pub failure: Option<Failure>,
}

/// Prints statuses, folding consecutive calls with the same level and status into one line
/// plus a repeat count (each byte of output is a VM exit).
struct StatusLog {
    last: Option<(PageLevel, TdxStatus)>,
    repeats: u32,
    last_gpa: Gpa,
}

impl StatusLog {
    const fn new() -> Self {
        StatusLog {
            last: None,
            repeats: 0,
            last_gpa: Gpa(0),
        }
    }

    fn record(&mut self, op: AcceptOperand, status: TdxStatus) {
        if self.last == Some((op.level, status)) {
            self.repeats = self.repeats.saturating_add(1);
            self.last_gpa = op.gpa;
            return;
        }
        self.flush();
        println!(
            "ACCEPT {} {} (rcx {:#x}) -> {}",
            op.level,
            op.gpa,
            op.encode(),
            status
        );
        self.last = Some((op.level, status));
        self.last_gpa = op.gpa;
    }

    fn flush(&mut self) {
        if self.repeats > 0 {
            println!(
                "  ... and {} more like it, the last at {}",
                self.repeats, self.last_gpa
            );
        }
        self.repeats = 0;
    }
}

/// Accepts [`ACCEPT_START`, `ACCEPT_START + ACCEPT_BYTES`) and prints every status.
/// `image` is the physical range [start, end) this program occupies; the accept range must
/// not overlap it.
pub fn run(image: (u64, u64)) -> Summary {
    let mut summary = Summary::default();
    let mut log = StatusLog::new();
    let start = ACCEPT_START;
    let Ok(end) = start.checked_add(ACCEPT_BYTES) else {
        summary.failure = Some(Failure::BadRange);
        return summary;
    };
    // ACCEPT zeroes what it accepts: the range must not hold this program.
    let (image_start, image_end) = image;
    if start.raw() < image_end && image_start < end.raw() {
        summary.failure = Some(Failure::BadRange);
        return summary;
    }

    let mut pos = start;
    'range: while pos < end {
        let remaining = end.raw() - pos.raw();
        let mut advanced = false;
        for level in LEVELS {
            if !pos.is_aligned(level) || remaining < level.bytes() {
                continue;
            }
            let op = AcceptOperand { gpa: pos, level };
            let status = tdcall::accept(op);
            summary.tdcalls = summary.tdcalls.saturating_add(1);
            log.record(op, status);
            match rules::react(GuestKind::TdxGuest, level, status, 0) {
                // At 2M the next position is misaligned for 2M until the next 2M boundary,
                // so going one level down here accepts the 512 children one by one.
                Reaction::Smaller | Reaction::Children => {
                    summary.fallbacks = summary.fallbacks.saturating_add(1);
                }
                // tdx-guest retries nothing and zeroes nothing: the rest is its error path.
                Reaction::Retry | Reaction::ZeroThenAdvance | Reaction::Panic => {
                    summary.failure = Some(Failure::Status { op, status });
                    break 'range;
                }
                Reaction::Advance => {
                    let before = status.code() != StatusCode::Success;
                    let counter = match (before, level) {
                        (true, _) => &mut summary.already_accepted,
                        (_, PageLevel::Size4K) => &mut summary.accepted_4k,
                        _ => &mut summary.accepted_2m,
                    };
                    *counter = counter.saturating_add(1);
                    summary.done_bytes = summary.done_bytes.saturating_add(level.bytes());
                    // `pos + level.bytes() <= end`, checked above.
                    pos = Gpa(pos.raw() + level.bytes());
                    advanced = true;
                    break;
                }
            }
        }
        if !advanced {
            summary.failure = Some(Failure::NoLevelFits(pos));
            break;
        }
    }
    log.flush();
    summary
}

/// Prints the summary line, and the reason for an early stop if there was one.
pub fn print_summary(summary: &Summary) {
    let verdict = if summary.failure.is_none() {
        "ok"
    } else {
        "FAILED"
    };
    println!(
        "accept summary: [{}, +{:#x}): {} TDCALLs, accepted {} x 2M + {} x 4K, \
         {} x 4K already accepted, {} fallbacks, {:#x} of {:#x} bytes done: {}",
        ACCEPT_START,
        ACCEPT_BYTES,
        summary.tdcalls,
        summary.accepted_2m,
        summary.accepted_4k,
        summary.already_accepted,
        summary.fallbacks,
        summary.done_bytes,
        ACCEPT_BYTES,
        verdict
    );
    match summary.failure {
        None => {}
        Some(Failure::Status { op, status }) => {
            println!("accept stopped: {} at {}: {}", op.level, op.gpa, status);
        }
        Some(Failure::NoLevelFits(gpa)) => {
            println!("accept stopped: no page level fits at {gpa}");
        }
        Some(Failure::BadRange) => {
            println!("accept refused: the range overlaps this image or wraps around");
        }
    }
}
