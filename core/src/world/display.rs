//! How a world's choices and step notes read in traces and logs: a choice as its trace token
//! (`v0` a vCPU's step, `i0` an interrupt on it, `h0` a host actor's step), a note as what
//! retired and how a fault path or host operation ended.

use core::fmt;

use super::{Choice, StepNote};

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
