//! How a world's choices and step notes read in traces and logs: a choice as its trace token
//! (`v0` a vCPU's step, `i0` an interrupt on it, `h0` a host actor's step), a note as what
//! retired and how a fault path or host operation ended; verdicts, broken invariants and
//! why a schedule stopped, decoded.

use core::fmt;

use super::{Choice, ScheduleError, StepNote, Verdict, Violation};

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choice::Vcpu(i) => write!(f, "v{i}"),
            Choice::Interrupt(i) => write!(f, "i{i}"),
            Choice::Host(i) => write!(f, "h{i}"),
        }
    }
}

impl fmt::Display for StepNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((op, ev)) = self.retired {
            write!(f, "{op} → {ev}")?;
        }
        if let Some(e) = self.fault_end {
            write!(f, "fault path ends: {e}")?;
        }
        if let Some(e) = self.host_end {
            write!(f, "host operation ends: {e}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Violation::SeptInconsistent => f.write_str("the S-EPT model's storage is inconsistent"),
            Violation::MirrorMismatch(m) => write!(f, "mirror and S-EPT disagree {m}"),
            Violation::HugeBeforeRunnable(g) => {
                write!(f, "a mapping above 4K at {g} before the TD is runnable")
            }
            Violation::Model(e) => write!(f, "the model failed: {e}"),
            Violation::InhibitCleared(g) => {
                write!(f, "GUEST_INHIBIT cleared at {g} (it is one-way)")
            }
            Violation::RemovedOutsideRange(g) => write!(
                f,
                "accepted content at {g} vanished outside any conversion or punch hole"
            ),
            Violation::LeafTooLarge(g) => write!(
                f,
                "a leaf at {g} larger than its guest_memfd folio or over mixed attributes"
            ),
            Violation::StrayPolicyState(v) => write!(
                f,
                "vCPU {v} holds a per-vCPU request window no fault of its own recorded"
            ),
        }
    }
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ScheduleError::Invariant {
                step,
                choice,
                violation,
            } => write!(f, "after step {step} ({choice}): {violation}"),
            ScheduleError::Model(e) => write!(f, "the model failed: {e}"),
            ScheduleError::BudgetExhausted { steps } => {
                write!(
                    f,
                    "budget exhausted: {steps} steps without an end (no verdict)"
                )
            }
            ScheduleError::Stopped { steps } => write!(f, "stopped after {steps} steps"),
        }
    }
}
