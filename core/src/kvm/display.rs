//! How the fault path's and the host operations' ends, mirror SPTEs and mirror-vs-S-EPT
//! mismatches read in traces and logs.

use core::fmt;

use super::{FaultEnd, HostOpEnd, RetPf};

impl fmt::Display for RetPf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RetPf::Retry => "RET_PF_RETRY",
            RetPf::Fixed => "RET_PF_FIXED",
            RetPf::Spurious => "RET_PF_SPURIOUS",
        })
    }
}

impl fmt::Display for FaultEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultEnd::Resume(r) => write!(f, "{r}, back into the guest"),
            FaultEnd::ExitToUserspace => f.write_str("KVM_EXIT_MEMORY_FAULT to userspace"),
            FaultEnd::VmKilled => f.write_str("VM killed (guest access before accepting)"),
            FaultEnd::VmBugged(Some(s)) => write!(f, "KVM_BUG_ON after SEAMCALL status {s}"),
            FaultEnd::VmBugged(None) => f.write_str("KVM_BUG_ON"),
        }
    }
}

impl fmt::Display for HostOpEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostOpEnd::Done => f.write_str("done"),
            HostOpEnd::OutOfMemory => {
                f.write_str("ioctl failed: no table for a split (nothing removed)")
            }
            HostOpEnd::VmBugged(Some(s)) => write!(f, "KVM_BUG_ON after SEAMCALL status {s}"),
            HostOpEnd::VmBugged(None) => f.write_str("KVM_BUG_ON"),
        }
    }
}

impl fmt::Display for super::Spte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_leaf() {
            "leaf"
        } else if self.is_table() {
            "table"
        } else {
            "not present"
        };
        f.write_str(kind)?;
        if self.is_frozen() {
            f.write_str(" (frozen)")?;
        }
        Ok(())
    }
}

impl fmt::Display for super::MirrorMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {} {}: the mirror has ", self.gpa, self.level)?;
        match self.mirror {
            Some(s) => write!(f, "a {s}")?,
            None => f.write_str("no table holding the entry")?,
        }
        f.write_str(", the S-EPT ")?;
        match self.sept {
            Some(s) => write!(f, "{s}"),
            None => f.write_str("no table holding the entry"),
        }
    }
}
