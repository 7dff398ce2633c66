//! hugesept-ffi: hugesept-core behind a C ABI, for a kernel (KVM's TDX fault path) or TD
//! firmware (a guest's accept loop) to link.
//!
//! What it owns: the `extern "C"` functions, their pointer checks and the C-facing structs.
//! What each function means is in [`api`] (safe Rust over the core), the numbers in [`codes`],
//! the shared self-test table in [`selftest`]. docs/linking.md maps every function to the
//! kernel hook or firmware call site it serves.
//!
//! The rules every function keeps:
//! - no allocation, no panic path (the crate's lints deny the panicking constructs), no global
//!   state: the only state is the caller-allocated [`HugeseptVcpu`], whose size and alignment
//!   are exported ([`hugesept_vcpu_size`], [`hugesept_vcpu_align`], and the constants);
//! - every result is an `int32_t` return code, every output goes through a pointer;
//! - every pointer is checked for null and for its type's alignment before use, in argument
//!   order, then the state's validity, then the values; an output is written only on success.
//!
//! The header `include/hugesept.h` is generated from this file by cbindgen (`cbindgen.toml`).

#![cfg_attr(not(test), no_std)]

pub mod api;
pub mod codes;
pub mod selftest;
#[cfg(test)]
mod tests;

use core::ffi::{c_char, c_void};

use hugesept_core::abi::{Gfn, PageLevel};

use api::{Vcpu, VcpuWords};
pub use codes::*;

/// One vCPU's policy state, opaque to C: allocate [`HUGESEPT_VCPU_SIZE`] bytes aligned to
/// [`HUGESEPT_VCPU_ALIGN`] and initialise them with [`hugesept_vcpu_init`].
pub struct HugeseptVcpu {
    words: VcpuWords,
}

const _: () = assert!(core::mem::size_of::<HugeseptVcpu>() == HUGESEPT_VCPU_SIZE);
const _: () = assert!(core::mem::align_of::<HugeseptVcpu>() == HUGESEPT_VCPU_ALIGN);

/// A decoded private EPT-violation exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HugeseptExit {
    /// RCX as given: the exit qualification.
    pub exit_qualification: u64,
    /// The faulting GPA, 4K-aligned, shared bit clear.
    pub gpa: u64,
    /// Its GFN.
    pub gfn: u64,
    /// `HUGESEPT_EXIT_*`.
    pub kind: u32,
    /// The extended exit qualification's type (RDX bits 3:0).
    pub eeq_type: u32,
    /// For `HUGESEPT_EXIT_ACCEPT`: the level the guest asked for; else `HUGESEPT_LEVEL_NONE`.
    pub accept_level: u32,
    /// For `HUGESEPT_EXIT_ACCEPT`: the level where the module's walk stopped.
    pub error_level: u32,
    /// For `HUGESEPT_EXIT_ACCEPT`: the public S-EPT state code of that entry.
    pub error_state: u32,
    /// For `HUGESEPT_EXIT_ACCEPT`: 1 if that entry is a leaf.
    pub error_is_leaf: u32,
}

/// What KVM does with an exit before it runs the fault.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HugeseptPlan {
    /// `HUGESEPT_PLAN_*`.
    pub action: u32,
    /// The fault's own max level (`fault->max_level`).
    pub fault_max_level: u32,
    /// For `HUGESEPT_PLAN_SPLIT_AND_INHIBIT`: the first GFN of the range to split.
    pub split_start_gfn: u64,
    /// The GFN after the range.
    pub split_end_gfn: u64,
    /// Mappings above this level in the range are split.
    pub split_above_level: u32,
    /// Bit `1 << level` for each level whose GUEST_INHIBIT is set once the range is split.
    pub inhibit_levels: u32,
}

/// A decoded ACCEPT operand.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HugeseptAcceptOperand {
    /// The GPA.
    pub gpa: u64,
    /// The level.
    pub level: u32,
}

/// A guest's reading of an ACCEPT status.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HugeseptAcceptOutcome {
    /// The status code (bits 63:32 of the status).
    pub status_code: u32,
    /// `HUGESEPT_STATUS_*`.
    pub status_class: u32,
    /// The level in the status's detail, or `HUGESEPT_LEVEL_NONE`.
    pub detail_level: u32,
    /// `HUGESEPT_REACT_*`: what the guest does next.
    pub reaction: u32,
    /// For `HUGESEPT_REACT_RETRY`: the retry count to pass next time; else 0.
    pub next_retries: u32,
}

