//! TDX completion status codes (RAX after a TDCALL or SEAMCALL).
//!
//! Bits 63:32 name the status; bit 63 = error, bit 62 = non-recoverable, bit 60 = a hint that
//! the host can recover. The low 32 bits carry a detail whose meaning depends on the status: an
//! operand id (which register or which internal object was at fault) or an S-EPT level
//! (tdx-module include/auto_gen/tdx_error_codes_defs.h, src/common/helpers/error_reporting.h).
//! Decoding never fails: a status this crate does not know is kept as [`StatusCode::Unknown`].

use core::fmt;

use super::PageLevel;

/// A status code: the upper 32 bits of a completion status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusCode {
    /// TDX_SUCCESS.
    Success,
    /// TDX_PAGE_ALREADY_ACCEPTED, a warning; detail = level of the leaf that maps the GPA.
    PageAlreadyAccepted,
    /// TDX_PAGE_SIZE_MISMATCH; detail = level.
    PageSizeMismatch,
    /// TDX_OPERAND_INVALID; detail = operand id.
    OperandInvalid,
    /// TDX_OPERAND_BUSY; detail = operand id.
    OperandBusy,
    /// TDX_OPERAND_BUSY_HOST_PRIORITY (module-internal; guests see OPERAND_BUSY).
    OperandBusyHostPriority,
    /// TDX_HOST_PRIORITY_BUSY_TIMEOUT, a TD-exit status.
    HostPriorityBusyTimeout,
    /// TDX_EPT_WALK_FAILED; detail = operand (RCX); the VMM gets the stopping entry in RCX/RDX.
    EptWalkFailed,
    /// TDX_GPA_RANGE_NOT_BLOCKED; detail = operand.
    GpaRangeNotBlocked,
    /// TDX_GPA_RANGE_ALREADY_BLOCKED, a warning; detail = operand (RCX, or SEPT_TREE).
    GpaRangeAlreadyBlocked,
    /// TDX_TLB_TRACKING_NOT_DONE; detail = operand (RCX, or SEPT_TREE).
    TlbTrackingNotDone,
    /// TDX_EPT_INVALID_PROMOTE_CONDITIONS; detail = operand (RCX, or SEPT_TREE).
    EptInvalidPromoteConditions,
    /// TDX_EPT_ENTRY_STATE_INCORRECT; detail = operand (RCX, or SEPT_TREE).
    EptEntryStateIncorrect,
    /// TDX_EPT_PAGE_NOT_FREE; detail = operand (RCX, or SEPT_TREE).
    EptPageNotFree,
    /// TDX_OP_STATE_INCORRECT: the TD is not in an op state that allows the call.
    OpStateIncorrect,
    /// TDX_PREVIOUS_TLB_EPOCH_BUSY.
    PreviousTlbEpochBusy,
    /// TDX_INTERRUPTED_RESTARTABLE.
    InterruptedRestartable,
    /// TDX_NO_VALID_VE_INFO: TDG.VP.VEINFO.GET with no #VE information pending
    /// (tdg_vp_veinfo_get.c).
    NoValidVeInfo,
    /// Any other code, kept verbatim.
    Unknown(u32),
}

impl StatusCode {
    /// Every named code (not [`StatusCode::Unknown`]).
    pub const KNOWN: [StatusCode; 18] = [
        StatusCode::Success,
        StatusCode::PageAlreadyAccepted,
        StatusCode::PageSizeMismatch,
        StatusCode::OperandInvalid,
        StatusCode::OperandBusy,
        StatusCode::OperandBusyHostPriority,
        StatusCode::HostPriorityBusyTimeout,
        StatusCode::EptWalkFailed,
        StatusCode::GpaRangeNotBlocked,
        StatusCode::GpaRangeAlreadyBlocked,
        StatusCode::TlbTrackingNotDone,
        StatusCode::EptInvalidPromoteConditions,
        StatusCode::EptEntryStateIncorrect,
        StatusCode::EptPageNotFree,
        StatusCode::OpStateIncorrect,
        StatusCode::PreviousTlbEpochBusy,
        StatusCode::InterruptedRestartable,
        StatusCode::NoValidVeInfo,
    ];

