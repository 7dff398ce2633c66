//! Guest physical addresses, frame numbers and the TDX shared bit.
//!
//! A TD's GPA width (GPAW) is 48 or 52 bits; the top GPA bit is the *shared* bit: bit 47 when
//! GPAW = 48, bit 51 when GPAW = 52. Private memory has it clear
//! (tdx-module src/common/helpers/helpers.c; Linux arch/x86/kvm/vmx/tdx.c `kvm_gfn_direct_bits`).

use core::fmt;

use super::{AbiError, PageLevel};

/// The TD's guest physical address width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gpaw {
    /// 4-level S-EPT, shared bit 47.
    Bits48,
    /// 5-level S-EPT, shared bit 51.
    Bits52,
}

impl Gpaw {
    /// Width in bits.
    pub const fn bits(self) -> u32 {
        match self {
            Gpaw::Bits48 => 48,
            Gpaw::Bits52 => 52,
        }
    }

    /// The shared bit's position (the top GPA bit).
    pub const fn shared_bit(self) -> u32 {
        match self {
            Gpaw::Bits48 => 47,
            Gpaw::Bits52 => 51,
        }
    }

    /// The shared bit as a mask.
    pub const fn shared_mask(self) -> u64 {
        1u64 << self.shared_bit()
    }

    /// One past the largest GPA the TD can use (MAX_PA = 2^GPAW).
    pub const fn limit(self) -> u64 {
        1u64 << self.bits()
    }
}

/// A guest physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Gpa(pub u64);

impl Gpa {
    /// The raw address.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The frame containing this address.
    pub const fn gfn(self) -> Gfn {
        Gfn(self.0 >> 12)
    }

    /// Whether the address is aligned to `level`.
    pub const fn is_aligned(self, level: PageLevel) -> bool {
        self.0 & level.offset_mask() == 0
    }

    /// The start of the `level`-sized page containing this address.
    pub const fn align_down(self, level: PageLevel) -> Gpa {
        Gpa(self.0 & !level.offset_mask())
    }

    /// Whether the shared bit for `gpaw` is set.
    pub const fn is_shared(self, gpaw: Gpaw) -> bool {
        self.0 & gpaw.shared_mask() != 0
    }

    /// The same address with the shared bit cleared.
    pub const fn to_private(self, gpaw: Gpaw) -> Gpa {
        Gpa(self.0 & !gpaw.shared_mask())
    }

    /// The same address with the shared bit set.
    pub const fn to_shared(self, gpaw: Gpaw) -> Gpa {
        Gpa(self.0 | gpaw.shared_mask())
    }

    /// Whether the address lies below MAX_PA for `gpaw`.
    pub const fn is_within(self, gpaw: Gpaw) -> bool {
        self.0 < gpaw.limit()
    }

    /// `self + bytes`, or an error when it would leave the 64-bit space.
    pub const fn checked_add(self, bytes: u64) -> Result<Gpa, AbiError> {
        match self.0.checked_add(bytes) {
            Some(v) => Ok(Gpa(v)),
            None => Err(AbiError::AddressOverflow),
        }
    }

    /// Index of the `level`-sized page containing this address.
    pub const fn index(self, level: PageLevel) -> u64 {
        self.0 >> level.shift()
    }
}

impl fmt::Display for Gpa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A guest frame number (GPA >> 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Gfn(pub u64);

impl Gfn {
    /// The raw frame number.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The frame's first address, or an error when the frame number is too large for a GPA.
    pub const fn gpa(self) -> Result<Gpa, AbiError> {
        if self.0 >> 52 != 0 {
            Err(AbiError::AddressOverflow)
        } else {
            Ok(Gpa(self.0 << 12))
        }
    }

    /// The first frame of the `level`-sized page containing this frame (KVM's
    /// `gfn_round_for_level`).
    pub const fn round_for_level(self, level: PageLevel) -> Gfn {
        Gfn(self.0 & !(level.offset_mask() >> 12))
    }
}

impl fmt::Display for Gfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gfn {:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_bit_per_gpaw() {
        assert_eq!(Gpaw::Bits48.shared_mask(), 1 << 47);
        assert_eq!(Gpaw::Bits52.shared_mask(), 1 << 51);
        let g = Gpa(0x1234_5000);
        assert!(!g.is_shared(Gpaw::Bits48));
        assert!(g.to_shared(Gpaw::Bits48).is_shared(Gpaw::Bits48));
        assert!(!g.to_shared(Gpaw::Bits48).is_shared(Gpaw::Bits52));
        assert_eq!(g.to_shared(Gpaw::Bits52).to_private(Gpaw::Bits52), g);
    }

    #[test]
    fn gfn_round_trip_and_alignment() {
        let g = Gpa(0x4020_3000);
        assert_eq!(g.gfn().gpa(), Ok(g));
        assert_eq!(g.align_down(PageLevel::Size2M), Gpa(0x4020_0000));
        assert_eq!(
            g.gfn().round_for_level(PageLevel::Size2M).gpa(),
            Ok(Gpa(0x4020_0000))
        );
        assert!(!g.is_aligned(PageLevel::Size2M));
        assert!(g.is_aligned(PageLevel::Size4K));
        assert_eq!(Gfn(u64::MAX).gpa(), Err(AbiError::AddressOverflow));
        assert_eq!(Gpa(u64::MAX).checked_add(1), Err(AbiError::AddressOverflow));
    }
}
