//! `lpage_info.disallow_lpage`: whether a 2M or 1G range may be mapped huge.
//!
//! KVM keeps one per huge range and level (arch/x86/kvm/mmu/mmu.c, `kvm_lpage_info`): the low
//! bits are a refcount (write tracking, memslot edges not aligned to the level), bit 31
//! KVM_LPAGE_MIXED_FLAG (private and shared GFNs mixed inside the range), and the TDX huge-page
//! series adds bit 30, GUEST_INHIBIT (the guest accepted below this level; one-way).
//! Any non-zero value forbids the level.

/// The disallow word of one huge range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LpageInfo(u32);

impl LpageInfo {
    /// Nothing disallows the level.
    pub const ZERO: LpageInfo = LpageInfo(0);
    /// KVM_LPAGE_MIXED_FLAG.
    pub const MIXED: u32 = 1 << 31;
    /// GUEST_INHIBIT (the TDX huge-page series).
    pub const GUEST_INHIBIT: u32 = 1 << 30;
    /// The refcount's bits.
    pub const COUNT_MASK: u32 = Self::GUEST_INHIBIT - 1;

    /// The raw word.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Whether the level is forbidden for this range.
    pub const fn disallows(self) -> bool {
        self.0 != 0
    }

    /// Whether attributes are mixed inside the range.
    pub const fn mixed(self) -> bool {
        self.0 & Self::MIXED != 0
    }

    /// Whether the guest inhibited this level.
    pub const fn guest_inhibit(self) -> bool {
        self.0 & Self::GUEST_INHIBIT != 0
    }

    /// The refcount.
    pub const fn count(self) -> u32 {
        self.0 & Self::COUNT_MASK
    }

    /// Sets or clears MIXED.
    pub const fn with_mixed(self, mixed: bool) -> Self {
        if mixed {
            LpageInfo(self.0 | Self::MIXED)
        } else {
            LpageInfo(self.0 & !Self::MIXED)
        }
    }

    /// Sets GUEST_INHIBIT; it is never cleared.
    pub const fn with_guest_inhibit(self) -> Self {
        LpageInfo(self.0 | Self::GUEST_INHIBIT)
    }

    /// Adds one to the refcount (saturating below the flags).
    pub const fn incremented(self) -> Self {
        if self.count() == Self::COUNT_MASK {
            self
        } else {
            LpageInfo(self.0.wrapping_add(1))
        }
    }

    /// Takes one from the refcount (saturating at zero).
    pub const fn decremented(self) -> Self {
        if self.count() == 0 {
            self
        } else {
            LpageInfo(self.0.wrapping_sub(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_count_are_independent() {
        let l = LpageInfo::default();
        assert!(!l.disallows());
        let l = l.incremented().with_mixed(true).with_guest_inhibit();
        assert_eq!(l.count(), 1);
        assert!(l.mixed() && l.guest_inhibit() && l.disallows());
        let l = l.decremented().with_mixed(false);
        assert_eq!(l.count(), 0);
        assert!(l.guest_inhibit() && l.disallows());
        assert_eq!(l.decremented(), l);
        assert_eq!(l.raw(), LpageInfo::GUEST_INHIBIT);
    }
}