    /// The upper 32 bits.
    pub const fn value(self) -> u32 {
        match self {
            StatusCode::Success => 0x0000_0000,
            StatusCode::PageAlreadyAccepted => 0x0000_0B0A,
            StatusCode::PageSizeMismatch => 0xC000_0B0B,
            StatusCode::OperandInvalid => 0xC000_0100,
            StatusCode::OperandBusy => 0x8000_0200,
            StatusCode::OperandBusyHostPriority => 0x8000_0204,
            StatusCode::HostPriorityBusyTimeout => 0x9000_0205,
            StatusCode::EptWalkFailed => 0xC000_0B00,
            StatusCode::GpaRangeNotBlocked => 0xC000_0B06,
            StatusCode::GpaRangeAlreadyBlocked => 0x0000_0B07,
            StatusCode::TlbTrackingNotDone => 0xC000_0B08,
            StatusCode::EptInvalidPromoteConditions => 0xC000_0B09,
            StatusCode::EptEntryStateIncorrect => 0xC000_0B0D,
            StatusCode::EptPageNotFree => 0xC000_0B0E,
            StatusCode::OpStateIncorrect => 0xC000_0608,
            StatusCode::PreviousTlbEpochBusy => 0x8000_0201,
            StatusCode::InterruptedRestartable => 0x8000_0004,
            StatusCode::NoValidVeInfo => 0xC000_0704,
            StatusCode::Unknown(v) => v,
        }
    }

    /// The code for an upper-32-bit value; never fails.
    pub const fn from_value(v: u32) -> StatusCode {
        match v {
            0x0000_0000 => StatusCode::Success,
            0x0000_0B0A => StatusCode::PageAlreadyAccepted,
            0xC000_0B0B => StatusCode::PageSizeMismatch,
            0xC000_0100 => StatusCode::OperandInvalid,
            0x8000_0200 => StatusCode::OperandBusy,
            0x8000_0204 => StatusCode::OperandBusyHostPriority,
            0x9000_0205 => StatusCode::HostPriorityBusyTimeout,
            0xC000_0B00 => StatusCode::EptWalkFailed,
            0xC000_0B06 => StatusCode::GpaRangeNotBlocked,
            0x0000_0B07 => StatusCode::GpaRangeAlreadyBlocked,
            0xC000_0B08 => StatusCode::TlbTrackingNotDone,
            0xC000_0B09 => StatusCode::EptInvalidPromoteConditions,
            0xC000_0B0D => StatusCode::EptEntryStateIncorrect,
            0xC000_0B0E => StatusCode::EptPageNotFree,
            0xC000_0608 => StatusCode::OpStateIncorrect,
            0x8000_0201 => StatusCode::PreviousTlbEpochBusy,
            0x8000_0004 => StatusCode::InterruptedRestartable,
            0xC000_0704 => StatusCode::NoValidVeInfo,
            other => StatusCode::Unknown(other),
        }
    }

