//! hugesept-guest-td: a bare-metal TD payload that runs the core's guest strategies with real
//! TDCALLs.
//!
//! Every vCPU enters at `_start` (src/entry.rs) with its index and the boot block's address,
//! validates the block (src/boot.rs), runs its program — the core's own
//! [`hugesept_core::guest::Guest`], each operation a real TDG.MEM.PAGE.ACCEPT or real loads and
//! stores (src/program.rs) — writes its report and halts. Outside a TD it says so and exits.

#![no_std]
#![no_main]

mod boot;
mod console;
mod entry;
mod heap;
mod memory;
mod platform;
mod program;
mod tdcall;

use core::panic::PanicInfo;

use hugesept_core::payload::{
    BOOT_FLAG_TDCALL_BY_PORT, Call, EndCode, FAULT_NO_PROGRAM, FAULT_PANIC,
};

use platform::Port;

/// Exit byte outside a TD (`Port::DebugExit`, 0xf4; QEMU's isa-debug-exit turns byte `v` into
/// exit status `(v << 1) | 1`): there is no TDX module and no hugesept VMM to serve TDCALLs.
const EXIT_NOT_A_TD: u8 = 0x13;
/// Exit byte outside a TD: the payload panicked.
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

/// Tells the VMM this vCPU cannot run (`code`: a boot error or a payload fault) and halts.
fn fault(index: u64, code: u64) -> ! {
    println!("vCPU {index}: cannot run (fault code {code:#x})");
    let _ = tdcall::hugesept(Call::Fault, code, 0);
    platform::halt_forever()
}

/// Called by `_start` on this vCPU's stack: `index` from RDI, `boot` (the block's GPA) from RSI.
extern "C" fn guest_main(index: u64, boot: u64) -> ! {
    let td = platform::init();
    if !td {
        println!("hugesept-guest-td: not a TD (no IntelTDX CPUID leaf); nothing to accept");
        platform::outb(Port::DebugExit, EXIT_NOT_A_TD);
        platform::halt_forever();
    }
    let image = image_range();
    let info = match boot::read(boot, image) {
        Ok(info) => info,
        Err(e) => {
            println!("vCPU {index}: the boot block at {boot:#x} is refused: {e}");
            fault(index, e.code());
        }
    };
    tdcall::forward_by_port(info.flags & BOOT_FLAG_TDCALL_BY_PORT != 0);
    let i = index as usize;
    if info.program(i).is_none() {
        fault(index, FAULT_NO_PROGRAM);
    }
    if index == 0 {
        println!(
            "hugesept-guest-td {}: {} vCPU(s), window [{:#x}, {:#x}), TDCALLs {}",
            env!("CARGO_PKG_VERSION"),
            info.vcpus,
            info.window.0.raw(),
            info.window.1.raw(),
            if info.flags & BOOT_FLAG_TDCALL_BY_PORT != 0 {
                "forwarded by port"
            } else {
                "executed"
            }
        );
    }
    let window = memory::Window::new(info.window.0, info.window.1);
    let publish = |r: &hugesept_core::payload::Report| {
        let _ = boot::write_report(&info, i, r, image);
    };
    let report = program::run(&info, i, window, &publish);
    let end = EndCode::from_code(u64::from(report.end));
    println!(
        "vCPU {index}: {:?} after {} stage(s): {} ACCEPTs retired ({} succeeded), {} marker \
         pages written, {} verified",
        end.unwrap_or(EndCode::Fault),
        report.stages_done,
        report.accepts,
        report.accept_success,
        report.pages_written,
        report.pages_verified
    );
    if !boot::write_report(&info, i, &report, image) {
        println!("vCPU {index}: the report area is not usable memory");
    }
    platform::halt_forever()
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    println!("hugesept-guest-td panic: {info}");
    if platform::in_td() {
        let _ = tdcall::hugesept(Call::Fault, FAULT_PANIC, 0);
    } else {
        platform::outb(Port::DebugExit, EXIT_PANIC);
    }
    platform::halt_forever()
}
