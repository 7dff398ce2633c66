//! The contract between the hugesept VMM (host-kvm's `hugesept run`) and the guest-td payload:
//! the boot-info block the VMM writes and the payload validates, the report each vCPU writes
//! at its end, the hugesept calls (vendor-specific TDG.VP.VMCALLs) through which the payload
//! hands the VMM the operations that are not TDCALLs of their own, the port through which a
//! payload that took #UD on a TDCALL forwards it, and how a model [`Content`] looks in real
//! guest memory. Both sides link this module, so they cannot disagree on a layout; the
//! formats are documented for other payloads in guest-td/README.md.
//!
//! Everything here decodes arbitrary bytes and words: a block or report that does not hold
//! together is a typed [`BootError`] / [`ReportError`], never a panic or a partial value.

pub mod acpi;
mod bytes;
pub mod hob;
pub mod log;

use core::fmt;

use crate::abi::{Gpa, PAGE_SIZE_4K, PageLevel};
use crate::guest::{Guest, GuestKind};
use crate::sept::Content;

/// The boot block's first word: "hugesept" in ASCII, little-endian.
pub const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"hugesept");
/// The boot block's format version this build writes and reads (2: the ACPI tables' RSDP at
/// header offset 48, reserved in 1).
pub const BOOT_VERSION: u32 = 2;
/// RDX at the payload's entry when the hugesept VMM enters it ("hsvmmrdx"): the VMM's entry
/// (RDI the vCPU index, RSI the boot block) and td-shim's (RDI the HOB list, RSI the payload's
/// load address; RDX is not part of td-shim's convention) share the ELF's entry point.
pub const ENTRY_MAGIC: u64 = u64::from_le_bytes(*b"hsvmmrdx");
/// The exit reason #VE information carries for a guest access to a PENDING page (an EPT
/// violation, basic exit reason 48; TDG.VP.VEINFO.GET's RCX).
pub const VE_EXIT_REASON_EPT_VIOLATION: u64 = 48;
/// vCPUs a boot block describes at most.
pub const MAX_BOOT_VCPUS: usize = 64;
/// Program stages per vCPU at most (the world's [`crate::world::MAX_STAGES`]).
pub const MAX_BOOT_STAGES: usize = crate::world::MAX_STAGES;
/// Bytes of the block's header.
pub const BOOT_HEADER_SIZE: usize = 64;
/// Bytes of one stage's description.
pub const BOOT_STAGE_SIZE: usize = 32;
/// Bytes of one vCPU's entry: a count word and [`MAX_BOOT_STAGES`] stages.
pub const BOOT_VCPU_SIZE: usize = 8 + MAX_BOOT_STAGES * BOOT_STAGE_SIZE;
/// The largest block: the header and [`MAX_BOOT_VCPUS`] entries.
pub const BOOT_MAX_SIZE: usize = BOOT_HEADER_SIZE + MAX_BOOT_VCPUS * BOOT_VCPU_SIZE;

/// The flags this version defines: none (version 1's bit 0, "forward every TDCALL by port", is
/// gone: a payload forwards a TDCALL when it takes #UD on it).
pub const BOOT_FLAGS_KNOWN: u32 = 0;

/// Stage flag: the program writes and checks content markers.
const STAGE_MARKERS: u8 = 1 << 0;
/// Stage flag: the program only reads back markers an earlier stage wrote.
const STAGE_VERIFY_ONLY: u8 = 1 << 1;
/// Stage flag: the stride fields are in use.
const STAGE_STRIDED: u8 = 1 << 2;
const STAGE_FLAGS_KNOWN: u8 = STAGE_MARKERS | STAGE_VERIFY_ONLY | STAGE_STRIDED;

/// Bytes of one vCPU's report.
pub const REPORT_SIZE: usize = 256;
/// The report's first word: "hsreport".
pub const REPORT_MAGIC: u64 = u64::from_le_bytes(*b"hsreport");

/// The I/O port a forwarded TDCALL goes to: a 32-bit write of the GPA of a register block
/// ([`PORT_TDCALL_SIZE`] bytes, 16-byte aligned, inside the payload's build-time memory): RAX,
/// RCX, RDX, R8-R15 as the instruction would see them, then a completion word the payload
/// sets to 0. When the call retires, the VMM writes the output registers and a completion
/// word of 1 back into the block before the `out` retires; a call that did not retire (an
/// ACCEPT whose EPT violation the host resolved) leaves the block as it was, and the payload
/// writes the port again, as the instruction would run again.
pub const TDCALL_PORT: u16 = 0x5e0;
/// Bytes of a forwarded TDCALL's block: eleven registers and the completion word.
pub const PORT_TDCALL_SIZE: usize = 12 * 8;

/// R10 of a hugesept call (a vendor-specific TDG.VP.VMCALL: GHCI reserves R10 = 0 for the
/// standard sub-functions): "HSEPT".
pub const VMCALL_VENDOR: u64 = 0x54_5045_5348;
/// The GHCI status a VMM returns in R10 for a TDG.VP.VMCALL it does not accept.
pub const VMCALL_INVALID_OPERAND: u64 = 0x8000_0000_0000_0000;
/// GHCI TDG.VP.VMCALL sub-function numbers the payload uses (R11 with R10 = 0).
pub const GHCI_HLT: u64 = 12;
/// GHCI `Instruction.IO`: R12 size, R13 direction (1 write), R14 port, R15 data.
pub const GHCI_IO: u64 = 30;

/// A hugesept call (R11 of a TDG.VP.VMCALL whose R10 is [`VMCALL_VENDOR`]; its arguments in
/// R12 and R13, its answer in R11-R13 with R10 = 0, or R10 = [`VMCALL_INVALID_OPERAND`] for a
/// call the VMM refuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// A guest memory operation begins: an [`AccessRequest`] in R12/R13, the operation the
    /// payload is about to perform with real loads and stores. Answers R11 an [`AccessAnswer`]
    /// code. The access itself reaches the model for real: the VMM keeps every window page the
    /// model does not have accepted out of the guest's mapping, so a load or store there exits,
    /// and the VMM answers it as the TDX module and KVM would (#VE, an EPT violation KVM
    /// resolves while the instruction waits, or the TD killed).
    AccessBegin,
    /// The operation's real loads or stores are done: an [`AccessResult`] in R12/R13, which the
    /// VMM compares with the model. Answers R11 0 (go on) or [`AccessAnswer::Stop`]'s code.
    AccessEnd,
    /// linux-lazy's unaccepted bitmap: R12 0 claim / 1 release, R13 the unit's GPA. Answers
    /// R11: 0 claimed (accept it now), 1 already accepted, 2 released, 3 stop.
    Unit,
    /// The payload's program ended: R12 the [`EndCode`], R13 the detail word (a status, a GPA).
    /// Answers R11 0 (the next stage starts), 1 (finished: write the report and halt) or 3
    /// (stop).
    ProgramEnd,
    /// The payload cannot run: R12 a [`BootError::code`] or [`FAULT_PANIC`]. The VMM ends
    /// this vCPU with the error.
    Fault,
}

