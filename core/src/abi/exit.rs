//! What the VMM sees when the module exits to it on an EPT violation: the exit qualification
//! (RCX), the extended exit qualification (RDX) and the faulting GPA (R8).
//!
//! Exit reason 48; for an ACCEPT that cannot proceed the module does not retire the TDCALL, so
//! the guest re-executes it after the next TD entry (tdx-module
//! src/td_dispatcher/vm_exits/td_other_exits.c, src/common/x86_defs/vmcs_defs.h).

use bitflags::bitflags;

use super::{AbiError, PageLevel, SeptEntryState, TdxSeptLevel};

/// VM-exit basic reason for an EPT violation.
pub const EXIT_REASON_EPT_VIOLATION: u32 = 48;

bitflags! {
    /// EPT-violation exit qualification (Intel SDM Vol. 3, table "Exit Qualification for EPT
    /// Violations"). For an ACCEPT exit the module reports a write access with the failing
    /// entry's R/W/X bits clear.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ExitQualification: u64 {
        /// The access was a data read.
        const READ = 1 << 0;
        /// The access was a data write.
        const WRITE = 1 << 1;
        /// The access was an instruction fetch.
        const FETCH = 1 << 2;
        /// The GPA was readable.
        const GPA_READABLE = 1 << 3;
        /// The GPA was writable.
        const GPA_WRITABLE = 1 << 4;
        /// The GPA was executable (supervisor).
        const GPA_EXECUTABLE = 1 << 5;
        /// The GPA was executable for user mode.
        const GPA_EXECUTABLE_USER = 1 << 6;
        /// The guest linear address field is valid.
        const GLA_VALID = 1 << 7;
        /// The access was to the translated linear address (not a paging-structure access).
        const GLA_TRANSLATED = 1 << 8;
        /// Advanced EPT information: user-mode linear address.
        const USER_LINEAR = 1 << 9;
        /// Advanced EPT information: read/write linear address.
        const RW_LINEAR = 1 << 10;
        /// Advanced EPT information: execute-disable linear address.
        const XD_LINEAR = 1 << 11;
        /// NMI unblocking due to IRET.
        const NMI_UNBLOCKING = 1 << 12;
        /// Shadow-stack access.
        const SHADOW_STACK = 1 << 13;
        /// Supervisor shadow-stack page.
        const SUPERVISOR_SHADOW_STACK = 1 << 14;
        /// Guest-paging verification.
        const PAGING_VERIFICATION = 1 << 15;
        /// Asynchronous to instruction execution.
        const ASYNC = 1 << 16;
    }
}

impl ExitQualification {
    /// Whether the failing entry granted any permission (KVM: `PROT_MASK` bits 5:3). An
    /// EEQ-type-6 exit with none means "guest touched unaccepted memory".
    pub const fn has_permission_bits(self) -> bool {
        self.intersects(
            ExitQualification::GPA_READABLE
                .union(ExitQualification::GPA_WRITABLE)
                .union(ExitQualification::GPA_EXECUTABLE),
        )
    }
}

/// Extended exit qualification type, bits 3:0 of RDX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EeqType {
    /// No extended information.
    None,
    /// TDG.MEM.PAGE.ACCEPT could not proceed; info carries the accept details.
    Accept,
    /// GPA details.
    GpaDetails,
    /// TDG.MEM.PAGE.ATTR.WR.
    AttrWr,
    /// The guest accessed a PENDING page with #VE disabled (PENDING_VE_DISABLE).
    PendingEptViolation,
}

impl EeqType {
    /// The 4-bit encoding.
    pub const fn raw(self) -> u8 {
        match self {
            EeqType::None => 0,
            EeqType::Accept => 1,
            EeqType::GpaDetails => 2,
            EeqType::AttrWr => 5,
            EeqType::PendingEptViolation => 6,
        }
    }

    /// Decodes the 4-bit type.
    pub const fn from_raw(raw: u8) -> Result<Self, AbiError> {
        Ok(match raw {
            0 => EeqType::None,
            1 => EeqType::Accept,
            2 => EeqType::GpaDetails,
            5 => EeqType::AttrWr,
            6 => EeqType::PendingEptViolation,
            _ => return Err(AbiError::UnknownEeqType),
        })
    }
}

/// The info field of an ACCEPT-type EEQ (bits 63:32 of RDX).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AcceptExitInfo {
    /// The level the guest asked for (`req_sept_level`, info bits 2:0).
    pub requested: PageLevel,
    /// The level at which the walk stopped (`err_sept_level`, bits 5:3).
    pub error_level: PageLevel,
    /// The state of the entry where the walk stopped (`err_sept_state`, bits 13:6).
    pub error_state: SeptEntryState,
    /// Whether that entry is a leaf (`err_sept_is_leaf`, bit 14).
    pub error_is_leaf: bool,
    /// The VM index (bits 21:20); 0 for the primary VM.
    pub vm_index: u8,
}

impl AcceptExitInfo {
    /// Encodes the 32-bit info field.
    pub const fn encode(self) -> u32 {
        (self.requested.tdx().raw() as u32)
            | ((self.error_level.tdx().raw() as u32) << 3)
            | ((self.error_state.public_code() as u32) << 6)
            | ((self.error_is_leaf as u32) << 14)
            | (((self.vm_index & 0x3) as u32) << 20)
    }

