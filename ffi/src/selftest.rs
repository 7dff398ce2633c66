//! The self-test table that every consumer of the C ABI runs: the C test program and the Linux
//! kernel module (from the generated `selftest/cases.h`, through `selftest/selftest.c`) and the
//! UEFI application (from [`for_each_case`], through [`run`]).
//!
//! A case names a function, its arguments, the `lpage_info` words its lookup answers and the
//! hostile pointers it is called with (null, misaligned, uninitialised state, a failing
//! lookup). [`expected`] computes the result from the typed API ([`crate::api`]), never
//! through the exported functions; [`run`] calls the exported functions the way a C caller
//! does. The generated header holds `expected` for every case, so a C caller checks its
//! results against Rust's; a unit test keeps the header current.

use core::ffi::c_void;

use hugesept_core::abi::{
    AcceptExitInfo, ExtendedExitQualification, Gfn, PageLevel, SeptEntryState,
};

use crate::api;
use crate::codes::*;
use crate::{
    HugeseptAcceptOperand, HugeseptAcceptOutcome, HugeseptExit, HugeseptPlan, HugeseptVcpu,
};

/// `hugesept_vcpu_init` then `hugesept_vcpu_policy`: args `[policy, size]`.
pub const FN_VCPU_INIT: u32 = 1;
/// `hugesept_decode_exit`: args `[rcx, rdx, r8, gpaw]`.
pub const FN_DECODE_EXIT: u32 = 2;
/// `hugesept_decode_exit`, `hugesept_plan_exit`, then the hook at the exit's GFN: args
/// `[policy, rcx, rdx, r8, gpaw, hook flags]`.
pub const FN_PLAN_EXIT: u32 = 3;
/// `hugesept_max_mapping_level`: args `[policy, gfn, fault max level, folio level, flags]`.
pub const FN_MAX_MAPPING_LEVEL: u32 = 4;
/// `hugesept_private_max_mapping_level`: args `[policy, gfn, flags]`.
pub const FN_PRIVATE_MAX_MAPPING_LEVEL: u32 = 5;
/// `hugesept_on_huge_leaf`, then the hook (runnable) at the GFN: args
/// `[policy, gfn, goal, leaf]`.
pub const FN_ON_HUGE_LEAF: u32 = 6;
/// `hugesept_accept_operand`, then `hugesept_decode_accept_operand` of its result: args
/// `[gpa, level, gpaw]`.
pub const FN_ACCEPT_OPERAND: u32 = 7;
/// `hugesept_decode_accept_operand`: args `[rcx, gpaw]`.
pub const FN_DECODE_ACCEPT_OPERAND: u32 = 8;
/// `hugesept_accept_status`: args `[guest, level, status, retries]`.
pub const FN_ACCEPT_STATUS: u32 = 9;
/// A name function (`[0, code]` policy, `[1, code]` guest, `[2, code]` error), then for a
/// policy name `hugesept_policy_lookup` of it.
pub const FN_NAME: u32 = 10;

/// The state pointer is null.
pub const HOSTILE_NULL_STATE: u32 = 1 << 0;
/// The state pointer is one byte past an aligned address.
pub const HOSTILE_UNALIGNED_STATE: u32 = 1 << 1;
/// The state's bytes are 0xA5, never initialised.
pub const HOSTILE_GARBAGE_STATE: u32 = 1 << 2;
/// The output pointer is null.
pub const HOSTILE_NULL_OUT: u32 = 1 << 3;
/// The output pointer is one byte past an aligned address.
pub const HOSTILE_UNALIGNED_OUT: u32 = 1 << 4;
/// The lookup function pointer is null.
pub const HOSTILE_NULL_LOOKUP: u32 = 1 << 5;
/// The lookup returns an error.
pub const HOSTILE_LOOKUP_FAILS: u32 = 1 << 6;

/// Output words a case compares.
pub const OUT_WORDS: usize = 9;

/// One case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    /// `FN_*`.
    pub func: u32,
    /// `HOSTILE_*`.
    pub hostile: u32,
    /// The arguments, by function.
    pub args: [u64; 6],
    /// The lookup's `disallow_lpage` at 2M.
    pub lpage_2m: u32,
    /// The lookup's `disallow_lpage` at 1G.
    pub lpage_1g: u32,
}

/// A case's result: the return code and the output words (zero past `n`, and all zero
/// unless the code is `HUGESEPT_OK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The return code.
    pub rc: i32,
    /// How many output words the function has.
    pub n: u32,
    /// The output words.
    pub out: [u64; OUT_WORDS],
}