/// [`Call::Fault`]'s code for a payload panic.
pub const FAULT_PANIC: u64 = 0xffff_0000;
/// [`Call::Fault`]'s code for a vCPU index the boot block does not describe.
pub const FAULT_NO_PROGRAM: u64 = 0xffff_0001;
/// [`Call::Fault`]'s code for an answer the payload cannot use (the VMM broke the protocol).
pub const FAULT_PROTOCOL: u64 = 0xffff_0002;
/// [`Call::Fault`]'s code for an exception the payload has no handler for: this | the vector
/// (R13: RIP).
pub const FAULT_EXCEPTION: u64 = 0xffff_0100;
/// [`Call::Fault`]'s code for the vCPUs the payload could not wake (no MADT, no mailbox, no
/// processor with the vCPU's APIC ID): this | the vCPU (R13: the ACPI error's code).
pub const FAULT_SMP: u64 = 0xffff_0200;

/// A memory operation as [`Call::AccessBegin`] carries it: R12 = kind (bits 7:0) | level
/// (15:8) | content raw (31:16), R13 = the GPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessRequest {
    /// What it does.
    pub kind: AccessKind,
    /// The page's level (4K for a read).
    pub level: PageLevel,
    /// The marker written or checked ([`Content::NONE`] for a read).
    pub content: Content,
    /// The page.
    pub gpa: Gpa,
}

impl AccessRequest {
    /// R12 and R13.
    pub const fn encode(self) -> (u64, u64) {
        (
            self.kind.code() | (level_code(self.level) << 8) | ((self.content.raw() as u64) << 16),
            self.gpa.raw(),
        )
    }

    /// From R12 and R13 (any values).
    pub const fn decode(r12: u64, r13: u64) -> Option<AccessRequest> {
        let Some(kind) = AccessKind::from_code(r12 & 0xff) else {
            return None;
        };
        let Some(level) = level_from_code((r12 >> 8) & 0xff) else {
            return None;
        };
        if r12 >> 32 != 0 {
            return None;
        }
        Some(AccessRequest {
            kind,
            level,
            content: Content::from_raw((r12 >> 16) as u16),
            gpa: Gpa(r13),
        })
    }
}

/// What the payload's real loads and stores saw, as [`Call::AccessEnd`] carries it: R12 = kind
/// (bits 7:0) | 1 << 8 when a page's words encode no content | 1 << 9 when an access took #VE
/// | the content found (31:16), R13 = the page it is about (a read's page, a verify's first
/// page without its marker, the page whose access took #VE, or 0 when every page held it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessResult {
    /// The operation.
    pub kind: AccessKind,
    /// The content found: `None` when the words were torn or foreign (or #VE came first).
    pub found: Option<Content>,
    /// The page (0 for a write or a verify that found every marker).
    pub page: Gpa,
    /// A load or store took #VE at `page` (the payload's handler read the cause with
    /// TDG.VP.VEINFO.GET and the operation stopped there).
    pub ve: bool,
}

impl AccessResult {
    /// R12 and R13.
    pub const fn encode(self) -> (u64, u64) {
        let found = match self.found {
            Some(c) => (c.raw() as u64) << 16,
            None => 1 << 8,
        };
        let ve = if self.ve { 1 << 9 } else { 0 };
        (self.kind.code() | found | ve, self.page.raw())
    }

    /// From R12 and R13 (any values).
    pub const fn decode(r12: u64, r13: u64) -> Option<AccessResult> {
        let Some(kind) = AccessKind::from_code(r12 & 0xff) else {
            return None;
        };
        if r12 >> 32 != 0 || (r12 >> 10) & 0x3f != 0 {
            return None;
        }
        let found = if r12 & (1 << 8) != 0 {
            None
        } else {
            Some(Content::from_raw((r12 >> 16) as u16))
        };
        Some(AccessResult {
            kind,
            found,
            page: Gpa(r13),
            ve: r12 & (1 << 9) != 0,
        })
    }
}

impl Call {
    /// The call number.
    pub const fn number(self) -> u64 {
        match self {
            Call::AccessBegin => 1,
            Call::AccessEnd => 2,
            Call::Unit => 3,
            Call::ProgramEnd => 4,
            Call::Fault => 5,
        }
    }

    /// The call with this number.
    pub const fn from_number(n: u64) -> Option<Call> {
        Some(match n {
            1 => Call::AccessBegin,
            2 => Call::AccessEnd,
            3 => Call::Unit,
            4 => Call::ProgramEnd,
            5 => Call::Fault,
            _ => return None,
        })
    }
}

/// What a memory operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    /// A read of one 4K page.
    Read,
    /// A marker written over a 4K or 2M page.
    Write,
    /// A marker checked over a 4K or 2M page.
    Verify,
}

impl AccessKind {
    /// The code the calls carry.
    pub const fn code(self) -> u64 {
        match self {
            AccessKind::Read => 1,
            AccessKind::Write => 2,
            AccessKind::Verify => 3,
        }
    }

    /// The kind with this code.
    pub const fn from_code(c: u64) -> Option<AccessKind> {
        Some(match c {
            1 => AccessKind::Read,
            2 => AccessKind::Write,
            3 => AccessKind::Verify,
            _ => return None,
        })
    }
}

/// The VMM's answer to [`Call::AccessBegin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessAnswer {
    /// Do the loads or stores now (they may take #VE) and report with [`Call::AccessEnd`].
    Go,
    /// The VM is over (killed, bugged, or the run stopped): halt.
    Stop,
}

impl AccessAnswer {
    /// The code in R11 (1 and 2 were the answers of version 1, before accesses reached the
    /// model for real).
    pub const fn code(self) -> u64 {
        match self {
            AccessAnswer::Go => 0,
            AccessAnswer::Stop => 3,
        }
    }

    /// The answer with this code.
    pub const fn from_code(c: u64) -> Option<AccessAnswer> {
        Some(match c {
            0 => AccessAnswer::Go,
            3 => AccessAnswer::Stop,
            _ => return None,
        })
    }
}

