//! TLB tracking: the TD epoch, the count of vCPUs inside the guest per epoch, and the test the
//! module applies before it lets the host remove, demote, promote or unblock a blocked entry.
//!
//! TDH.VP.ENTER counts the vCPU into the current epoch and a TD exit counts it out;
//! TDH.MEM.TRACK advances the epoch unless vCPUs still run in the previous one
//! (TDX_PREVIOUS_TLB_EPOCH_BUSY). An entry blocked at epoch B is tracked once
//! `B < epoch - 1`, or `B == epoch - 1` and no vCPU is left in B
//! (tdx-module src/vmm_dispatcher/api_calls/tdh_mem_track.c, src/common/helpers/helpers.h
//! `is_tlb_tracked`).

use crate::abi::{StatusCode, TdxStatus};

use super::SeptError;

/// The epoch a vCPU entered the guest in; handed back when it exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EpochTicket(pub u32);

/// The TD's TLB epoch state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlbEpochs {
    epoch: u32,
    in_even: u32,
    in_odd: u32,
}

impl Default for TlbEpochs {
    fn default() -> Self {
        Self::new()
    }
}

impl TlbEpochs {
    /// A TD with no vCPU inside, at epoch 1.
    pub const fn new() -> Self {
        TlbEpochs {
            epoch: 1,
            in_even: 0,
            in_odd: 0,
        }
    }

    /// The current TD epoch.
    pub const fn epoch(&self) -> u32 {
        self.epoch
    }

    /// vCPUs inside the guest that entered in `epoch`'s parity.
    pub const fn vcpus_in(&self, epoch: u32) -> u32 {
        if epoch & 1 == 0 {
            self.in_even
        } else {
            self.in_odd
        }
    }

    fn count_mut(&mut self, epoch: u32) -> &mut u32 {
        if epoch & 1 == 0 {
            &mut self.in_even
        } else {
            &mut self.in_odd
        }
    }

    /// A vCPU enters the guest (TDH.VP.ENTER).
    pub fn enter(&mut self) -> Result<EpochTicket, SeptError> {
        let e = self.epoch;
        let c = self.count_mut(e);
        *c = c.checked_add(1).ok_or(SeptError::EpochOverflow)?;
        Ok(EpochTicket(e))
    }

    /// A vCPU leaves the guest (any TD exit).
    pub fn exit(&mut self, ticket: EpochTicket) -> Result<(), SeptError> {
        // A ticket from an epoch older than the previous one cannot still be inside: TRACK would
        // have been refused.
        if ticket.0 > self.epoch || self.epoch.wrapping_sub(ticket.0) > 1 {
            return Err(SeptError::UnknownTicket);
        }
        let c = self.count_mut(ticket.0);
        *c = c.checked_sub(1).ok_or(SeptError::UnknownTicket)?;
        Ok(())
    }

    /// TDH.MEM.TRACK.
    pub fn track(&mut self) -> Result<TdxStatus, SeptError> {
        let previous = self.epoch.wrapping_sub(1);
        if self.vcpus_in(previous) != 0 {
            return Ok(TdxStatus::new(StatusCode::PreviousTlbEpochBusy, 0));
        }
        self.epoch = self.epoch.checked_add(1).ok_or(SeptError::EpochOverflow)?;
        Ok(TdxStatus::SUCCESS)
    }

    /// The even shift that brings the epoch back to 2 or 3, when it has grown past 3: every
    /// epoch number the module compares is the current one, the previous one, or older (and
    /// all older ones behave alike), so shifting them all by an even amount (parity selects the
    /// counter) keeps every answer. 0 when there is nothing to do.
    pub const fn rebase_offset(&self) -> u32 {
        if self.epoch < 4 {
            0
        } else {
            self.epoch.saturating_sub(2) & !1
        }
    }

    /// `e` after shifting by `offset`: epochs older than the previous one become 0.
    pub const fn rebased(&self, e: u32, offset: u32) -> u32 {
        let previous = self.epoch.wrapping_sub(1);
        if e < previous || e < offset {
            0
        } else {
            e.saturating_sub(offset)
        }
    }

    /// Shifts the epoch by `offset` (from [`TlbEpochs::rebase_offset`]).
    pub(crate) fn apply_rebase(&mut self, offset: u32) {
        self.epoch = self.epoch.saturating_sub(offset);
    }

    /// Whether an entry blocked at `bepoch` has had its TLB entries flushed everywhere.
    pub const fn is_tracked(&self, bepoch: u32) -> bool {
        let previous = self.epoch.wrapping_sub(1);
        bepoch < previous || (bepoch == previous && self.vcpus_in(bepoch) == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_needs_track_and_drained_vcpus() {
        let mut t = TlbEpochs::new();
        let a = t.enter().unwrap();
        let blocked_at = t.epoch();
        assert!(!t.is_tracked(blocked_at));
        assert_eq!(t.track().unwrap(), TdxStatus::SUCCESS);
        // vCPU a is still inside in the blocking epoch.
        assert!(!t.is_tracked(blocked_at));
        // A second TRACK is refused while it is.
        assert_eq!(t.track().unwrap().code(), StatusCode::PreviousTlbEpochBusy);
        t.exit(a).unwrap();
        assert!(t.is_tracked(blocked_at));
        assert_eq!(t.track().unwrap(), TdxStatus::SUCCESS);
        assert!(t.is_tracked(blocked_at));
    }

    #[test]
    fn rebasing_keeps_every_answer() {
        let mut t = TlbEpochs::new();
        for _ in 0..6 {
            let k = t.enter().unwrap();
            t.exit(k).unwrap();
            assert_eq!(t.track().unwrap(), TdxStatus::SUCCESS);
        }
        // One vCPU inside in the current epoch, one TRACK later it is the previous one.
        let _inside = t.enter().unwrap();
        assert_eq!(t.track().unwrap(), TdxStatus::SUCCESS);
        let offset = t.rebase_offset();
        assert!(offset > 0 && offset.is_multiple_of(2));
        let mut r = t;
        r.apply_rebase(offset);
        assert!(r.epoch() == 2 || r.epoch() == 3);
        for b in 0..=t.epoch() {
            assert_eq!(
                t.is_tracked(b),
                r.is_tracked(t.rebased(b, offset)),
                "bepoch {b} of {}",
                t.epoch()
            );
        }
        assert_eq!(t.vcpus_in(t.epoch()), r.vcpus_in(r.epoch()));
    }

    #[test]
    fn bad_tickets_are_errors() {
        let mut t = TlbEpochs::new();
        assert_eq!(t.exit(EpochTicket(1)), Err(SeptError::UnknownTicket));
        assert_eq!(t.exit(EpochTicket(9)), Err(SeptError::UnknownTicket));
    }
}