    /// The name in the module's headers.
    pub const fn name(self) -> &'static str {
        match self {
            StatusCode::Success => "TDX_SUCCESS",
            StatusCode::PageAlreadyAccepted => "TDX_PAGE_ALREADY_ACCEPTED",
            StatusCode::PageSizeMismatch => "TDX_PAGE_SIZE_MISMATCH",
            StatusCode::OperandInvalid => "TDX_OPERAND_INVALID",
            StatusCode::OperandBusy => "TDX_OPERAND_BUSY",
            StatusCode::OperandBusyHostPriority => "TDX_OPERAND_BUSY_HOST_PRIORITY",
            StatusCode::HostPriorityBusyTimeout => "TDX_HOST_PRIORITY_BUSY_TIMEOUT",
            StatusCode::EptWalkFailed => "TDX_EPT_WALK_FAILED",
            StatusCode::GpaRangeNotBlocked => "TDX_GPA_RANGE_NOT_BLOCKED",
            StatusCode::GpaRangeAlreadyBlocked => "TDX_GPA_RANGE_ALREADY_BLOCKED",
            StatusCode::TlbTrackingNotDone => "TDX_TLB_TRACKING_NOT_DONE",
            StatusCode::EptInvalidPromoteConditions => "TDX_EPT_INVALID_PROMOTE_CONDITIONS",
            StatusCode::EptEntryStateIncorrect => "TDX_EPT_ENTRY_STATE_INCORRECT",
            StatusCode::EptPageNotFree => "TDX_EPT_PAGE_NOT_FREE",
            StatusCode::OpStateIncorrect => "TDX_OP_STATE_INCORRECT",
            StatusCode::PreviousTlbEpochBusy => "TDX_PREVIOUS_TLB_EPOCH_BUSY",
            StatusCode::InterruptedRestartable => "TDX_INTERRUPTED_RESTARTABLE",
            StatusCode::NoValidVeInfo => "TDX_NO_VALID_VE_INFO",
            StatusCode::Unknown(_) => "unknown TDX status",
        }
    }

    /// How the low 32 bits of a status with this code are to be read.
    pub const fn detail_kind(self) -> DetailKind {
        match self {
            // ACCEPT adds the S-EPT level to these (tdg_mem_page_accept.c: `+ ept_level`).
            StatusCode::PageAlreadyAccepted | StatusCode::PageSizeMismatch => DetailKind::Level,
            // The host-side S-EPT errors carry the operand at fault, usually RCX
            // (`api_error_with_operand_id`, tdh_mem_*.c).
            StatusCode::OperandInvalid
            | StatusCode::OperandBusy
            | StatusCode::OperandBusyHostPriority
            | StatusCode::EptWalkFailed
            | StatusCode::GpaRangeNotBlocked
            | StatusCode::GpaRangeAlreadyBlocked
            | StatusCode::TlbTrackingNotDone
            | StatusCode::EptInvalidPromoteConditions
            | StatusCode::EptEntryStateIncorrect
            | StatusCode::EptPageNotFree => DetailKind::Operand,
            StatusCode::Success
            | StatusCode::OpStateIncorrect
            | StatusCode::HostPriorityBusyTimeout
            | StatusCode::PreviousTlbEpochBusy
            | StatusCode::InterruptedRestartable
            | StatusCode::NoValidVeInfo
            | StatusCode::Unknown(_) => DetailKind::Raw,
        }
    }
}

/// How a status's low 32 bits are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DetailKind {
    /// An S-EPT level in TDX encoding.
    Level,
    /// An operand id.
    Operand,
    /// Nothing defined; kept raw.
    Raw,
}

/// The class of a status, from its top bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// Completed successfully.
    Success,
    /// Completed, with something to note (bit 63 clear, code non-zero).
    Warning,
    /// Failed; the same call may succeed later (bit 63 set, bit 62 clear), e.g. BUSY.
    Recoverable,
    /// Failed; the same call will fail again (bits 63 and 62 set), e.g. OPERAND_INVALID.
    Fatal,
}

impl StatusClass {
    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            StatusClass::Success => "success",
            StatusClass::Warning => "warning",
            StatusClass::Recoverable => "recoverable",
            StatusClass::Fatal => "fatal",
        }
    }
}

/// An operand id, as the module reports it in the low bits of OPERAND_INVALID or OPERAND_BUSY
/// (tdx-module include/auto_gen/tdx_error_codes_defs.h: the GPR ids equal their register numbers;
/// ids from 0x80 name internal objects).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OperandId(pub u32);

