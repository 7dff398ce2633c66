//! The map of the private fault path under mmu_lock for read (mmu/tdp_mmu.c `kvm_tdp_mmu_map`;
//! step 6 of the path in fault.rs): the walk of the mirror down to the goal level, SEPT.ADD and
//! AUG (PAGE.ADD before runnable) as two-phase SEAMCALLs with the SPTE frozen in between, a
//! huge leaf above the goal, and the release of the lock.

use crate::abi::{PageLevel, StatusCode, TdxStatus};
use crate::policy::{Decision, HugeLeafQuery, Policy, SplitDecision};
use crate::sept::{Content, HostCall, HostOp, HostStart, OpState, SeptStorage};

use super::fault::{FaultCtx, FaultPath, FaultStep, Phase, RetPf};
use super::split::{Split, SplitStep};
use super::{KvmError, KvmStorage, Spte};

/// The level below `l` (4K stays 4K).
const fn below(l: PageLevel) -> PageLevel {
    match l.smaller() {
        Some(s) => s,
        None => PageLevel::Size4K,
    }
}

impl FaultPath {
    pub(super) fn walk<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
        goal: PageLevel,
    ) -> Result<FaultStep, KvmError> {
        let gfn = self.fault.gfn;
        let mut goal = goal;
        for level in [PageLevel::Size1G, PageLevel::Size2M, PageLevel::Size4K] {
            let spte = ctx.kvm.mirror(gfn, level).ok_or(KvmError::OutsideModel)?;
            if spte.is_frozen() {
                ctx.stats.frozen = ctx.stats.frozen.saturating_add(1);
                return self.go(Phase::ReleaseRead(RetPf::Retry));
            }
            if level == goal {
                if spte.is_table() {
                    // No promotion: a table at the goal level lowers the goal.
                    goal = below(goal);
                    continue;
                }
                if spte.is_leaf() {
                    return self.go(Phase::ReleaseRead(RetPf::Spurious));
                }
                return self.install(ctx, level);
            }
            if spte.is_table() {
                continue;
            }
            if spte.is_leaf() {
                return self.huge_leaf(ctx, level, goal);
            }
            return self.link_table(ctx, level, goal);
        }
        Err(KvmError::Inconsistent)
    }

    fn link_table<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
        level: PageLevel,
        goal: PageLevel,
    ) -> Result<FaultStep, KvmError> {
        let gpa = self.gpa(level)?;
        ctx.kvm
            .set_mirror(self.fault.gfn, level, Spte::NOT_PRESENT.frozen(true))?;
        ctx.stats.seamcalls = ctx.stats.seamcalls.saturating_add(1);
        match ctx.sept.host_begin(HostCall::sept_add(gpa, level))? {
            HostStart::Started(op) => self.go(Phase::LinkTable { level, goal, op }),
            HostStart::Done(s) => self.seamcall_refused(ctx, level, s),
        }
    }

    /// SEPT.ADD's second phase: the mirror gets the table, and the walk goes on.
    pub(super) fn link_table_end<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
        level: PageLevel,
        goal: PageLevel,
        op: HostOp,
    ) -> Result<FaultStep, KvmError> {
        let s = ctx.sept.host_end(op, false)?;
        if s != TdxStatus::SUCCESS {
            return self.bug(ctx, Some(s));
        }
        ctx.kvm
            .set_mirror(self.fault.gfn, level, Spte::TABLE_SPTE)?;
        self.go(Phase::Walk { goal })
    }

    fn install<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
        level: PageLevel,
    ) -> Result<FaultStep, KvmError> {
        let gpa = self.gpa(level)?;
        ctx.kvm
            .set_mirror(self.fault.gfn, level, Spte::NOT_PRESENT.frozen(true))?;
        ctx.stats.seamcalls = ctx.stats.seamcalls.saturating_add(1);
        // set_external_spte: PAGE.AUG once runnable, PAGE.ADD (KVM_TDX_INIT_MEM_REGION) before.
        let call = if ctx.sept.op_state() == OpState::Runnable {
            HostCall::aug(gpa, level)
        } else {
            HostCall::add(gpa, level, Content::data(0))
        };
        match ctx.sept.host_begin(call)? {
            HostStart::Started(op) => self.go(Phase::Install { level, op }),
            HostStart::Done(s) => self.seamcall_refused(ctx, level, s),
        }
    }

    /// AUG's (or PAGE.ADD's) second phase: the mirror gets the leaf; the fault is fixed.
    pub(super) fn install_end<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
        level: PageLevel,
        op: HostOp,
    ) -> Result<FaultStep, KvmError> {
        let s = ctx.sept.host_end(op, false)?;
        if s != TdxStatus::SUCCESS {
            return self.bug(ctx, Some(s));
        }
        ctx.kvm.set_mirror(self.fault.gfn, level, Spte::LEAF_SPTE)?;
        self.go(Phase::ReleaseRead(RetPf::Fixed))
    }

    /// A SEAMCALL that ended in its first phase: BUSY restores the SPTE and retries; anything
    /// else is unexpected (KVM_BUG_ON).
    fn seamcall_refused<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
        level: PageLevel,
        s: TdxStatus,
    ) -> Result<FaultStep, KvmError> {
        if s.code() == StatusCode::OperandBusy {
            ctx.stats.seamcall_busy = ctx.stats.seamcall_busy.saturating_add(1);
            ctx.kvm
                .set_mirror(self.fault.gfn, level, Spte::NOT_PRESENT)?;
            return self.go(Phase::ReleaseRead(RetPf::Retry));
        }
        self.bug(ctx, Some(s))
    }

    fn huge_leaf<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
        leaf: PageLevel,
        goal: PageLevel,
    ) -> Result<FaultStep, KvmError> {
        let q = HugeLeafQuery {
            gfn: self.fault.gfn,
            goal,
            leaf,
        };
        let decision = ctx.policy.on_huge_leaf(ctx.vcpu, &q);
        *ctx.decision = Some(Decision::HugeLeaf { query: q, decision });
        match decision {
            SplitDecision::Refuse => self.go(Phase::ReleaseRead(RetPf::Retry)),
            SplitDecision::KeepHugeLeaf => self.go(Phase::ReleaseRead(RetPf::Spurious)),
            SplitDecision::BugVm => self.bug(ctx, None),
            SplitDecision::SplitInPlace => {
                let gpa = self.gpa(leaf)?;
                ctx.kvm.set_mirror_frozen(gpa, leaf, true)?;
                let split = Split::new(ctx.sept, gpa, leaf, false);
                self.go(Phase::SplitInPlace {
                    level: leaf,
                    goal,
                    split,
                })
            }
        }
    }

    /// One step of the split of the huge leaf at `level` under the read lock; once it is done
    /// the walk goes on, and a failed one retries the fault.
    pub(super) fn split_in_place<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
        level: PageLevel,
        goal: PageLevel,
        mut split: Split,
    ) -> Result<FaultStep, KvmError> {
        let r = split.step(ctx.kvm, ctx.sept)?;
        self.phase = Phase::SplitInPlace { level, goal, split };
        match r {
            SplitStep::Progress => Ok(FaultStep::Progress),
            SplitStep::Blocked => {
                ctx.stats.split_waits = ctx.stats.split_waits.saturating_add(1);
                Ok(FaultStep::Blocked)
            }
            SplitStep::Done => {
                ctx.stats.add_split(&split, true);
                self.go(Phase::Walk { goal })
            }
            SplitStep::Failed => {
                ctx.stats.add_split(&split, false);
                self.go(Phase::ReleaseRead(RetPf::Retry))
            }
            SplitStep::Bug(s) => self.bug(ctx, Some(s)),
        }
    }

    /// Releases mmu_lock for read: the pass has produced `ret`.
    pub(super) fn release_read<KS: KvmStorage, SS: SeptStorage, P: Policy, const F: usize>(
        &mut self,
        ctx: &mut FaultCtx<'_, KS, SS, P, F>,
        ret: RetPf,
    ) -> Result<FaultStep, KvmError> {
        ctx.kvm
            .mmu_lock
            .release_read()
            .map_err(|_| KvmError::Inconsistent)?;
        self.finish_pass(ctx, ret)
    }
}
