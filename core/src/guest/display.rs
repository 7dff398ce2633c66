//! How a guest's operations and what they retire with read in traces and logs (replay, the
//! payload's report, the VMM).

use core::fmt;

use super::{GuestEnd, GuestEvent, GuestOp};

impl fmt::Display for GuestOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GuestOp::Accept(a) => write!(f, "TDG.MEM.PAGE.ACCEPT {} {}", a.gpa, a.level),
            GuestOp::AcceptRaw(r) => write!(f, "TDG.MEM.PAGE.ACCEPT RCX={r:#x}"),
            GuestOp::Read(g) => write!(f, "read {g}"),
            GuestOp::Write {
                gpa,
                level,
                content,
            } => write!(f, "write {content} over {gpa} {level}"),
            GuestOp::Verify {
                gpa,
                level,
                content,
            } => write!(f, "verify {content} over {gpa} {level}"),
            GuestOp::ClaimUnit(u) => write!(f, "claim unaccepted unit {u}"),
            GuestOp::ReleaseUnit(u) => write!(f, "release unit {u}"),
        }
    }
}

impl fmt::Display for GuestEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GuestEvent::Status(s) => write!(f, "{s}"),
            GuestEvent::Read(c) => write!(f, "read {c}"),
            GuestEvent::VirtualizationException => f.write_str("#VE"),
            GuestEvent::Wrote => f.write_str("written"),
            GuestEvent::Verified => f.write_str("intact"),
            GuestEvent::Mismatch { gpa, found } => write!(f, "MISMATCH at {gpa}: found {found}"),
            GuestEvent::UnitClaimed => f.write_str("claimed (bit set)"),
            GuestEvent::UnitAccepted => f.write_str("already accepted (bit clear)"),
            GuestEvent::UnitReleased => f.write_str("bit cleared"),
        }
    }
}

impl fmt::Display for GuestEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GuestEnd::Done => f.write_str("done, every marker intact"),
            GuestEnd::Panic { op, status } => write!(
                f,
                "panicked: TDG.MEM.PAGE.ACCEPT {} {} → {status}",
                op.gpa, op.level
            ),
            GuestEnd::DataLoss {
                gpa,
                expected,
                found,
            } => write!(f, "data lost at {gpa}: expected {expected}, found {found}"),
            GuestEnd::Confused => f.write_str("confused: an event it has no handling for"),
        }
    }
}
