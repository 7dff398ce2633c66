//! The TDX ABI encodings: page levels, GPAs, leaf numbers, the ACCEPT operand, completion
//! statuses, exit qualifications and public S-EPT state codes.
//!
//! Every decoder here is pure, takes an arbitrary 64-bit value and returns a typed error rather
//! than panicking. Sources: tdx-module (tag TDX_1.5.01) headers and dispatcher, and Linux
//! arch/x86/kvm/vmx/tdx.c, as summarised in shared/reference/tdx-module.md.

mod exit;
mod gpa;
mod leaf;
mod level;
mod status;

use core::fmt;

pub use exit::{
    AcceptExitInfo, EXIT_REASON_EPT_VIOLATION, EeqType, ExitQualification,
    ExtendedExitQualification,
};
pub use gpa::{Gfn, Gpa, Gpaw};
pub use leaf::{SeamcallLeaf, TdcallLeaf, TdcallRax};
pub use level::{
    ENTRIES_PER_TABLE, KvmPgLevel, PAGE_SIZE_1G, PAGE_SIZE_2M, PAGE_SIZE_4K, PageLevel,
    TdxSeptLevel,
};
pub use status::{DetailKind, OperandId, StatusClass, StatusCode, StatusDetail, TdxStatus};

/// Why an encoding could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AbiError {
    /// A TDX S-EPT level above 2.
    InvalidTdxLevel,
    /// A KVM `pg_level` outside 1..=3.
    InvalidKvmLevel,
    /// Bits that must be zero are set.
    ReservedBitsSet,
    /// A leaf number this crate does not model.
    UnknownLeaf,
    /// An extended-exit-qualification type that is reserved.
    UnknownEeqType,
    /// A public S-EPT state code that names no state.
    UnknownSeptState,
    /// An address computation left the 64-bit (or 52-bit GPA) space.
    AddressOverflow,
    /// The ACCEPT operand's GPA is not aligned to its level.
    Misaligned,
    /// The ACCEPT operand's GPA has the shared bit set.
    SharedGpa,
    /// The ACCEPT operand's GPA is at or above MAX_PA (2^GPAW).
    BeyondGpaw,
}

impl AbiError {
    /// A one-line description.
    pub const fn describe(self) -> &'static str {
        match self {
            AbiError::InvalidTdxLevel => "TDX S-EPT level above 2",
            AbiError::InvalidKvmLevel => "KVM pg_level outside 1..=3",
            AbiError::ReservedBitsSet => "reserved bits set",
            AbiError::UnknownLeaf => "unknown leaf number",
            AbiError::UnknownEeqType => "reserved extended exit qualification type",
            AbiError::UnknownSeptState => "unknown public S-EPT state code",
            AbiError::AddressOverflow => "address out of range",
            AbiError::Misaligned => "GPA not aligned to the requested level",
            AbiError::SharedGpa => "GPA has the shared bit set",
            AbiError::BeyondGpaw => "GPA at or above MAX_PA",
        }
    }
}

impl fmt::Display for AbiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The state of one Secure-EPT entry (non-migration subset; tdx-module
/// include/auto_gen/sept_state_lookup.h). The migration states behave as MAPPED or PENDING for
/// ACCEPT and are left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SeptEntryState {
    /// Not present.
    Free,
    /// Points to a lower-level table.
    NlMapped,
    /// A table entry, blocked.
    NlBlocked,
    /// A leaf added by PAGE.AUG, waiting for ACCEPT.
    Pending,
    /// A leaf the guest can access: accepted, or added at build time.
    Mapped,
    /// A mapped leaf, blocked.
    Blocked,
    /// A pending leaf, blocked.
    PendingBlocked,
}

impl SeptEntryState {
    /// Every state.
    pub const ALL: [SeptEntryState; 7] = [
        SeptEntryState::Free,
        SeptEntryState::NlMapped,
        SeptEntryState::NlBlocked,
        SeptEntryState::Pending,
        SeptEntryState::Mapped,
        SeptEntryState::Blocked,
        SeptEntryState::PendingBlocked,
    ];

