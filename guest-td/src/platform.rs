//! What differs between running inside a TD and running as an ordinary VM: how to do port I/O
//! and how to halt.
//!
//! Inside a TD, `in`/`out` and `hlt` raise #VE (and this payload has no #VE handler), so both go
//! to the VMM as TDG.VP.VMCALL requests (src/tdcall.rs). Outside a TD the plain instructions
//! are used.

use core::{
    arch::x86_64::{__cpuid, __cpuid_count},
    sync::atomic::{AtomicBool, Ordering},
};

use x86_64::instructions::{self, port::PortWriteOnly};

/// The CPUID leaf that identifies a TD.
const TDX_CPUID_LEAF: u32 = 0x21;
/// CPUID(0x21, 0) in a TD: "IntelTDX    " in EBX, EDX, ECX.
const TDX_SIGNATURE: [[u8; 4]; 3] = [*b"Inte", *b"lTDX", *b"    "];

/// The I/O ports this payload writes.
#[derive(Clone, Copy)]
pub enum Port {
    /// COM1's data register (0x3F8).
    Com1,
    /// The "isa-debug-exit" style exit port (0xf4).
    DebugExit,
}

impl Port {
    /// The port number.
    const fn number(self) -> u16 {
        match self {
            Port::Com1 => 0x3F8,
            Port::DebugExit => 0xf4,
        }
    }
}

/// Set once by [`init`]; read by every port write and by [`halt_forever`].
static IN_TD: AtomicBool = AtomicBool::new(false);

/// Whether the CPU reports that this guest is a TD: CPUID(0).EAX >= 0x21 and CPUID leaf 0x21
/// subleaf 0 carries the TDX signature (shared/reference/tdx-module.md, "Detecting a TD").
pub fn detect_td() -> bool {
    if __cpuid(0).eax < TDX_CPUID_LEAF {
        return false;
    }
    let id = __cpuid_count(TDX_CPUID_LEAF, 0);
    [
        id.ebx.to_le_bytes(),
        id.edx.to_le_bytes(),
        id.ecx.to_le_bytes(),
    ] == TDX_SIGNATURE
}

/// Detects a TD and selects the matching I/O and halt paths. Returns whether this is a TD.
/// Must run before anything is written to a port.
pub fn init() -> bool {
    let td = detect_td();
    IN_TD.store(td, Ordering::Relaxed);
    td
}

/// Whether [`init`] found a TD.
pub fn in_td() -> bool {
    IN_TD.load(Ordering::Relaxed)
}

/// Writes one byte to an I/O port.
pub fn outb(port: Port, value: u8) {
    let port = port.number();
    if in_td() {
        crate::tdcall::io_write_byte(port, value);
    } else {
        let mut port = PortWriteOnly::<u8>::new(port);
        // SAFETY: `Port` names only the COM1 UART data register and the debug-exit port, both
        // emulated by the VMM; writing them has no effect on memory this program uses.
        unsafe { port.write(value) };
    }
}

/// Stops this vCPU for good, with interrupts disabled.
pub fn halt_forever() -> ! {
    instructions::interrupts::disable();
    loop {
        if in_td() {
            // TDG.VP.VMCALL<Instruction.HLT> with interrupts blocked.
            crate::tdcall::hlt();
        } else {
            instructions::hlt();
        }
    }
}
