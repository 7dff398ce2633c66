//! The entry point, `_start`.
//!
//! Contract with the loader: the CPU is in 64-bit long mode at CPL 0 with paging enabled and
//! the image identity-mapped at its link address (link.ld), interrupts disabled. No register
//! value is expected, and no stack: `_start` switches to its own stack, zeroes .bss and calls
//! [`crate::guest_main`], which never returns.

/// Size of the boot stack (in .bss).
const STACK_SIZE: usize = 64 * 1024;

// `_start` touches only memory the linker script reserves for it: the stack below
// `__stack_top` and the range [`__bss_start`, `__bss_end`), both inside the loaded image. It
// zeroes .bss before any Rust code runs, which is what Rust expects of zero-initialised
// statics. The stack top is 16-byte aligned, so the `call` leaves the stack aligned the way
// the System V ABI expects at function entry. Nothing is on the stack while .bss (which holds
// the stack) is cleared.
core::arch::global_asm!(
    ".section .text.entry, \"ax\", @progbits",
    ".global _start",
    ".type _start, @function",
    "_start:",
    "    cli",
    "    cld",
    "    lea rsp, [rip + __stack_top]",
    "    xor ebp, ebp",
    "    lea rdi, [rip + __bss_start]",
    "    lea rcx, [rip + __bss_end]",
    "    sub rcx, rdi",
    "    xor eax, eax",
    "    rep stosb",
    "    call {main}",
    "2:  hlt",
    "    jmp 2b",
    ".size _start, . - _start",
    "",
    ".section .bss.stack, \"aw\", @nobits",
    ".balign 16",
    "__stack_bottom:",
    "    .skip {stack_size}",
    "__stack_top:",
    main = sym crate::guest_main,
    stack_size = const STACK_SIZE,
);