    /// Decodes the 32-bit info field; undefined bits set, invalid levels or unknown state codes
    /// are errors.
    pub const fn decode(info: u32) -> Result<Self, AbiError> {
        const DEFINED: u32 = 0x7 | (0x7 << 3) | (0xFF << 6) | (1 << 14) | (0x3 << 20);
        if info & !DEFINED != 0 {
            return Err(AbiError::ReservedBitsSet);
        }
        let requested = match TdxSeptLevel::new((info & 0x7) as u64) {
            Ok(l) => l.level(),
            Err(e) => return Err(e),
        };
        let error_level = match TdxSeptLevel::new(((info >> 3) & 0x7) as u64) {
            Ok(l) => l.level(),
            Err(e) => return Err(e),
        };
        let error_state = match SeptEntryState::from_public_code(((info >> 6) & 0xFF) as u8) {
            Ok(s) => s,
            Err(e) => return Err(e),
        };
        Ok(AcceptExitInfo {
            requested,
            error_level,
            error_state,
            error_is_leaf: info & (1 << 14) != 0,
            vm_index: ((info >> 20) & 0x3) as u8,
        })
    }
}

/// A decoded extended exit qualification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExtendedExitQualification {
    /// Type NONE.
    None,
    /// Type ACCEPT, with its info.
    Accept(AcceptExitInfo),
    /// Type GPA_DETAILS; info kept raw.
    GpaDetails(u32),
    /// Type ATTR_WR; info kept raw.
    AttrWr(u32),
    /// Type PENDING_EPT_VIOLATION: access to a PENDING page with #VE disabled.
    PendingEptViolation,
}

impl ExtendedExitQualification {
    /// The type.
    pub const fn eeq_type(self) -> EeqType {
        match self {
            ExtendedExitQualification::None => EeqType::None,
            ExtendedExitQualification::Accept(_) => EeqType::Accept,
            ExtendedExitQualification::GpaDetails(_) => EeqType::GpaDetails,
            ExtendedExitQualification::AttrWr(_) => EeqType::AttrWr,
            ExtendedExitQualification::PendingEptViolation => EeqType::PendingEptViolation,
        }
    }

    /// Encodes RDX.
    pub const fn encode(self) -> u64 {
        let info: u32 = match self {
            ExtendedExitQualification::None | ExtendedExitQualification::PendingEptViolation => 0,
            ExtendedExitQualification::Accept(a) => a.encode(),
            ExtendedExitQualification::GpaDetails(i) | ExtendedExitQualification::AttrWr(i) => i,
        };
        (self.eeq_type().raw() as u64) | ((info as u64) << 32)
    }

    /// Decodes RDX. Bits 31:4 are reserved, and so is the info of the types that carry none
    /// (NONE, PENDING_EPT_VIOLATION); an unknown type or a malformed ACCEPT info is an error.
    pub const fn decode(rdx: u64) -> Result<Self, AbiError> {
        if rdx & 0xFFFF_FFF0 != 0 {
            return Err(AbiError::ReservedBitsSet);
        }
        let info = (rdx >> 32) as u32;
        let ty = match EeqType::from_raw((rdx & 0xF) as u8) {
            Ok(t) => t,
            Err(e) => return Err(e),
        };
        Ok(match ty {
            // Types without info: the info bits must be zero.
            EeqType::None | EeqType::PendingEptViolation if info != 0 => {
                return Err(AbiError::ReservedBitsSet);
            }
            EeqType::None => ExtendedExitQualification::None,
            EeqType::Accept => match AcceptExitInfo::decode(info) {
                Ok(a) => ExtendedExitQualification::Accept(a),
                Err(e) => return Err(e),
            },
            EeqType::GpaDetails => ExtendedExitQualification::GpaDetails(info),
            EeqType::AttrWr => ExtendedExitQualification::AttrWr(info),
            EeqType::PendingEptViolation => ExtendedExitQualification::PendingEptViolation,
        })
    }

    /// The accept level carried by the exit, if it is an ACCEPT exit.
    pub const fn accept_level(self) -> Option<PageLevel> {
        match self {
            ExtendedExitQualification::Accept(a) => Some(a.requested),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_info_layout() {
        let info = AcceptExitInfo {
            requested: PageLevel::Size4K,
            error_level: PageLevel::Size2M,
            error_state: SeptEntryState::Pending,
            error_is_leaf: true,
            vm_index: 0,
        };
        // req 0, err level 1 << 3, state 2 << 6, leaf 1 << 14.
        assert_eq!(info.encode(), 0x8 | 0x80 | 0x4000);
        let eeq = ExtendedExitQualification::Accept(info);
        assert_eq!(eeq.encode(), 1 | (0x4088u64 << 32));
        assert_eq!(ExtendedExitQualification::decode(eeq.encode()), Ok(eeq));
        assert_eq!(eeq.accept_level(), Some(PageLevel::Size4K));
    }

    #[test]
    fn malformed_eeq_is_an_error() {
        assert_eq!(
            ExtendedExitQualification::decode(3),
            Err(AbiError::UnknownEeqType)
        );
        assert_eq!(
            ExtendedExitQualification::decode(1 << 4),
            Err(AbiError::ReservedBitsSet)
        );
        // ACCEPT with requested level 3.
        assert_eq!(
            ExtendedExitQualification::decode(1 | (3u64 << 32)),
            Err(AbiError::InvalidTdxLevel)
        );
        // ACCEPT with state code 0x55.
        assert_eq!(
            ExtendedExitQualification::decode(1 | ((0x55u64 << 6) << 32)),
            Err(AbiError::UnknownSeptState)
        );
    }

    #[test]
    fn permission_bits() {
        assert!(!ExitQualification::WRITE.has_permission_bits());
        assert!((ExitQualification::WRITE | ExitQualification::GPA_READABLE).has_permission_bits());
    }
}