/// The caller's `lpage_info` lookup: store KVM's `disallow_lpage` word for the huge range of
/// `gfn` at `level` (`HUGESEPT_LEVEL_2M` or `HUGESEPT_LEVEL_1G`) in `*disallow_lpage` and
/// return 0; a non-zero return fails the call with `HUGESEPT_ERR_LOOKUP_FAILED`.
pub type HugeseptLpageLookup = Option<
    unsafe extern "C" fn(ctx: *mut c_void, gfn: u64, level: u32, disallow_lpage: *mut u32) -> i32,
>;

/// Null and alignment, for any pointer argument.
fn check<T>(p: *const T) -> Result<(), i32> {
    if p.is_null() {
        Err(HUGESEPT_ERR_NULL_POINTER)
    } else if !p.is_aligned() {
        Err(HUGESEPT_ERR_MISALIGNED)
    } else {
        Ok(())
    }
}

/// Writes `v` through a checked pointer.
///
/// # Safety
/// `p` must be valid for a write of `T` (the caller's contract); it has passed [`check`].
unsafe fn put<T>(p: *mut T, v: T) {
    // SAFETY: the caller guarantees `p` is valid for writes; `check` has ruled out null and
    // misalignment.
    unsafe { p.write(v) }
}

/// Reads and validates the state behind a checked pointer.
///
/// # Safety
/// `p` must be valid for a read of [`HUGESEPT_VCPU_SIZE`] bytes; it has passed [`check`].
unsafe fn load(p: *const HugeseptVcpu) -> Result<Vcpu, i32> {
    // SAFETY: the caller guarantees `p` is valid for reads of the state's size; `check` ruled
    // out null and misalignment; every bit pattern is a valid `VcpuWords` (plain integers).
    let words = unsafe { p.read() }.words;
    Vcpu::from_words(&words)
}

/// Stores a state through a checked pointer.
///
/// # Safety
/// As [`put`].
unsafe fn store(p: *mut HugeseptVcpu, v: &Vcpu) {
    // SAFETY: forwarded from the caller.
    unsafe { put(p, HugeseptVcpu { words: v.words() }) }
}

/// Collapses a result into a return code.
fn code(r: Result<(), i32>) -> i32 {
    match r {
        Ok(()) => HUGESEPT_OK,
        Err(e) => e,
    }
}

/// The caller's lookup as a Rust closure.
fn lookup(
    f: unsafe extern "C" fn(*mut c_void, u64, u32, *mut u32) -> i32,
    ctx: *mut c_void,
) -> impl FnMut(Gfn, PageLevel) -> Result<u32, i32> {
    move |gfn, level| {
        let mut word = 0u32;
        // SAFETY: the caller supplied `f` as a function of this signature and `ctx` as its
        // argument; `word` is a live local for the callee to write.
        let rc = unsafe { f(ctx, gfn.raw(), api::level_code(level), &mut word) };
        if rc == 0 {
            Ok(word)
        } else {
            Err(HUGESEPT_ERR_LOOKUP_FAILED)
        }
    }
}

/// The ABI version, [`HUGESEPT_ABI_VERSION`].
#[unsafe(no_mangle)]
pub extern "C" fn hugesept_abi_version() -> u32 {
    HUGESEPT_ABI_VERSION
}

/// The size of [`HugeseptVcpu`] in bytes.
#[unsafe(no_mangle)]
pub extern "C" fn hugesept_vcpu_size() -> usize {
    HUGESEPT_VCPU_SIZE
}

/// The alignment of [`HugeseptVcpu`].
#[unsafe(no_mangle)]
pub extern "C" fn hugesept_vcpu_align() -> usize {
    HUGESEPT_VCPU_ALIGN
}

/// Initialises a caller-allocated state of `size` bytes for the design `policy`
/// (`HUGESEPT_POLICY_*`): one per vCPU, as RFC v1 keeps its window per vCPU.
///
/// # Safety
/// `vcpu` is null or valid for writes of `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hugesept_vcpu_init(
    vcpu: *mut HugeseptVcpu,
    size: usize,
    policy: u32,
) -> i32 {
    code((|| {
        check(vcpu)?;
        if size < HUGESEPT_VCPU_SIZE {
            return Err(HUGESEPT_ERR_BUFFER_TOO_SMALL);
        }
        let v = Vcpu::new(policy)?;
        // SAFETY: checked above; the caller guarantees `size` writable bytes.
        unsafe { store(vcpu, &v) };
        Ok(())
    })())
}