    /// The public code reported to the VMM.
    pub const fn public_code(self) -> u8 {
        match self {
            SeptEntryState::Free => 0,
            SeptEntryState::Blocked => 1,
            SeptEntryState::Pending => 2,
            SeptEntryState::PendingBlocked => 3,
            SeptEntryState::Mapped => 4,
            SeptEntryState::NlMapped => 0x84,
            SeptEntryState::NlBlocked => 0x81,
        }
    }

    /// The state for a public code.
    pub const fn from_public_code(code: u8) -> Result<Self, AbiError> {
        Ok(match code {
            0 => SeptEntryState::Free,
            1 => SeptEntryState::Blocked,
            2 => SeptEntryState::Pending,
            3 => SeptEntryState::PendingBlocked,
            4 => SeptEntryState::Mapped,
            0x84 => SeptEntryState::NlMapped,
            0x81 => SeptEntryState::NlBlocked,
            _ => return Err(AbiError::UnknownSeptState),
        })
    }

    /// The name in the module's source.
    pub const fn name(self) -> &'static str {
        match self {
            SeptEntryState::Free => "FREE",
            SeptEntryState::NlMapped => "NL_MAPPED",
            SeptEntryState::NlBlocked => "NL_BLOCKED",
            SeptEntryState::Pending => "PENDING",
            SeptEntryState::Mapped => "MAPPED",
            SeptEntryState::Blocked => "BLOCKED",
            SeptEntryState::PendingBlocked => "PENDING_BLOCKED",
        }
    }

    /// A leaf state (maps memory, possibly blocked or pending).
    pub const fn is_leaf(self) -> bool {
        matches!(
            self,
            SeptEntryState::Pending
                | SeptEntryState::Mapped
                | SeptEntryState::Blocked
                | SeptEntryState::PendingBlocked
        )
    }

    /// A non-leaf (table) state.
    pub const fn is_table(self) -> bool {
        matches!(self, SeptEntryState::NlMapped | SeptEntryState::NlBlocked)
    }

    /// Whether the hardware walk goes through this entry (the "present" states).
    pub const fn is_walkable(self) -> bool {
        matches!(self, SeptEntryState::NlMapped)
    }

    /// A blocked state.
    pub const fn is_blocked(self) -> bool {
        matches!(
            self,
            SeptEntryState::NlBlocked | SeptEntryState::Blocked | SeptEntryState::PendingBlocked
        )
    }

    /// The state RANGE.BLOCK makes of this one, if it can be blocked.
    pub const fn blocked(self) -> Option<SeptEntryState> {
        match self {
            SeptEntryState::NlMapped => Some(SeptEntryState::NlBlocked),
            SeptEntryState::Mapped => Some(SeptEntryState::Blocked),
            SeptEntryState::Pending => Some(SeptEntryState::PendingBlocked),
            _ => None,
        }
    }

    /// The state before blocking (what UNBLOCK restores, and what DEMOTE gives the children).
    pub const fn unblocked(self) -> SeptEntryState {
        match self {
            SeptEntryState::NlBlocked => SeptEntryState::NlMapped,
            SeptEntryState::Blocked => SeptEntryState::Mapped,
            SeptEntryState::PendingBlocked => SeptEntryState::Pending,
            other => other,
        }
    }
}

impl fmt::Display for SeptEntryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The operand of TDG.MEM.PAGE.ACCEPT in RCX: bits 2:0 level, 11:3 reserved, 51:12 GPA,
/// 63:52 reserved (tdx-module src/td_dispatcher/vm_exits/tdg_mem_page_accept.c).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AcceptOperand {
    /// The GPA to accept, aligned to `level`.
    pub gpa: Gpa,
    /// The requested level.
    pub level: PageLevel,
}

