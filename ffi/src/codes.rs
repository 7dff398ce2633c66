//! The numbers of the C ABI: return codes, level and kind encodings, flags. Every function
//! returns an `int32_t`: [`HUGESEPT_OK`] or one of the negative `HUGESEPT_ERR_*` codes.

/// The version of this ABI; it changes when a function, struct or code changes meaning.
pub const HUGESEPT_ABI_VERSION: u32 = 1;

/// Success.
pub const HUGESEPT_OK: i32 = 0;
/// A pointer argument was null.
pub const HUGESEPT_ERR_NULL_POINTER: i32 = -1;
/// A pointer argument was not aligned for its type.
pub const HUGESEPT_ERR_MISALIGNED: i32 = -2;
/// The caller's buffer for the state is smaller than `HUGESEPT_VCPU_SIZE`.
pub const HUGESEPT_ERR_BUFFER_TOO_SMALL: i32 = -3;
/// The state was not initialised by `hugesept_vcpu_init`, or its bytes were changed.
pub const HUGESEPT_ERR_STATE_INVALID: i32 = -4;
/// No design has this code.
pub const HUGESEPT_ERR_UNKNOWN_POLICY: i32 = -5;
/// No guest strategy has this code.
pub const HUGESEPT_ERR_UNKNOWN_GUEST: i32 = -6;
/// A level code outside 0..=2, or levels in the wrong order.
pub const HUGESEPT_ERR_INVALID_LEVEL: i32 = -7;
/// A GPA width other than 48 or 52.
pub const HUGESEPT_ERR_INVALID_GPAW: i32 = -8;
/// Bits that must be zero are set.
pub const HUGESEPT_ERR_RESERVED_BITS: i32 = -9;
/// A reserved extended-exit-qualification type.
pub const HUGESEPT_ERR_UNKNOWN_EEQ_TYPE: i32 = -10;
/// A public S-EPT state code that names no state.
pub const HUGESEPT_ERR_UNKNOWN_SEPT_STATE: i32 = -11;
/// The GPA has the shared bit set (not the private path's).
pub const HUGESEPT_ERR_SHARED_GPA: i32 = -12;
/// The GPA is at or above MAX_PA.
pub const HUGESEPT_ERR_BEYOND_GPAW: i32 = -13;
/// The GPA is not aligned to the level.
pub const HUGESEPT_ERR_GPA_MISALIGNED: i32 = -14;
/// An address computation left the address space.
pub const HUGESEPT_ERR_ADDRESS_OVERFLOW: i32 = -15;
/// The caller's lpage_info lookup returned non-zero.
pub const HUGESEPT_ERR_LOOKUP_FAILED: i32 = -16;
/// Unknown flag bits.
pub const HUGESEPT_ERR_INVALID_FLAGS: i32 = -17;
/// An argument outside its range.
pub const HUGESEPT_ERR_INVALID_ARGUMENT: i32 = -18;

/// 4K, in the TDX encoding every level argument uses (KVM's `PG_LEVEL_4K` minus one).
pub const HUGESEPT_LEVEL_4K: u32 = 0;
/// 2M.
pub const HUGESEPT_LEVEL_2M: u32 = 1;
/// 1G.
pub const HUGESEPT_LEVEL_1G: u32 = 2;
/// No level (an exit without an accept level, a status without a level).
pub const HUGESEPT_LEVEL_NONE: u32 = 0xFF;

/// An ordinary private fault: run it.
pub const HUGESEPT_EXIT_FAULT: u32 = 0;
/// A TDG.MEM.PAGE.ACCEPT that could not proceed: an accept request at `accept_level`.
pub const HUGESEPT_EXIT_ACCEPT: u32 = 1;
/// The guest touched unaccepted memory with #VE disabled: kill the TD (tdx.c).
pub const HUGESEPT_EXIT_KILL_VM: u32 = 2;

/// Run the fault (`fault_max_level` is its own max level).
pub const HUGESEPT_PLAN_RUN_FAULT: u32 = 0;
/// Take mmu_lock for write, split every mapping above `split_above_level` in
/// `[split_start_gfn, split_end_gfn)`, set GUEST_INHIBIT at each level of `inhibit_levels`,
/// release the lock, then run the fault.
pub const HUGESEPT_PLAN_SPLIT_AND_INHIBIT: u32 = 1;
/// Kill the TD.
pub const HUGESEPT_PLAN_KILL_VM: u32 = 2;

/// `flags`: a KVM_PRE_FAULT_MEMORY fault, not a guest access.
pub const HUGESEPT_FAULT_PREFETCH: u32 = 1 << 0;
/// `flags`: the TD is runnable (finalized).
pub const HUGESEPT_TD_RUNNABLE: u32 = 1 << 1;

