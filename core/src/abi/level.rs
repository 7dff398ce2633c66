//! Page levels and their two numeric encodings.
//!
//! KVM counts levels from 1 (`enum pg_level`: PG_LEVEL_4K = 1, 2M = 2, 1G = 3); the TDX module
//! counts S-EPT levels from 0 (0 = 4K, 1 = 2M, 2 = 1G). KVM converts with `level - 1`
//! (`pg_level_to_tdx_sept_level`, arch/x86/kvm/vmx/tdx.c). The two raw encodings are distinct
//! types here so that one can only become the other through [`PageLevel`].

use core::fmt;

use super::AbiError;

/// Size of a 4 KiB page.
pub const PAGE_SIZE_4K: u64 = 1 << 12;
/// Size of a 2 MiB page.
pub const PAGE_SIZE_2M: u64 = 1 << 21;
/// Size of a 1 GiB page.
pub const PAGE_SIZE_1G: u64 = 1 << 30;
/// Entries in one S-EPT (or EPT) table page.
pub const ENTRIES_PER_TABLE: u32 = 512;

/// A mapping level of the Secure EPT, in the domain's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageLevel {
    /// A 4 KiB leaf.
    Size4K,
    /// A 2 MiB leaf or the table entry that covers 2 MiB.
    Size2M,
    /// A 1 GiB leaf or the table entry that covers 1 GiB.
    Size1G,
}

impl PageLevel {
    /// All levels, smallest first.
    pub const ALL: [PageLevel; 3] = [PageLevel::Size4K, PageLevel::Size2M, PageLevel::Size1G];

    /// Bytes covered by one entry at this level.
    pub const fn bytes(self) -> u64 {
        match self {
            PageLevel::Size4K => PAGE_SIZE_4K,
            PageLevel::Size2M => PAGE_SIZE_2M,
            PageLevel::Size1G => PAGE_SIZE_1G,
        }
    }

    /// log2 of [`PageLevel::bytes`].
    pub const fn shift(self) -> u32 {
        match self {
            PageLevel::Size4K => 12,
            PageLevel::Size2M => 21,
            PageLevel::Size1G => 30,
        }
    }

    /// Mask of the address bits below this level's alignment.
    pub const fn offset_mask(self) -> u64 {
        self.bytes().wrapping_sub(1)
    }

    /// Number of 4 KiB pages covered by one entry at this level.
    pub const fn pages_4k(self) -> u32 {
        match self {
            PageLevel::Size4K => 1,
            PageLevel::Size2M => ENTRIES_PER_TABLE,
            PageLevel::Size1G => ENTRIES_PER_TABLE * ENTRIES_PER_TABLE,
        }
    }

    /// The next smaller level, if any.
    pub const fn smaller(self) -> Option<PageLevel> {
        match self {
            PageLevel::Size4K => None,
            PageLevel::Size2M => Some(PageLevel::Size4K),
            PageLevel::Size1G => Some(PageLevel::Size2M),
        }
    }

    /// The next larger level, if any (the module has nothing above 1G that maps memory).
    pub const fn larger(self) -> Option<PageLevel> {
        match self {
            PageLevel::Size4K => Some(PageLevel::Size2M),
            PageLevel::Size2M => Some(PageLevel::Size1G),
            PageLevel::Size1G => None,
        }
    }

    /// The TDX S-EPT encoding (0 = 4K).
    pub const fn tdx(self) -> TdxSeptLevel {
        TdxSeptLevel(match self {
            PageLevel::Size4K => 0,
            PageLevel::Size2M => 1,
            PageLevel::Size1G => 2,
        })
    }

    /// The KVM `pg_level` encoding (1 = 4K).
    pub const fn kvm(self) -> KvmPgLevel {
        KvmPgLevel(match self {
            PageLevel::Size4K => 1,
            PageLevel::Size2M => 2,
            PageLevel::Size1G => 3,
        })
    }

    /// Short name, as people write it on the list.
    pub const fn name(self) -> &'static str {
        match self {
            PageLevel::Size4K => "4K",
            PageLevel::Size2M => "2M",
            PageLevel::Size1G => "1G",
        }
    }
}