/// The name of a function, for the lines the runners print.
pub const fn func_name(func: u32) -> &'static str {
    match func {
        FN_VCPU_INIT => "vcpu_init",
        FN_DECODE_EXIT => "decode_exit",
        FN_PLAN_EXIT => "plan_exit",
        FN_MAX_MAPPING_LEVEL => "max_mapping_level",
        FN_PRIVATE_MAX_MAPPING_LEVEL => "private_max_mapping_level",
        FN_ON_HUGE_LEAF => "on_huge_leaf",
        FN_ACCEPT_OPERAND => "accept_operand",
        FN_DECODE_ACCEPT_OPERAND => "decode_accept_operand",
        FN_ACCEPT_STATUS => "accept_status",
        FN_NAME => "name",
        _ => "?",
    }
}

/// The number of output words of a function.
pub const fn out_words(func: u32) -> u32 {
    match func {
        FN_VCPU_INIT => 1,
        FN_DECODE_EXIT => 9,
        FN_PLAN_EXIT => 7,
        FN_MAX_MAPPING_LEVEL | FN_PRIVATE_MAX_MAPPING_LEVEL => 1,
        FN_ON_HUGE_LEAF => 2,
        FN_ACCEPT_OPERAND => 3,
        FN_DECODE_ACCEPT_OPERAND => 2,
        FN_ACCEPT_STATUS => 5,
        FN_NAME => 3,
        _ => 0,
    }
}

const GI: u32 = hugesept_core::kvm::LpageInfo::GUEST_INHIBIT;
const MIXED: u32 = hugesept_core::kvm::LpageInfo::MIXED;
const WRITE: u64 = 1 << 1;
const READABLE: u64 = 1 << 3;
const GPA: u64 = 0x4020_0000;
const GFN: u64 = GPA >> 12;

/// RDX of an ACCEPT exit: the guest asked for `req`, the walk stopped at `level` on `state`.
const fn accept_rdx(req: PageLevel, level: PageLevel, state: SeptEntryState, leaf: bool) -> u64 {
    ExtendedExitQualification::Accept(AcceptExitInfo {
        requested: req,
        error_level: level,
        error_state: state,
        error_is_leaf: leaf,
        vm_index: 0,
    })
    .encode()
}

/// The extended exit qualifications the table uses, well-formed and not.
const RDX: [u64; 12] = [
    0,
    accept_rdx(
        PageLevel::Size4K,
        PageLevel::Size2M,
        SeptEntryState::Pending,
        true,
    ),
    accept_rdx(
        PageLevel::Size2M,
        PageLevel::Size2M,
        SeptEntryState::Free,
        false,
    ),
    accept_rdx(
        PageLevel::Size1G,
        PageLevel::Size1G,
        SeptEntryState::Free,
        false,
    ),
    accept_rdx(
        PageLevel::Size4K,
        PageLevel::Size4K,
        SeptEntryState::Blocked,
        true,
    ),
    6,
    2 | (0x1234 << 32),
    0x10,
    3,
    1 | (0x7 << 32),
    1 | ((0xFF << 6) << 32),
    u64::MAX,
];

/// The GPAs (R8) the table uses.
const R8: [u64; 6] = [GPA, GPA | 0x123, GPA | (1 << 47), 1 << 52, 0, u64::MAX];