/// The design a state was initialised for.
///
/// # Safety
/// `vcpu` is null or valid for reads of the state; `policy` is null or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hugesept_vcpu_policy(vcpu: *const HugeseptVcpu, policy: *mut u32) -> i32 {
    code((|| {
        check(vcpu)?;
        check(policy)?;
        // SAFETY: checked above; the caller's contract.
        let v = unsafe { load(vcpu) }?;
        // SAFETY: checked above; the caller's contract.
        unsafe { put(policy, api::policy_code(v.policy)) };
        Ok(())
    })())
}

/// Decodes a TD exit on an EPT violation: RCX (exit qualification), RDX (extended exit
/// qualification), R8 (GPA), for a TD whose GPA width is `gpaw_bits` (48 or 52). A shared
/// GPA is `HUGESEPT_ERR_SHARED_GPA`: it is not the private fault path's.
///
/// # Safety
/// `out` is null or valid for a write of [`HugeseptExit`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hugesept_decode_exit(
    rcx: u64,
    rdx: u64,
    r8: u64,
    gpaw_bits: u32,
    out: *mut HugeseptExit,
) -> i32 {
    code((|| {
        check(out)?;
        let e = api::decode_exit(rcx, rdx, r8, gpaw_bits)?;
        // SAFETY: checked above; the caller's contract.
        unsafe { put(out, exit_to_c(&e)) };
        Ok(())
    })())
}

/// The C struct of a decoded exit.
pub fn exit_to_c(e: &api::Exit) -> HugeseptExit {
    use hugesept_core::abi::ExtendedExitQualification as Eeq;
    let (error_level, error_state, error_is_leaf) = match e.eeq {
        Eeq::Accept(a) if e.kind == api::ExitKind::Accept => (
            api::level_code(a.error_level),
            api::state_code(a.error_state),
            u32::from(a.error_is_leaf),
        ),
        _ => (HUGESEPT_LEVEL_NONE, 0, 0),
    };
    HugeseptExit {
        exit_qualification: e.exit_qualification,
        gpa: e.gpa.raw(),
        gfn: e.gfn.raw(),
        kind: match e.kind {
            api::ExitKind::Fault => HUGESEPT_EXIT_FAULT,
            api::ExitKind::Accept => HUGESEPT_EXIT_ACCEPT,
            api::ExitKind::KillVm => HUGESEPT_EXIT_KILL_VM,
        },
        eeq_type: u32::from(e.eeq.eeq_type().raw()),
        accept_level: api::opt_level_code(e.accept_level()),
        error_level,
        error_state,
        error_is_leaf,
    }
}

/// The exit back from its C struct: re-decoded from the registers it records, so a struct the
/// caller changed cannot carry a request the decoder would not produce.
fn exit_from_c(c: &HugeseptExit, gpaw_bits: u32) -> Result<api::Exit, i32> {
    use hugesept_core::abi::{AcceptExitInfo, ExtendedExitQualification as Eeq};
    let eeq_type = u8::try_from(c.eeq_type).map_err(|_| HUGESEPT_ERR_UNKNOWN_EEQ_TYPE)?;
    let info = if c.kind == HUGESEPT_EXIT_ACCEPT {
        let level = |code: u32| api::level(code);
        let info = AcceptExitInfo {
            requested: level(c.accept_level)?,
            error_level: level(c.error_level)?,
            error_state: hugesept_core::abi::SeptEntryState::from_public_code(
                u8::try_from(c.error_state).map_err(|_| HUGESEPT_ERR_UNKNOWN_SEPT_STATE)?,
            )
            .map_err(api::abi_error)?,
            error_is_leaf: match c.error_is_leaf {
                0 => false,
                1 => true,
                _ => return Err(HUGESEPT_ERR_INVALID_ARGUMENT),
            },
            vm_index: 0,
        };
        Eeq::Accept(info).encode()
    } else {
        u64::from(eeq_type)
    };
    let e = api::decode_exit(c.exit_qualification, info, c.gpa, gpaw_bits)?;
    if exit_to_c(&e) != *c {
        return Err(HUGESEPT_ERR_INVALID_ARGUMENT);
    }
    Ok(e)
}