impl OperandId {
    /// RAX.
    pub const RAX: OperandId = OperandId(0);
    /// RCX.
    pub const RCX: OperandId = OperandId(1);
    /// RDX.
    pub const RDX: OperandId = OperandId(2);
    /// R8.
    pub const R8: OperandId = OperandId(8);
    /// R9.
    pub const R9: OperandId = OperandId(9);
    /// The TD's TDR page.
    pub const TDR: OperandId = OperandId(0x80);
    /// The Secure-EPT tree lock (OPERAND_ID_SEPT_TREE).
    pub const SEPT_TREE: OperandId = OperandId(0x92);
    /// One Secure-EPT entry (OPERAND_ID_SEPT_ENTRY).
    pub const SEPT_ENTRY: OperandId = OperandId(0x93);
    /// The TD's TLB epoch (OPERAND_ID_TD_EPOCH).
    pub const TD_EPOCH: OperandId = OperandId(0xA9);
    /// The TD's op-state lock (OPERAND_ID_OP_STATE).
    pub const OP_STATE: OperandId = OperandId(0xAC);

    /// The register or object name, if known.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "RAX",
            1 => "RCX",
            2 => "RDX",
            3 => "RBX",
            5 => "RBP",
            6 => "RSI",
            7 => "RDI",
            8 => "R8",
            9 => "R9",
            10 => "R10",
            11 => "R11",
            12 => "R12",
            13 => "R13",
            14 => "R14",
            15 => "R15",
            0x80 => "TDR",
            0x92 => "SEPT_TREE",
            0x93 => "SEPT_ENTRY",
            0xA9 => "TD_EPOCH",
            0xAC => "OP_STATE",
            _ => return None,
        })
    }
}

/// The meaning of a status's low 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusDetail {
    /// Zero, where nothing is defined.
    None,
    /// An S-EPT level.
    Level(PageLevel),
    /// A value where a level was expected that names none (kept for display).
    BadLevel(u32),
    /// An operand id.
    Operand(OperandId),
    /// Bits with no defined meaning for this code.
    Raw(u32),
}

/// A completion status, as the module returns it in RAX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TdxStatus(pub u64);

impl TdxStatus {
    /// TDX_SUCCESS.
    pub const SUCCESS: TdxStatus = TdxStatus(0);

    /// A status from a code and its low 32 bits.
    pub const fn new(code: StatusCode, detail: u32) -> Self {
        TdxStatus(((code.value() as u64) << 32) | detail as u64)
    }

    /// A status whose detail is a level.
    pub const fn with_level(code: StatusCode, level: PageLevel) -> Self {
        Self::new(code, level.tdx().raw() as u32)
    }

    /// A status whose detail is an operand id.
    pub const fn with_operand(code: StatusCode, operand: OperandId) -> Self {
        Self::new(code, operand.0)
    }

    /// The raw 64-bit value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The code (upper 32 bits).
    pub const fn code(self) -> StatusCode {
        StatusCode::from_value((self.0 >> 32) as u32)
    }

    /// The low 32 bits.
    pub const fn detail_bits(self) -> u32 {
        self.0 as u32
    }

    /// The class, from bits 63 and 62.
    pub const fn class(self) -> StatusClass {
        if self.0 >> 32 == 0 {
            StatusClass::Success
        } else if self.0 & (1 << 63) == 0 {
            StatusClass::Warning
        } else if self.0 & (1 << 62) == 0 {
            StatusClass::Recoverable
        } else {
            StatusClass::Fatal
        }
    }

    /// Whether bit 60, the host-recoverability hint, is set.
    pub const fn host_can_recover(self) -> bool {
        self.0 & (1 << 60) != 0
    }

    /// Whether the call failed (bit 63).
    pub const fn is_error(self) -> bool {
        self.0 & (1 << 63) != 0
    }