/// How a vCPU's program ended, as [`Call::ProgramEnd`] and the report carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndCode {
    /// [`crate::guest::GuestEnd::Done`].
    Done,
    /// [`crate::guest::GuestEnd::Panic`] (detail: the status).
    Panic,
    /// [`crate::guest::GuestEnd::DataLoss`] (detail: the page).
    DataLoss,
    /// [`crate::guest::GuestEnd::Confused`].
    Confused,
    /// The payload stopped because the VMM told it to (the VM ended).
    Stopped,
    /// The payload could not run (detail: the error code).
    Fault,
}

impl EndCode {
    /// The code.
    pub const fn code(self) -> u64 {
        match self {
            EndCode::Done => 0,
            EndCode::Panic => 1,
            EndCode::DataLoss => 2,
            EndCode::Confused => 3,
            EndCode::Stopped => 4,
            EndCode::Fault => 5,
        }
    }

    /// The code and detail word of a guest program's end: the status of a panic's ACCEPT, the
    /// page of a data loss, 0 otherwise (the payload reports it, the VMM expects it).
    pub const fn of(end: crate::guest::GuestEnd) -> (EndCode, u64) {
        use crate::guest::GuestEnd;
        match end {
            GuestEnd::Done => (EndCode::Done, 0),
            GuestEnd::Panic { status, .. } => (EndCode::Panic, status.0),
            GuestEnd::DataLoss { gpa, .. } => (EndCode::DataLoss, gpa.raw()),
            GuestEnd::Confused => (EndCode::Confused, 0),
        }
    }

    /// The end with this code.
    pub const fn from_code(c: u64) -> Option<EndCode> {
        Some(match c {
            0 => EndCode::Done,
            1 => EndCode::Panic,
            2 => EndCode::DataLoss,
            3 => EndCode::Confused,
            4 => EndCode::Stopped,
            5 => EndCode::Fault,
            _ => return None,
        })
    }
}

/// Why a boot block is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// Shorter than its header or than the size it states, or longer than [`BOOT_MAX_SIZE`].
    Size,
    /// The first word is not [`BOOT_MAGIC`].
    Magic,
    /// A version this build does not read.
    Version(u32),
    /// The checksum does not match the bytes.
    Checksum,
    /// A flag this version does not define.
    Flags,
    /// No vCPUs, or more than [`MAX_BOOT_VCPUS`], or not the size the count implies.
    Vcpus,
    /// The window is empty, unaligned or not canonical.
    Window,
    /// The report area is unaligned or overlaps the window.
    Report,
    /// A reserved field is not zero (vCPU, stage; stage 255 means the vCPU's count word).
    Reserved(u8, u8),
    /// A vCPU has no stages or more than [`MAX_BOOT_STAGES`].
    Stages(u8),
    /// A stage names no guest strategy.
    Kind(u8, u8),
    /// A stage's range is empty, unaligned or outside the window.
    Range(u8, u8),
    /// A stage's stride or tag does not fit.
    Stride(u8, u8),
    /// The destination is too small for the block.
    Space,
    /// The ACPI RSDP's address is unaligned, above 4 GiB or inside the window.
    Acpi,
}

impl BootError {
    /// A code that fits one register ([`Call::Fault`]): the kind in bits 15:8, the vCPU in
    /// 23:16 and the stage in 31:24 where the error has them.
    pub const fn code(self) -> u64 {
        let (k, v, s): (u64, u8, u8) = match self {
            BootError::Size => (1, 0, 0),
            BootError::Magic => (2, 0, 0),
            BootError::Version(_) => (3, 0, 0),
            BootError::Checksum => (4, 0, 0),
            BootError::Flags => (5, 0, 0),
            BootError::Vcpus => (6, 0, 0),
            BootError::Window => (7, 0, 0),
            BootError::Report => (8, 0, 0),
            BootError::Reserved(v, s) => (9, v, s),
            BootError::Stages(v) => (10, v, 0),
            BootError::Kind(v, s) => (11, v, s),
            BootError::Range(v, s) => (12, v, s),
            BootError::Stride(v, s) => (13, v, s),
            BootError::Space => (14, 0, 0),
            BootError::Acpi => (15, 0, 0),
        };
        (k << 8) | ((v as u64) << 16) | ((s as u64) << 24)
    }

    /// The error a [`BootError::code`] names (the version is not carried: 0).
    pub const fn from_code(c: u64) -> Option<BootError> {
        let v = (c >> 16) as u8;
        let s = (c >> 24) as u8;
        if c & 0xff != 0 || c >> 32 != 0 {
            return None;
        }
        Some(match (c >> 8) & 0xff {
            1 => BootError::Size,
            2 => BootError::Magic,
            3 => BootError::Version(0),
            4 => BootError::Checksum,
            5 => BootError::Flags,
            6 => BootError::Vcpus,
            7 => BootError::Window,
            8 => BootError::Report,
            9 => BootError::Reserved(v, s),
            10 => BootError::Stages(v),
            11 => BootError::Kind(v, s),
            12 => BootError::Range(v, s),
            13 => BootError::Stride(v, s),
            14 => BootError::Space,
            15 => BootError::Acpi,
            _ => return None,
        })
    }
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::Size => f.write_str("the boot block's size does not fit"),
            BootError::Magic => f.write_str("not a hugesept boot block (magic)"),
            BootError::Version(v) => write!(f, "boot block version {v}, this build reads 1"),
            BootError::Checksum => f.write_str("the boot block's checksum does not match"),
            BootError::Flags => f.write_str("the boot block sets an unknown flag"),
            BootError::Vcpus => f.write_str("the boot block's vCPU count does not fit"),
            BootError::Window => f.write_str("the boot block's window is empty or unaligned"),
            BootError::Report => f.write_str("the report area is unaligned or in the window"),
            BootError::Reserved(v, s) => write!(f, "vCPU {v} stage {s}: a reserved field is set"),
            BootError::Stages(v) => write!(f, "vCPU {v}: 1 to {MAX_BOOT_STAGES} stages"),
            BootError::Kind(v, s) => write!(f, "vCPU {v} stage {s}: no such guest strategy"),
            BootError::Range(v, s) => {
                write!(
                    f,
                    "vCPU {v} stage {s}: range empty, unaligned or outside the window"
                )
            }
            BootError::Stride(v, s) => write!(f, "vCPU {v} stage {s}: stride or tag out of range"),
            BootError::Space => f.write_str("no room for the boot block"),
            BootError::Acpi => f.write_str("the ACPI RSDP's address is unusable"),
        }
    }
}

