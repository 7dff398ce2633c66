//! hugesept-guest-td: a bare-metal payload that runs as an Intel TDX guest (or as an ordinary
//! VM whose VMM emulates TDCALL) and exercises TDG.MEM.PAGE.ACCEPT.
//!
//! It detects whether it runs in a TD, accepts a fixed GPA range with the tdx-guest fallback
//! strategy, prints every ACCEPT status decoded by `hugesept_core::abi::TdxStatus` on the
//! serial port and halts. Outside a TD it also reports completion on the debug-exit port.

#![no_std]
#![no_main]

mod accept;
mod console;
mod entry;
mod heap;
mod platform;
mod tdcall;

use core::panic::PanicInfo;

use platform::Port;

// The byte written to the exit port (`Port::DebugExit`, 0xf4) tells the VMM how the run ended
// (QEMU's isa-debug-exit turns byte `v` into exit status `(v << 1) | 1`).

/// Exit byte: every page of the range accepted.
const EXIT_OK: u8 = 0x10;
/// Exit byte: the accept loop stopped early.
const EXIT_ACCEPT_FAILED: u8 = 0x11;
/// Exit byte: the payload panicked.
const EXIT_PANIC: u8 = 0x12;

unsafe extern "C" {
    /// First byte of the image (link.ld).
    static __image_start: u8;
    /// One past the last byte of the image, .bss included (link.ld).
    static __image_end: u8;
}

/// The physical range [start, end) the image occupies (identity-mapped, so addresses are GPAs).
fn image_range() -> (u64, u64) {
    let start = (&raw const __image_start).addr() as u64;
    let end = (&raw const __image_end).addr() as u64;
    (start, end)
}

/// Reports how the run ended on the exit port, outside a TD only.
fn report_exit(code: u8) {
    if !platform::in_td() {
        platform::outb(Port::DebugExit, code);
    }
}

/// Called by `_start` (src/entry.rs) on the boot stack with .bss zeroed.
extern "C" fn guest_main() -> ! {
    let td = platform::init();
    println!(
        "hugesept-guest-td {}: TDG.MEM.PAGE.ACCEPT exerciser",
        env!("CARGO_PKG_VERSION")
    );
    let (image_start, image_end) = image_range();
    println!("image [{image_start:#x}, {image_end:#x})");
    if td {
        println!("running in a TD (CPUID 0x21: IntelTDX); port I/O and HLT via TDG.VP.VMCALL");
    } else {
        println!("not a TD (no IntelTDX CPUID leaf): TDCALLs need a VMM that emulates them");
    }

    let summary = accept::run((image_start, image_end));
    accept::print_summary(&summary);

    report_exit(if summary.failure.is_none() {
        EXIT_OK
    } else {
        EXIT_ACCEPT_FAILED
    });
    platform::halt_forever()
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    println!("hugesept-guest-td panic: {info}");
    report_exit(EXIT_PANIC);
    platform::halt_forever()
}
