//! Linux lazy accept's shared state: the EFI unaccepted-memory bitmap and its claims.

use crate::abi::Gpa;
use crate::guest::GuestEvent;

use super::MAX_LAZY_UNITS;

/// Words of the bitmap of a world of the default size ([`MAX_LAZY_UNITS`] units).
pub const LAZY_WORDS: usize = MAX_LAZY_UNITS / 64;

/// The EFI unaccepted-memory bitmap Linux lazy accept keeps (drivers/firmware/efi/
/// unaccepted_memory.c): one bit per 2 MiB unit still to accept, and the units a vCPU has
/// claimed and is accepting (the kernel's `accepting_list`, taken under its spinlock), over
/// `64 * W` units from the window's base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnitBitmap<const W: usize = LAZY_WORDS> {
    unaccepted: [u64; W],
    claimed: [u64; W],
}

impl<const W: usize> Default for UnitBitmap<W> {
    fn default() -> Self {
        UnitBitmap {
            unaccepted: [0; W],
            claimed: [0; W],
        }
    }
}

impl<const W: usize> UnitBitmap<W> {
    /// Units the bitmap tracks.
    pub const UNITS: usize = W.saturating_mul(64);

    fn slot(base: Gpa, unit: Gpa) -> Option<(usize, u64)> {
        let idx = unit.raw().checked_sub(base.raw())? >> 21;
        let idx = usize::try_from(idx).ok()?;
        (idx < Self::UNITS).then_some((idx / 64, 1u64 << (idx % 64)))
    }

    fn get(words: &[u64; W], slot: Option<(usize, u64)>) -> bool {
        slot.and_then(|(w, b)| words.get(w).map(|x| x & b != 0))
            .unwrap_or(false)
    }

    fn set(words: &mut [u64; W], slot: Option<(usize, u64)>, on: bool) {
        if let Some((w, b)) = slot
            && let Some(x) = words.get_mut(w)
        {
            if on {
                *x |= b;
            } else {
                *x &= !b;
            }
        }
    }

    /// Marks `unit` (inside the window based at `base`) as still to accept; `None` when it
    /// lies outside the bitmap.
    pub(crate) fn mark_unaccepted(&mut self, base: Gpa, unit: Gpa) -> Option<()> {
        let slot = Self::slot(base, unit)?;
        Self::set(&mut self.unaccepted, Some(slot), true);
        Some(())
    }

    /// unaccepted_memory.c accept_memory, under its lock: a unit another CPU is accepting
    /// makes this one spin (`None`: retry); a set bit is claimed; a clear one is done.
    pub(crate) fn claim(&mut self, base: Gpa, unit: Gpa) -> Option<GuestEvent> {
        let slot = Self::slot(base, unit);
        if Self::get(&self.claimed, slot) {
            return None;
        }
        Some(if Self::get(&self.unaccepted, slot) {
            Self::set(&mut self.claimed, slot, true);
            GuestEvent::UnitClaimed
        } else {
            GuestEvent::UnitAccepted
        })
    }

    /// The claimed unit is accepted: its bit and its claim clear.
    pub(crate) fn release(&mut self, base: Gpa, unit: Gpa) {
        let slot = Self::slot(base, unit);
        Self::set(&mut self.unaccepted, slot, false);
        Self::set(&mut self.claimed, slot, false);
    }

    /// Units still to accept.
    pub fn unaccepted_units(&self) -> u32 {
        self.unaccepted.iter().map(|w| w.count_ones()).sum()
    }
}