/// Calls `f` with every case, in the table's order.
pub fn for_each_case(f: &mut dyn FnMut(&Case)) {
    let mut case = |func: u32, hostile: u32, a: &[u64], lpage: (u32, u32)| {
        let mut args = [0u64; 6];
        for (d, s) in args.iter_mut().zip(a) {
            *d = *s;
        }
        f(&Case {
            func,
            hostile,
            args,
            lpage_2m: lpage.0,
            lpage_1g: lpage.1,
        });
    };
    let none = (0, 0);
    let policies = [0u64, 1, 2, 3, 4, 5, 6, 7, u64::from(u32::MAX)];

    // State: every design, unknown codes, short buffers, hostile pointers.
    for p in policies {
        case(FN_VCPU_INIT, 0, &[p, HUGESEPT_VCPU_SIZE as u64], none);
    }
    case(FN_VCPU_INIT, 0, &[3, (HUGESEPT_VCPU_SIZE - 1) as u64], none);
    case(FN_VCPU_INIT, 0, &[3, 0], none);
    case(FN_VCPU_INIT, 0, &[3, u64::MAX], none);
    for h in [
        HOSTILE_NULL_STATE,
        HOSTILE_UNALIGNED_STATE,
        HOSTILE_NULL_OUT,
        HOSTILE_UNALIGNED_OUT,
        HOSTILE_GARBAGE_STATE,
    ] {
        case(FN_VCPU_INIT, h, &[1, HUGESEPT_VCPU_SIZE as u64], none);
    }

    // Exit decoding: every RDX at every GPA, then the permission bits and the widths.
    for rdx in RDX {
        for r8 in R8 {
            case(FN_DECODE_EXIT, 0, &[WRITE, rdx, r8, 48], none);
        }
    }
    for rcx in [0, READABLE, WRITE | READABLE, u64::MAX] {
        case(FN_DECODE_EXIT, 0, &[rcx, 6, GPA, 48], none);
        case(FN_DECODE_EXIT, 0, &[rcx, RDX[1], GPA, 48], none);
    }
    for w in [52, 0, 47, u64::from(u32::MAX)] {
        case(FN_DECODE_EXIT, 0, &[WRITE, RDX[1], 1 << 50, w], none);
    }
    case(
        FN_DECODE_EXIT,
        0,
        &[u64::MAX, u64::MAX, u64::MAX, u64::MAX],
        none,
    );
    for h in [HOSTILE_NULL_OUT, HOSTILE_UNALIGNED_OUT] {
        case(FN_DECODE_EXIT, h, &[WRITE, RDX[1], GPA, 48], none);
    }

    // Plans: every design, every kind of exit, GUEST_INHIBIT set or not above the level.
    let exits: [(u64, u64); 7] = [
        (WRITE, RDX[1]),
        (WRITE, RDX[2]),
        (WRITE, RDX[3]),
        (WRITE, 0),
        (WRITE, 6),
        (WRITE | READABLE, 6),
        (WRITE, RDX[7]),
    ];
    for p in policies {
        for (rcx, rdx) in exits {
            for lpage in [(0, 0), (GI, GI), (GI, 0), (0, GI)] {
                case(
                    FN_PLAN_EXIT,
                    0,
                    &[
                        p,
                        rcx,
                        rdx,
                        GPA + 0x5000,
                        48,
                        u64::from(HUGESEPT_TD_RUNNABLE),
                    ],
                    lpage,
                );
            }
        }
    }
    for h in [
        HOSTILE_NULL_STATE,
        HOSTILE_UNALIGNED_STATE,
        HOSTILE_GARBAGE_STATE,
        HOSTILE_NULL_OUT,
        HOSTILE_UNALIGNED_OUT,
        HOSTILE_NULL_LOOKUP,
        HOSTILE_LOOKUP_FAILS,
    ] {
        for p in [1, 3] {
            case(
                FN_PLAN_EXIT,
                h,
                &[p, WRITE, RDX[1], GPA, 48, u64::from(HUGESEPT_TD_RUNNABLE)],
                none,
            );
        }
    }

    // The mapping level: the fault's max, the folio, the flags, lpage_info at both levels.
    let runnable = u64::from(HUGESEPT_TD_RUNNABLE);
    let prefetch = u64::from(HUGESEPT_FAULT_PREFETCH);
    for p in policies {
        for (fault, folio) in [(2, 2), (1, 2), (0, 2), (2, 1), (2, 0)] {
            for flags in [0, runnable, runnable | prefetch] {
                for lpage in [(0, 0), (0, MIXED), (1, 0), (GI, GI)] {
                    case(
                        FN_MAX_MAPPING_LEVEL,
                        0,
                        &[p, GFN, fault, folio, flags],
                        lpage,
                    );
                }
            }
        }
    }
    for bad in [[3u64, 2, 3], [3, 3, 2], [3, 2, 2]] {
        let flags = if bad == [3, 2, 2] { 0x4 } else { runnable };
        case(
            FN_MAX_MAPPING_LEVEL,
            0,
            &[bad[0], GFN, bad[1], bad[2], flags],
            none,
        );
    }
    for h in [
        HOSTILE_NULL_STATE,
        HOSTILE_UNALIGNED_STATE,
        HOSTILE_GARBAGE_STATE,
        HOSTILE_NULL_OUT,
        HOSTILE_UNALIGNED_OUT,
        HOSTILE_NULL_LOOKUP,
        HOSTILE_LOOKUP_FAILS,
    ] {
        case(FN_MAX_MAPPING_LEVEL, h, &[3, GFN, 2, 2, runnable], none);
    }

    // The hook alone.
    for p in policies {
        for flags in [
            0,
            runnable,
            prefetch,
            runnable | prefetch,
            0x4,
            u64::from(u32::MAX),
        ] {
            case(FN_PRIVATE_MAX_MAPPING_LEVEL, 0, &[p, GFN, flags], none);
        }
    }
    for h in [
        HOSTILE_NULL_STATE,
        HOSTILE_UNALIGNED_STATE,
        HOSTILE_GARBAGE_STATE,
        HOSTILE_NULL_OUT,
        HOSTILE_UNALIGNED_OUT,
    ] {
        case(FN_PRIVATE_MAX_MAPPING_LEVEL, h, &[1, GFN, runnable], none);
    }

    // The split hook.
    for p in policies {
        for (goal, leaf) in [
            (0, 1),
            (1, 2),
            (0, 2),
            (1, 1),
            (2, 0),
            (0, 3),
            (u64::from(u32::MAX), 1),
        ] {
            case(FN_ON_HUGE_LEAF, 0, &[p, GFN + 7, goal, leaf], none);
        }
    }
    for h in [
        HOSTILE_NULL_STATE,
        HOSTILE_UNALIGNED_STATE,
        HOSTILE_GARBAGE_STATE,
        HOSTILE_NULL_OUT,
        HOSTILE_UNALIGNED_OUT,
    ] {
        case(FN_ON_HUGE_LEAF, h, &[1, GFN, 0, 1], none);
    }

    // ACCEPT operands, both ways.
    for gpa in [
        GPA,
        GPA + 0x1000,
        GPA | 0x800,
        1 << 47,
        (1 << 47) - 0x20_0000,
        1 << 51,
        0,
        u64::MAX,
    ] {
        for level in [0, 1, 2, 3] {
            case(FN_ACCEPT_OPERAND, 0, &[gpa, level, 48], none);
        }
        case(FN_ACCEPT_OPERAND, 0, &[gpa, 1, 52], none);
    }
    case(FN_ACCEPT_OPERAND, 0, &[GPA, 0, 50], none);
    for h in [HOSTILE_NULL_OUT, HOSTILE_UNALIGNED_OUT] {
        case(FN_ACCEPT_OPERAND, h, &[GPA, 0, 48], none);
    }
    for rcx in [
        GPA,
        GPA | 1,
        GPA | 2,
        GPA | 3,
        GPA | 0x8,
        GPA | (1 << 60),
        1 << 48,
        u64::MAX,
        0,
    ] {
        for w in [48, 52] {
            case(FN_DECODE_ACCEPT_OPERAND, 0, &[rcx, w], none);
        }
    }
    for h in [HOSTILE_NULL_OUT, HOSTILE_UNALIGNED_OUT] {
        case(FN_DECODE_ACCEPT_OPERAND, h, &[GPA, 48], none);
    }

    // Every guest's reading of the statuses an ACCEPT returns.
    let statuses: [u64; 9] = [
        0,
        0x0000_0B0A_0000_0000,
        0x0000_0B0A_0000_0001,
        0xC000_0B0B_0000_0001,
        0x8000_0200_0000_0001,
        0xC000_0100_0000_0001,
        0xC000_0B0B_0000_0007,
        0x8000_0815_0000_0000,
        u64::MAX,
    ];
    for g in 0u64..=13 {
        for level in [0, 1, 2] {
            for s in statuses {
                case(FN_ACCEPT_STATUS, 0, &[g, level, s, 0], none);
            }
        }
        for r in [2, 3, 4, 5, u64::from(u32::MAX)] {
            case(FN_ACCEPT_STATUS, 0, &[g, 0, statuses[4], r], none);
        }
    }
    case(FN_ACCEPT_STATUS, 0, &[1, 3, 0, 0], none);
    for h in [HOSTILE_NULL_OUT, HOSTILE_UNALIGNED_OUT] {
        case(FN_ACCEPT_STATUS, h, &[3, 1, statuses[3], 0], none);
    }

    // Names.
    for code in 0u64..=7 {
        case(FN_NAME, 0, &[0, code], none);
    }
    for code in 0u64..=13 {
        case(FN_NAME, 0, &[1, code], none);
    }
    for code in 1..=20u64 {
        case(FN_NAME, 0, &[2, code.wrapping_neg() & 0xFFFF_FFFF], none);
    }
    case(FN_NAME, 0, &[2, 0], none);
    case(FN_NAME, 0, &[2, 1], none);
}

