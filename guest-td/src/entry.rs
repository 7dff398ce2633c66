//! The payload's three entry points and its stacks.
//!
//! - `_start` (the ELF's entry point) in 64-bit long mode, interrupts disabled, memory
//!   identity-mapped: the hugesept VMM's entry (RDI = 0, the boot vCPU; RSI = the boot block;
//!   RDX = [`hugesept_core::payload::ENTRY_MAGIC`]) and td-shim's (RDI = the HOB list, RSI =
//!   the payload's load address; td-shim src/bin/td-shim/main.rs `boot_builtin_payload`). Only
//!   the boot vCPU comes in here; it takes stack 0 and calls [`crate::boot_main`].
//! - `_ap_start`, the wakeup vector the boot vCPU hands the ACPI multiprocessor-wakeup mailbox
//!   (src/smp.rs): the firmware (TDVF, td-shim, the hugesept VMM) jumps there in long mode with
//!   the page's identity mapping and no stack, and with no register the ACPI specification
//!   defines; the boot vCPU wakes one vCPU at a time and publishes its index in
//!   [`crate::smp::WAKING`] first, so the woken vCPU reads it there (no CPUID, which may take
//!   #VE in a TD before an IDT is loaded), takes the stack of that index and calls
//!   [`crate::ap_main`].
//! - `_pvh_start`, the PVH entry the ELF note `XEN_ELFNOTE_PHYS32_ENTRY` (type 18) names: 32-bit
//!   protected mode, paging off, EBX = the `hvm_start_info` (Xen docs/misc/pvh.pandoc), as QEMU
//!   enters a `-kernel` ELF with that note. It builds an identity map of the first 4 GiB with 2M
//!   pages, enters long mode through its own GDT and calls [`crate::pvh_main`].

/// Stack bytes per vCPU (in .bss), as a shift.
const STACK_SHIFT: u32 = 15;
/// vCPUs with a stack (the boot block's [`hugesept_core::payload::MAX_BOOT_VCPUS`]).
const STACKS: usize = hugesept_core::payload::MAX_BOOT_VCPUS;

core::arch::global_asm!(
    ".section .text.entry, \"ax\", @progbits",
    ".global _start",
    ".type _start, @function",
    "_start:",
    "    cli",
    "    cld",
    // Stack 0: [__stacks, __stacks + 1 << STACK_SHIFT); its top is 16-byte aligned, so the
    // call leaves the stack aligned the way the System V ABI expects at a function's entry.
    // RDI, RSI and RDX pass through as boot_main's arguments.
    "    lea rsp, [rip + __stacks]",
    "    add rsp, {stack}",
    "    xor ebp, ebp",
    "    call {boot}",
    "2:  hlt",
    "    jmp 2b",
    ".size _start, . - _start",
    "",
    ".global _ap_start",
    ".type _ap_start, @function",
    "_ap_start:",
    "    cli",
    "    cld",
    "    mov rdi, qword ptr [rip + {waking}]",
    "    cmp rdi, {stacks}",
    "    jae 3f",
    "    test rdi, rdi",
    "    jz 3f",
    "    lea rsp, [rip + __stacks]",
    "    mov rax, rdi",
    "    inc rax",
    "    shl rax, {shift}",
    "    add rsp, rax",
    "    xor ebp, ebp",
    "    call {ap}",
    "3:  hlt",
    "    jmp 3b",
    ".size _ap_start, . - _ap_start",
    "",
    ".section .bss.stacks, \"aw\", @nobits",
    ".balign 4096",
    "__stacks:",
    "    .skip {bytes}",
    boot = sym crate::boot_main,
    ap = sym crate::ap_main,
    waking = sym crate::smp::WAKING,
    stacks = const STACKS,
    shift = const STACK_SHIFT,
    stack = const 1usize << STACK_SHIFT,
    bytes = const STACKS << STACK_SHIFT,
);