/// The design's plan for a decoded exit (`hugesept_decode_exit`'s output): run the fault, or
/// split a range and set GUEST_INHIBIT first, or kill the TD. Updates the vCPU's state (RFC
/// v1's window). `lookup(ctx, …)` answers `lpage_info` (GUEST_INHIBIT's lock-free pre-check
/// reads it); it is required even for designs that do not call it.
///
/// # Safety
/// `vcpu` null or valid for reads and writes of the state; `exit` null or valid for a read;
/// `out` null or valid for a write; `lookup`, if called, is called with `ctx`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hugesept_plan_exit(
    vcpu: *mut HugeseptVcpu,
    exit: *const HugeseptExit,
    gpaw_bits: u32,
    lookup_fn: HugeseptLpageLookup,
    ctx: *mut c_void,
    out: *mut HugeseptPlan,
) -> i32 {
    code((|| {
        check(vcpu)?;
        check(exit)?;
        let f = lookup_fn.ok_or(HUGESEPT_ERR_NULL_POINTER)?;
        check(out)?;
        // SAFETY: checked above; the caller's contract.
        let mut v = unsafe { load(vcpu) }?;
        // SAFETY: checked above; the caller's contract.
        let c = unsafe { exit.read() };
        let e = exit_from_c(&c, gpaw_bits)?;
        let p = api::plan_exit(&mut v, &e, &mut lookup(f, ctx))?;
        // SAFETY: checked above; the caller's contract.
        unsafe { store(vcpu, &v) };
        // SAFETY: checked above; the caller's contract.
        unsafe { put(out, plan_to_c(&p)) };
        Ok(())
    })())
}

/// The C struct of a plan.
pub fn plan_to_c(p: &api::Plan) -> HugeseptPlan {
    let split = p.action == HUGESEPT_PLAN_SPLIT_AND_INHIBIT;
    HugeseptPlan {
        action: p.action,
        fault_max_level: api::level_code(p.fault_max_level),
        split_start_gfn: p.split_start.raw(),
        split_end_gfn: p.split_end.raw(),
        split_above_level: if split {
            api::level_code(p.split_above)
        } else {
            HUGESEPT_LEVEL_NONE
        },
        inhibit_levels: p.inhibit_levels,
    }
}

/// The design's `private_max_mapping_level` hook for `gfn`; `flags` is a set of
/// `HUGESEPT_FAULT_PREFETCH` and `HUGESEPT_TD_RUNNABLE`.
///
/// # Safety
/// `vcpu` null or valid for reads of the state; `level` null or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hugesept_private_max_mapping_level(
    vcpu: *const HugeseptVcpu,
    gfn: u64,
    flags: u32,
    level: *mut u32,
) -> i32 {
    code((|| {
        check(vcpu)?;
        check(level)?;
        // SAFETY: checked above; the caller's contract.
        let v = unsafe { load(vcpu) }?;
        let flags = api::level_flags(flags)?;
        let l = api::private_max_mapping_level(&v, Gfn(gfn), flags);
        // SAFETY: checked above; the caller's contract.
        unsafe { put(level, api::level_code(l)) };
        Ok(())
    })())
}

/// The level a fault on `gfn` maps at most: the fault's own max level, capped by the
/// guest_memfd folio's level, by `lpage_info` at 1G and 2M (from `lookup`), and by the hook
/// (mmu.c `kvm_mmu_max_mapping_level` with the TDX hook).
///
/// # Safety
/// As [`hugesept_private_max_mapping_level`]; `lookup`, if called, is called with `ctx`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hugesept_max_mapping_level(
    vcpu: *const HugeseptVcpu,
    gfn: u64,
    fault_max_level: u32,
    folio_level: u32,
    flags: u32,
    lookup_fn: HugeseptLpageLookup,
    ctx: *mut c_void,
    level: *mut u32,
) -> i32 {
    code((|| {
        check(vcpu)?;
        let f = lookup_fn.ok_or(HUGESEPT_ERR_NULL_POINTER)?;
        check(level)?;
        // SAFETY: checked above; the caller's contract.
        let v = unsafe { load(vcpu) }?;
        let fault_max = api::level(fault_max_level)?;
        let folio = api::level(folio_level)?;
        let flags = api::level_flags(flags)?;
        let l = api::max_mapping_level(&v, Gfn(gfn), fault_max, folio, flags, &mut lookup(f, ctx))?;
        // SAFETY: checked above; the caller's contract.
        unsafe { put(level, api::level_code(l)) };
        Ok(())
    })())
}

