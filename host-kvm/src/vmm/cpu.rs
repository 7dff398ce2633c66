//! The payload's build-time memory layout and each vCPU's initial state: identity-mapped long
//! mode (4-level tables: 4K pages over build-time memory, 2M pages above), a flat GDT, the CPUID
//! the guest sees — the host's, with the TDX leaf 0x21 ("IntelTDX    ") so the payload takes
//! its TD paths, and each vCPU's APIC ID in leaves 1 and 0xB —, the firmware tables (the ACPI
//! RSDP/XSDT/MADT with the multiprocessor-wakeup mailbox, td-shim's HOB list) and the entry
//! registers: the boot vCPU at the ELF's entry (the hugesept VMM's convention: RDI = 0, RSI =
//! the boot block, RDX = `ENTRY_MAGIC`; or td-shim's: RDI = the HOB list, RSI = the load
//! address), the others at the wakeup vector the payload hands the mailbox.
//!
//! Order matters on these hosts: KVM_SET_CPUID2 before the special registers, or long mode is
//! refused (shared/reference/environment.md).

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES, kvm_regs, kvm_segment};
use kvm_ioctls::{Kvm, VcpuFd};

use super::memory::{GuestMemory, OutOfRange};

/// Build-time memory: [0, LOW_END). Everything the payload runs on lives here and counts as
/// PAGE.ADDed before the TD runs; the scenario's window starts at or above it.
pub const LOW_END: u64 = 16 << 20;
/// The GDT.
pub const GDT: u64 = 0x1000;
/// The boot block (two pages: [`hugesept_core::payload::BOOT_MAX_SIZE`] fits).
pub const BOOT_BLOCK: u64 = 0x2000;
/// The reports, [`hugesept_core::payload::REPORT_SIZE`] bytes per vCPU (64 fit in 16 KiB).
pub const REPORTS: u64 = 0x8000;
/// The PML4; the PDPT follows, then one page directory per GiB mapped.
pub const PML4: u64 = 0x1_0000;
/// The page tables that map build-time memory with 4K pages (one per 2 MiB of it).
pub const LOW_TABLES: u64 = 0x8_0000;
/// td-shim's HOB list, when the VMM enters the payload the way td-shim does (64 KiB at most).
pub const HOB_LIST: u64 = 0xc_0000;
/// The largest HOB list.
pub const HOB_MAX: usize = 64 << 10;
/// The ACPI tables (RSDP first).
pub const ACPI_TABLES: u64 = 0xe_0000;
/// The multiprocessor-wakeup mailbox (4 KiB).
pub const MAILBOX: u64 = 0xf_0000;
/// Where the image may start.
pub const IMAGE_LOW: u64 = 0x10_0000;
/// GiBs the identity map can cover (page directories between the PDPT and the low tables).
pub const MAX_MAPPED_GIBS: u64 = (LOW_TABLES - PML4 - 0x2000) / 0x1000;

const _: () = assert!(LOW_TABLES + (LOW_END >> 21) * 0x1000 <= HOB_LIST);
const _: () = assert!(HOB_LIST + HOB_MAX as u64 <= ACPI_TABLES && ACPI_TABLES + 0x1000 <= MAILBOX);
const _: () = assert!(MAILBOX + 0x1000 <= IMAGE_LOW);

const _: () = assert!(
    BOOT_BLOCK + hugesept_core::payload::BOOT_MAX_SIZE as u64 <= REPORTS
        && REPORTS + 64 * hugesept_core::payload::REPORT_SIZE as u64 <= PML4
);

/// Page-table entry bits: present, writable, page size (2M).
const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const HUGE: u64 = 1 << 7;

