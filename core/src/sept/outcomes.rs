//! The ACCEPT outcome matrix: for every shape the S-EPT can have along one GPA's path and every
//! requested level, what TDG.MEM.PAGE.ACCEPT does, computed by running the model.
//!
//! The letters are those of shared/reference/tdx-module.md ("ACCEPT, outcome by outcome").

use core::fmt;

use crate::abi::{
    AcceptOperand, ExtendedExitQualification, Gpa, PageLevel, SeptEntryState, StatusCode,
};

use super::{AcceptOutcome, ArrayStorage, ModuleProfile, OpState, Sept, SeptConfig, SeptError};

/// The states along one GPA's path: the 1G entry, and below it the 2M and 4K entries where the
/// level above is a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PathStates {
    /// The 1G-level entry.
    pub gig: SeptEntryState,
    /// The 2M-level entry, if the 1G entry is a table.
    pub two_m: Option<SeptEntryState>,
    /// The 4K-level entry, if the 2M entry is a table.
    pub four_k: Option<SeptEntryState>,
}

use SeptEntryState as St;

const fn p(gig: St, two_m: Option<St>, four_k: Option<St>) -> PathStates {
    PathStates { gig, two_m, four_k }
}

/// Every path shape worth distinguishing: each level's entry in each state its parent allows.
pub const PATHS: [PathStates; 17] = [
    p(St::Free, None, None),
    p(St::NlBlocked, None, None),
    p(St::Pending, None, None),
    p(St::Mapped, None, None),
    p(St::Blocked, None, None),
    p(St::PendingBlocked, None, None),
    p(St::NlMapped, Some(St::Free), None),
    p(St::NlMapped, Some(St::NlBlocked), None),
    p(St::NlMapped, Some(St::Pending), None),
    p(St::NlMapped, Some(St::Mapped), None),
    p(St::NlMapped, Some(St::Blocked), None),
    p(St::NlMapped, Some(St::PendingBlocked), None),
    p(St::NlMapped, Some(St::NlMapped), Some(St::Free)),
    p(St::NlMapped, Some(St::NlMapped), Some(St::Pending)),
    p(St::NlMapped, Some(St::NlMapped), Some(St::Mapped)),
    p(St::NlMapped, Some(St::NlMapped), Some(St::Blocked)),
    p(St::NlMapped, Some(St::NlMapped), Some(St::PendingBlocked)),
];

impl fmt::Display for PathStates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1G {}", self.gig)?;
        if let Some(s) = self.two_m {
            write!(f, " / 2M {s}")?;
        }
        if let Some(s) = self.four_k {
            write!(f, " / 4K {s}")?;
        }
        Ok(())
    }
}

/// The outcome class of shared/reference/tdx-module.md, or the operand check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutcomeClass {
    /// ALREADY_ACCEPTED from a larger accepted leaf.
    A,
    /// An exit from above the requested level (or, with explicit demotion, SIZE_MISMATCH for a
    /// larger pending leaf).
    B,
    /// BUSY.
    C,
    /// SIZE_MISMATCH: mapped smaller.
    D,
    /// ALREADY_ACCEPTED at the requested level.
    E,
    /// An exit at the requested level.
    F,
    /// Accepted.
    G,
    /// The operand was rejected (OPERAND_INVALID).
    Operand,
}

impl OutcomeClass {
    /// The letter (or `-` for an operand error).
    pub const fn letter(self) -> &'static str {
        match self {
            OutcomeClass::A => "A",
            OutcomeClass::B => "B",
            OutcomeClass::C => "C",
            OutcomeClass::D => "D",
            OutcomeClass::E => "E",
            OutcomeClass::F => "F",
            OutcomeClass::G => "G",
            OutcomeClass::Operand => "-",
        }
    }

    /// Classifies an outcome of an ACCEPT at `requested`.
    pub fn of(outcome: &AcceptOutcome, requested: PageLevel) -> Option<OutcomeClass> {
        Some(match outcome {
            AcceptOutcome::Completed(s) => match s.code() {
                StatusCode::Success => OutcomeClass::G,
                StatusCode::OperandBusy => OutcomeClass::C,
                StatusCode::OperandInvalid => OutcomeClass::Operand,
                StatusCode::PageAlreadyAccepted if s.level() == Some(requested) => OutcomeClass::E,
                StatusCode::PageAlreadyAccepted => OutcomeClass::A,
                StatusCode::PageSizeMismatch if s.level() == Some(requested) => OutcomeClass::D,
                StatusCode::PageSizeMismatch => OutcomeClass::B,
                _ => return None,
            },
            AcceptOutcome::Exit(e) => match e.eeq {
                ExtendedExitQualification::Accept(a) if a.error_level == requested => {
                    OutcomeClass::F
                }
                ExtendedExitQualification::Accept(_) => OutcomeClass::B,
                _ => return None,
            },
            AcceptOutcome::Interrupted => return None,
        })
    }
}

/// The GPA the matrix accepts at: inside the second GiB, 2M region 1, page 1.
const TARGET: u64 = 0x4020_1000;

/// What ACCEPT at `requested` does on a runnable TD of `profile` whose entries along the target
/// GPA's path are `path`.
pub fn accept_outcome(
    profile: ModuleProfile,
    path: PathStates,
    requested: PageLevel,
) -> Result<AcceptOutcome, SeptError> {
    let mut config = SeptConfig::new(Gpa(0x4000_0000), 512);
    config.profile = profile;
    let mut sept: Sept<ArrayStorage<1, 512, 1>> = Sept::new(config, ArrayStorage::new())?;
    sept.arrange_op_state(OpState::Runnable);
    let target = Gpa(TARGET);
    sept.arrange(target, PageLevel::Size1G, path.gig)?;
    if let Some(s) = path.two_m {
        sept.arrange(target, PageLevel::Size2M, s)?;
    }
    if let Some(s) = path.four_k {
        sept.arrange(target, PageLevel::Size4K, s)?;
    }
    let rcx = AcceptOperand {
        gpa: target.align_down(requested),
        level: requested,
    }
    .encode();
    sept.accept(rcx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::TdxStatus;

    #[test]
    fn every_path_and_level_has_a_class() {
        for (_, profile) in ModuleProfile::NAMED {
            for path in PATHS {
                for level in PageLevel::ALL {
                    let o = accept_outcome(profile, path, level).unwrap();
                    assert!(
                        OutcomeClass::of(&o, level).is_some(),
                        "{path} {level}: {o:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn seed_rows() {
        let tdx = ModuleProfile::TDX_1_5;
        let pending_2m = PATHS[8];
        let o = accept_outcome(tdx, pending_2m, PageLevel::Size4K).unwrap();
        assert_eq!(
            OutcomeClass::of(&o, PageLevel::Size4K),
            Some(OutcomeClass::B)
        );
        let o = accept_outcome(tdx, pending_2m, PageLevel::Size2M).unwrap();
        assert_eq!(o, AcceptOutcome::Completed(TdxStatus::SUCCESS));
        let o = accept_outcome(tdx, pending_2m, PageLevel::Size1G).unwrap();
        assert_eq!(
            OutcomeClass::of(&o, PageLevel::Size1G),
            Some(OutcomeClass::Operand)
        );
    }
}