/// The stable code of a guest strategy in a boot block.
pub const fn kind_code(k: GuestKind) -> u8 {
    match k {
        GuestKind::Linux => 1,
        GuestKind::LinuxLazy => 2,
        GuestKind::Ovmf => 3,
        GuestKind::TdShim => 4,
        GuestKind::TdxGuest => 5,
        GuestKind::Svsm => 6,
        GuestKind::Accept4kOnly => 7,
        GuestKind::TouchFirst => 8,
        GuestKind::SingleAccept => 9,
        GuestKind::Adversarial => 10,
        GuestKind::LinuxEarly => 11,
        GuestKind::Asterinas => 12,
    }
}

/// The strategy with this code.
pub const fn kind_from_code(c: u8) -> Option<GuestKind> {
    Some(match c {
        1 => GuestKind::Linux,
        2 => GuestKind::LinuxLazy,
        3 => GuestKind::Ovmf,
        4 => GuestKind::TdShim,
        5 => GuestKind::TdxGuest,
        6 => GuestKind::Svsm,
        7 => GuestKind::Accept4kOnly,
        8 => GuestKind::TouchFirst,
        9 => GuestKind::SingleAccept,
        10 => GuestKind::Adversarial,
        11 => GuestKind::LinuxEarly,
        12 => GuestKind::Asterinas,
        _ => return None,
    })
}

/// A stride: this program takes chunk `index`, `index + count`, … of `1 << chunk_shift` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StrideSpec {
    /// Its chunk index.
    pub index: u8,
    /// How many programs share the range.
    pub count: u8,
    /// log2 of the chunk size (12 to 33).
    pub chunk_shift: u8,
}

/// One stage of a vCPU's program, as the world and the payload both build it
/// ([`ProgramSpec::guest`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProgramSpec {
    /// The strategy.
    pub kind: GuestKind,
    /// First GPA of its range (4K aligned).
    pub start: Gpa,
    /// One past the last (4K aligned).
    pub end: Gpa,
    /// Its marker tag (1 to [`Content::MAX_TAG`]).
    pub tag: u16,
    /// It writes and checks markers.
    pub markers: bool,
    /// It only reads back an earlier stage's markers.
    pub verify_only: bool,
    /// Its share of a range several vCPUs accept.
    pub stride: Option<StrideSpec>,
}

impl ProgramSpec {
    /// The guest program.
    pub fn guest(&self) -> Guest {
        let mut g = Guest::new(self.kind, self.start, self.end, self.tag);
        if let Some(s) = self.stride {
            g = g.strided(s.index, s.count, s.chunk_shift);
        }
        if self.verify_only {
            g = g.verify_only();
        }
        if self.markers { g } else { g.without_markers() }
    }
}

/// One vCPU's program: 1 to [`MAX_BOOT_STAGES`] stages run one after another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct VcpuProgram {
    /// The stages; the first `None` ends the program.
    pub stages: [Option<ProgramSpec>; MAX_BOOT_STAGES],
}

impl VcpuProgram {
    /// How many stages it has.
    pub fn len(&self) -> usize {
        self.stages.iter().take_while(|s| s.is_some()).count()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stage `k`.
    pub fn stage(&self, k: usize) -> Option<ProgramSpec> {
        self.stages.get(k).copied().flatten()
    }
}

/// The boot-info block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// Flags ([`BOOT_FLAGS_KNOWN`]: none defined).
    pub flags: u32,
    /// The private memory the programs accept: [start, end), 2M aligned.
    pub window: (Gpa, Gpa),
    /// Where vCPU `i`'s report goes: this GPA plus `i * REPORT_SIZE` (4K aligned, outside the
    /// window).
    pub report: Gpa,
    /// How many vCPUs run.
    pub vcpus: u8,
    /// The ACPI tables' RSDP (4-byte aligned, below 4 GiB, outside the window), through whose
    /// MADT the boot vCPU wakes the others ([`acpi`]); `Gpa(0)` when there are none (one vCPU).
    pub acpi: Gpa,
    /// Their programs (the first `vcpus` entries).
    pub programs: [VcpuProgram; MAX_BOOT_VCPUS],
}

/// FNV-1a over `bytes`, with the eight bytes at `skip` read as zero.
fn checksum(bytes: &[u8], skip: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, b) in bytes.iter().enumerate() {
        let b = if (skip..skip.saturating_add(8)).contains(&i) {
            0
        } else {
            *b
        };
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The header's checksum field.
const CHECKSUM_AT: usize = 56;

/// Where vCPU `i`'s entry starts (for `i` up to [`MAX_BOOT_VCPUS`]).
const fn vcpu_at(i: usize) -> usize {
    BOOT_HEADER_SIZE.saturating_add(i.saturating_mul(BOOT_VCPU_SIZE))
}

/// Where vCPU `i`'s stage `k` starts.
const fn stage_at(i: usize, k: usize) -> usize {
    vcpu_at(i)
        .saturating_add(8)
        .saturating_add(k.saturating_mul(BOOT_STAGE_SIZE))
}

fn get_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(s);
    Some(u64::from_le_bytes(w))
}

fn get_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    let mut w = [0u8; 4];
    w.copy_from_slice(s);
    Some(u32::from_le_bytes(w))
}

fn get_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    let mut w = [0u8; 2];
    w.copy_from_slice(s);
    Some(u16::from_le_bytes(w))
}

fn put(b: &mut [u8], at: usize, bytes: &[u8]) -> Result<(), BootError> {
    let end = at.checked_add(bytes.len()).ok_or(BootError::Space)?;
    b.get_mut(at..end)
        .ok_or(BootError::Space)?
        .copy_from_slice(bytes);
    Ok(())
}

/// Whether a window bound is usable: 2M aligned and below 2^52 (the largest GPAW).
fn window_bound(g: u64) -> bool {
    g & (crate::abi::PAGE_SIZE_2M - 1) == 0 && g < (1 << 52)
}

impl BootInfo {
    /// The size of the block for this many vCPUs.
    pub const fn size_for(vcpus: usize) -> usize {
        vcpu_at(vcpus)
    }

