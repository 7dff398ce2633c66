//! hugesept-guest-td: a bare-metal TD payload that runs the core's guest strategies with real
//! TDCALLs.
//!
//! The boot vCPU enters at `_start` (src/entry.rs) from the hugesept VMM or from td-shim, or at
//! `_pvh_start` from a PVH loader such as QEMU. It loads its own descriptor tables and IDT
//! (src/cpu.rs, src/idt.rs: #VE and #UD handlers in src/exceptions.rs), finds its boot block
//! (from the VMM's RSI, or in td-shim's HOB list) and the ACPI MADT, wakes the other vCPUs
//! through the multiprocessor-wakeup mailbox (src/smp.rs), and each vCPU runs its program —
//! the core's own [`hugesept_core::guest::Guest`], each operation a real TDG.MEM.PAGE.ACCEPT or
//! real loads and stores (src/program.rs) — writes its report and halts. It logs with defmt
//! into a ring the VMM decodes (src/log.rs). Outside a TD it says so and exits.

#![no_std]
#![no_main]

mod boot;
mod console;
mod cpu;
mod entry;
mod exceptions;
mod heap;
mod idt;
mod log;
mod memory;
mod platform;
mod program;
mod smp;
mod tdcall;

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU64, Ordering};

use hugesept_core::payload::hob::{self, MemoryKind};
use hugesept_core::payload::{
    BOOT_MAX_SIZE, BootInfo, Call, ENTRY_MAGIC, EndCode, FAULT_NO_PROGRAM, FAULT_PANIC, FAULT_SMP,
};

use platform::Port;

/// Exit byte outside a TD (`Port::DebugExit`, 0xf4; QEMU's isa-debug-exit turns byte `v` into
/// exit status `(v << 1) | 1`): there is no TDX module and no hugesept VMM to serve TDCALLs.
const EXIT_NOT_A_TD: u8 = 0x13;
/// Exit byte outside a TD: the payload panicked.
const EXIT_PANIC: u8 = 0x12;
/// The longest HOB list read (td-shim's payload HOB is a few KiB).
const HOB_MAX: u64 = 64 << 10;

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

/// Where the boot block's bytes are, for the vCPUs the boot vCPU wakes: GPA and length.
static BOOT_AT: AtomicU64 = AtomicU64::new(0);
static BOOT_LEN: AtomicU64 = AtomicU64::new(0);

/// Tells the VMM this vCPU cannot run (`code`: a boot error or a payload fault) and halts.
fn fault(index: u64, code: u64, detail: u64) -> ! {
    println!("vCPU {index}: cannot run (fault code {code:#x})");
    let _ = tdcall::hugesept(Call::Fault, code, detail);
    platform::halt_forever()
}

/// Outside a TD: say so on the serial port and leave through the debug-exit port.
fn not_a_td(entry: &str) -> ! {
    println!(
        "hugesept-guest-td: not a TD (no IntelTDX CPUID leaf), entered {entry}; nothing to accept"
    );
    platform::outb(Port::DebugExit, EXIT_NOT_A_TD);
    platform::halt_forever()
}

/// The boot vCPU, from `_start`: the hugesept VMM's entry (RDX = [`ENTRY_MAGIC`], RDI = 0, RSI
/// = the boot block) or td-shim's (RDI = the HOB list, RSI = the payload's load address).
extern "C" fn boot_main(rdi: u64, rsi: u64, rdx: u64) -> ! {
    cpu::init(0);
    if !platform::init() {
        not_a_td(if rdx == ENTRY_MAGIC {
            "from the hugesept VMM"
        } else {
            "as a td-shim payload"
        });
    }
    let image = image_range();
    let (block, len, acpi) = if rdx == ENTRY_MAGIC {
        if rdi != 0 {
            // The VMM starts only the boot vCPU here; the others come through the mailbox.
            fault(rdi, FAULT_NO_PROGRAM, 0);
        }
        (rsi, BOOT_MAX_SIZE as u64, None)
    } else {
        from_hob(rdi, rsi)
    };
    let info = match boot::read(block, len, image) {
        Ok(info) => info,
        Err(e) => {
            println!("vCPU 0: the boot block at {block:#x} is refused: {e}");
            fault(0, e.code(), 0);
        }
    };
    BOOT_AT.store(block, Ordering::Relaxed);
    BOOT_LEN.store(len, Ordering::Relaxed);
    defmt::info!(
        "hugesept-guest-td: {=u8} vCPU(s), window [{=u64:#x}, {=u64:#x})",
        info.vcpus,
        info.window.0.raw(),
        info.window.1.raw()
    );
    if info.vcpus > 1 {
        let madt = match acpi {
            Some(m) => Ok(m),
            None => smp::read_madt(info.acpi.raw()),
        };
        match madt.and_then(|m| smp::wake(&m, u64::from(info.vcpus))) {
            Ok(()) => defmt::info!("woke {=u8} vCPU(s) through the mailbox", info.vcpus - 1),
            Err(e) => {
                println!("vCPU 0: cannot wake the other vCPUs: {e}");
                fault(0, FAULT_SMP, 0);
            }
        }
    }
    run(0, &info)
}

