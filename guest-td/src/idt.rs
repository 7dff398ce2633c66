//! The IDT every vCPU loads, and the entry stubs of the 32 exception vectors: each pushes a
//! dummy error code where the CPU pushes none, then the vector, then every general-purpose
//! register, and calls [`crate::exceptions::dispatch`] with the resulting [`Frame`], whose
//! registers and RIP the handler may change before the stub restores them and returns with
//! IRETQ. #DF and NMI run on the vCPU's IST1 stack; the others on the stack they interrupted
//! (#VE included: its handler must not take another #VE, which the module would turn into #DF).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::cpu::{CODE64, DescriptorPointer};

/// The registers an exception stub saves, in memory order from the stack pointer it passes,
/// then what the CPU pushed.
#[repr(C)]
#[derive(Debug)]
pub struct Frame {
    /// R15.
    pub r15: u64,
    /// R14.
    pub r14: u64,
    /// R13.
    pub r13: u64,
    /// R12.
    pub r12: u64,
    /// R11.
    pub r11: u64,
    /// R10.
    pub r10: u64,
    /// R9.
    pub r9: u64,
    /// R8.
    pub r8: u64,
    /// RBP.
    pub rbp: u64,
    /// RDI.
    pub rdi: u64,
    /// RSI.
    pub rsi: u64,
    /// RDX.
    pub rdx: u64,
    /// RCX.
    pub rcx: u64,
    /// RBX.
    pub rbx: u64,
    /// RAX.
    pub rax: u64,
    /// The vector.
    pub vector: u64,
    /// The error code (0 for vectors without one).
    pub error: u64,
    /// Where the exception happened (a fault) or where execution resumes (a trap).
    pub rip: u64,
    /// CS.
    pub cs: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// RSP.
    pub rsp: u64,
    /// SS.
    pub ss: u64,
}

// The 32 stubs (`hs_vector_N`), the common entry, and the table of the stubs' addresses. The
// vectors that push an error code: 8, 10-14, 17, 21, 29, 30. Alignment: the CPU aligns RSP
// to 16 and pushes 40 bytes (48 with an error code); the stub makes it 48, then 56 with the
// vector, then 176 with 15 registers, so RSP is 16-byte aligned at the call, as the System V
// ABI wants.
core::arch::global_asm!(
    ".macro HS_STUB n, err",
    ".global hs_vector_\\n",
    "hs_vector_\\n:",
    ".if \\err == 0",
    "    push 0",
    ".endif",
    "    push \\n",
    "    jmp hs_exception_common",
    ".endm",
    ".section .text.hs_vectors, \"ax\", @progbits",
    "HS_STUB 0, 0",
    "HS_STUB 1, 0",
    "HS_STUB 2, 0",
    "HS_STUB 3, 0",
    "HS_STUB 4, 0",
    "HS_STUB 5, 0",
    "HS_STUB 6, 0",
    "HS_STUB 7, 0",
    "HS_STUB 8, 1",
    "HS_STUB 9, 0",
    "HS_STUB 10, 1",
    "HS_STUB 11, 1",
    "HS_STUB 12, 1",
    "HS_STUB 13, 1",
    "HS_STUB 14, 1",
    "HS_STUB 15, 0",
    "HS_STUB 16, 0",
    "HS_STUB 17, 1",
    "HS_STUB 18, 0",
    "HS_STUB 19, 0",
    "HS_STUB 20, 0",
    "HS_STUB 21, 1",
    "HS_STUB 22, 0",
    "HS_STUB 23, 0",
    "HS_STUB 24, 0",
    "HS_STUB 25, 0",
    "HS_STUB 26, 0",
    "HS_STUB 27, 0",
    "HS_STUB 28, 0",
    "HS_STUB 29, 1",
    "HS_STUB 30, 1",
    "HS_STUB 31, 0",
    "hs_exception_common:",
    "    push rax",
    "    push rbx",
    "    push rcx",
    "    push rdx",
    "    push rsi",
    "    push rdi",
    "    push rbp",
    "    push r8",
    "    push r9",
    "    push r10",
    "    push r11",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov rdi, rsp",
    "    cld",
    "    call {dispatch}",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rbp",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    pop rbx",
    "    pop rax",
    "    add rsp, 16",
    "    iretq",
    ".section .rodata.hs_vectors, \"a\", @progbits",
    ".balign 8",
    ".global hs_vector_table",
    "hs_vector_table:",
    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    .quad hs_vector_\\n",
    ".endr",
    dispatch = sym crate::exceptions::dispatch,
);

unsafe extern "C" {
    /// The 32 stubs' addresses (the assembly above).
    static hs_vector_table: [u64; 32];
}

/// Vectors that run on IST1: NMI and #DF.
const IST1_VECTORS: [usize; 2] = [2, 8];

/// The IDT: 256 gates of 16 bytes; the first 32 are interrupt gates to the stubs.
#[repr(C, align(16))]
struct Idt(UnsafeCell<[[u64; 2]; 256]>);

// SAFETY: the table is written once, by the first vCPU that reaches `load` (the `BUILT` flag
// orders it before any other vCPU loads it), and only read by the CPUs afterwards.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new([[0; 2]; 256]));
static BUILDING: AtomicBool = AtomicBool::new(false);
static BUILT: AtomicBool = AtomicBool::new(false);

/// An interrupt gate to `handler` with IST index `ist`.
fn gate(handler: u64, ist: u64) -> [u64; 2] {
    let low = (handler & 0xffff)
        | (u64::from(CODE64) << 16)
        | (ist << 32)
        | (0x8e << 40)
        | (((handler >> 16) & 0xffff) << 48);
    [low, handler >> 32]
}

/// Builds the IDT (once, whichever vCPU comes first) and loads it on this vCPU.
pub fn load() {
    if BUILDING
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        // SAFETY: only the vCPU that won the flag writes the table, before it sets BUILT; the
        // others wait for BUILT below before they point their IDTR at it.
        let idt = unsafe { &mut *IDT.0.get() };
        // SAFETY: the stub table is a static the assembly above defines and nothing writes.
        let stubs = unsafe { &hs_vector_table };
        for (v, (slot, &stub)) in idt.iter_mut().zip(stubs.iter()).enumerate() {
            let ist = if IST1_VECTORS.contains(&v) { 1 } else { 0 };
            *slot = gate(stub, ist);
        }
        BUILT.store(true, Ordering::Release);
    }
    while !BUILT.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    let idtr = DescriptorPointer {
        limit: (core::mem::size_of::<[[u64; 2]; 256]>() - 1) as u16,
        base: IDT.0.get().addr() as u64,
    };
    // SAFETY: `idtr` describes the built IDT, whose gates point at the stubs in this image
    // with this image's code selector.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &raw const idtr, options(readonly, nostack)) };
}