/// The table's digest after one more outcome: FNV-1a over 64-bit words (the return code as
/// an unsigned 32-bit word, then the nine output words). The digest of every expected outcome
/// is in the generated header (`HUGESEPT_SELFTEST_DIGEST`); each runner prints the digest of
/// what it got, so a run elsewhere (in the kernel, under OVMF) is checked against the host's.
pub fn digest_step(h: u64, o: &Outcome) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let h = (h ^ u64::from(o.rc as u32)).wrapping_mul(PRIME);
    o.out
        .iter()
        .fold(h, |h, &word| (h ^ word).wrapping_mul(PRIME))
}

/// The digest's start.
pub const DIGEST_INIT: u64 = 0xcbf2_9ce4_8422_2325;

/// The number of cases.
pub fn count() -> u32 {
    let mut n = 0u32;
    for_each_case(&mut |_| n = n.saturating_add(1));
    n
}

fn ok(func: u32, words: &[u64]) -> Outcome {
    let mut out = [0u64; OUT_WORDS];
    for (d, s) in out.iter_mut().zip(words) {
        *d = *s;
    }
    Outcome {
        rc: HUGESEPT_OK,
        n: out_words(func),
        out,
    }
}

fn err(func: u32, rc: i32) -> Outcome {
    Outcome {
        rc,
        n: out_words(func),
        out: [0; OUT_WORDS],
    }
}

