//! The typed, safe layer under the C ABI: each function here is one exported function's
//! meaning, over hugesept-core's types, with the C encodings (levels, kinds, codes) decoded and
//! encoded at its edge. `lib.rs` adds only pointer checks and copies.
//!
//! The rules are the core's: exit decoding is `FaultPath::from_registers` and the fault path's
//! first step (kvm/fault.rs), the plan is the policy's `on_private_exit` with GUEST_INHIBIT's
//! pre-check and split range (kvm/fault.rs `inhibit_check`, `inhibit_split`), the mapping level
//! is `Kvm::max_mapping_level`'s walk over the caller's lpage_info, and the guest side is
//! `guest::rules::react`.

use hugesept_core::abi::{
    AbiError, AcceptOperand, ExitQualification, ExtendedExitQualification, Gfn, Gpa, Gpaw,
    PageLevel, SeptEntryState, StatusClass, TdxSeptLevel, TdxStatus,
};
use hugesept_core::guest::{GuestKind, rules};
use hugesept_core::kvm::FaultPath;
use hugesept_core::payload;
use hugesept_core::policy::{
    AcceptPlan, HugeLeafQuery, MaxLevelQuery, Policy, PolicyId, PrivateExit, SplitDecision,
    VcpuPolicyState,
};

use crate::codes::*;

/// What an EPT-violation exit asks of KVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// An ordinary private fault (no accept level).
    Fault,
    /// A TDG.MEM.PAGE.ACCEPT that could not proceed: an accept request.
    Accept,
    /// The guest touched unaccepted memory with #VE disabled: KVM kills the TD.
    KillVm,
}

/// A decoded private EPT-violation exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// RCX.
    pub exit_qualification: u64,
    /// The faulting GPA, 4K-aligned, shared bit clear.
    pub gpa: Gpa,
    /// Its GFN.
    pub gfn: Gfn,
    /// What the exit asks for.
    pub kind: ExitKind,
    /// RDX, decoded.
    pub eeq: ExtendedExitQualification,
}

impl Exit {
    /// The accept level, for an accept request.
    pub fn accept_level(&self) -> Option<PageLevel> {
        match self.kind {
            ExitKind::Accept => self.eeq.accept_level(),
            ExitKind::Fault | ExitKind::KillVm => None,
        }
    }
}

/// The error code of an ABI decoding error.
pub const fn abi_error(e: AbiError) -> i32 {
    match e {
        AbiError::InvalidTdxLevel | AbiError::InvalidKvmLevel => HUGESEPT_ERR_INVALID_LEVEL,
        AbiError::ReservedBitsSet => HUGESEPT_ERR_RESERVED_BITS,
        AbiError::UnknownLeaf => HUGESEPT_ERR_INVALID_ARGUMENT,
        AbiError::UnknownEeqType => HUGESEPT_ERR_UNKNOWN_EEQ_TYPE,
        AbiError::UnknownSeptState => HUGESEPT_ERR_UNKNOWN_SEPT_STATE,
        AbiError::AddressOverflow => HUGESEPT_ERR_ADDRESS_OVERFLOW,
        AbiError::Misaligned => HUGESEPT_ERR_GPA_MISALIGNED,
        AbiError::SharedGpa => HUGESEPT_ERR_SHARED_GPA,
        AbiError::BeyondGpaw => HUGESEPT_ERR_BEYOND_GPAW,
    }
}

/// A level from its C code (the TDX encoding: 0 = 4K, 1 = 2M, 2 = 1G).
pub fn level(code: u32) -> Result<PageLevel, i32> {
    TdxSeptLevel::new(u64::from(code))
        .map(TdxSeptLevel::level)
        .map_err(|_| HUGESEPT_ERR_INVALID_LEVEL)
}

/// A level's C code.
pub const fn level_code(l: PageLevel) -> u32 {
    l.tdx().raw() as u32
}

