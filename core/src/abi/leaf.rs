//! TDCALL (guest → module) and SEAMCALL (host → module) leaf numbers, and the RAX that carries them.
//!
//! RAX holds the leaf in bits 15:0 and the leaf version in bits 23:16; bits 63:24 are reserved
//! and must be zero, else the module returns TDX_OPERAND_INVALID with operand RAX
//! (tdx-module include/tdx_api_defs.h, src/td_dispatcher/tdx_td_dispatcher.c).

use core::fmt;

use super::AbiError;

/// The TDCALL leaves the models use (tdx-module include/tdx_api_defs.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TdcallLeaf {
    /// TDG.VP.VMCALL: a call to the host VMM.
    VpVmcall,
    /// TDG.VP.INFO.
    VpInfo,
    /// TDG.VP.VEINFO.GET: read the #VE information.
    VpVeinfoGet,
    /// TDG.MEM.PAGE.ACCEPT.
    MemPageAccept,
    /// TDG.VM.RD.
    VmRd,
    /// TDG.VM.WR.
    VmWr,
    /// TDG.MEM.PAGE.ATTR.RD (module 1.5+): reveals a GPA's mapping level and pending bit.
    MemPageAttrRd,
    /// TDG.MEM.PAGE.ATTR.WR.
    MemPageAttrWr,
}

impl TdcallLeaf {
    /// Every modelled TDCALL leaf.
    pub const ALL: [TdcallLeaf; 8] = [
        TdcallLeaf::VpVmcall,
        TdcallLeaf::VpInfo,
        TdcallLeaf::VpVeinfoGet,
        TdcallLeaf::MemPageAccept,
        TdcallLeaf::VmRd,
        TdcallLeaf::VmWr,
        TdcallLeaf::MemPageAttrRd,
        TdcallLeaf::MemPageAttrWr,
    ];

    /// The leaf number.
    pub const fn number(self) -> u16 {
        match self {
            TdcallLeaf::VpVmcall => 0,
            TdcallLeaf::VpInfo => 1,
            TdcallLeaf::VpVeinfoGet => 3,
            TdcallLeaf::MemPageAccept => 6,
            TdcallLeaf::VmRd => 7,
            TdcallLeaf::VmWr => 8,
            TdcallLeaf::MemPageAttrRd => 23,
            TdcallLeaf::MemPageAttrWr => 24,
        }
    }

    /// The leaf with this number, if modelled.
    pub const fn from_number(n: u16) -> Result<Self, AbiError> {
        Ok(match n {
            0 => TdcallLeaf::VpVmcall,
            1 => TdcallLeaf::VpInfo,
            3 => TdcallLeaf::VpVeinfoGet,
            6 => TdcallLeaf::MemPageAccept,
            7 => TdcallLeaf::VmRd,
            8 => TdcallLeaf::VmWr,
            23 => TdcallLeaf::MemPageAttrRd,
            24 => TdcallLeaf::MemPageAttrWr,
            _ => return Err(AbiError::UnknownLeaf),
        })
    }

    /// The name the TDX ABI gives this leaf.
    pub const fn name(self) -> &'static str {
        match self {
            TdcallLeaf::VpVmcall => "TDG.VP.VMCALL",
            TdcallLeaf::VpInfo => "TDG.VP.INFO",
            TdcallLeaf::VpVeinfoGet => "TDG.VP.VEINFO.GET",
            TdcallLeaf::MemPageAccept => "TDG.MEM.PAGE.ACCEPT",
            TdcallLeaf::VmRd => "TDG.VM.RD",
            TdcallLeaf::VmWr => "TDG.VM.WR",
            TdcallLeaf::MemPageAttrRd => "TDG.MEM.PAGE.ATTR.RD",
            TdcallLeaf::MemPageAttrWr => "TDG.MEM.PAGE.ATTR.WR",
        }
    }
}

impl fmt::Display for TdcallLeaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The SEAMCALL leaves KVM uses on the Secure EPT (tdx-module include/tdx_api_defs.h;
/// Linux arch/x86/virt/vmx/tdx/tdx.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeamcallLeaf {
    /// TDH.VP.ENTER.
    VpEnter,
    /// TDH.MEM.PAGE.ADD: build-time 4K page with copied content.
    MemPageAdd,
    /// TDH.MEM.SEPT.ADD: link a new S-EPT table page.
    MemSeptAdd,
    /// TDH.MEM.PAGE.AUG: add a PENDING page to a runnable TD.
    MemPageAug,
    /// TDH.MEM.RANGE.BLOCK.
    MemRangeBlock,
    /// TDH.MEM.PAGE.DEMOTE: split a leaf.
    MemPageDemote,
    /// TDH.MEM.PAGE.PROMOTE: merge 512 leaves.
    MemPagePromote,
    /// TDH.MEM.PAGE.REMOVE.
    MemPageRemove,
    /// TDH.MEM.SEPT.REMOVE.
    MemSeptRemove,
    /// TDH.MEM.TRACK: advance the TD's TLB epoch.
    MemTrack,
    /// TDH.MEM.RANGE.UNBLOCK.
    MemRangeUnblock,
}

impl SeamcallLeaf {
    /// Every modelled SEAMCALL leaf.
    pub const ALL: [SeamcallLeaf; 11] = [
        SeamcallLeaf::VpEnter,
        SeamcallLeaf::MemPageAdd,
        SeamcallLeaf::MemSeptAdd,
        SeamcallLeaf::MemPageAug,
        SeamcallLeaf::MemRangeBlock,
        SeamcallLeaf::MemPageDemote,
        SeamcallLeaf::MemPagePromote,
        SeamcallLeaf::MemPageRemove,
        SeamcallLeaf::MemSeptRemove,
        SeamcallLeaf::MemTrack,
        SeamcallLeaf::MemRangeUnblock,
    ];