fn arg32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The pointer checks of a function with a state and an output (and a lookup), in the order
/// the exported functions make them.
fn pointer_rules(c: &Case, has_state: bool, has_lookup: bool) -> Option<i32> {
    let h = c.hostile;
    if has_state {
        if h & HOSTILE_NULL_STATE != 0 {
            return Some(HUGESEPT_ERR_NULL_POINTER);
        }
        if h & HOSTILE_UNALIGNED_STATE != 0 {
            return Some(HUGESEPT_ERR_MISALIGNED);
        }
    }
    if has_lookup && h & HOSTILE_NULL_LOOKUP != 0 {
        return Some(HUGESEPT_ERR_NULL_POINTER);
    }
    if h & HOSTILE_NULL_OUT != 0 {
        return Some(HUGESEPT_ERR_NULL_POINTER);
    }
    if h & HOSTILE_UNALIGNED_OUT != 0 {
        return Some(HUGESEPT_ERR_MISALIGNED);
    }
    if has_state && h & HOSTILE_GARBAGE_STATE != 0 {
        return Some(HUGESEPT_ERR_STATE_INVALID);
    }
    None
}

/// The state a case's function is called with: initialised for the case's design (an unknown
/// design fails at init), or garbage (refused later, by the pointer rules).
fn state_of(c: &Case) -> Result<api::Vcpu, i32> {
    if c.hostile & HOSTILE_GARBAGE_STATE != 0 {
        // Any valid value: the garbage state is refused before it is used.
        return api::Vcpu::new(HUGESEPT_POLICY_UPSTREAM_4K);
    }
    api::Vcpu::new(arg32(c.args[0]))
}

/// The case's lookup as a closure.
fn lpage_of(c: &Case) -> impl FnMut(Gfn, PageLevel) -> Result<u32, i32> {
    let (w2, w1, fails) = (
        c.lpage_2m,
        c.lpage_1g,
        c.hostile & HOSTILE_LOOKUP_FAILS != 0,
    );
    move |_, level| match level {
        _ if fails => Err(HUGESEPT_ERR_LOOKUP_FAILED),
        PageLevel::Size2M => Ok(w2),
        PageLevel::Size1G => Ok(w1),
        PageLevel::Size4K => Err(HUGESEPT_ERR_LOOKUP_FAILED),
    }
}

fn exit_words(e: &HugeseptExit) -> [u64; 9] {
    [
        e.exit_qualification,
        e.gpa,
        e.gfn,
        u64::from(e.kind),
        u64::from(e.eeq_type),
        u64::from(e.accept_level),
        u64::from(e.error_level),
        u64::from(e.error_state),
        u64::from(e.error_is_leaf),
    ]
}

fn plan_words(p: &HugeseptPlan, hook: u32) -> [u64; 7] {
    [
        u64::from(p.action),
        u64::from(p.fault_max_level),
        p.split_start_gfn,
        p.split_end_gfn,
        u64::from(p.split_above_level),
        u64::from(p.inhibit_levels),
        u64::from(hook),
    ]
}