/// An optional level's C code ([`HUGESEPT_LEVEL_NONE`] for none).
pub fn opt_level_code(l: Option<PageLevel>) -> u32 {
    l.map_or(HUGESEPT_LEVEL_NONE, level_code)
}

/// A GPA width from its bit count (48 or 52).
pub const fn gpaw(bits: u32) -> Result<Gpaw, i32> {
    match bits {
        48 => Ok(Gpaw::Bits48),
        52 => Ok(Gpaw::Bits52),
        _ => Err(HUGESEPT_ERR_INVALID_GPAW),
    }
}

/// A design from its C code (its index in `PolicyId::ALL`).
pub fn policy(code: u32) -> Result<PolicyId, i32> {
    usize::try_from(code)
        .ok()
        .and_then(|i| PolicyId::ALL.get(i).copied())
        .ok_or(HUGESEPT_ERR_UNKNOWN_POLICY)
}

/// A design's C code.
pub fn policy_code(p: PolicyId) -> u32 {
    PolicyId::ALL
        .iter()
        .position(|&q| q == p)
        .and_then(|i| u32::try_from(i).ok())
        .unwrap_or(u32::MAX)
}

/// A guest strategy from its C code (the boot block's codes, core::payload).
pub fn guest(code: u32) -> Result<GuestKind, i32> {
    u8::try_from(code)
        .ok()
        .and_then(payload::kind_from_code)
        .ok_or(HUGESEPT_ERR_UNKNOWN_GUEST)
}

/// The flags of a mapping-level question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelFlags {
    /// A KVM_PRE_FAULT_MEMORY fault.
    pub prefetch: bool,
    /// The TD is runnable (finalized).
    pub runnable: bool,
}

/// Decodes `HUGESEPT_FAULT_*` flags; unknown bits are an error.
pub const fn level_flags(flags: u32) -> Result<LevelFlags, i32> {
    if flags & !(HUGESEPT_FAULT_PREFETCH | HUGESEPT_TD_RUNNABLE) != 0 {
        return Err(HUGESEPT_ERR_INVALID_FLAGS);
    }
    Ok(LevelFlags {
        prefetch: flags & HUGESEPT_FAULT_PREFETCH != 0,
        runnable: flags & HUGESEPT_TD_RUNNABLE != 0,
    })
}

/// The per-vCPU state behind the opaque handle, as plain words so that any bytes a caller
/// hands in can be read and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuWords {
    /// The magic word ("HSVC") once initialised.
    pub magic: u32,
    /// The design's code.
    pub policy: u32,
    /// RFC v1's request level, or [`HUGESEPT_LEVEL_NONE`].
    pub request_level: u32,
    /// Zero.
    pub reserved: u32,
    /// RFC v1's window start GFN.
    pub window_start: u64,
    /// RFC v1's window end GFN.
    pub window_end: u64,
}

/// The magic word of an initialised state ("HSVC").
pub(crate) const VCPU_MAGIC: u32 = 0x4853_5643;

/// One vCPU's policy state, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vcpu {
    /// The design.
    pub policy: PolicyId,
    /// Its per-vCPU state.
    pub state: VcpuPolicyState,
}

impl Vcpu {
    /// A fresh state for a design.
    pub fn new(policy_code: u32) -> Result<Vcpu, i32> {
        Ok(Vcpu {
            policy: policy(policy_code)?,
            state: VcpuPolicyState::default(),
        })
    }

    /// Reads the words back; anything but what [`Vcpu::words`] writes is an invalid state.
    pub fn from_words(w: &VcpuWords) -> Result<Vcpu, i32> {
        if w.magic != VCPU_MAGIC || w.reserved != 0 {
            return Err(HUGESEPT_ERR_STATE_INVALID);
        }
        let policy = policy(w.policy).map_err(|_| HUGESEPT_ERR_STATE_INVALID)?;
        let request_level = match w.request_level {
            HUGESEPT_LEVEL_NONE => None,
            c => Some(level(c).map_err(|_| HUGESEPT_ERR_STATE_INVALID)?),
        };
        let empty = w.window_start == 0 && w.window_end == 0;
        let consistent = match request_level {
            None => empty,
            Some(l) => {
                // set_window's range: level-aligned, one level long.
                let start = Gfn(w.window_start);
                start.round_for_level(l) == start
                    && w.window_start.checked_add(u64::from(l.pages_4k())) == Some(w.window_end)
            }
        };
        if !consistent {
            return Err(HUGESEPT_ERR_STATE_INVALID);
        }
        Ok(Vcpu {
            policy,
            state: VcpuPolicyState {
                window_start: Gfn(w.window_start),
                window_end: Gfn(w.window_end),
                request_level,
            },
        })
    }