    /// The leaf number.
    pub const fn number(self) -> u16 {
        match self {
            SeamcallLeaf::VpEnter => 0,
            SeamcallLeaf::MemPageAdd => 2,
            SeamcallLeaf::MemSeptAdd => 3,
            SeamcallLeaf::MemPageAug => 6,
            SeamcallLeaf::MemRangeBlock => 7,
            SeamcallLeaf::MemPageDemote => 15,
            SeamcallLeaf::MemPagePromote => 23,
            SeamcallLeaf::MemPageRemove => 29,
            SeamcallLeaf::MemSeptRemove => 30,
            SeamcallLeaf::MemTrack => 38,
            SeamcallLeaf::MemRangeUnblock => 39,
        }
    }

    /// The leaf with this number, if modelled.
    pub const fn from_number(n: u16) -> Result<Self, AbiError> {
        Ok(match n {
            0 => SeamcallLeaf::VpEnter,
            2 => SeamcallLeaf::MemPageAdd,
            3 => SeamcallLeaf::MemSeptAdd,
            6 => SeamcallLeaf::MemPageAug,
            7 => SeamcallLeaf::MemRangeBlock,
            15 => SeamcallLeaf::MemPageDemote,
            23 => SeamcallLeaf::MemPagePromote,
            29 => SeamcallLeaf::MemPageRemove,
            30 => SeamcallLeaf::MemSeptRemove,
            38 => SeamcallLeaf::MemTrack,
            39 => SeamcallLeaf::MemRangeUnblock,
            _ => return Err(AbiError::UnknownLeaf),
        })
    }

    /// The name the TDX ABI gives this leaf.
    pub const fn name(self) -> &'static str {
        match self {
            SeamcallLeaf::VpEnter => "TDH.VP.ENTER",
            SeamcallLeaf::MemPageAdd => "TDH.MEM.PAGE.ADD",
            SeamcallLeaf::MemSeptAdd => "TDH.MEM.SEPT.ADD",
            SeamcallLeaf::MemPageAug => "TDH.MEM.PAGE.AUG",
            SeamcallLeaf::MemRangeBlock => "TDH.MEM.RANGE.BLOCK",
            SeamcallLeaf::MemPageDemote => "TDH.MEM.PAGE.DEMOTE",
            SeamcallLeaf::MemPagePromote => "TDH.MEM.PAGE.PROMOTE",
            SeamcallLeaf::MemPageRemove => "TDH.MEM.PAGE.REMOVE",
            SeamcallLeaf::MemSeptRemove => "TDH.MEM.SEPT.REMOVE",
            SeamcallLeaf::MemTrack => "TDH.MEM.TRACK",
            SeamcallLeaf::MemRangeUnblock => "TDH.MEM.RANGE.UNBLOCK",
        }
    }
}

impl fmt::Display for SeamcallLeaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The decoded RAX of a TDCALL: leaf and version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TdcallRax {
    /// The leaf.
    pub leaf: TdcallLeaf,
    /// The leaf version (bits 23:16).
    pub version: u8,
}

impl TdcallRax {
    /// Bits 63:24 of RAX are reserved.
    pub const RESERVED_MASK: u64 = !0x00FF_FFFF;

    /// RAX for `leaf` at version 0.
    pub const fn new(leaf: TdcallLeaf) -> Self {
        TdcallRax { leaf, version: 0 }
    }

    /// Encodes RAX.
    pub const fn encode(self) -> u64 {
        (self.leaf.number() as u64) | ((self.version as u64) << 16)
    }

    /// Decodes RAX; reserved bits set or an unmodelled leaf are errors.
    pub const fn decode(rax: u64) -> Result<Self, AbiError> {
        if rax & Self::RESERVED_MASK != 0 {
            return Err(AbiError::ReservedBitsSet);
        }
        let leaf = match TdcallLeaf::from_number((rax & 0xFFFF) as u16) {
            Ok(l) => l,
            Err(e) => return Err(e),
        };
        Ok(TdcallRax {
            leaf,
            version: ((rax >> 16) & 0xFF) as u8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_numbers_round_trip() {
        for leaf in TdcallLeaf::ALL {
            assert_eq!(TdcallLeaf::from_number(leaf.number()), Ok(leaf));
        }
        for leaf in SeamcallLeaf::ALL {
            assert_eq!(SeamcallLeaf::from_number(leaf.number()), Ok(leaf));
        }
        assert_eq!(TdcallLeaf::MemPageAccept.number(), 6);
        assert_eq!(SeamcallLeaf::MemPageDemote.number(), 15);
        assert_eq!(TdcallLeaf::from_number(2), Err(AbiError::UnknownLeaf));
    }

    #[test]
    fn rax_reserved_bits() {
        assert_eq!(
            TdcallRax::decode(6),
            Ok(TdcallRax {
                leaf: TdcallLeaf::MemPageAccept,
                version: 0
            })
        );
        assert_eq!(
            TdcallRax::decode(1 << 24 | 6),
            Err(AbiError::ReservedBitsSet)
        );
        let v1 = TdcallRax {
            leaf: TdcallLeaf::MemPageAttrRd,
            version: 1,
        };
        assert_eq!(TdcallRax::decode(v1.encode()), Ok(v1));
    }
}
