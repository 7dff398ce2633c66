//! The TDCALLs this payload issues, with their complete register results: TDG.MEM.PAGE.ACCEPT
//! (full 64-bit status), TDG.VP.VEINFO.GET (the #VE handler's first call), TDG.VP.VMCALL for
//! the console, HLT and the hugesept calls.
//!
//! Every call goes through tdx-guest 0.6.0's TDCALL routine (`asm_td_call`, src/asm/tdcall.asm,
//! a global assembly symbol behind the crate-private `td_call`): it loads RAX, RCX, RDX and
//! R8-R13 from an argument block, executes TDCALL and returns RAX unmodified, writing the output
//! registers back only when RAX is 0. tdx-guest's public `accept_page` keeps only
//! `status >> 32` (the low 32 bits carry the S-EPT level of PAGE_ALREADY_ACCEPTED and
//! PAGE_SIZE_MISMATCH, shared/reference/tdx-module.md), so it is not used. Cargo.toml pins
//! tdx-guest to exactly 0.6.0 because the argument block's layout is internal to that release.
//!
//! Every call executes the instruction. On a host that raises #UD for TDCALL, the #UD handler
//! (src/exceptions.rs) sends the registers to the VMM through the documented port protocol
//! ([`hugesept_core::payload::TDCALL_PORT`], [`forward_once`]) and the call returns as if the
//! instruction had run.

use hugesept_core::abi::{TdcallLeaf, TdcallRax, TdxStatus};
use hugesept_core::payload::{self, Call, GHCI_HLT, TDCALL_PORT, VMCALL_VENDOR};
use x86_64::instructions::port::PortWriteOnly;

// The crate is linked for its TDCALL routine only.
use tdx_guest as _;

/// tdx-guest 0.6.0's `TdcallArgs` (src/tdcall.rs): the registers `asm_td_call` loads before
/// TDCALL, in this order (offsets 0x0..0x40 in src/asm/tdcall.asm).
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct TdcallArgs {
    /// RAX: the leaf in, the completion status out.
    pub rax: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// R8.
    pub r8: u64,
    /// R9.
    pub r9: u64,
    /// R10.
    pub r10: u64,
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
}

unsafe extern "C" {
    /// tdx-guest 0.6.0's TDCALL routine: returns the TDCALL's RAX.
    fn asm_td_call(args: *mut TdcallArgs) -> u64;
}

/// A forwarded TDCALL's register block ([`payload::PORT_TDCALL_SIZE`] bytes): RAX, RCX, RDX,
/// R8-R15, and the completion word the VMM sets when the call retired.
#[repr(C, align(16))]
#[derive(Default)]
struct PortBlock {
    regs: [u64; 12],
}

/// Sends one TDCALL's registers (RAX, RCX, RDX, R8-R15) to the VMM through the port; the
/// outputs when the call retired, `None` when it did not (the instruction runs again).
pub fn forward_once(regs: [u64; 11]) -> Option<[u64; 11]> {
    let mut block = PortBlock::default();
    let gpa = (&raw mut block).addr();
    let mut port = PortWriteOnly::<u32>::new(TDCALL_PORT);
    let mut w = [0u64; 12];
    w[..11].copy_from_slice(&regs);
    // SAFETY: `block` is a live, aligned local; the VMM reads it only during the `out`.
    unsafe { core::ptr::write_volatile(&raw mut block.regs, w) };
    // The protocol carries a 32-bit GPA: the payload's image (and its stacks) sit below 4 GiB
    // (link.ld), so this never truncates.
    // SAFETY: the port is the VMM's TDCALL forwarding port; the VMM reads and writes only the
    // 96-byte block at `gpa`, this live, exclusively borrowed stack value, before the `out`
    // retires.
    unsafe { port.write(gpa as u32) };
    // The VMM wrote the block behind the compiler's back: read it as volatile memory.
    // SAFETY: `block` is a live, aligned local; a volatile read of it is always valid.
    let out = unsafe { core::ptr::read_volatile(&raw const block.regs) };
    let [r @ .., done] = out;
    (done == 1).then_some(r)
}

const _: () = assert!(core::mem::size_of::<PortBlock>() >= payload::PORT_TDCALL_SIZE);