/// A vCPU the boot vCPU woke, from `_ap_start`, with its index.
extern "C" fn ap_main(index: u64) -> ! {
    cpu::init(index as usize);
    smp::STARTED.fetch_add(1, Ordering::AcqRel);
    platform::init();
    let (block, len) = (
        BOOT_AT.load(Ordering::Relaxed),
        BOOT_LEN.load(Ordering::Relaxed),
    );
    match boot::read(block, len, image_range()) {
        Ok(info) => run(index, &info),
        Err(e) => fault(index, e.code(), 0),
    }
}

/// The PVH entry, from `_pvh_start`: EBX's `hvm_start_info` in `start_info`.
extern "C" fn pvh_main(start_info: u64) -> ! {
    cpu::init(0);
    if !platform::init() {
        println!("hugesept-guest-td: PVH entry, hvm_start_info at {start_info:#x}");
        not_a_td("through the PVH note");
    }
    // No TDX firmware enters a payload through PVH: there is no boot block to find.
    println!("hugesept-guest-td: PVH entry inside a TD: no boot block; halting");
    platform::halt_forever()
}

/// td-shim's entry: the HOB list at `hob_at` (td-shim src/bin/td-shim/payload_hob.rs). The
/// boot block comes from the hugesept VMM's GUID HOB, the MADT from the ACPI table HOBs.
fn from_hob(hob_at: u64, load: u64) -> (u64, u64, Option<hugesept_core::payload::acpi::Madt>) {
    let list = read_hob(hob_at);
    let info = match list.map(hob::parse) {
        Some(Ok(info)) => info,
        Some(Err(e)) => {
            println!("td-shim entry: the HOB list at {hob_at:#x} is refused: {e}");
            fault(0, FAULT_NO_PROGRAM, hob_at);
        }
        None => {
            println!("td-shim entry: no HOB list at {hob_at:#x}");
            fault(0, FAULT_NO_PROGRAM, hob_at);
        }
    };
    let (mut unaccepted, mut ranges) = (0u64, 0u32);
    for r in info.ranges() {
        if r.kind == MemoryKind::Unaccepted {
            unaccepted += r.len;
            ranges += 1;
        }
    }
    defmt::info!(
        "td-shim entry: payload at {=u64:#x}, HOB list at {=u64:#x}: {=u64} unaccepted bytes in {=u32} range(s), {=usize} ACPI table(s)",
        load,
        hob_at,
        unaccepted,
        ranges,
        info.acpi_tables().len()
    );
    let madt = info
        .acpi_tables()
        .iter()
        .find_map(|t| hugesept_core::payload::acpi::parse_madt(t).ok());
    let Some(block) = info.boot_block else {
        println!(
            "td-shim entry: {unaccepted} unaccepted bytes in {ranges} range(s); no hugesept boot \
             block in the HOB list, nothing to run"
        );
        platform::halt_forever();
    };
    (block.as_ptr().addr() as u64, block.len() as u64, madt)
}

/// The HOB list's bytes: the PHIT says how long it is.
fn read_hob(at: u64) -> Option<&'static [u8]> {
    if at == 0 || !at.is_multiple_of(8) || at.checked_add(HOB_MAX)? > 1 << 32 {
        return None;
    }
    // SAFETY: the PHIT's 56 bytes at `at` (8-aligned, below 4 GiB, where td-shim puts the
    // payload HOB in memory it identity-maps for the payload and leaves alone afterwards).
    let phit = unsafe { core::slice::from_raw_parts(at as *const u8, hob::PHIT_SIZE) };
    let len = hob::list_len(phit, at).filter(|&l| l <= HOB_MAX)?;
    // SAFETY: as above, for the whole list the PHIT delimits (at most HOB_MAX bytes).
    Some(unsafe { core::slice::from_raw_parts(at as *const u8, len as usize) })
}

/// Runs vCPU `index`'s program, writes the report and halts.
fn run(index: u64, info: &BootInfo) -> ! {
    let i = index as usize;
    if info.program(i).is_none() {
        fault(index, FAULT_NO_PROGRAM, 0);
    }
    let image = image_range();
    let window = memory::Window::new(info.window.0, info.window.1);
    let publish = |r: &hugesept_core::payload::Report| {
        let _ = boot::write_report(info, i, r, image);
    };
    let report = program::run(info, i, window, &publish);
    let end = EndCode::from_code(u64::from(report.end)).unwrap_or(EndCode::Fault);
    defmt::info!(
        "{} after {=u32} stage(s): {=u64} ACCEPTs retired ({=u64} succeeded), {=u64} marker pages written, {=u64} verified, {=u64} #VE",
        defmt::Debug2Format(&end),
        report.stages_done,
        report.accepts,
        report.accept_success,
        report.pages_written,
        report.pages_verified,
        report.virtualization_exceptions
    );
    if !boot::write_report(info, i, &report, image) {
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