    /// Writes the block into `out`; returns its size. Validates what it writes the way
    /// [`BootInfo::decode`] does, so a block this writes always decodes to `self`.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BootError> {
        let n = usize::from(self.vcpus);
        if n == 0 || n > MAX_BOOT_VCPUS {
            return Err(BootError::Vcpus);
        }
        let size = Self::size_for(n);
        let b = out.get_mut(..size).ok_or(BootError::Space)?;
        b.fill(0);
        put(b, 0, &BOOT_MAGIC.to_le_bytes())?;
        put(b, 8, &BOOT_VERSION.to_le_bytes())?;
        put(b, 12, &(size as u32).to_le_bytes())?;
        put(b, 16, &(n as u32).to_le_bytes())?;
        put(b, 20, &self.flags.to_le_bytes())?;
        put(b, 24, &self.window.0.raw().to_le_bytes())?;
        put(b, 32, &self.window.1.raw().to_le_bytes())?;
        put(b, 40, &self.report.raw().to_le_bytes())?;
        put(b, 48, &self.acpi.raw().to_le_bytes())?;
        for (i, p) in self.programs.iter().take(n).enumerate() {
            let at = vcpu_at(i);
            put(b, at, &[p.len() as u8])?;
            for (k, st) in p.stages.iter().flatten().enumerate() {
                let s = stage_at(i, k);
                put(b, s, &st.start.raw().to_le_bytes())?;
                put(b, s.saturating_add(8), &st.end.raw().to_le_bytes())?;
                let mut flags = 0u8;
                if st.markers {
                    flags |= STAGE_MARKERS;
                }
                if st.verify_only {
                    flags |= STAGE_VERIFY_ONLY;
                }
                let (si, sc, ss) = match st.stride {
                    Some(sd) => {
                        flags |= STAGE_STRIDED;
                        (sd.index, sd.count, sd.chunk_shift)
                    }
                    None => (0, 0, 0),
                };
                put(
                    b,
                    s.saturating_add(16),
                    &[kind_code(st.kind), flags, si, sc, ss, 0],
                )?;
                put(b, s.saturating_add(22), &st.tag.to_le_bytes())?;
            }
        }
        let sum = checksum(b, CHECKSUM_AT);
        put(b, CHECKSUM_AT, &sum.to_le_bytes())?;
        // What cannot be encoded faithfully is refused rather than written.
        match BootInfo::decode(b) {
            Ok(d) if d == *self => Ok(size),
            Ok(_) => Err(BootError::Stages(0)),
            Err(e) => Err(e),
        }
    }

    /// Reads and validates a block (from untrusted memory: any bytes).
    pub fn decode(b: &[u8]) -> Result<BootInfo, BootError> {
        let word = |at| get_u64(b, at).ok_or(BootError::Size);
        let half = |at| get_u32(b, at).ok_or(BootError::Size);
        if word(0)? != BOOT_MAGIC {
            return Err(BootError::Magic);
        }
        let version = half(8)?;
        if version != BOOT_VERSION {
            return Err(BootError::Version(version));
        }
        let size = half(12)? as usize;
        if !(BOOT_HEADER_SIZE..=BOOT_MAX_SIZE).contains(&size) || size > b.len() {
            return Err(BootError::Size);
        }
        let b = b.get(..size).ok_or(BootError::Size)?;
        if word(CHECKSUM_AT)? != checksum(b, CHECKSUM_AT) {
            return Err(BootError::Checksum);
        }
        let n = half(16)? as usize;
        if n == 0 || n > MAX_BOOT_VCPUS || size != Self::size_for(n) {
            return Err(BootError::Vcpus);
        }
        let flags = half(20)?;
        if flags & !BOOT_FLAGS_KNOWN != 0 {
            return Err(BootError::Flags);
        }
        let (ws, we) = (word(24)?, word(32)?);
        if !window_bound(ws) || !window_bound(we) || ws >= we {
            return Err(BootError::Window);
        }
        let report = word(40)?;
        let report_end = (n as u64)
            .checked_mul(REPORT_SIZE as u64)
            .and_then(|l| report.checked_add(l))
            .ok_or(BootError::Report)?;
        if report & (PAGE_SIZE_4K - 1) != 0 || (report < we && report_end > ws) {
            return Err(BootError::Report);
        }
        let acpi = word(48)?;
        if acpi != 0
            && (acpi & 3 != 0
                || acpi >= 1 << 32
                || (acpi.saturating_add(acpi::RSDP_SIZE as u64) > ws && acpi < we))
        {
            return Err(BootError::Acpi);
        }
        let mut programs = [VcpuProgram::default(); MAX_BOOT_VCPUS];
        for (i, p) in programs.iter_mut().take(n).enumerate() {
            let v = i as u8;
            let at = vcpu_at(i);
            let count = *b.get(at).ok_or(BootError::Size)? as usize;
            if b.get(at.saturating_add(1)..at.saturating_add(8))
                .is_none_or(|r| r.iter().any(|x| *x != 0))
            {
                return Err(BootError::Reserved(v, 255));
            }
            if count == 0 || count > MAX_BOOT_STAGES {
                return Err(BootError::Stages(v));
            }
            for k in 0..MAX_BOOT_STAGES {
                let s = stage_at(i, k);
                let raw = b
                    .get(s..s.saturating_add(BOOT_STAGE_SIZE))
                    .ok_or(BootError::Size)?;
                if k >= count {
                    if raw.iter().any(|x| *x != 0) {
                        return Err(BootError::Reserved(v, k as u8));
                    }
                    continue;
                }
                let spec = decode_stage(raw, (ws, we), v, k as u8)?;
                if let Some(slot) = p.stages.get_mut(k) {
                    *slot = Some(spec);
                }
            }
        }
        Ok(BootInfo {
            flags,
            window: (Gpa(ws), Gpa(we)),
            report: Gpa(report),
            vcpus: n as u8,
            acpi: Gpa(acpi),
            programs,
        })
    }

    /// vCPU `i`'s program.
    pub fn program(&self, i: usize) -> Option<&VcpuProgram> {
        self.programs.get(i).filter(|_| i < usize::from(self.vcpus))
    }
}

fn decode_stage(raw: &[u8], window: (u64, u64), v: u8, k: u8) -> Result<ProgramSpec, BootError> {
    let start = get_u64(raw, 0).ok_or(BootError::Size)?;
    let end = get_u64(raw, 8).ok_or(BootError::Size)?;
    let byte = |at: usize| raw.get(at).copied().ok_or(BootError::Size);
    let kind = kind_from_code(byte(16)?).ok_or(BootError::Kind(v, k))?;
    let flags = byte(17)?;
    let (si, sc, ss) = (byte(18)?, byte(19)?, byte(20)?);
    let tag = get_u16(raw, 22).ok_or(BootError::Size)?;
    if flags & !STAGE_FLAGS_KNOWN != 0 || byte(21)? != 0 || get_u64(raw, 24) != Some(0) {
        return Err(BootError::Reserved(v, k));
    }
    let aligned = |g: u64| g & (PAGE_SIZE_4K - 1) == 0;
    if !aligned(start) || !aligned(end) || start >= end || start < window.0 || end > window.1 {
        return Err(BootError::Range(v, k));
    }
    if tag == 0 || tag > Content::MAX_TAG {
        return Err(BootError::Stride(v, k));
    }
    let stride = if flags & STAGE_STRIDED != 0 {
        if sc == 0 || si >= sc || !(12..=33).contains(&ss) {
            return Err(BootError::Stride(v, k));
        }
        Some(StrideSpec {
            index: si,
            count: sc,
            chunk_shift: ss,
        })
    } else {
        if (si, sc, ss) != (0, 0, 0) {
            return Err(BootError::Reserved(v, k));
        }
        None
    };
    Ok(ProgramSpec {
        kind,
        start: Gpa(start),
        end: Gpa(end),
        tag,
        markers: flags & STAGE_MARKERS != 0,
        verify_only: flags & STAGE_VERIFY_ONLY != 0,
        stride,
    })
}