/// Issues one TDCALL with `args`; returns RAX.
pub fn tdcall(args: &mut TdcallArgs) -> u64 {
    // SAFETY: `args` is a live, exclusively borrowed block with the layout `asm_td_call` reads
    // and writes (72 bytes: RAX, RCX, RDX, R8-R13), and the routine touches no other memory
    // than it and its own stack frame; it follows the C calling convention (it saves RBX, RBP,
    // R12-R15). The leaves this payload issues change no memory this program uses: ACCEPT
    // zeroes pages of the window, which the program touches only through `memory.rs` after
    // the model says they are accepted.
    unsafe { asm_td_call(args) }
}

/// TDG.MEM.PAGE.ACCEPT with RCX = `rcx` (possibly invalid): the full status.
pub fn accept(rcx: u64) -> TdxStatus {
    let mut args = TdcallArgs {
        rax: TdcallRax::new(TdcallLeaf::MemPageAccept).encode(),
        rcx,
        ..TdcallArgs::default()
    };
    TdxStatus(tdcall(&mut args))
}

/// What TDG.VP.VEINFO.GET returns (tdx-module tdg_vp_veinfo_get.c) that the payload uses: the
/// #VE's exit reason, exit qualification, guest linear and physical addresses (R10, the
/// instruction's length and information, is not defined for an EPT violation).
#[derive(Clone, Copy, Debug, Default)]
pub struct VeInfo {
    /// RCX: the exit reason (48 for an EPT violation).
    pub exit_reason: u64,
    /// RDX: the exit qualification (bit 0 a read, bit 1 a write).
    pub exit_qualification: u64,
    /// R8: the guest linear address.
    pub gla: u64,
    /// R9: the guest physical address.
    pub gpa: u64,
}

/// TDG.VP.VEINFO.GET (leaf 3): the pending #VE's information, or the status (e.g.
/// TDX_NO_VALID_VE_INFO) when there is none.
pub fn veinfo_get() -> Result<VeInfo, TdxStatus> {
    let mut args = TdcallArgs {
        rax: TdcallRax::new(TdcallLeaf::VpVeinfoGet).encode(),
        ..TdcallArgs::default()
    };
    match tdcall(&mut args) {
        0 => Ok(VeInfo {
            exit_reason: args.rcx,
            exit_qualification: args.rdx,
            gla: args.r8,
            gpa: args.r9,
        }),
        s => Err(TdxStatus(s)),
    }
}

/// RCX of a TDG.VP.VMCALL: R10-R13 passed to the VMM (bits 10-13; GHCI's GPR mask).
const VMCALL_EXPOSE_R10_R13: u64 = 0x3c00;

/// TDG.VP.VMCALL with R10-R13 = `r`: R10 (the VMCALL status) and R11-R13 after it, or `None`
/// when the TDCALL itself failed.
fn vmcall(r: [u64; 4]) -> Option<[u64; 4]> {
    let mut args = TdcallArgs {
        rax: TdcallRax::new(TdcallLeaf::VpVmcall).encode(),
        rcx: VMCALL_EXPOSE_R10_R13,
        r10: r[0],
        r11: r[1],
        r12: r[2],
        r13: r[3],
        ..TdcallArgs::default()
    };
    (tdcall(&mut args) == 0).then_some([args.r10, args.r11, args.r12, args.r13])
}

/// A hugesept call ([`payload::Call`]): R11-R13 of the answer, or `None` when the VMM refused
/// it (R10 not 0) or the TDCALL failed.
pub fn hugesept(call: Call, r12: u64, r13: u64) -> Option<[u64; 3]> {
    let [status, r11, r12, r13] = vmcall([VMCALL_VENDOR, call.number(), r12, r13])?;
    (status == 0).then_some([r11, r12, r13])
}

/// TDG.VP.VMCALL<Instruction.IO>: a one-byte write of `value` to `port` (GHCI: R11 30, R12
/// size, R13 direction 1 = write, R14 port, R15 data), through tdx-guest's VMCALL routine.
pub fn io_write_byte(port: u16, value: u8) {
    // A failed write cannot be reported anywhere but this same console: dropped.
    let _ = tdx_guest::tdvmcall::io_write(tdx_guest::tdvmcall::IoSize::Size1, port, value.into());
}

/// TDG.VP.VMCALL<Instruction.HLT> (GHCI 12), interrupts blocked: the VMM ends this vCPU.
pub fn hlt() {
    let _ = vmcall([0, GHCI_HLT, 1, 0]);
}