impl AcceptOperand {
    /// Bits of RCX that must be zero: 11:3 and 63:52.
    pub const RESERVED_MASK: u64 = 0x0000_0000_0000_0FF8 | 0xFFF0_0000_0000_0000;

    /// RCX for this operand (no validation: encodes what it is given, as a guest would).
    pub const fn encode(self) -> u64 {
        (self.gpa.raw() & 0x000F_FFFF_FFFF_F000) | self.level.tdx().raw() as u64
    }

    /// Splits RCX into GPA and level with the checks that need no TD context: reserved bits,
    /// a level the ABI can name, alignment.
    pub const fn decode(rcx: u64) -> Result<Self, AbiError> {
        if rcx & Self::RESERVED_MASK != 0 {
            return Err(AbiError::ReservedBitsSet);
        }
        let level = match TdxSeptLevel::new(rcx & 0x7) {
            Ok(l) => l.level(),
            Err(e) => return Err(e),
        };
        let gpa = Gpa(rcx & 0x000F_FFFF_FFFF_F000);
        if !gpa.is_aligned(level) {
            return Err(AbiError::Misaligned);
        }
        Ok(AcceptOperand { gpa, level })
    }

    /// [`AcceptOperand::decode`] plus the TD-dependent checks: the GPA is below MAX_PA and
    /// private (shared bit clear). Every failure maps to TDX_OPERAND_INVALID with operand RCX.
    pub const fn decode_for(rcx: u64, gpaw: Gpaw) -> Result<Self, AbiError> {
        let op = match Self::decode(rcx) {
            Ok(op) => op,
            Err(e) => return Err(e),
        };
        if !op.gpa.is_within(gpaw) {
            return Err(AbiError::BeyondGpaw);
        }
        if op.gpa.is_shared(gpaw) {
            return Err(AbiError::SharedGpa);
        }
        Ok(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_codes_round_trip() {
        for s in SeptEntryState::ALL {
            assert_eq!(SeptEntryState::from_public_code(s.public_code()), Ok(s));
        }
        assert_eq!(
            SeptEntryState::from_public_code(5),
            Err(AbiError::UnknownSeptState)
        );
    }

    #[test]
    fn block_and_unblock_are_inverse() {
        for s in SeptEntryState::ALL {
            if let Some(b) = s.blocked() {
                assert!(b.is_blocked());
                assert_eq!(b.unblocked(), s);
            }
        }
    }

    #[test]
    fn accept_operand_checks() {
        let op = AcceptOperand {
            gpa: Gpa(0x20_0000),
            level: PageLevel::Size2M,
        };
        assert_eq!(op.encode(), 0x20_0001);
        assert_eq!(AcceptOperand::decode_for(op.encode(), Gpaw::Bits48), Ok(op));
        assert_eq!(AcceptOperand::decode(0x20_1001), Err(AbiError::Misaligned));
        assert_eq!(
            AcceptOperand::decode(0x20_0009),
            Err(AbiError::ReservedBitsSet)
        );
        assert_eq!(
            AcceptOperand::decode(1 << 52),
            Err(AbiError::ReservedBitsSet)
        );
        assert_eq!(AcceptOperand::decode(3), Err(AbiError::InvalidTdxLevel));
        assert_eq!(
            AcceptOperand::decode_for(1 << 47, Gpaw::Bits48),
            Err(AbiError::SharedGpa)
        );
        assert_eq!(
            AcceptOperand::decode_for(1 << 49, Gpaw::Bits48),
            Err(AbiError::BeyondGpaw)
        );
        assert!(AcceptOperand::decode_for(1 << 49, Gpaw::Bits52).is_ok());
        // 1G is a valid encoding; the module profile decides whether it is accepted.
        assert!(AcceptOperand::decode_for(0x4000_0002, Gpaw::Bits48).is_ok());
    }
}