/// The split hook: mapping `gfn` at `goal_level` met a huge leaf at `leaf_level` (above it)
/// under the read lock. `decision` receives `HUGESEPT_SPLIT_*`. Updates the vCPU's state (RFC
/// v1 widens its window).
///
/// # Safety
/// `vcpu` null or valid for reads and writes of the state; `decision` null or valid for a
/// write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hugesept_on_huge_leaf(
    vcpu: *mut HugeseptVcpu,
    gfn: u64,
    goal_level: u32,
    leaf_level: u32,
    decision: *mut u32,
) -> i32 {
    code((|| {
        check(vcpu)?;
        check(decision)?;
        // SAFETY: checked above; the caller's contract.
        let mut v = unsafe { load(vcpu) }?;
        let goal = api::level(goal_level)?;
        let leaf = api::level(leaf_level)?;
        let d = api::on_huge_leaf(&mut v, Gfn(gfn), goal, leaf)?;
        // SAFETY: checked above; the caller's contract.
        unsafe { store(vcpu, &v) };
        // SAFETY: checked above; the caller's contract.
        unsafe { put(decision, d) };
        Ok(())
    })())
}

/// The RCX operand of TDG.MEM.PAGE.ACCEPT for `gpa` at `level`, refused as the module would
/// refuse it (misaligned, shared bit, at or above MAX_PA).
///
/// # Safety
/// `rcx` null or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hugesept_accept_operand(
    gpa: u64,
    level: u32,
    gpaw_bits: u32,
    rcx: *mut u64,
) -> i32 {
    code((|| {
        check(rcx)?;
        let v = api::accept_operand(gpa, level, gpaw_bits)?;
        // SAFETY: checked above; the caller's contract.
        unsafe { put(rcx, v) };
        Ok(())
    })())
}

/// Decodes an ACCEPT operand as the module does.
///
/// # Safety
/// `out` null or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hugesept_decode_accept_operand(
    rcx: u64,
    gpaw_bits: u32,
    out: *mut HugeseptAcceptOperand,
) -> i32 {
    code((|| {
        check(out)?;
        let op = api::decode_accept_operand(rcx, gpaw_bits)?;
        let c = HugeseptAcceptOperand {
            gpa: op.gpa.raw(),
            level: api::level_code(op.level),
        };
        // SAFETY: checked above; the caller's contract.
        unsafe { put(out, c) };
        Ok(())
    })())
}

/// What guest strategy `guest` (`HUGESEPT_GUEST_*`) does after its ACCEPT at `level` returned
/// `status`, on its `retries`-th retry of that ACCEPT (Linux `try_accept_one`, OVMF
/// `TdAcceptPages`, td-shim, tdx-guest, svsm: shared/reference/guests.md).
///
/// # Safety
/// `out` null or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hugesept_accept_status(
    guest: u32,
    level: u32,
    status: u64,
    retries: u32,
    out: *mut HugeseptAcceptOutcome,
) -> i32 {
    code((|| {
        check(out)?;
        let o = api::accept_status(guest, level, status, retries)?;
        let c = HugeseptAcceptOutcome {
            status_code: o.code,
            status_class: o.class,
            detail_level: o.detail_level,
            reaction: o.reaction,
            next_retries: o.next_retries,
        };
        // SAFETY: checked above; the caller's contract.
        unsafe { put(out, c) };
        Ok(())
    })())
}

/// The name of a design (`HUGESEPT_POLICY_*`), as the command line spells it; null for an
/// unknown code. The string is static and NUL-terminated.
#[unsafe(no_mangle)]
pub extern "C" fn hugesept_policy_name(policy: u32) -> *const c_char {
    usize::try_from(policy)
        .ok()
        .and_then(|i| POLICY_NAMES.get(i))
        .map_or(core::ptr::null(), |n| n.as_ptr())
}

/// The name of a guest strategy (`HUGESEPT_GUEST_*`); null for an unknown code.
#[unsafe(no_mangle)]
pub extern "C" fn hugesept_guest_name(guest: u32) -> *const c_char {
    usize::try_from(guest)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| GUEST_NAMES.get(i))
        .map_or(core::ptr::null(), |n| n.as_ptr())
}

/// The name of a return code (`"HUGESEPT_OK"`, `"HUGESEPT_ERR_…"`); null for an unknown code.
#[unsafe(no_mangle)]
pub extern "C" fn hugesept_error_name(code: i32) -> *const c_char {
    ERROR_NAMES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(core::ptr::null(), |(_, n)| n.as_ptr())
}