    /// The words this state is kept as.
    pub fn words(&self) -> VcpuWords {
        let (request_level, window_start, window_end) = match self.state.request_level {
            Some(l) => (
                level_code(l),
                self.state.window_start.raw(),
                self.state.window_end.raw(),
            ),
            None => (HUGESEPT_LEVEL_NONE, 0, 0),
        };
        VcpuWords {
            magic: VCPU_MAGIC,
            policy: policy_code(self.policy),
            request_level,
            reserved: 0,
            window_start,
            window_end,
        }
    }
}

/// Decodes an EPT-violation exit (RCX, RDX, R8) for a TD of GPA width `gpaw_bits`: the fault
/// path's decode (kvm/fault.rs `FaultPath::from_registers` and its first step, after tdx.c
/// `tdx_handle_ept_violation`). A shared GPA is not the private path's: an error.
pub fn decode_exit(rcx: u64, rdx: u64, r8: u64, gpaw_bits: u32) -> Result<Exit, i32> {
    let gpaw = gpaw(gpaw_bits)?;
    let path = FaultPath::from_registers(rcx, rdx, r8, gpaw).map_err(abi_error)?;
    let exit = path.exit().ok_or(HUGESEPT_ERR_INVALID_ARGUMENT)?;
    let kind = match exit.eeq {
        // tdx.c: a PENDING_EPT_VIOLATION without permission bits is a guest access to
        // unaccepted memory with #VE disabled: the TD is killed.
        ExtendedExitQualification::PendingEptViolation
            if !ExitQualification::from_bits_retain(rcx).has_permission_bits() =>
        {
            ExitKind::KillVm
        }
        ExtendedExitQualification::Accept(_) => ExitKind::Accept,
        _ => ExitKind::Fault,
    };
    Ok(Exit {
        exit_qualification: rcx,
        gpa: exit.gpa,
        gfn: path.gfn(),
        kind,
        eeq: exit.eeq,
    })
}

/// What the host does with an exit before it runs the fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `HUGESEPT_PLAN_*`.
    pub action: u32,
    /// The fault's own max level (the design's `fault_max_level`).
    pub fault_max_level: PageLevel,
    /// For a split: the GFN range `[start, end)` whose mappings above `split_above` are split
    /// under mmu_lock held for write.
    pub split_start: Gfn,
    /// See `split_start`.
    pub split_end: Gfn,
    /// The level above which mappings in the range are split.
    pub split_above: PageLevel,
    /// The levels whose GUEST_INHIBIT is set for the range once split (bit `1 << level code`).
    pub inhibit_levels: u32,
}