/// FNV-1a over a name's bytes, so a name compares as two words (length, hash).
pub fn name_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What the case must give, from the typed API.
pub fn expected(c: &Case) -> Outcome {
    let f = c.func;
    let a = c.args;
    let r = (|| -> Result<Outcome, i32> {
        match f {
            FN_VCPU_INIT => {
                // hugesept_vcpu_init: the state pointer, the size, the design; then
                // hugesept_vcpu_policy: its output pointer. Garbage is overwritten by init.
                if c.hostile & HOSTILE_NULL_STATE != 0 {
                    return Err(HUGESEPT_ERR_NULL_POINTER);
                }
                if c.hostile & HOSTILE_UNALIGNED_STATE != 0 {
                    return Err(HUGESEPT_ERR_MISALIGNED);
                }
                if a[1] < HUGESEPT_VCPU_SIZE as u64 {
                    return Err(HUGESEPT_ERR_BUFFER_TOO_SMALL);
                }
                let v = api::Vcpu::new(arg32(a[0]))?;
                let out_only = Case {
                    hostile: c.hostile & (HOSTILE_NULL_OUT | HOSTILE_UNALIGNED_OUT),
                    ..*c
                };
                if let Some(e) = pointer_rules(&out_only, false, false) {
                    return Err(e);
                }
                Ok(ok(f, &[u64::from(api::policy_code(v.policy))]))
            }
            FN_DECODE_EXIT => {
                if let Some(e) = pointer_rules(c, false, false) {
                    return Err(e);
                }
                let e = api::decode_exit(a[0], a[1], a[2], arg32(a[3]))?;
                Ok(ok(f, &exit_words(&crate::exit_to_c(&e))))
            }
            FN_PLAN_EXIT => {
                let e = api::decode_exit(a[1], a[2], a[3], arg32(a[4]))?;
                let mut v = state_of(c)?;
                if let Some(e) = pointer_rules(c, true, true) {
                    return Err(e);
                }
                let p = api::plan_exit(&mut v, &e, &mut lpage_of(c))?;
                let flags = api::level_flags(arg32(a[5]))?;
                let hook = api::private_max_mapping_level(&v, e.gfn, flags);
                Ok(ok(
                    f,
                    &plan_words(&crate::plan_to_c(&p), api::level_code(hook)),
                ))
            }
            FN_MAX_MAPPING_LEVEL => {
                let v = state_of(c)?;
                if let Some(e) = pointer_rules(c, true, true) {
                    return Err(e);
                }
                let l = api::max_mapping_level(
                    &v,
                    Gfn(a[1]),
                    api::level(arg32(a[2]))?,
                    api::level(arg32(a[3]))?,
                    api::level_flags(arg32(a[4]))?,
                    &mut lpage_of(c),
                )?;
                Ok(ok(f, &[u64::from(api::level_code(l))]))
            }
            FN_PRIVATE_MAX_MAPPING_LEVEL => {
                let v = state_of(c)?;
                if let Some(e) = pointer_rules(c, true, false) {
                    return Err(e);
                }
                let l =
                    api::private_max_mapping_level(&v, Gfn(a[1]), api::level_flags(arg32(a[2]))?);
                Ok(ok(f, &[u64::from(api::level_code(l))]))
            }
            FN_ON_HUGE_LEAF => {
                let mut v = state_of(c)?;
                if let Some(e) = pointer_rules(c, true, false) {
                    return Err(e);
                }
                let d = api::on_huge_leaf(
                    &mut v,
                    Gfn(a[1]),
                    api::level(arg32(a[2]))?,
                    api::level(arg32(a[3]))?,
                )?;
                let flags = api::level_flags(HUGESEPT_TD_RUNNABLE)?;
                let hook = api::private_max_mapping_level(&v, Gfn(a[1]), flags);
                Ok(ok(f, &[u64::from(d), u64::from(api::level_code(hook))]))
            }
            FN_ACCEPT_OPERAND => {
                if let Some(e) = pointer_rules(c, false, false) {
                    return Err(e);
                }
                let rcx = api::accept_operand(a[0], arg32(a[1]), arg32(a[2]))?;
                let back = api::decode_accept_operand(rcx, arg32(a[2]))?;
                Ok(ok(
                    f,
                    &[rcx, back.gpa.raw(), u64::from(api::level_code(back.level))],
                ))
            }
            FN_DECODE_ACCEPT_OPERAND => {
                if let Some(e) = pointer_rules(c, false, false) {
                    return Err(e);
                }
                let op = api::decode_accept_operand(a[0], arg32(a[1]))?;
                Ok(ok(f, &[op.gpa.raw(), u64::from(api::level_code(op.level))]))
            }
            FN_ACCEPT_STATUS => {
                if let Some(e) = pointer_rules(c, false, false) {
                    return Err(e);
                }
                let o = api::accept_status(arg32(a[0]), arg32(a[1]), a[2], arg32(a[3]))?;
                Ok(ok(
                    f,
                    &[
                        u64::from(o.code),
                        u64::from(o.class),
                        u64::from(o.detail_level),
                        u64::from(o.reaction),
                        u64::from(o.next_retries),
                    ],
                ))
            }
            FN_NAME => {
                let name: Option<&str> = match a[0] {
                    0 => api::policy(arg32(a[1]))
                        .ok()
                        .map(|p| hugesept_core::policy::Policy::name(&p)),
                    1 => api::guest(arg32(a[1])).ok().map(|g| g.name()),
                    _ => error_name(a[1] as u32 as i32),
                };
                let (len, hash) = match name {
                    Some(n) => (n.len() as u64, name_hash(n.as_bytes())),
                    None => (u64::MAX, 0),
                };
                let back = match (a[0], name) {
                    (0, Some(_)) => a[1],
                    _ => u64::MAX,
                };
                Ok(ok(f, &[len, hash, back]))
            }
            _ => Err(HUGESEPT_ERR_INVALID_ARGUMENT),
        }
    })();
    r.unwrap_or_else(|e| err(f, e))
}

/// The name of a return code, from the codes module's list.
fn error_name(code: i32) -> Option<&'static str> {
    crate::ERROR_NAMES
        .iter()
        .find(|(c, _)| *c == code)
        .and_then(|(_, n)| n.to_str().ok())
}

/// The state buffer a case passes: room for a misaligned state.
#[repr(C, align(8))]
struct StateBuf([u8; HUGESEPT_VCPU_SIZE + 8]);

/// The output buffer: room for any output struct, misaligned by one byte if asked.
#[repr(C, align(8))]
struct OutBuf([u8; 96]);

struct LookupCtx {
    lpage_2m: u32,
    lpage_1g: u32,
    fails: bool,
}

unsafe extern "C" fn case_lookup(ctx: *mut c_void, _gfn: u64, level: u32, out: *mut u32) -> i32 {
    // SAFETY: `run` passes a pointer to a live LookupCtx as `ctx`.
    let c = unsafe { &*(ctx as *const LookupCtx) };
    let w = match level {
        _ if c.fails => return -1,
        HUGESEPT_LEVEL_2M => c.lpage_2m,
        HUGESEPT_LEVEL_1G => c.lpage_1g,
        _ => return -1,
    };
    // SAFETY: the library passes a pointer to a live u32.
    unsafe { out.write(w) };
    0
}

