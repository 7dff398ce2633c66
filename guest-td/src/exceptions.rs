//! What the payload does with an exception (src/idt.rs saves the registers and calls
//! [`dispatch`]):
//!
//! - #VE (vector 20): the cause comes first, from TDG.VP.VEINFO.GET (a #VE taken before the
//!   previous one's information was read becomes #DF in the TDX module). An EPT violation on a
//!   PENDING page raised by one of the window-access loops (src/memory.rs) resumes at the loop's
//!   fixup, which hands the faulting address back to the program; the guest strategy then
//!   decides what to do about the page (a touch-first guest accepts it and touches again, as
//!   a real TD's #VE handler does). A #VE anywhere else is fatal.
//! - #UD (vector 6) at a TDCALL (66 0F 01 CC): a host that raises #UD for TDCALL (this is how
//!   KVM treats TDCALL outside a TD since commit 9d7dfb95da2c; QEMU's TCG too) gets the call
//!   through the hugesept TDCALL port instead: the registers go out, the outputs come back, and
//!   RIP moves past the instruction when the call retired; when it did not (an ACCEPT whose EPT
//!   violation the host resolved), the TDCALL runs again, as the instruction would.
//! - Anything else: the payload reports the vector to the VMM and halts.

use hugesept_core::payload::{Call, FAULT_EXCEPTION, VE_EXIT_REASON_EPT_VIOLATION};

use crate::idt::Frame;
use crate::{cpu, memory, platform, tdcall};

/// The TDCALL instruction.
const TDCALL_BYTES: [u8; 4] = [0x66, 0x0f, 0x01, 0xcc];
/// #UD.
const UD: u64 = 6;
/// #VE.
const VE: u64 = 20;

/// Called by every exception stub with the saved registers.
pub extern "C" fn dispatch(f: &mut Frame) {
    match f.vector {
        VE => virtualization_exception(f),
        UD => invalid_opcode(f),
        _ => fatal(f),
    }
}

fn virtualization_exception(f: &mut Frame) {
    match tdcall::veinfo_get() {
        Ok(info) if info.exit_reason == VE_EXIT_REASON_EPT_VIOLATION => {
            if let Some(fix) = memory::fixup(f.rip) {
                cpu::note_ve(&info);
                f.rip = fix;
                return;
            }
            fatal(f)
        }
        _ => fatal(f),
    }
}

fn invalid_opcode(f: &mut Frame) {
    let mut insn = [0u8; 4];
    for (i, b) in insn.iter_mut().enumerate() {
        // SAFETY: RIP points into this image's code (a #UD from elsewhere is fatal below,
        // after these four reads of the identity-mapped image, which is readable).
        *b = unsafe { (f.rip as *const u8).wrapping_add(i).read_volatile() };
    }
    if insn != TDCALL_BYTES {
        fatal(f);
    }
    let regs = [
        f.rax, f.rcx, f.rdx, f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15,
    ];
    // Not retired: the TDCALL runs again (and takes #UD again), as the instruction would.
    if let Some(out) = tdcall::forward_once(regs) {
        [
            f.rax, f.rcx, f.rdx, f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15,
        ] = out;
        f.rip = f.rip.wrapping_add(TDCALL_BYTES.len() as u64);
    }
}

fn fatal(f: &Frame) -> ! {
    let index = cpu::this().index;
    crate::println!(
        "vCPU {index}: exception {} (error {:#x}) at RIP {:#x}",
        f.vector,
        f.error,
        f.rip
    );
    if platform::in_td() {
        let _ = tdcall::hugesept(Call::Fault, FAULT_EXCEPTION | (f.vector & 0xff), f.rip);
    }
    platform::halt_forever()
}