/// The design's plan for a decoded exit, updating the vCPU's state (RFC v1's window). The
/// `lpage` lookup answers KVM's `lpage_info.disallow_lpage` for the huge range of a GFN at a
/// level (2M or 1G); GUEST_INHIBIT's lock-free pre-check reads it.
pub fn plan_exit(
    vcpu: &mut Vcpu,
    exit: &Exit,
    lpage: &mut dyn FnMut(Gfn, PageLevel) -> Result<u32, i32>,
) -> Result<Plan, i32> {
    let nothing = |action, fault_max_level| Plan {
        action,
        fault_max_level,
        split_start: Gfn(0),
        split_end: Gfn(0),
        split_above: PageLevel::Size4K,
        inhibit_levels: 0,
    };
    if exit.kind == ExitKind::KillVm {
        return Ok(nothing(HUGESEPT_PLAN_KILL_VM, PageLevel::Size4K));
    }
    let pexit = PrivateExit {
        gfn: exit.gfn,
        accept_level: exit.accept_level(),
    };
    let fault_max = vcpu.policy.fault_max_level(&pexit);
    match vcpu.policy.on_private_exit(&mut vcpu.state, &pexit) {
        AcceptPlan::Nothing => Ok(nothing(HUGESEPT_PLAN_RUN_FAULT, fault_max)),
        AcceptPlan::GuestInhibit { level, precheck } => {
            // kvm/fault.rs inhibit_check: the bit one level up, read without the lock.
            let above = level.larger().unwrap_or(PageLevel::Size1G);
            let word = lpage(exit.gfn, above)?;
            let set = word & hugesept_core::kvm::LpageInfo::GUEST_INHIBIT != 0;
            if precheck && set {
                return Ok(nothing(HUGESEPT_PLAN_RUN_FAULT, fault_max));
            }
            // kvm/fault.rs inhibit_split: the level-aligned range, the bits above it.
            let start = exit.gfn.round_for_level(level);
            let end = start
                .raw()
                .checked_add(u64::from(level.pages_4k()))
                .ok_or(HUGESEPT_ERR_ADDRESS_OVERFLOW)?;
            let inhibit = match level {
                PageLevel::Size4K => {
                    (1 << level_code(PageLevel::Size2M)) | (1 << level_code(PageLevel::Size1G))
                }
                PageLevel::Size2M => 1 << level_code(PageLevel::Size1G),
                PageLevel::Size1G => 0,
            };
            Ok(Plan {
                action: HUGESEPT_PLAN_SPLIT_AND_INHIBIT,
                fault_max_level: fault_max,
                split_start: start,
                split_end: Gfn(end),
                split_above: level,
                inhibit_levels: inhibit,
            })
        }
    }
}

/// The design's `private_max_mapping_level` hook alone.
pub fn private_max_mapping_level(vcpu: &Vcpu, gfn: Gfn, flags: LevelFlags) -> PageLevel {
    let q = MaxLevelQuery {
        gfn,
        prefetch: flags.prefetch,
        runnable: flags.runnable,
    };
    vcpu.policy.max_mapping_level(&vcpu.state, &q)
}

/// The level the fault maps at most (`Kvm::max_mapping_level`, after mmu.c
/// `kvm_mmu_max_mapping_level`): the fault's own max level capped by the guest_memfd folio,
/// then by `lpage_info` at 1G and 2M (any non-zero word forbids the level), then by the hook.
pub fn max_mapping_level(
    vcpu: &Vcpu,
    gfn: Gfn,
    fault_max: PageLevel,
    folio: PageLevel,
    flags: LevelFlags,
    lpage: &mut dyn FnMut(Gfn, PageLevel) -> Result<u32, i32>,
) -> Result<PageLevel, i32> {
    let mut max = fault_max.min(folio);
    if max == PageLevel::Size1G && lpage(gfn, PageLevel::Size1G)? != 0 {
        max = PageLevel::Size2M;
    }
    if max == PageLevel::Size2M && lpage(gfn, PageLevel::Size2M)? != 0 {
        max = PageLevel::Size4K;
    }
    Ok(max.min(private_max_mapping_level(vcpu, gfn, flags)))
}

/// The design's answer when mapping at `goal` meets a huge leaf at `leaf` (above it) under the
/// read lock: the split hook.
pub fn on_huge_leaf(
    vcpu: &mut Vcpu,
    gfn: Gfn,
    goal: PageLevel,
    leaf: PageLevel,
) -> Result<u32, i32> {
    if leaf <= goal {
        return Err(HUGESEPT_ERR_INVALID_LEVEL);
    }
    let q = HugeLeafQuery { gfn, goal, leaf };
    Ok(match vcpu.policy.on_huge_leaf(&mut vcpu.state, &q) {
        SplitDecision::Refuse => HUGESEPT_SPLIT_REFUSE,
        SplitDecision::SplitInPlace => HUGESEPT_SPLIT_IN_PLACE,
        SplitDecision::KeepHugeLeaf => HUGESEPT_SPLIT_KEEP_HUGE_LEAF,
        SplitDecision::BugVm => HUGESEPT_SPLIT_BUG_VM,
    })
}

