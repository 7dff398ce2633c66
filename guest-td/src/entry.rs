//! The entry point, `_start`, shared by every vCPU.
//!
//! Contract with the loader (guest-td/README.md): 64-bit long mode, CPL 0, paging on with
//! the image and the window identity-mapped, interrupts disabled; RDI = this vCPU's index
//! (0 for the boot vCPU), RSI = the boot block's GPA; .bss zeroed by the loader (the ELF
//! rule: memory past a segment's file size reads as zero). `_start` switches to the stack of
//! its index and calls [`crate::guest_main`]`(index, boot)`, which never returns. An index
//! without a stack halts at once.

/// Stack bytes per vCPU (in .bss), as a shift.
const STACK_SHIFT: u32 = 15;
/// vCPUs with a stack (the boot block's [`hugesept_core::payload::MAX_BOOT_VCPUS`]).
const STACKS: usize = hugesept_core::payload::MAX_BOOT_VCPUS;

// `_start` touches only its own stack: [__stacks + index << STACK_SHIFT, + 1 << STACK_SHIFT),
// inside .bss. The top of each stack is 16-byte aligned, so the `call` leaves the stack
// aligned the way the System V ABI expects at function entry. RDI and RSI pass through to
// guest_main as its two arguments.
core::arch::global_asm!(
    ".section .text.entry, \"ax\", @progbits",
    ".global _start",
    ".type _start, @function",
    "_start:",
    "    cli",
    "    cld",
    "    cmp rdi, {stacks}",
    "    jae 2f",
    "    lea rsp, [rip + __stacks]",
    "    mov rax, rdi",
    "    inc rax",
    "    shl rax, {shift}",
    "    add rsp, rax",
    "    xor ebp, ebp",
    "    call {main}",
    "2:  hlt",
    "    jmp 2b",
    ".size _start, . - _start",
    "",
    ".section .bss.stacks, \"aw\", @nobits",
    ".balign 4096",
    "__stacks:",
    "    .skip {bytes}",
    main = sym crate::guest_main,
    stacks = const STACKS,
    shift = const STACK_SHIFT,
    bytes = const STACKS << STACK_SHIFT,
);