/// The split hook: refuse, restore the SPTE and retry the fault (RET_PF_RETRY).
pub const HUGESEPT_SPLIT_REFUSE: u32 = 0;
/// Split under the read lock: BLOCK, TRACK, DEMOTE (UNBLOCK when DEMOTE fails).
pub const HUGESEPT_SPLIT_IN_PLACE: u32 = 1;
/// Keep the huge leaf: the fault is resolved (RET_PF_SPURIOUS).
pub const HUGESEPT_SPLIT_KEEP_HUGE_LEAF: u32 = 2;
/// KVM_BUG_ON: the design never expects a huge leaf here.
pub const HUGESEPT_SPLIT_BUG_VM: u32 = 3;

/// Status class: success.
pub const HUGESEPT_STATUS_SUCCESS: u32 = 0;
/// Status class: completed with a warning (bit 63 clear, code non-zero).
pub const HUGESEPT_STATUS_WARNING: u32 = 1;
/// Status class: failed, may succeed later (e.g. BUSY).
pub const HUGESEPT_STATUS_RECOVERABLE: u32 = 2;
/// Status class: failed, will fail again.
pub const HUGESEPT_STATUS_FATAL: u32 = 3;

/// The guest goes on after the unit: it is accepted.
pub const HUGESEPT_REACT_ADVANCE: u32 = 0;
/// The guest issues the same ACCEPT again (with `next_retries`).
pub const HUGESEPT_REACT_RETRY: u32 = 1;
/// The guest tries the next smaller level at the same GPA.
pub const HUGESEPT_REACT_SMALLER: u32 = 2;
/// The guest accepts the unit's 512 smaller pages one by one.
pub const HUGESEPT_REACT_CHILDREN: u32 = 3;
/// The guest zeroes the unit itself, then goes on.
pub const HUGESEPT_REACT_ZERO_THEN_ADVANCE: u32 = 4;
/// The guest's fatal path.
pub const HUGESEPT_REACT_PANIC: u32 = 5;

/// The size in bytes of the caller-allocated per-vCPU state.
pub const HUGESEPT_VCPU_SIZE: usize = 32;
/// Its alignment.
pub const HUGESEPT_VCPU_ALIGN: usize = 8;

/// Design: upstream KVM since 6.16, 4K only.
pub const HUGESEPT_POLICY_UPSTREAM_4K: u32 = 0;
/// Design: Yan Zhao's RFC v1 per-vCPU violation window.
pub const HUGESEPT_POLICY_RFC_V1: u32 = 1;
/// Design: the accept level carried as the fault's max level.
pub const HUGESEPT_POLICY_FAULT_MAX_LEVEL: u32 = 2;
/// Design: GUEST_INHIBIT with the lock-free pre-check (RFC v2, v3, v5).
pub const HUGESEPT_POLICY_GUEST_INHIBIT: u32 = 3;
/// Design: GUEST_INHIBIT taking the write lock on every ACCEPT exit.
pub const HUGESEPT_POLICY_GUEST_INHIBIT_NOCHECK: u32 = 4;
/// Design: split in the fault path under the read lock.
pub const HUGESEPT_POLICY_FAULT_PATH_DEMOTE: u32 = 5;
/// Design: explicit demotion (needs the explicit-demotion module).
pub const HUGESEPT_POLICY_EXPLICIT_DEMOTION: u32 = 6;

/// Guest: Linux `try_accept_one`.
pub const HUGESEPT_GUEST_LINUX: u32 = 1;
/// Guest: Linux with lazy accept.
pub const HUGESEPT_GUEST_LINUX_LAZY: u32 = 2;
/// Guest: OVMF `TdAcceptPages`.
pub const HUGESEPT_GUEST_OVMF: u32 = 3;
/// Guest: td-shim.
pub const HUGESEPT_GUEST_TD_SHIM: u32 = 4;
/// Guest: the tdx-guest crate.
pub const HUGESEPT_GUEST_TDX_GUEST: u32 = 5;
/// Guest: coconut-svsm.
pub const HUGESEPT_GUEST_SVSM: u32 = 6;
/// Guest: accepts at 4K only.
pub const HUGESEPT_GUEST_ACCEPT_4K_ONLY: u32 = 7;
/// Guest: touches first, accepts from its #VE handler.
pub const HUGESEPT_GUEST_TOUCH_FIRST: u32 = 8;
/// Guest: the seed scenario's single ACCEPT.
pub const HUGESEPT_GUEST_SINGLE_ACCEPT: u32 = 9;
/// Guest: the adversarial guest.
pub const HUGESEPT_GUEST_ADVERSARIAL: u32 = 10;
/// Guest: Linux before the zone watermarks are set (a 4 MiB block per allocation).
pub const HUGESEPT_GUEST_LINUX_EARLY: u32 = 11;
/// Guest: asterinas' parallel accept (the tdx-guest crate's rules).
pub const HUGESEPT_GUEST_ASTERINAS: u32 = 12;