/// The RCX operand of TDG.MEM.PAGE.ACCEPT for `gpa` at `level`, checked as the module checks
/// it (core::abi `AcceptOperand::decode_for`): aligned, private, below MAX_PA.
pub fn accept_operand(gpa: u64, level_code: u32, gpaw_bits: u32) -> Result<u64, i32> {
    let level = level(level_code)?;
    let gpaw = gpaw(gpaw_bits)?;
    if !Gpa(gpa).is_aligned(level) {
        return Err(HUGESEPT_ERR_GPA_MISALIGNED);
    }
    let rcx = AcceptOperand {
        gpa: Gpa(gpa),
        level,
    }
    .encode();
    let back = AcceptOperand::decode_for(rcx, gpaw).map_err(abi_error)?;
    if back.gpa.raw() != gpa || back.level != level {
        return Err(HUGESEPT_ERR_RESERVED_BITS);
    }
    Ok(rcx)
}

/// Decodes an ACCEPT operand as the module does.
pub fn decode_accept_operand(rcx: u64, gpaw_bits: u32) -> Result<AcceptOperand, i32> {
    AcceptOperand::decode_for(rcx, gpaw(gpaw_bits)?).map_err(abi_error)
}

/// A guest's reading of an ACCEPT status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The status code (bits 63:32).
    pub code: u32,
    /// `HUGESEPT_STATUS_*`.
    pub class: u32,
    /// The level in the detail, or [`HUGESEPT_LEVEL_NONE`].
    pub detail_level: u32,
    /// `HUGESEPT_REACT_*`.
    pub reaction: u32,
    /// The retry count to pass with the next retry.
    pub next_retries: u32,
}

/// What `guest` does after its ACCEPT at `level` retired with `status`, the `retries`-th retry
/// of it (counts above 255 read as 255; the guests' limits are 3 and 5).
pub fn accept_status(
    guest_code: u32,
    level_code: u32,
    status: u64,
    retries: u32,
) -> Result<Outcome, i32> {
    let kind = guest(guest_code)?;
    let level = level(level_code)?;
    let retries = u8::try_from(retries).unwrap_or(u8::MAX);
    let status = TdxStatus(status);
    let reaction = match rules::react(kind, level, status, retries) {
        rules::Reaction::Advance => HUGESEPT_REACT_ADVANCE,
        rules::Reaction::Retry => HUGESEPT_REACT_RETRY,
        rules::Reaction::Smaller => HUGESEPT_REACT_SMALLER,
        rules::Reaction::Children => HUGESEPT_REACT_CHILDREN,
        rules::Reaction::ZeroThenAdvance => HUGESEPT_REACT_ZERO_THEN_ADVANCE,
        rules::Reaction::Panic => HUGESEPT_REACT_PANIC,
    };
    let next = if reaction == HUGESEPT_REACT_RETRY {
        rules::next_retry(kind, retries)
    } else {
        0
    };
    Ok(Outcome {
        code: (status.raw() >> 32) as u32,
        class: match status.class() {
            StatusClass::Success => HUGESEPT_STATUS_SUCCESS,
            StatusClass::Warning => HUGESEPT_STATUS_WARNING,
            StatusClass::Recoverable => HUGESEPT_STATUS_RECOVERABLE,
            StatusClass::Fatal => HUGESEPT_STATUS_FATAL,
        },
        detail_level: opt_level_code(status.level()),
        reaction,
        next_retries: u32::from(next),
    })
}

/// The public S-EPT state code of an exit's walk, for the C struct.
pub const fn state_code(s: SeptEntryState) -> u32 {
    s.public_code() as u32
}