// ---------------------------------------------------------------------------------------------
// Content in real memory.

/// The word every 8 bytes of a page removed from the guest hold (the VMM writes it when the
/// model REMOVEs a page: [`Content::NONE`]).
pub const REMOVED_WORD: u64 = 0xdead_0000_0000_dead;
/// The high bits of a marker word: "HSMK"; the low 16 bits carry the tag.
const MARKER_HIGH: u64 = 0x4853_4d4b_0000_0000;

/// The 64-bit word a page of `content` holds in every 8 bytes of real memory.
pub const fn content_word(content: Content) -> u64 {
    match content.tag() {
        Some(t) => MARKER_HIGH | t as u64,
        None if content.raw() == Content::ZERO.raw() => 0,
        None => REMOVED_WORD,
    }
}

/// The content a word of real memory encodes, if it encodes one ([`content_word`]).
pub const fn word_content(w: u64) -> Option<Content> {
    if w == 0 {
        Some(Content::ZERO)
    } else if w == REMOVED_WORD {
        Some(Content::NONE)
    } else if w & !0xffff == MARKER_HIGH && (w & 0xffff) as u16 <= Content::MAX_TAG {
        Some(Content::data((w & 0xffff) as u16))
    } else {
        None
    }
}

/// What a 4K page of real memory holds, read word by word: the content every word encodes,
/// or `None` when the words differ or encode nothing.
pub fn page_content(words: impl IntoIterator<Item = u64>) -> Option<Content> {
    let mut it = words.into_iter();
    let first = word_content(it.next()?)?;
    let w = content_word(first);
    if it.all(|x| x == w) {
        Some(first)
    } else {
        None
    }
}

/// The level code [`Call::AccessBegin`] carries.
pub const fn level_code(l: PageLevel) -> u64 {
    match l {
        PageLevel::Size4K => 0,
        PageLevel::Size2M => 1,
        PageLevel::Size1G => 2,
    }
}

/// The level with this code.
pub const fn level_from_code(c: u64) -> Option<PageLevel> {
    Some(match c {
        0 => PageLevel::Size4K,
        1 => PageLevel::Size2M,
        2 => PageLevel::Size1G,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// The report.

/// What a vCPU's payload saw, counted on its side of the instructions; the VMM counts the same
/// from the model's steps and a difference is an error ([`Report::differences`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Report {
    /// The vCPU.
    pub vcpu: u32,
    /// ACCEPTs that retired (as the payload saw them: one per TDCALL that returned).
    pub accepts: u64,
    /// Of those, with status SUCCESS.
    pub accept_success: u64,
    /// With TDX_PAGE_SIZE_MISMATCH.
    pub size_mismatch: u64,
    /// With TDX_PAGE_ALREADY_ACCEPTED.
    pub already_accepted: u64,
    /// With TDX_OPERAND_BUSY.
    pub busy: u64,
    /// With any other status.
    pub other_status: u64,
    /// Bytes accepted at 4K, 2M and 1G (the levels the guest learned work).
    pub accepted_bytes: [u64; 3],
    /// 4K pages of markers written.
    pub pages_written: u64,
    /// 4K pages of markers read back intact.
    pub pages_verified: u64,
    /// Verifies that found a page without its marker.
    pub mismatches: u64,
    /// Reads of one page.
    pub reads: u64,
    /// #VEs taken.
    pub virtualization_exceptions: u64,
    /// Stages finished.
    pub stages_done: u32,
    /// How the program ended ([`EndCode::code`]).
    pub end: u32,
    /// The end's detail word (a status, a GPA, an error code).
    pub detail: u64,
}

/// Why a report is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportError {
    /// Too short.
    Size,
    /// Not written (magic).
    Magic,
    /// The checksum does not match.
    Checksum,
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReportError::Size => "the report area is too short",
            ReportError::Magic => "no report was written",
            ReportError::Checksum => "the report's checksum does not match",
        })
    }
}

/// Words of a report.
pub const REPORT_WORDS: usize = REPORT_SIZE / 8;