impl fmt::Display for PageLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A level in the TDX module's encoding: 0 = 4K, 1 = 2M, 2 = 1G
/// (tdx-module include/tdx_api_defs.h; the ACCEPT operand's bits 2:0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TdxSeptLevel(u8);

impl TdxSeptLevel {
    /// Validates a raw TDX level; 3 and above do not map memory.
    pub const fn new(raw: u64) -> Result<Self, AbiError> {
        if raw <= 2 {
            // The value fits: raw <= 2.
            Ok(TdxSeptLevel(raw as u8))
        } else {
            Err(AbiError::InvalidTdxLevel)
        }
    }

    /// The raw encoding.
    pub const fn raw(self) -> u8 {
        self.0
    }

    /// The level this encoding names.
    pub const fn level(self) -> PageLevel {
        match self.0 {
            0 => PageLevel::Size4K,
            1 => PageLevel::Size2M,
            _ => PageLevel::Size1G,
        }
    }
}

impl From<TdxSeptLevel> for PageLevel {
    fn from(l: TdxSeptLevel) -> Self {
        l.level()
    }
}

/// A level in KVM's `enum pg_level` encoding: 1 = 4K, 2 = 2M, 3 = 1G (arch/x86/include/asm/pgtable_types.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KvmPgLevel(u8);

impl KvmPgLevel {
    /// Validates a raw `pg_level`; 0 (PG_LEVEL_NONE) and 512G and above are not mapping levels here.
    pub const fn new(raw: u64) -> Result<Self, AbiError> {
        if raw >= 1 && raw <= 3 {
            Ok(KvmPgLevel(raw as u8))
        } else {
            Err(AbiError::InvalidKvmLevel)
        }
    }

    /// The raw encoding.
    pub const fn raw(self) -> u8 {
        self.0
    }

    /// The level this encoding names.
    pub const fn level(self) -> PageLevel {
        match self.0 {
            1 => PageLevel::Size4K,
            2 => PageLevel::Size2M,
            _ => PageLevel::Size1G,
        }
    }

    /// KVM's `pg_level_to_tdx_sept_level()`: `level - 1`, through the typed level.
    pub const fn to_tdx(self) -> TdxSeptLevel {
        self.level().tdx()
    }
}

impl From<KvmPgLevel> for PageLevel {
    fn from(l: KvmPgLevel) -> Self {
        l.level()
    }
}

impl From<TdxSeptLevel> for KvmPgLevel {
    fn from(l: TdxSeptLevel) -> Self {
        l.level().kvm()
    }
}

impl From<KvmPgLevel> for TdxSeptLevel {
    fn from(l: KvmPgLevel) -> Self {
        l.to_tdx()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_differ_by_one() {
        for level in PageLevel::ALL {
            assert_eq!(
                u16::from(level.kvm().raw()),
                u16::from(level.tdx().raw()) + 1
            );
            assert_eq!(level.tdx().level(), level);
            assert_eq!(level.kvm().level(), level);
            assert_eq!(KvmPgLevel::from(level.tdx()), level.kvm());
            assert_eq!(TdxSeptLevel::from(level.kvm()), level.tdx());
        }
    }

    #[test]
    fn out_of_range_levels_are_errors() {
        assert_eq!(TdxSeptLevel::new(3), Err(AbiError::InvalidTdxLevel));
        assert_eq!(TdxSeptLevel::new(u64::MAX), Err(AbiError::InvalidTdxLevel));
        assert_eq!(KvmPgLevel::new(0), Err(AbiError::InvalidKvmLevel));
        assert_eq!(KvmPgLevel::new(4), Err(AbiError::InvalidKvmLevel));
    }

    #[test]
    fn sizes() {
        assert_eq!(PageLevel::Size2M.bytes(), 512 * PageLevel::Size4K.bytes());
        assert_eq!(PageLevel::Size1G.pages_4k(), 512 * 512);
        assert_eq!(PageLevel::Size2M.smaller(), Some(PageLevel::Size4K));
        assert_eq!(PageLevel::Size1G.larger(), None);
    }
}