/// Writes the identity map of [0, gibs GiB) with 2M pages and the GDT into low memory.
pub fn write_tables(mem: &GuestMemory, gibs: u64) -> Result<(), OutOfRange> {
    let pdpt = PML4 + 0x1000;
    mem.write(PML4, &(pdpt | PRESENT | WRITABLE).to_le_bytes())?;
    for g in 0..gibs {
        let pd = pdpt + 0x1000 * (1 + g);
        mem.write(pdpt + 8 * g, &(pd | PRESENT | WRITABLE).to_le_bytes())?;
        let mut page = [0u8; 4096];
        for (i, e) in page.chunks_exact_mut(8).enumerate() {
            let addr = (g << 30) | ((i as u64) << 21);
            let entry = if addr < LOW_END {
                // Build-time memory in 4K pages: the payload's code, stacks and data touch a
                // few pages of it, and KVM's shadow of a guest 2M page is costly to rebuild
                // after each exit on hosts without EPT (docs/benchmarks.md).
                let pt = LOW_TABLES + (addr >> 21) * 0x1000;
                let mut table = [0u8; 4096];
                for (k, pte) in table.chunks_exact_mut(8).enumerate() {
                    let a = addr | ((k as u64) << 12);
                    pte.copy_from_slice(&(a | PRESENT | WRITABLE).to_le_bytes());
                }
                mem.write(pt, &table)?;
                pt | PRESENT | WRITABLE
            } else {
                addr | PRESENT | WRITABLE | HUGE
            };
            e.copy_from_slice(&entry.to_le_bytes());
        }
        mem.write(pd, &page)?;
    }
    // Null, 64-bit code (selector 0x8), data (0x10).
    let gdt: [u64; 3] = [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
    for (i, d) in gdt.iter().enumerate() {
        mem.write(GDT + 8 * i as u64, &d.to_le_bytes())?;
    }
    Ok(())
}

/// The CPUID the guest sees: the host's supported set with leaf 0's maximum raised to 0x21 and
/// leaf 0x21 subleaf 0 carrying the TDX signature ("IntelTDX    " in EBX, EDX, ECX: what the
/// TDX module reports, shared/reference/tdx-module.md "Detecting a TD"), and the APIC ID of
/// `index` in leaf 1 (initial APIC ID) and leaf 0xB (x2APIC ID, every subleaf).
pub fn guest_cpuid(kvm: &Kvm, index: u8) -> Result<CpuId, kvm_ioctls::Error> {
    let supported = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)?;
    let mut entries: Vec<_> = supported
        .as_slice()
        .iter()
        .copied()
        .filter(|e| e.function != 0x21)
        .collect();
    for e in &mut entries {
        if e.function == 0 {
            e.eax = e.eax.max(0x21);
        }
        if e.function == 1 {
            e.ebx = (e.ebx & 0x00ff_ffff) | (u32::from(index) << 24);
        }
        if e.function == 0xb {
            e.edx = u32::from(index);
        }
    }
    let word = |s: &[u8; 4]| u32::from_le_bytes(*s);
    entries.push(kvm_bindings::kvm_cpuid_entry2 {
        function: 0x21,
        index: 0,
        flags: kvm_bindings::KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
        eax: 0,
        ebx: word(b"Inte"),
        edx: word(b"lTDX"),
        ecx: word(b"    "),
        ..Default::default()
    });
    CpuId::from_entries(&entries).map_err(|_| kvm_ioctls::Error::new(libc::E2BIG))
}

/// The general-purpose registers a vCPU starts with.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryRegs {
    /// RIP.
    pub rip: u64,
    /// RDI.
    pub rdi: u64,
    /// RSI.
    pub rsi: u64,
    /// RDX.
    pub rdx: u64,
}

/// Puts `vcpu` in long mode with the registers of its entry: CPUID first, then the special
/// registers, then the general-purpose ones.
pub fn enter_long_mode(
    kvm: &Kvm,
    vcpu: &VcpuFd,
    index: u8,
    entry: EntryRegs,
) -> Result<(), kvm_ioctls::Error> {
    vcpu.set_cpuid2(&guest_cpuid(kvm, index)?)?;
    let mut sregs = vcpu.get_sregs()?;
    let code = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: 0x8,
        type_: 0xb,
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    let data = kvm_segment {
        selector: 0x10,
        type_: 0x3,
        l: 0,
        db: 1,
        ..code
    };
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.gdt.base = GDT;
    sregs.gdt.limit = 3 * 8 - 1;
    sregs.cr3 = PML4;
    // CR4.PAE; CR0.PE | MP | ET | NE | WP | PG; EFER.LME | LMA.
    sregs.cr4 = 1 << 5;
    sregs.cr0 = 0x8005_0033;
    sregs.efer = 0x500;
    vcpu.set_sregs(&sregs)?;
    let regs = kvm_regs {
        rip: entry.rip,
        rdi: entry.rdi,
        rsi: entry.rsi,
        rdx: entry.rdx,
        rflags: 0x2,
        ..Default::default()
    };
    vcpu.set_regs(&regs)
}

/// Writes the ACPI tables (RSDP at [`ACPI_TABLES`]) naming `vcpus` processors (APIC IDs 0 to
/// `vcpus - 1`) and the mailbox at [`MAILBOX`]; returns the MADT's bytes (td-shim's HOB
/// carries them).
pub fn write_acpi(mem: &GuestMemory, vcpus: u8) -> Result<Vec<u8>, String> {
    use hugesept_core::payload::acpi;
    let ids: Vec<u32> = (0..u32::from(vcpus)).collect();
    let mut buf = vec![0u8; 0x1000];
    let layout = acpi::build(&mut buf, ACPI_TABLES, &ids, MAILBOX).map_err(|e| e.to_string())?;
    mem.write(ACPI_TABLES, &buf[..layout.len])
        .map_err(|e| e.to_string())?;
    mem.write(MAILBOX, &[0u8; acpi::MAILBOX_SIZE])
        .map_err(|e| e.to_string())?;
    Ok(buf[layout.madt.0..layout.madt.1].to_vec())
}