/// FNV-1a over 64-bit words.
fn word_checksum(words: &[u64]) -> u64 {
    words.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, w| {
        (h ^ w).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Report {
    fn words(&self) -> [u64; 20] {
        [
            u64::from(self.vcpu),
            self.accepts,
            self.accept_success,
            self.size_mismatch,
            self.already_accepted,
            self.busy,
            self.other_status,
            self.accepted_bytes[0],
            self.accepted_bytes[1],
            self.accepted_bytes[2],
            self.pages_written,
            self.pages_verified,
            self.mismatches,
            self.reads,
            self.virtualization_exceptions,
            u64::from(self.stages_done),
            u64::from(self.end),
            self.detail,
            0,
            0,
        ]
    }

    /// The report as [`REPORT_WORDS`] little-endian words: the magic, the fields, zeros, and
    /// a checksum (FNV-1a over the words before it, word by word, so a payload can afford to
    /// rewrite its report after every operation).
    pub fn to_words(&self) -> [u64; REPORT_WORDS] {
        let mut out = [0u64; REPORT_WORDS];
        for (o, w) in out
            .iter_mut()
            .zip(core::iter::once(REPORT_MAGIC).chain(self.words()))
        {
            *o = w;
        }
        let sum = word_checksum(out.get(..REPORT_WORDS - 1).unwrap_or(&[]));
        if let Some(last) = out.last_mut() {
            *last = sum;
        }
        out
    }

    /// Writes the report into `out` (at least [`REPORT_SIZE`] bytes).
    pub fn encode(&self, out: &mut [u8]) -> Result<(), ReportError> {
        let b = out.get_mut(..REPORT_SIZE).ok_or(ReportError::Size)?;
        for (d, w) in b.chunks_exact_mut(8).zip(self.to_words()) {
            d.copy_from_slice(&w.to_le_bytes());
        }
        Ok(())
    }

    /// Reads a report (from guest memory: any bytes).
    pub fn decode(b: &[u8]) -> Result<Report, ReportError> {
        let b = b.get(..REPORT_SIZE).ok_or(ReportError::Size)?;
        let mut words = [0u64; REPORT_WORDS];
        for (w, c) in words.iter_mut().zip(b.chunks_exact(8)) {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            *w = u64::from_le_bytes(a);
        }
        let w = |i: usize| words.get(i).copied().unwrap_or(0);
        if w(0) != REPORT_MAGIC {
            return Err(ReportError::Magic);
        }
        if w(REPORT_WORDS - 1) != word_checksum(words.get(..REPORT_WORDS - 1).unwrap_or(&[])) {
            return Err(ReportError::Checksum);
        }
        Ok(Report {
            vcpu: w(1) as u32,
            accepts: w(2),
            accept_success: w(3),
            size_mismatch: w(4),
            already_accepted: w(5),
            busy: w(6),
            other_status: w(7),
            accepted_bytes: [w(8), w(9), w(10)],
            pages_written: w(11),
            pages_verified: w(12),
            mismatches: w(13),
            reads: w(14),
            virtualization_exceptions: w(15),
            stages_done: w(16) as u32,
            end: w(17) as u32,
            detail: w(18),
        })
    }

    /// Counts what a guest operation that retired with `ev` adds (the payload and the VMM both
    /// count through this, each from its own side of the instructions).
    pub fn count(&mut self, op: crate::guest::GuestOp, ev: crate::guest::GuestEvent) {
        use crate::abi::{AcceptOperand, StatusCode};
        use crate::guest::{GuestEvent, GuestOp};
        let add = |x: &mut u64, n: u64| *x = x.saturating_add(n);
        match (op, ev) {
            (GuestOp::Accept(_) | GuestOp::AcceptRaw(_), GuestEvent::Status(s)) => {
                add(&mut self.accepts, 1);
                let rcx = match op {
                    GuestOp::Accept(a) => a.encode(),
                    GuestOp::AcceptRaw(r) => r,
                    _ => 0,
                };
                match s.code() {
                    StatusCode::Success if !s.is_error() => {
                        add(&mut self.accept_success, 1);
                        if let Ok(a) = AcceptOperand::decode(rcx) {
                            let l = a.level;
                            if let Some(b) = self.accepted_bytes.get_mut(level_code(l) as usize) {
                                add(b, l.bytes());
                            }
                        }
                    }
                    StatusCode::PageSizeMismatch => add(&mut self.size_mismatch, 1),
                    StatusCode::PageAlreadyAccepted => add(&mut self.already_accepted, 1),
                    StatusCode::OperandBusy => add(&mut self.busy, 1),
                    _ => add(&mut self.other_status, 1),
                }
            }
            (GuestOp::Write { level, .. }, GuestEvent::Wrote) => {
                add(&mut self.pages_written, u64::from(level.pages_4k()));
            }
            (GuestOp::Verify { level, .. }, GuestEvent::Verified) => {
                add(&mut self.pages_verified, u64::from(level.pages_4k()));
            }
            (GuestOp::Verify { .. }, GuestEvent::Mismatch { .. }) => add(&mut self.mismatches, 1),
            (GuestOp::Read(_), GuestEvent::Read(_)) => add(&mut self.reads, 1),
            (_, GuestEvent::VirtualizationException) => {
                add(&mut self.virtualization_exceptions, 1);
            }
            _ => {}
        }
    }

    /// The fields in which `self` (the payload's report) and `model` (the VMM's count) differ,
    /// by name.
    pub fn differences(&self, model: &Report) -> impl Iterator<Item = &'static str> {
        const NAMES: [&str; 20] = [
            "vcpu",
            "accepts retired",
            "accepts succeeded",
            "PAGE_SIZE_MISMATCH",
            "PAGE_ALREADY_ACCEPTED",
            "OPERAND_BUSY",
            "other statuses",
            "bytes accepted at 4K",
            "bytes accepted at 2M",
            "bytes accepted at 1G",
            "marker pages written",
            "marker pages verified",
            "mismatches",
            "reads",
            "#VEs",
            "stages done",
            "end",
            "end detail",
            "",
            "",
        ];
        let (a, b) = (self.words(), model.words());
        (0..NAMES.len()).filter_map(move |i| {
            let differ = a.get(i) != b.get(i);
            NAMES.get(i).copied().filter(|_| differ)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: GuestKind, start: u64, end: u64) -> ProgramSpec {
        ProgramSpec {
            kind,
            start: Gpa(start),
            end: Gpa(end),
            tag: 3,
            markers: true,
            verify_only: false,
            stride: None,
        }
    }

    fn info() -> BootInfo {
        let mut programs = [VcpuProgram::default(); MAX_BOOT_VCPUS];
        programs[0].stages[0] = Some(spec(GuestKind::Ovmf, 0x4000_0000, 0x4040_0000));
        programs[0].stages[1] = Some(ProgramSpec {
            stride: Some(StrideSpec {
                index: 1,
                count: 3,
                chunk_shift: 21,
            }),
            verify_only: true,
            ..spec(GuestKind::LinuxLazy, 0x4000_0000, 0x4020_0000)
        });
        programs[1].stages[0] = Some(spec(GuestKind::Adversarial, 0x4020_1000, 0x4020_2000));
        BootInfo {
            flags: 0,
            window: (Gpa(0x4000_0000), Gpa(0x4080_0000)),
            report: Gpa(0x8000),
            vcpus: 2,
            acpi: Gpa(0xe_0000),
            programs,
        }
    }

    #[test]
    fn boot_block_round_trips() {
        let mut buf = [0u8; BOOT_MAX_SIZE];
        let n = info().encode(&mut buf).unwrap();
        assert_eq!(n, BootInfo::size_for(2));
        assert_eq!(BootInfo::decode(&buf[..n]), Ok(info()));
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let mut buf = [0u8; BOOT_MAX_SIZE];
        let n = info().encode(&mut buf).unwrap();
        for i in 0..n {
            for bit in 0..8 {
                let mut b = buf;
                b[i] ^= 1 << bit;
                assert!(BootInfo::decode(&b[..n]).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn bad_fields_are_named() {
        // Re-checksummed after the change, so the field check is what refuses it.
        let edit = |at: usize, v: &[u8]| {
            let mut buf = [0u8; BOOT_MAX_SIZE];
            let n = info().encode(&mut buf).unwrap();
            buf[at..at + v.len()].copy_from_slice(v);
            let sum = checksum(&buf[..n], CHECKSUM_AT);
            buf[CHECKSUM_AT..CHECKSUM_AT + 8].copy_from_slice(&sum.to_le_bytes());
            BootInfo::decode(&buf[..n])
        };
        let stage0 = BOOT_HEADER_SIZE + 8;
        assert_eq!(edit(8, &1u32.to_le_bytes()), Err(BootError::Version(1)));
        assert_eq!(edit(8, &3u32.to_le_bytes()), Err(BootError::Version(3)));
        assert_eq!(edit(48, &0xe_0002u64.to_le_bytes()), Err(BootError::Acpi));
        assert_eq!(edit(48, &(1u64 << 32).to_le_bytes()), Err(BootError::Acpi));
        assert_eq!(
            edit(48, &0x4000_1000u64.to_le_bytes()),
            Err(BootError::Acpi)
        );
        assert!(edit(48, &0u64.to_le_bytes()).is_ok());
        assert_eq!(edit(20, &4u32.to_le_bytes()), Err(BootError::Flags));
        assert_eq!(edit(16, &3u32.to_le_bytes()), Err(BootError::Vcpus));
        assert_eq!(edit(24, &0x1000u64.to_le_bytes()), Err(BootError::Window));
        assert_eq!(
            edit(40, &0x4000_0000u64.to_le_bytes()),
            Err(BootError::Report)
        );
        assert_eq!(edit(stage0 + 16, &[0]), Err(BootError::Kind(0, 0)));
        assert_eq!(edit(stage0 + 16, &[13]), Err(BootError::Kind(0, 0)));
        assert_eq!(
            edit(stage0 + 8, &0x4100_0000u64.to_le_bytes()),
            Err(BootError::Range(0, 0))
        );
        assert_eq!(
            edit(stage0 + 22, &0u16.to_le_bytes()),
            Err(BootError::Stride(0, 0))
        );
        let stage1 = stage0 + BOOT_STAGE_SIZE;
        assert_eq!(edit(stage1 + 19, &[1]), Err(BootError::Stride(0, 1)));
        assert_eq!(edit(stage1 + 31, &[1]), Err(BootError::Reserved(0, 1)));
        assert_eq!(edit(BOOT_HEADER_SIZE, &[0]), Err(BootError::Stages(0)));
        assert_eq!(edit(BOOT_HEADER_SIZE, &[4]), Err(BootError::Stages(0)));
        assert_eq!(
            edit(BOOT_HEADER_SIZE + 8 + 2 * BOOT_STAGE_SIZE, &[1]),
            Err(BootError::Reserved(0, 2))
        );
    }

    #[test]
    fn short_and_garbage_blocks_are_refused() {
        let mut buf = [0u8; BOOT_MAX_SIZE];
        let n = info().encode(&mut buf).unwrap();
        for cut in 0..n {
            assert!(BootInfo::decode(&buf[..cut]).is_err());
        }
        assert_eq!(BootInfo::decode(&[0xff; 64]), Err(BootError::Magic));
        assert_eq!(BootInfo::decode(&[]), Err(BootError::Size));
    }

    #[test]
    fn boot_error_codes_round_trip() {
        for e in [
            BootError::Size,
            BootError::Checksum,
            BootError::Reserved(63, 2),
            BootError::Kind(5, 1),
            BootError::Stride(1, 0),
            BootError::Space,
        ] {
            assert_eq!(BootError::from_code(e.code()), Some(e));
        }
        assert_eq!(BootError::from_code(u64::MAX), None);
    }

    #[test]
    fn content_words_round_trip() {
        for c in [
            Content::NONE,
            Content::ZERO,
            Content::data(0),
            Content::data(7),
            Content::data(Content::MAX_TAG),
        ] {
            assert_eq!(word_content(content_word(c)), Some(c));
            assert_eq!(page_content([content_word(c); 512]), Some(c));
        }
        let mut torn = [content_word(Content::data(3)); 512];
        torn[100] = 0;
        assert_eq!(page_content(torn), None);
        assert_eq!(word_content(0x1234), None);
    }

    #[test]
    fn reports_round_trip_and_name_differences() {
        let r = Report {
            vcpu: 2,
            accepts: 9,
            accept_success: 5,
            accepted_bytes: [4096, 2 << 20, 0],
            end: 1,
            detail: 0xc000_0b0b_0000_0001,
            ..Report::default()
        };
        let mut buf = [0u8; REPORT_SIZE];
        r.encode(&mut buf).unwrap();
        assert_eq!(Report::decode(&buf), Ok(r));
        buf[20] ^= 1;
        assert_eq!(Report::decode(&buf), Err(ReportError::Checksum));
        assert_eq!(Report::decode(&[0u8; REPORT_SIZE]), Err(ReportError::Magic));
        let other = Report { busy: 1, ..r };
        let mut d = r.differences(&other);
        assert_eq!(d.next(), Some("OPERAND_BUSY"));
        assert_eq!(d.next(), None);
        assert_eq!(r.differences(&r).next(), None);
    }

    #[test]
    fn call_and_answer_codes_round_trip() {
        for c in [
            Call::AccessBegin,
            Call::AccessEnd,
            Call::Unit,
            Call::ProgramEnd,
            Call::Fault,
        ] {
            assert_eq!(Call::from_number(c.number()), Some(c));
        }
        assert_eq!(Call::from_number(0), None);
        for a in [AccessAnswer::Go, AccessAnswer::Stop] {
            assert_eq!(AccessAnswer::from_code(a.code()), Some(a));
        }
        // Version 1's #VE and retry answers are gone: a payload that gets them stops.
        assert_eq!(AccessAnswer::from_code(1), None);
        assert_eq!(AccessAnswer::from_code(2), None);
        for k in GuestKind::ALL {
            assert_eq!(kind_from_code(kind_code(k)), Some(k));
        }
        let req = AccessRequest {
            kind: AccessKind::Verify,
            level: PageLevel::Size2M,
            content: Content::data(9),
            gpa: Gpa(0x4020_0000),
        };
        let (a, b) = req.encode();
        assert_eq!(AccessRequest::decode(a, b), Some(req));
        assert_eq!(AccessRequest::decode(u64::MAX, 0), None);
        assert_eq!(AccessRequest::decode(0, 0), None);
        for found in [None, Some(Content::ZERO), Some(Content::data(3))] {
            for ve in [false, true] {
                let r = AccessResult {
                    kind: AccessKind::Read,
                    found,
                    page: Gpa(0x4000_1000),
                    ve,
                };
                let (a, b) = r.encode();
                assert_eq!(AccessResult::decode(a, b), Some(r));
            }
        }
        assert_eq!(AccessResult::decode(1 | 1 << 10, 0), None);
        assert_eq!(AccessResult::decode(u64::MAX, 0), None);
    }
}