    /// The low bits, interpreted for this code.
    pub const fn detail(self) -> StatusDetail {
        let bits = self.detail_bits();
        match self.code().detail_kind() {
            DetailKind::Level => match bits {
                0 => StatusDetail::Level(PageLevel::Size4K),
                1 => StatusDetail::Level(PageLevel::Size2M),
                2 => StatusDetail::Level(PageLevel::Size1G),
                other => StatusDetail::BadLevel(other),
            },
            DetailKind::Operand => StatusDetail::Operand(OperandId(bits)),
            DetailKind::Raw => {
                if bits == 0 {
                    StatusDetail::None
                } else {
                    StatusDetail::Raw(bits)
                }
            }
        }
    }

    /// The level in the detail, if the code carries one and it names a level.
    pub const fn level(self) -> Option<PageLevel> {
        match self.detail() {
            StatusDetail::Level(l) => Some(l),
            _ => None,
        }
    }
}

impl fmt::Display for TdxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.code();
        match code {
            StatusCode::Unknown(v) => write!(f, "unknown TDX status {v:#010x}")?,
            known => f.write_str(known.name())?,
        }
        write!(f, " ({:#018x}: {}", self.0, self.class().name())?;
        match self.detail() {
            StatusDetail::None => {}
            StatusDetail::Level(l) => write!(f, ", level {l}")?,
            StatusDetail::BadLevel(v) => write!(f, ", invalid level {v}")?,
            StatusDetail::Operand(op) => match op.name() {
                Some(n) => write!(f, ", operand {n}")?,
                None => write!(f, ", operand {:#x}", op.0)?,
            },
            StatusDetail::Raw(v) => write!(f, ", detail {v:#x}")?,
        }
        f.write_str(")")
    }
}

impl fmt::Display for StatusClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // shared/reference/tdx-module.md: a 1G ACCEPT returns 0xC0000100_00000001.
        let s = TdxStatus::with_operand(StatusCode::OperandInvalid, OperandId::RCX);
        assert_eq!(s.raw(), 0xC000_0100_0000_0001);
        assert_eq!(s.class(), StatusClass::Fatal);
        assert_eq!(s.detail(), StatusDetail::Operand(OperandId::RCX));
        let aa = TdxStatus::with_level(StatusCode::PageAlreadyAccepted, PageLevel::Size2M);
        assert_eq!(aa.raw(), 0x0000_0B0A_0000_0001);
        assert_eq!(aa.class(), StatusClass::Warning);
        assert_eq!(aa.level(), Some(PageLevel::Size2M));
        let sm = TdxStatus::with_level(StatusCode::PageSizeMismatch, PageLevel::Size2M);
        assert_eq!(sm.raw(), 0xC000_0B0B_0000_0001);
        let busy = TdxStatus::with_operand(StatusCode::OperandBusy, OperandId::RCX);
        assert_eq!(busy.class(), StatusClass::Recoverable);
        let t = TdxStatus::new(StatusCode::HostPriorityBusyTimeout, 0);
        assert!(t.host_can_recover());
        assert_eq!(TdxStatus::SUCCESS.class(), StatusClass::Success);
    }

    #[test]
    fn known_codes_round_trip() {
        for code in StatusCode::KNOWN {
            assert_eq!(StatusCode::from_value(code.value()), code);
        }
        assert_eq!(StatusCode::from_value(0x1234), StatusCode::Unknown(0x1234));
    }

    #[test]
    fn display_names_class_and_detail() {
        extern crate std;
        use std::format;
        let aa = TdxStatus::with_level(StatusCode::PageAlreadyAccepted, PageLevel::Size2M);
        assert_eq!(
            format!("{aa}"),
            "TDX_PAGE_ALREADY_ACCEPTED (0x00000b0a00000001: warning, level 2M)"
        );
        let unk = TdxStatus(0x8000_0999_0000_0007);
        assert_eq!(
            format!("{unk}"),
            "unknown TDX status 0x80000999 (0x8000099900000007: recoverable, detail 0x7)"
        );
    }
}
