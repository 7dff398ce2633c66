//! How a policy's decisions read in traces: the question (the exit, the leaf in the way) and
//! what the design does about it, in the kvm list's words.

use core::fmt;

use super::{AcceptPlan, Decision, SplitDecision};

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Decision::Exit { exit, plan } => {
                match exit.accept_level {
                    Some(l) => write!(f, "ACCEPT exit at {l} for {}", exit.gfn)?,
                    None => write!(f, "exit without accept information for {}", exit.gfn)?,
                }
                match plan {
                    AcceptPlan::Nothing => f.write_str(": nothing before the fault"),
                    AcceptPlan::GuestInhibit { level, precheck } => write!(
                        f,
                        ": split what is mapped above {level} in its range under the write \
                         lock and set GUEST_INHIBIT above it{}",
                        if precheck {
                            " (unless the lock-free pre-check finds it set)"
                        } else {
                            ""
                        }
                    ),
                }
            }
            Decision::MaxLevel { gfn, level } => {
                write!(f, "{gfn} maps at most at {level}")
            }
            Decision::HugeLeaf { query, decision } => {
                write!(
                    f,
                    "{} leaf in the way, fault at {}: ",
                    query.leaf, query.goal
                )?;
                f.write_str(match decision {
                    SplitDecision::Refuse => "refuses the split → RET_PF_RETRY",
                    SplitDecision::SplitInPlace => {
                        "splits it under the read lock (BLOCK, TRACK, DEMOTE)"
                    }
                    SplitDecision::KeepHugeLeaf => "keeps the huge leaf → RET_PF_SPURIOUS",
                    SplitDecision::BugVm => "KVM_BUG_ON: the VM is bugged",
                })
            }
        }
    }
}
