//! The safety invariants (shared/design.md): the per-state checks, the per-transition checks,
//! and their incremental forms over the regions a step changed.

use crate::abi::{Gfn, Gpa, PageLevel};
use crate::kvm::{KvmError, KvmStorage};
use crate::sept::SeptStorage;

use super::{HostActor, MAX_HOSTS, VcpuState, Violation, World};

impl<SS: SeptStorage, KS: KvmStorage, const V: usize, const F: usize, const L: usize>
    World<SS, KS, V, F, L>
{
    /// Checks the safety invariants that hold after every step (shared/design.md): no mapping
    /// above 4K before the TD is runnable, no 2M leaf above a 4K folio or over mixed
    /// attributes, per-vCPU policy state only for the fault that recorded it, the S-EPT model
    /// consistent, the mirror agreeing with the S-EPT.
    pub fn check(&self) -> Result<(), Violation> {
        let config = self.sept.config();
        for r in 0..u64::from(config.regions) {
            let gpa = Gpa(config.base.raw().saturating_add(r << 21));
            if let Some(region) = self.kvm.region_of(gpa.gfn())
                && region.mirror.is_leaf()
                && (region.folio == PageLevel::Size4K || region.attrs == crate::kvm::Attrs::Mixed)
            {
                return Err(Violation::LeafTooLarge(gpa));
            }
        }
        self.check_vcpu_policy_state()?;
        if !self.runnable() {
            let config = self.sept.config();
            for r in 0..u64::from(config.regions) {
                let gpa = Gpa(config.base.raw().saturating_add(r << 21));
                if self
                    .kvm
                    .mirror(gpa.gfn(), PageLevel::Size2M)
                    .is_some_and(|s| s.is_leaf())
                {
                    return Err(Violation::HugeBeforeRunnable(gpa));
                }
            }
        }
        self.sept
            .check_consistency(false)
            .map_err(|_| Violation::SeptInconsistent)?;
        if !self.kvm.digests_current() {
            return Err(Violation::Model(KvmError::Inconsistent));
        }
        if self.sept.host_ops_in_flight() == 0 {
            self.kvm
                .check_against_sept(&self.sept)
                .map_err(Violation::MirrorMismatch)?;
        }
        Ok(())
    }

    /// [`World::check`] and [`World::check_transition`] from `before` to this state, looking
    /// only at the regions changed since the record was cleared in `before`'s state (all of
    /// them when a model could not place a change): the same answers for the cost of a step.
    pub fn check_step(&self, before: &Self) -> Result<(), Violation>
    where
        SS: Clone,
        KS: Clone,
    {
        // One change set for both halves.
        let d = self.changed_regions();
        self.check_step_state_in(&d)?;
        self.check_step_transition_in(before, &d)
    }

    /// The state half of [`World::check_step`]: [`World::check`] over the regions changed
    /// since the record was cleared (everything when it says everything). A function of the
    /// state: an explorer that reaches a state it has checked already can skip it.
    pub fn check_step_state(&self) -> Result<(), Violation>
    where
        SS: Clone,
        KS: Clone,
    {
        self.check_step_state_in(&self.changed_regions())
    }

    /// [`World::check_step_state`] given the step's [`World::changed_regions`] (an explorer
    /// that has them already).
    pub fn check_step_state_in(&self, d: &crate::sept::Dirty) -> Result<(), Violation> {
        if d.is_all() {
            return self.check();
        }
        let config = self.sept.config();
        let runnable = self.runnable();
        for &r in d.regions() {
            let gpa = Gpa(config.base.raw().saturating_add(u64::from(r) << 21));
            if let Some(region) = self.kvm.region_of(gpa.gfn())
                && region.mirror.is_leaf()
            {
                if !runnable {
                    return Err(Violation::HugeBeforeRunnable(gpa));
                }
                if region.folio == PageLevel::Size4K || region.attrs == crate::kvm::Attrs::Mixed {
                    return Err(Violation::LeafTooLarge(gpa));
                }
            }
        }
        self.check_vcpu_policy_state()?;
        self.sept
            .check_changed_consistency()
            .map_err(|_| Violation::SeptInconsistent)?;
        if self.sept.host_ops_in_flight() == 0 {
            self.kvm
                .check_changed_against_sept_in(&self.sept, d)
                .map_err(Violation::MirrorMismatch)?;
        }
        Ok(())
    }

    /// The transition half of [`World::check_step`]: [`World::check_transition`] from
    /// `before`, over the regions changed since the record was cleared in `before`'s state.
    pub fn check_step_transition(&self, before: &Self) -> Result<(), Violation>
    where
        SS: Clone,
        KS: Clone,
    {
        self.check_step_transition_in(before, &self.changed_regions())
    }

    /// [`World::check_step_transition`] given the step's [`World::changed_regions`].
    pub fn check_step_transition_in(
        &self,
        before: &Self,
        d: &crate::sept::Dirty,
    ) -> Result<(), Violation> {
        if d.is_all() {
            return Self::check_transition(before, self);
        }
        let config = self.sept.config();
        for &r in d.regions() {
            let gpa = Gpa(config.base.raw().saturating_add(u64::from(r) << 21));
            Self::inhibit_kept(before, self, gpa, PageLevel::Size2M)?;
        }
        if d.gigs() {
            for r in 0..u64::from(config.regions) {
                let gpa = Gpa(config.base.raw().saturating_add(r << 21));
                if r != 0 && !gpa.is_aligned(PageLevel::Size1G) {
                    continue;
                }
                Self::inhibit_kept(before, self, gpa, PageLevel::Size1G)?;
            }
        }
        self.sept
            .check_pool_step(&before.sept)
            .map_err(|_| Violation::SeptInconsistent)?;
        let ranges = Self::removal_ranges(before, self);
        let lost = before
            .sept
            .first_lost_content_changed(&self.sept, |gpa| Self::allowed(&ranges, gpa))
            .map_err(|e| Violation::Model(KvmError::Sept(e)))?;
        match lost {
            Some(gpa) => Err(Violation::RemovedOutsideRange(gpa)),
            None => Ok(()),
        }
    }

    /// GUEST_INHIBIT at `level` over `gpa`, set before, is still set after.
    fn inhibit_kept(
        before: &Self,
        after: &Self,
        gpa: Gpa,
        level: PageLevel,
    ) -> Result<(), Violation> {
        let set = |w: &Self| {
            w.kvm
                .lpage(gpa.gfn(), level)
                .is_some_and(|l| l.guest_inhibit())
        };
        if set(before) && !set(after) {
            return Err(Violation::InhibitCleared(gpa.align_down(level)));
        }
        Ok(())
    }

    fn removal_ranges(before: &Self, after: &Self) -> [Option<(Gfn, Gfn)>; MAX_HOSTS * 2] {
        let mut ranges = [None; MAX_HOSTS * 2];
        for (slot, h) in ranges
            .iter_mut()
            .zip(before.hosts.iter().chain(after.hosts.iter()))
        {
            *slot = h.as_ref().and_then(HostActor::removing);
        }
        ranges
    }

    fn allowed(ranges: &[Option<(Gfn, Gfn)>], gpa: Gpa) -> bool {
        let g = gpa.gfn();
        ranges
            .iter()
            .flatten()
            .any(|&(s, e)| g.raw() >= s.raw() && g.raw() < e.raw())
    }

    fn check_vcpu_policy_state(&self) -> Result<(), Violation> {
        for (i, v) in self.vcpus.iter().enumerate() {
            let Some(v) = v else { continue };
            // rfc-v1's window is set for the fault being handled; the next exit resets it
            // before anything consults it. While a decoded fault is in flight, a window must
            // cover its GFN.
            if let VcpuState::InHost(path) = v.state
                && path.decoded()
                && v.policy.request_level.is_some()
                && !v.policy.in_window(path.gfn())
            {
                return Err(Violation::StrayPolicyState(
                    u8::try_from(i).unwrap_or(u8::MAX),
                ));
            }
        }
        Ok(())
    }

    /// Checks the invariants that relate a state to the next: GUEST_INHIBIT never clears;
    /// accepted content disappears only inside the range of a conversion to shared or a punch
    /// hole in progress (before or after the step).
    pub fn check_transition(before: &Self, after: &Self) -> Result<(), Violation> {
        let config = before.sept.config();

        for r in 0..u64::from(config.regions) {
            let gpa = Gpa(config.base.raw().saturating_add(r << 21));
            for level in [PageLevel::Size2M, PageLevel::Size1G] {
                Self::inhibit_kept(before, after, gpa, level)?;
            }
        }
        let ranges = Self::removal_ranges(before, after);
        let lost = before
            .sept
            .first_lost_content(&after.sept, |gpa| Self::allowed(&ranges, gpa))
            .map_err(|e| Violation::Model(KvmError::Sept(e)))?;
        if let Some(gpa) = lost {
            return Err(Violation::RemovedOutsideRange(gpa));
        }
        Ok(())
    }
}
