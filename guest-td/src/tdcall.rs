//! TDG.MEM.PAGE.ACCEPT, issued through tdx-guest, with the complete 64-bit completion status.
//!
//! tdx-guest's public `tdx_guest::accept_page(sept_level: u64, gpa: u64) -> Result<(),
//! TdCallError>` keeps only `status >> 32` and maps it onto an enum: the low 32 bits, which for
//! ACCEPT carry the S-EPT level of the leaf (PAGE_ALREADY_ACCEPTED, PAGE_SIZE_MISMATCH; see
//! shared/reference/tdx-module.md), are lost, and codes it does not know become `Other`. No
//! public tdx-guest function returns RAX. The lowest-level call in tdx-guest that does is
//! `asm_td_call` (tdx-guest 0.6.0 src/asm/tdcall.asm, a global assembly symbol behind the
//! crate-private `td_call`): it loads RAX, RCX, RDX, R8-R13 from an argument block, executes
//! TDCALL and returns RAX unmodified. This module calls that routine; Cargo.toml pins
//! tdx-guest to exactly 0.6.0 because the argument block's layout is internal to that release.

use hugesept_core::abi::{AcceptOperand, TdcallLeaf, TdcallRax, TdxStatus};

/// tdx-guest 0.6.0's `TdcallArgs` (src/tdcall.rs): the registers `asm_td_call` loads before
/// TDCALL, in this order (offsets 0x0..0x40 in src/asm/tdcall.asm). On success (RAX = 0) the
/// routine writes the output registers back into it; on failure it leaves it alone.
#[repr(C)]
#[derive(Default)]
struct TdcallArgs {
    rax: u64,
    rcx: u64,
    rdx: u64,
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
}

unsafe extern "C" {
    /// tdx-guest 0.6.0's TDCALL routine: returns the TDCALL's RAX.
    fn asm_td_call(args: *mut TdcallArgs) -> u64;
}

/// Issues TDG.MEM.PAGE.ACCEPT for `op` and returns RAX.
///
/// On success the TDX module zeroes the page(s) with the TD's private key. The caller must make
/// sure the range holds nothing this program uses (see `accept::run`).
pub fn accept(op: AcceptOperand) -> TdxStatus {
    let mut args = TdcallArgs {
        rax: TdcallRax::new(TdcallLeaf::MemPageAccept).encode(),
        rcx: op.encode(),
        ..TdcallArgs::default()
    };
    // SAFETY: `args` is a live, exclusively borrowed block with the layout `asm_td_call` reads
    // and writes (72 bytes: RAX, RCX, RDX, R8-R13), and the routine touches no other memory
    // than it and its own stack frame; it follows the C calling convention (it saves RBX, RBP,
    // R12-R15). The TDCALL itself changes only the accepted GPA range, which the caller keeps
    // clear of this image. Outside a TD the instruction is either emulated by the VMM with the
    // same register contract or raises #UD, which without an IDT ends the vCPU; either way no
    // Rust code resumes in a state other than the one described here.
    let rax = unsafe { asm_td_call(&mut args) };
    TdxStatus(rax)
}
