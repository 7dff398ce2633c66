//! Each vCPU's own descriptor tables: a GDT (null, 64-bit code 0x08, data 0x10, its TSS at
//! 0x18), a TSS whose IST1 stack takes #DF and NMI, GS base pointing at the vCPU's [`PerCpu`]
//! record, and the IDT every vCPU shares (src/idt.rs). Nothing here depends on the loader's
//! tables: the payload runs on its own from [`init`] on, whichever entry it came in by.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

/// vCPUs the payload has records and stacks for.
pub const CPUS: usize = hugesept_core::payload::MAX_BOOT_VCPUS;
/// Bytes of each vCPU's IST1 stack.
const IST_BYTES: usize = 8 << 10;

/// Selectors of the GDT [`init`] loads.
pub const CODE64: u16 = 0x08;
/// Data selector.
pub const DATA: u16 = 0x10;
/// The TSS's selector.
const TSS: u16 = 0x18;

/// What a vCPU's exception handlers need without a lock: which vCPU this is, and what the last
/// #VE's information (TDG.VP.VEINFO.GET) named — its linear address, physical address and
/// exit qualification (`last_ve_gla` 0: none since it was taken).
#[repr(C)]
pub struct PerCpu {
    /// The vCPU index (read through GS: `gs:[0]`).
    pub index: u64,
    last_ve_gla: AtomicU64,
    last_ve_gpa: AtomicU64,
    last_ve_qualification: AtomicU64,
}

/// A 64-bit TSS as 26 dwords (its u64 fields sit at 4-byte offsets): IST1 at dwords 9-10, the
/// I/O map base (no map: the TSS's size) in the high half of dword 25.
#[repr(C, align(16))]
struct Tss([u32; 26]);

#[repr(C, align(16))]
struct IstStack([u8; IST_BYTES]);

/// One vCPU's tables and records.
#[repr(C, align(64))]
struct Cpu {
    gdt: [u64; 5],
    tss: Tss,
    percpu: PerCpu,
    ist: IstStack,
}

/// Every vCPU's [`Cpu`]; vCPU `i` writes only slot `i`, once, in [`init`], before anything
/// reads it.
struct Cpus(UnsafeCell<[Cpu; CPUS]>);

// SAFETY: slot `i` is written only by vCPU `i` (in `init`, before it loads the tables that
// point into the slot), and afterwards read by the CPU itself (descriptor tables, the IST) and
// through `percpu`, whose mutable field is atomic.
unsafe impl Sync for Cpus {}

static CPUS_TABLE: Cpus = Cpus(UnsafeCell::new(
    [const {
        Cpu {
            gdt: [0; 5],
            tss: Tss([0; 26]),
            percpu: PerCpu {
                index: 0,
                last_ve_gla: AtomicU64::new(0),
                last_ve_gpa: AtomicU64::new(0),
                last_ve_qualification: AtomicU64::new(0),
            },
            ist: IstStack([0; IST_BYTES]),
        }
    }; CPUS],
));

/// A 64-bit TSS descriptor (two GDT slots) for the TSS at `base`.
fn tss_descriptor(base: u64) -> [u64; 2] {
    let limit = (core::mem::size_of::<Tss>() - 1) as u64;
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    [low, base >> 32]
}

/// Sets vCPU `index`'s GDT, TSS, GS base and IDT. `index` must be below [`CPUS`] and each
/// vCPU must call this once, on itself.
pub fn init(index: usize) {
    assert!(index < CPUS, "vCPU index {index} has no record");
    // SAFETY: `index < CPUS`; only this vCPU writes this slot, and only now (the caller's
    // contract), before the CPU is pointed at it below.
    let cpu = unsafe { &mut (*CPUS_TABLE.0.get())[index] };
    let ist_top = (&raw const cpu.ist).addr() as u64 + IST_BYTES as u64;
    cpu.tss.0[9] = ist_top as u32;
    cpu.tss.0[10] = (ist_top >> 32) as u32;
    cpu.tss.0[25] = (core::mem::size_of::<Tss>() as u32) << 16;
    let [tss_low, tss_high] = tss_descriptor((&raw const cpu.tss).addr() as u64);
    cpu.gdt = [
        0,
        0x00af_9b00_0000_ffff,
        0x00cf_9300_0000_ffff,
        tss_low,
        tss_high,
    ];
    cpu.percpu.index = index as u64;
    let gdt = (&raw const cpu.gdt).addr() as u64;
    let percpu = (&raw const cpu.percpu).addr() as u64;
    let gdtr = DescriptorPointer {
        limit: (core::mem::size_of::<[u64; 5]>() - 1) as u16,
        base: gdt,
    };
    // SAFETY: `gdtr` describes this vCPU's GDT, which lives in a static and holds the flat
    // 64-bit code and data descriptors the payload already runs on (same selectors as the
    // loaders'), so reloading CS through a far return and the data segments keeps every
    // address meaning what it meant; the TSS descriptor points at this vCPU's TSS.
    unsafe {
        core::arch::asm!(
            "lgdt [{gdtr}]",
            "push {code}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {data:x}",
            "mov es, {data:x}",
            "mov ss, {data:x}",
            "mov fs, {data:x}",
            "mov gs, {data:x}",
            "ltr {tss:x}",
            gdtr = in(reg) &raw const gdtr,
            code = in(reg) u64::from(CODE64),
            data = in(reg) u64::from(DATA),
            tss = in(reg) u64::from(TSS),
            tmp = out(reg) _,
        );
    }
    // SAFETY: IA32_GS_BASE (0xC000_0101) takes any canonical address; the handlers read
    // `gs:[0]` as this vCPU's index, and nothing else uses GS.
    unsafe {
        core::arch::asm!(
            "wrmsr",
            in("ecx") 0xc000_0101u32,
            in("eax") percpu as u32,
            in("edx") (percpu >> 32) as u32,
        );
    }
    crate::idt::load();
}

/// The operand of LGDT and LIDT.
#[repr(C, packed)]
pub struct DescriptorPointer {
    /// Bytes minus one.
    pub limit: u16,
    /// Linear address.
    pub base: u64,
}

/// This vCPU's record (after [`init`]).
pub fn this() -> &'static PerCpu {
    let index: u64;
    // SAFETY: GS base points at this vCPU's `PerCpu` once `init` ran, whose first field is the
    // index; before that GS base is 0 and the read would fault, so handlers (which call this)
    // are only reachable after `init` loaded the IDT.
    unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) index, options(nostack, readonly)) };
    let i = (index as usize).min(CPUS - 1);
    // SAFETY: slot `i` was initialised by `init` on this vCPU; its `percpu` is only read here
    // (the mutable field is atomic).
    unsafe { &(*CPUS_TABLE.0.get())[i].percpu }
}

/// Records what the last #VE's information named.
pub fn note_ve(info: &crate::tdcall::VeInfo) {
    let me = this();
    me.last_ve_gpa.store(info.gpa, Ordering::Relaxed);
    me.last_ve_qualification
        .store(info.exit_qualification, Ordering::Relaxed);
    me.last_ve_gla.store(info.gla, Ordering::Relaxed);
}

/// What the last #VE's information named (linear address, physical address, exit
/// qualification), taking it; `None` when no #VE was taken since.
pub fn take_ve() -> Option<(u64, u64, u64)> {
    let me = this();
    let gla = me.last_ve_gla.swap(0, Ordering::Relaxed);
    (gla != 0).then(|| {
        (
            gla,
            me.last_ve_gpa.load(Ordering::Relaxed),
            me.last_ve_qualification.load(Ordering::Relaxed),
        )
    })
}