/// What a successful call wrote through `p`.
fn written<T>(rc: i32, p: *const T) -> Option<T> {
    if rc != HUGESEPT_OK {
        return None;
    }
    // SAFETY: a function that returned HUGESEPT_OK checked `p` (non-null, aligned; the case's
    // buffer) and wrote a `T` through it.
    Some(unsafe { p.read() })
}

/// Runs a case through the exported functions, as a C caller would.
pub fn run(c: &Case) -> Outcome {
    let f = c.func;
    let a = c.args;
    let mut state = StateBuf([0; HUGESEPT_VCPU_SIZE + 8]);
    let mut outbuf = OutBuf([0; 96]);
    let mut ctx = LookupCtx {
        lpage_2m: c.lpage_2m,
        lpage_1g: c.lpage_1g,
        fails: c.hostile & HOSTILE_LOOKUP_FAILS != 0,
    };
    let base = state.0.as_mut_ptr();
    // The state pointer the case passes.
    let vcpu: *mut HugeseptVcpu = if c.hostile & HOSTILE_NULL_STATE != 0 {
        core::ptr::null_mut()
    } else if c.hostile & HOSTILE_UNALIGNED_STATE != 0 {
        base.wrapping_add(1).cast()
    } else {
        base.cast()
    };
    let out_base = outbuf.0.as_mut_ptr();
    let out_ptr = |_: ()| -> *mut u8 {
        if c.hostile & HOSTILE_NULL_OUT != 0 {
            core::ptr::null_mut()
        } else if c.hostile & HOSTILE_UNALIGNED_OUT != 0 {
            out_base.wrapping_add(1)
        } else {
            out_base
        }
    };
    let lookup: crate::HugeseptLpageLookup = if c.hostile & HOSTILE_NULL_LOOKUP != 0 {
        None
    } else {
        Some(case_lookup)
    };
    let ctxp = (&mut ctx as *mut LookupCtx).cast::<c_void>();
    // Sets up the state the way the case asks: initialised for `policy`, or garbage.
    let mut prepare = |policy: u64| -> i32 {
        if c.hostile & HOSTILE_GARBAGE_STATE != 0 {
            state.0 = [0xA5; HUGESEPT_VCPU_SIZE + 8];
            return HUGESEPT_OK;
        }
        // SAFETY: `base` points to the case's aligned buffer of HUGESEPT_VCPU_SIZE + 8 bytes.
        unsafe { crate::hugesept_vcpu_init(base.cast(), HUGESEPT_VCPU_SIZE, arg32(policy)) }
    };
    let done = |rc: i32, words: &[u64]| {
        if rc == HUGESEPT_OK {
            ok(f, words)
        } else {
            err(f, rc)
        }
    };
    match f {
        FN_VCPU_INIT => {
            if c.hostile & HOSTILE_GARBAGE_STATE != 0 {
                prepare(0);
            }
            let size = usize::try_from(a[1]).unwrap_or(usize::MAX);
            let policy_out: *mut u32 = out_ptr(()).cast();
            // SAFETY: the pointers are the case's buffers (or the hostile values the function
            // must refuse before using them).
            let rc = unsafe { crate::hugesept_vcpu_init(vcpu, size, arg32(a[0])) };
            if rc != HUGESEPT_OK {
                return err(f, rc);
            }
            // SAFETY: as above.
            let rc = unsafe { crate::hugesept_vcpu_policy(vcpu, policy_out) };
            let p = written(rc, policy_out).unwrap_or(0);
            done(rc, &[u64::from(p)])
        }
        FN_DECODE_EXIT => {
            let out: *mut HugeseptExit = out_ptr(()).cast();
            // SAFETY: as above.
            let rc = unsafe { crate::hugesept_decode_exit(a[0], a[1], a[2], arg32(a[3]), out) };
            let w = written(rc, out).map_or([0; 9], |e| exit_words(&e));
            done(rc, &w)
        }
        FN_PLAN_EXIT => {
            let mut exit = HugeseptExit::default();
            // SAFETY: `exit` is a live local.
            let rc =
                unsafe { crate::hugesept_decode_exit(a[1], a[2], a[3], arg32(a[4]), &mut exit) };
            if rc != HUGESEPT_OK {
                return err(f, rc);
            }
            let rc = prepare(a[0]);
            if rc != HUGESEPT_OK {
                return err(f, rc);
            }
            let out: *mut HugeseptPlan = out_ptr(()).cast();
            // SAFETY: as above.
            let rc =
                unsafe { crate::hugesept_plan_exit(vcpu, &exit, arg32(a[4]), lookup, ctxp, out) };
            if rc != HUGESEPT_OK {
                return err(f, rc);
            }
            let plan = written(rc, out).unwrap_or_default();
            let mut hook = 0u32;
            // SAFETY: the state was accepted above; `hook` is a live local.
            let rc = unsafe {
                crate::hugesept_private_max_mapping_level(vcpu, exit.gfn, arg32(a[5]), &mut hook)
            };
            done(rc, &plan_words(&plan, hook))
        }
        FN_MAX_MAPPING_LEVEL => {
            let rc = prepare(a[0]);
            if rc != HUGESEPT_OK {
                return err(f, rc);
            }
            let out: *mut u32 = out_ptr(()).cast();
            // SAFETY: as above.
            let rc = unsafe {
                crate::hugesept_max_mapping_level(
                    vcpu,
                    a[1],
                    arg32(a[2]),
                    arg32(a[3]),
                    arg32(a[4]),
                    lookup,
                    ctxp,
                    out,
                )
            };
            let l = written(rc, out).unwrap_or(0);
            done(rc, &[u64::from(l)])
        }
        FN_PRIVATE_MAX_MAPPING_LEVEL => {
            let rc = prepare(a[0]);
            if rc != HUGESEPT_OK {
                return err(f, rc);
            }
            let out: *mut u32 = out_ptr(()).cast();
            // SAFETY: as above.
            let rc =
                unsafe { crate::hugesept_private_max_mapping_level(vcpu, a[1], arg32(a[2]), out) };
            let l = written(rc, out).unwrap_or(0);
            done(rc, &[u64::from(l)])
        }
        FN_ON_HUGE_LEAF => {
            let rc = prepare(a[0]);
            if rc != HUGESEPT_OK {
                return err(f, rc);
            }
            let out: *mut u32 = out_ptr(()).cast();
            // SAFETY: as above.
            let rc =
                unsafe { crate::hugesept_on_huge_leaf(vcpu, a[1], arg32(a[2]), arg32(a[3]), out) };
            if rc != HUGESEPT_OK {
                return err(f, rc);
            }
            let d = written(rc, out).unwrap_or_default();
            let mut hook = 0u32;
            // SAFETY: the state was accepted above; `hook` is a live local.
            let rc = unsafe {
                crate::hugesept_private_max_mapping_level(
                    vcpu,
                    a[1],
                    HUGESEPT_TD_RUNNABLE,
                    &mut hook,
                )
            };
            done(rc, &[u64::from(d), u64::from(hook)])
        }
        FN_ACCEPT_OPERAND => {
            let out: *mut u64 = out_ptr(()).cast();
            // SAFETY: as above.
            let rc = unsafe { crate::hugesept_accept_operand(a[0], arg32(a[1]), arg32(a[2]), out) };
            if rc != HUGESEPT_OK {
                return err(f, rc);
            }
            let rcx = written(rc, out).unwrap_or_default();
            let mut back = HugeseptAcceptOperand::default();
            // SAFETY: `back` is a live local.
            let rc = unsafe { crate::hugesept_decode_accept_operand(rcx, arg32(a[2]), &mut back) };
            done(rc, &[rcx, back.gpa, u64::from(back.level)])
        }
        FN_DECODE_ACCEPT_OPERAND => {
            let out: *mut HugeseptAcceptOperand = out_ptr(()).cast();
            // SAFETY: as above.
            let rc = unsafe { crate::hugesept_decode_accept_operand(a[0], arg32(a[1]), out) };
            let w = written(rc, out).map_or([0; 2], |o| [o.gpa, u64::from(o.level)]);
            done(rc, &w)
        }
        FN_ACCEPT_STATUS => {
            let out: *mut HugeseptAcceptOutcome = out_ptr(()).cast();
            // SAFETY: as above.
            let rc = unsafe {
                crate::hugesept_accept_status(arg32(a[0]), arg32(a[1]), a[2], arg32(a[3]), out)
            };
            if rc != HUGESEPT_OK {
                return err(f, rc);
            }
            let o = written(rc, out).unwrap_or_default();
            done(
                rc,
                &[
                    u64::from(o.status_code),
                    u64::from(o.status_class),
                    u64::from(o.detail_level),
                    u64::from(o.reaction),
                    u64::from(o.next_retries),
                ],
            )
        }
        FN_NAME => {
            let p = match a[0] {
                0 => crate::hugesept_policy_name(arg32(a[1])),
                1 => crate::hugesept_guest_name(arg32(a[1])),
                _ => crate::hugesept_error_name(a[1] as u32 as i32),
            };
            if p.is_null() {
                return ok(f, &[u64::MAX, 0, u64::MAX]);
            }
            // SAFETY: a non-null name is a static NUL-terminated string.
            let name = unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes();
            let mut back = u64::MAX;
            if a[0] == 0 {
                let mut id = 0u32;
                // SAFETY: `name` is valid for its length; `id` is a live local.
                let rc =
                    unsafe { crate::hugesept_policy_lookup(name.as_ptr(), name.len(), &mut id) };
                if rc == HUGESEPT_OK {
                    back = u64::from(id);
                }
            }
            ok(f, &[name.len() as u64, name_hash(name), back])
        }
        _ => err(f, HUGESEPT_ERR_INVALID_ARGUMENT),
    }
}