/// The design with the name `name[0..len]` (not NUL-terminated).
///
/// # Safety
/// `name` null or valid for reads of `len` bytes; `policy` null or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hugesept_policy_lookup(
    name: *const u8,
    len: usize,
    policy: *mut u32,
) -> i32 {
    code((|| {
        check(name)?;
        check(policy)?;
        // SAFETY: checked for null above; the caller guarantees `len` readable bytes.
        let bytes = unsafe { core::slice::from_raw_parts(name, len) };
        let i = POLICY_NAMES
            .iter()
            .position(|n| n.to_bytes() == bytes)
            .and_then(|i| u32::try_from(i).ok())
            .ok_or(HUGESEPT_ERR_UNKNOWN_POLICY)?;
        // SAFETY: checked above; the caller's contract.
        unsafe { put(policy, i) };
        Ok(())
    })())
}

/// The names of the designs, by code (the core's names; a test keeps them equal).
const POLICY_NAMES: [&core::ffi::CStr; 7] = [
    c"upstream-4k",
    c"rfc-v1",
    c"fault-max-level",
    c"guest-inhibit",
    c"guest-inhibit-nocheck",
    c"fault-path-demote",
    c"explicit-demotion",
];

/// The names of the guest strategies, by code minus one.
const GUEST_NAMES: [&core::ffi::CStr; 12] = [
    c"linux",
    c"linux-lazy",
    c"ovmf",
    c"td-shim",
    c"tdx-guest",
    c"svsm",
    c"accept-4k-only",
    c"touch-first",
    c"single-accept",
    c"adversarial",
    c"linux-early",
    c"asterinas",
];

/// Every return code with its name.
const ERROR_NAMES: [(i32, &core::ffi::CStr); 19] = [
    (HUGESEPT_OK, c"HUGESEPT_OK"),
    (HUGESEPT_ERR_NULL_POINTER, c"HUGESEPT_ERR_NULL_POINTER"),
    (HUGESEPT_ERR_MISALIGNED, c"HUGESEPT_ERR_MISALIGNED"),
    (
        HUGESEPT_ERR_BUFFER_TOO_SMALL,
        c"HUGESEPT_ERR_BUFFER_TOO_SMALL",
    ),
    (HUGESEPT_ERR_STATE_INVALID, c"HUGESEPT_ERR_STATE_INVALID"),
    (HUGESEPT_ERR_UNKNOWN_POLICY, c"HUGESEPT_ERR_UNKNOWN_POLICY"),
    (HUGESEPT_ERR_UNKNOWN_GUEST, c"HUGESEPT_ERR_UNKNOWN_GUEST"),
    (HUGESEPT_ERR_INVALID_LEVEL, c"HUGESEPT_ERR_INVALID_LEVEL"),
    (HUGESEPT_ERR_INVALID_GPAW, c"HUGESEPT_ERR_INVALID_GPAW"),
    (HUGESEPT_ERR_RESERVED_BITS, c"HUGESEPT_ERR_RESERVED_BITS"),
    (
        HUGESEPT_ERR_UNKNOWN_EEQ_TYPE,
        c"HUGESEPT_ERR_UNKNOWN_EEQ_TYPE",
    ),
    (
        HUGESEPT_ERR_UNKNOWN_SEPT_STATE,
        c"HUGESEPT_ERR_UNKNOWN_SEPT_STATE",
    ),
    (HUGESEPT_ERR_SHARED_GPA, c"HUGESEPT_ERR_SHARED_GPA"),
    (HUGESEPT_ERR_BEYOND_GPAW, c"HUGESEPT_ERR_BEYOND_GPAW"),
    (HUGESEPT_ERR_GPA_MISALIGNED, c"HUGESEPT_ERR_GPA_MISALIGNED"),
    (
        HUGESEPT_ERR_ADDRESS_OVERFLOW,
        c"HUGESEPT_ERR_ADDRESS_OVERFLOW",
    ),
    (HUGESEPT_ERR_LOOKUP_FAILED, c"HUGESEPT_ERR_LOOKUP_FAILED"),
    (HUGESEPT_ERR_INVALID_FLAGS, c"HUGESEPT_ERR_INVALID_FLAGS"),
    (
        HUGESEPT_ERR_INVALID_ARGUMENT,
        c"HUGESEPT_ERR_INVALID_ARGUMENT",
    ),
];

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // No code path reaches this (the lints deny panicking constructs and the symbol audit
    // checks that nothing references the panic machinery); a freestanding library still has
    // to name a handler.
    loop {
        core::hint::spin_loop();
    }
}