// The PVH entry, in AT&T syntax for the 32-bit part. Page tables: one PML4 entry, four PDPT
// entries, four page directories of 512 2M pages each (identity, [0, 4 GiB)). Then CR4.PAE,
// EFER.LME, CR0.PG, and a far jump through the boot GDT (code 0x08, data 0x10) to 64-bit code.
core::arch::global_asm!(
    ".section .text.pvh, \"ax\", @progbits",
    ".code32",
    ".global _pvh_start",
    ".type _pvh_start, @function",
    "_pvh_start:",
    "    cli",
    "    cld",
    "    movl %ebx, %esi",
    // Four page directories: entry i maps (i << 21) as a present, writable 2M page.
    "    movl $hs_pvh_pd, %edi",
    "    xorl %ecx, %ecx",
    "2:  movl %ecx, %eax",
    "    shll $21, %eax",
    "    orl $0x83, %eax",
    "    movl %eax, (%edi,%ecx,8)",
    "    movl %ecx, %eax",
    "    shrl $11, %eax",
    "    movl %eax, 4(%edi,%ecx,8)",
    "    incl %ecx",
    "    cmpl $2048, %ecx",
    "    jb 2b",
    "    movl $hs_pvh_pdpt, %edi",
    "    xorl %ecx, %ecx",
    "3:  movl %ecx, %eax",
    "    shll $12, %eax",
    "    addl $hs_pvh_pd, %eax",
    "    orl $3, %eax",
    "    movl %eax, (%edi,%ecx,8)",
    "    movl $0, 4(%edi,%ecx,8)",
    "    incl %ecx",
    "    cmpl $4, %ecx",
    "    jb 3b",
    "    movl $hs_pvh_pdpt, %eax",
    "    orl $3, %eax",
    "    movl %eax, hs_pvh_pml4",
    "    movl $0, hs_pvh_pml4 + 4",
    "    movl $hs_pvh_pml4, %eax",
    "    movl %eax, %cr3",
    "    movl %cr4, %eax",
    "    orl $0x20, %eax",
    "    movl %eax, %cr4",
    "    movl $0xc0000080, %ecx",
    "    rdmsr",
    "    orl $0x100, %eax",
    "    wrmsr",
    "    movl %cr0, %eax",
    "    orl $0x80000001, %eax",
    "    movl %eax, %cr0",
    "    lgdt hs_pvh_gdtr",
    "    ljmp $0x08, $4f",
    ".code64",
    "4:  movw $0x10, %ax",
    "    movw %ax, %ds",
    "    movw %ax, %es",
    "    movw %ax, %ss",
    "    leaq __stacks(%rip), %rsp",
    "    addq ${stack}, %rsp",
    "    xorl %ebp, %ebp",
    "    movl %esi, %edi",
    "    call {pvh}",
    "5:  hlt",
    "    jmp 5b",
    ".size _pvh_start, . - _pvh_start",
    "",
    ".section .rodata.pvh, \"a\", @progbits",
    ".balign 8",
    "hs_pvh_gdt:",
    "    .quad 0",
    "    .quad 0x00af9b000000ffff",
    "    .quad 0x00cf93000000ffff",
    "hs_pvh_gdtr:",
    "    .word 23",
    "    .long hs_pvh_gdt",
    "",
    ".section .bss.pvh, \"aw\", @nobits",
    ".balign 4096",
    "hs_pvh_pml4: .skip 4096",
    "hs_pvh_pdpt: .skip 4096",
    "hs_pvh_pd: .skip 4 * 4096",
    "",
    // XEN_ELFNOTE_PHYS32_ENTRY: name "Xen", type 18, the 32-bit entry address as an 8-byte
    // descriptor with the high half zero (QEMU up to 9.x reads a size_t from a 64-bit ELF's
    // note), in a 4-aligned note.
    ".section .note.Xen, \"a\", @note",
    ".balign 4",
    "    .long 4",
    "    .long 8",
    "    .long 18",
    "    .asciz \"Xen\"",
    "    .balign 4",
    "    .long _pvh_start",
    "    .long 0",
    "    .balign 4",
    pvh = sym crate::pvh_main,
    stack = const 1usize << STACK_SHIFT,
    options(att_syntax),
);
