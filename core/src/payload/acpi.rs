//! The ACPI tables a TD payload brings its other vCPUs up with: RSDP → XSDT → MADT, whose
//! Processor Local APIC and Local x2APIC entries name the vCPUs and whose Multiprocessor Wakeup
//! structure (type 0x10) names the mailbox through which the boot vCPU wakes the others — the
//! only way to start an application processor in a TD (no INIT-SIPI-SIPI; TDVF and td-shim
//! provide the mailbox, td-shim doc/tdshim_spec.md "Multiple Processor Support").
//!
//! Layouts: ACPI 6.5 §5.2.5.3 (RSDP, revision 2: 36 bytes), §5.2.6 (system description table
//! header, 36 bytes), §5.2.8 (XSDT), §5.2.12 (MADT: the header, the local interrupt controller
//! address and flags, then entries), Table 5.45 (Multiprocessor Wakeup structure: type 0x10,
//! length 16 for mailbox version 0, the mailbox's 4K-aligned address at offset 8) and Table 5.46
//! (the mailbox: Command u16 at 0 — 0 noop, 1 wakeup —, ApicId u32 at 4, WakeupVector u64 at 8,
//! 4 KiB in all). The OS side of the protocol (Linux arch/x86/kernel/acpi/madt_wakeup.c,
//! `acpi_wakeup_cpu`): write ApicId and WakeupVector, then Command = 1 with release ordering,
//! then wait for the firmware to clear Command, which acknowledges the wakeup.
//!
//! [`build`] writes the tables (the hugesept VMM's firmware side); [`read_madt`] and
//! [`parse_madt`] read them back (the payload's side), taking any bytes: a table that does not
//! hold together is an [`AcpiError`].

use core::fmt;

use super::bytes::{array, byte_sum, put, u8_at, u16_at, u32_at, u64_at};

/// The RSDP's signature.
pub const RSDP_SIGNATURE: [u8; 8] = *b"RSD PTR ";
/// The RSDP's size (revision 2 and later).
pub const RSDP_SIZE: usize = 36;
/// A system description table's header.
pub const SDT_HEADER_SIZE: usize = 36;
/// The MADT's signature.
pub const MADT_SIGNATURE: [u8; 4] = *b"APIC";
/// The XSDT's signature.
pub const XSDT_SIGNATURE: [u8; 4] = *b"XSDT";
/// MADT entry: Processor Local APIC.
pub const MADT_LOCAL_APIC: u8 = 0;
/// MADT entry: Processor Local x2APIC.
pub const MADT_LOCAL_X2APIC: u8 = 9;
/// MADT entry: Multiprocessor Wakeup.
pub const MADT_MP_WAKEUP: u8 = 0x10;
/// The mailbox's size.
pub const MAILBOX_SIZE: usize = 4096;
/// Mailbox offset: Command (u16).
pub const MAILBOX_COMMAND: usize = 0;
/// Mailbox offset: ApicId (u32).
pub const MAILBOX_APIC_ID: usize = 4;
/// Mailbox offset: WakeupVector (u64).
pub const MAILBOX_WAKEUP_VECTOR: usize = 8;
/// Mailbox command: nothing to do.
pub const MAILBOX_NOOP: u16 = 0;
/// Mailbox command: wake the processor named by ApicId at WakeupVector.
pub const MAILBOX_WAKEUP: u16 = 1;
/// vCPUs a MADT read here may name (the boot block's limit).
pub const MAX_CPUS: usize = super::MAX_BOOT_VCPUS;
/// The largest table read here: a MADT with [`MAX_CPUS`] x2APIC entries and the wakeup
/// structure fits in a few hundred bytes; anything longer is refused rather than truncated.
pub const MAX_TABLE: usize = 4096;

/// Why tables could not be built or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// The output buffer is too small for the tables.
    NoRoom,
    /// More processors than [`MAX_CPUS`].
    TooManyCpus,
    /// Bytes at this GPA could not be read.
    Unreadable(u64),
    /// The RSDP's signature, revision, length or checksums are wrong.
    BadRsdp,
    /// A table's signature is not the one expected there.
    BadSignature([u8; 4]),
    /// A table's length is below its header or above [`MAX_TABLE`].
    BadLength([u8; 4]),
    /// A table's bytes do not sum to zero.
    BadChecksum([u8; 4]),
    /// A MADT entry runs past the table or has a length its type does not allow.
    BadEntry(u8),
    /// The XSDT names no MADT.
    NoMadt,
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn sig(s: &[u8; 4]) -> &str {
            core::str::from_utf8(s).unwrap_or("????")
        }
        match self {
            AcpiError::NoRoom => f.write_str("no room for the ACPI tables"),
            AcpiError::TooManyCpus => write!(f, "more than {MAX_CPUS} processors"),
            AcpiError::Unreadable(gpa) => write!(f, "ACPI bytes at {gpa:#x} cannot be read"),
            AcpiError::BadRsdp => f.write_str("the RSDP is malformed"),
            AcpiError::BadSignature(s) => write!(f, "unexpected table signature {}", sig(s)),
            AcpiError::BadLength(s) => write!(f, "the {} table's length is out of range", sig(s)),
            AcpiError::BadChecksum(s) => write!(f, "the {} table's checksum is wrong", sig(s)),
            AcpiError::BadEntry(t) => write!(f, "a MADT entry of type {t:#x} is malformed"),
            AcpiError::NoMadt => f.write_str("the XSDT names no MADT"),
        }
    }
}

/// What a payload needs from the MADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Madt {
    /// The Multiprocessor Wakeup mailbox's GPA and version, if the table has the structure.
    pub mailbox: Option<(u64, u16)>,
    apic_ids: [u32; MAX_CPUS],
    count: usize,
}

impl Madt {
    /// The APIC IDs of the enabled processors, in table order.
    pub fn apic_ids(&self) -> &[u32] {
        self.apic_ids.get(..self.count).unwrap_or(&[])
    }

    fn push(&mut self, id: u32) -> Result<(), AcpiError> {
        let slot = self
            .apic_ids
            .get_mut(self.count)
            .ok_or(AcpiError::TooManyCpus)?;
        *slot = id;
        self.count = self.count.saturating_add(1);
        Ok(())
    }
}

/// Writes a system description table header with `signature` and `length`; the checksum is
/// filled by [`seal`].
fn header(t: &mut [u8], signature: [u8; 4], length: u32, revision: u8) -> bool {
    put(t, 0, &signature)
        && put(t, 4, &length.to_le_bytes())
        && put(t, 8, &[revision, 0])
        && put(t, 10, b"HSEPT ")
        && put(t, 16, b"HUGESEPT")
        && put(t, 24, &1u32.to_le_bytes())
        && put(t, 28, b"HSPT")
        && put(t, 32, &1u32.to_le_bytes())
}

/// Sets the checksum byte at `at` so that `t`'s bytes sum to zero.
fn seal(t: &mut [u8], at: usize) {
    if let Some(b) = t.get_mut(at) {
        *b = 0;
    }
    let sum = byte_sum(t);
    if let Some(b) = t.get_mut(at) {
        *b = 0u8.wrapping_sub(sum);
    }
}

/// The offsets of the tables [`build`] writes, from the start of its buffer.
const XSDT_AT: usize = 64;
const MADT_AT: usize = 128;

/// Where [`build`] put the tables, as offsets into its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Bytes used in all.
    pub len: usize,
    /// The MADT: [start, end).
    pub madt: (usize, usize),
}

/// Writes an RSDP, an XSDT naming one MADT, and that MADT — a Processor Local APIC entry (or a
/// Local x2APIC entry, for IDs above 254) per ID in `apic_ids`, enabled, and a Multiprocessor
/// Wakeup structure (version 0) naming the mailbox at `mailbox` — into `out`, which lies at
/// GPA `at`. The RSDP is at `at`. Returns where the tables went.
pub fn build(out: &mut [u8], at: u64, apic_ids: &[u32], mailbox: u64) -> Result<Layout, AcpiError> {
    if apic_ids.len() > MAX_CPUS {
        return Err(AcpiError::TooManyCpus);
    }
    let gpa = |off: usize| at.checked_add(off as u64).ok_or(AcpiError::NoRoom);
    // MADT: header, local interrupt controller address (the default 0xFEE00000), flags 0.
    let entries: usize = apic_ids
        .iter()
        .map(|&id| if id < 0xff { 8usize } else { 16 })
        .fold(16usize, |a, b| a.saturating_add(b));
    let madt_len = SDT_HEADER_SIZE.saturating_add(8).saturating_add(entries);
    let end = MADT_AT.saturating_add(madt_len);
    let out = out.get_mut(..end).ok_or(AcpiError::NoRoom)?;
    out.fill(0);
    let madt = out.get_mut(MADT_AT..end).ok_or(AcpiError::NoRoom)?;
    let mut ok = header(madt, MADT_SIGNATURE, madt_len as u32, 5)
        && put(madt, 36, &0xfee0_0000u32.to_le_bytes())
        && put(madt, 40, &0u32.to_le_bytes());
    let mut off = SDT_HEADER_SIZE.saturating_add(8);
    for (uid, &id) in apic_ids.iter().enumerate() {
        if id < 0xff {
            ok &= put(
                madt,
                off,
                &[MADT_LOCAL_APIC, 8, uid as u8, id as u8, 1, 0, 0, 0],
            );
            off = off.saturating_add(8);
        } else {
            ok &= put(madt, off, &[MADT_LOCAL_X2APIC, 16, 0, 0])
                && put(madt, off.saturating_add(4), &id.to_le_bytes())
                && put(madt, off.saturating_add(8), &1u32.to_le_bytes())
                && put(madt, off.saturating_add(12), &(uid as u32).to_le_bytes());
            off = off.saturating_add(16);
        }
    }
    ok &= put(madt, off, &[MADT_MP_WAKEUP, 16, 0, 0, 0, 0, 0, 0])
        && put(madt, off.saturating_add(8), &mailbox.to_le_bytes());
    seal(madt, 9);
    // XSDT: one entry, the MADT.
    let xsdt = out
        .get_mut(XSDT_AT..XSDT_AT.saturating_add(SDT_HEADER_SIZE + 8))
        .ok_or(AcpiError::NoRoom)?;
    ok &= header(xsdt, XSDT_SIGNATURE, (SDT_HEADER_SIZE + 8) as u32, 1)
        && put(xsdt, SDT_HEADER_SIZE, &gpa(MADT_AT)?.to_le_bytes());
    seal(xsdt, 9);
    // RSDP, revision 2: the first 20 bytes sum to zero, and all 36.
    let rsdp = out.get_mut(..RSDP_SIZE).ok_or(AcpiError::NoRoom)?;
    ok &= put(rsdp, 0, &RSDP_SIGNATURE)
        && put(rsdp, 9, b"HSEPT ")
        && put(rsdp, 15, &[2])
        && put(rsdp, 20, &(RSDP_SIZE as u32).to_le_bytes())
        && put(rsdp, 24, &gpa(XSDT_AT)?.to_le_bytes());
    if let Some(first) = rsdp.get_mut(..20) {
        seal(first, 8);
    }
    seal(rsdp, 32);
    if ok {
        Ok(Layout {
            len: end,
            madt: (MADT_AT, end),
        })
    } else {
        Err(AcpiError::NoRoom)
    }
}

/// Reads the table at `gpa` into `buf` after checking its signature (when `want` names one),
/// length and checksum; the table's bytes.
fn read_table<'b>(
    gpa: u64,
    want: Option<[u8; 4]>,
    buf: &'b mut [u8; MAX_TABLE],
    read: &mut impl FnMut(u64, &mut [u8]) -> bool,
) -> Result<&'b [u8], AcpiError> {
    let head = buf
        .get_mut(..SDT_HEADER_SIZE)
        .ok_or(AcpiError::Unreadable(gpa))?;
    if !read(gpa, head) {
        return Err(AcpiError::Unreadable(gpa));
    }
    let sig: [u8; 4] = array(buf, 0).ok_or(AcpiError::Unreadable(gpa))?;
    if want.is_some_and(|w| w != sig) {
        return Err(AcpiError::BadSignature(sig));
    }
    let len = u32_at(buf, 4).ok_or(AcpiError::BadLength(sig))? as usize;
    if !(SDT_HEADER_SIZE..=MAX_TABLE).contains(&len) {
        return Err(AcpiError::BadLength(sig));
    }
    let all = buf.get_mut(..len).ok_or(AcpiError::BadLength(sig))?;
    if !read(gpa, all) {
        return Err(AcpiError::Unreadable(gpa));
    }
    if byte_sum(all) != 0 {
        return Err(AcpiError::BadChecksum(sig));
    }
    Ok(all)
}

/// Follows the RSDP at `rsdp` to the XSDT and the MADT and reads the MADT, through
/// `read(gpa, buf)`, which fills `buf` with the guest's bytes at `gpa` or says it cannot.
pub fn read_madt(
    rsdp: u64,
    read: &mut impl FnMut(u64, &mut [u8]) -> bool,
) -> Result<Madt, AcpiError> {
    let mut r = [0u8; RSDP_SIZE];
    if !read(rsdp, &mut r) {
        return Err(AcpiError::Unreadable(rsdp));
    }
    let first = r.get(..20).ok_or(AcpiError::BadRsdp)?;
    if array::<8>(&r, 0) != Some(RSDP_SIGNATURE)
        || u8_at(&r, 15).is_none_or(|rev| rev < 2)
        || u32_at(&r, 20) != Some(RSDP_SIZE as u32)
        || byte_sum(first) != 0
        || byte_sum(&r) != 0
    {
        return Err(AcpiError::BadRsdp);
    }
    let xsdt_at = u64_at(&r, 24).ok_or(AcpiError::BadRsdp)?;
    let mut buf = [0u8; MAX_TABLE];
    let xsdt = read_table(xsdt_at, Some(XSDT_SIGNATURE), &mut buf, read)?;
    let entries = xsdt.get(SDT_HEADER_SIZE..).unwrap_or(&[]);
    let mut pointers = [0u64; 32];
    let mut n = 0usize;
    for (slot, c) in pointers.iter_mut().zip(entries.chunks_exact(8)) {
        *slot = u64_at(c, 0).unwrap_or(0);
        n = n.saturating_add(1);
    }
    let mut table = [0u8; MAX_TABLE];
    for &p in pointers.get(..n).unwrap_or(&[]) {
        let mut head = [0u8; 4];
        if !read(p, &mut head) {
            return Err(AcpiError::Unreadable(p));
        }
        if head == MADT_SIGNATURE {
            let madt = read_table(p, Some(MADT_SIGNATURE), &mut table, read)?;
            return parse_madt(madt);
        }
    }
    Err(AcpiError::NoMadt)
}

/// Reads a MADT from its bytes (checksum included): the enabled processors' APIC IDs and the
/// wakeup mailbox.
pub fn parse_madt(t: &[u8]) -> Result<Madt, AcpiError> {
    if array::<4>(t, 0) != Some(MADT_SIGNATURE) {
        return Err(AcpiError::BadSignature(array(t, 0).unwrap_or([0; 4])));
    }
    let len = u32_at(t, 4).ok_or(AcpiError::BadLength(MADT_SIGNATURE))? as usize;
    let t = t
        .get(..len)
        .filter(|_| len >= SDT_HEADER_SIZE.saturating_add(8))
        .ok_or(AcpiError::BadLength(MADT_SIGNATURE))?;
    if byte_sum(t) != 0 {
        return Err(AcpiError::BadChecksum(MADT_SIGNATURE));
    }
    let mut m = Madt {
        mailbox: None,
        apic_ids: [0; MAX_CPUS],
        count: 0,
    };
    let mut off = SDT_HEADER_SIZE.saturating_add(8);
    while off < len {
        let ty = u8_at(t, off).ok_or(AcpiError::BadEntry(0))?;
        let elen = usize::from(u8_at(t, off.saturating_add(1)).ok_or(AcpiError::BadEntry(ty))?);
        let entry = t
            .get(off..off.saturating_add(elen))
            .filter(|_| elen >= 2)
            .ok_or(AcpiError::BadEntry(ty))?;
        match ty {
            MADT_LOCAL_APIC => {
                let (Some(id), Some(flags)) = (u8_at(entry, 3), u32_at(entry, 4)) else {
                    return Err(AcpiError::BadEntry(ty));
                };
                if elen != 8 {
                    return Err(AcpiError::BadEntry(ty));
                }
                if flags & 1 != 0 {
                    m.push(u32::from(id))?;
                }
            }
            MADT_LOCAL_X2APIC => {
                let (Some(id), Some(flags)) = (u32_at(entry, 4), u32_at(entry, 8)) else {
                    return Err(AcpiError::BadEntry(ty));
                };
                if elen != 16 {
                    return Err(AcpiError::BadEntry(ty));
                }
                if flags & 1 != 0 {
                    m.push(id)?;
                }
            }
            MADT_MP_WAKEUP => {
                let (Some(version), Some(mailbox)) = (u16_at(entry, 2), u64_at(entry, 8)) else {
                    return Err(AcpiError::BadEntry(ty));
                };
                if elen < 16 {
                    return Err(AcpiError::BadEntry(ty));
                }
                m.mailbox = Some((mailbox, version));
            }
            _ => {}
        }
        off = off.saturating_add(elen);
    }
    Ok(m)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    const AT: u64 = 0xe_0000;

    fn reader(mem: &[u8]) -> impl FnMut(u64, &mut [u8]) -> bool + '_ {
        move |gpa, buf| {
            let Some(off) = gpa.checked_sub(AT).map(|o| o as usize) else {
                return false;
            };
            match mem.get(off..off + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }

    #[test]
    fn built_tables_read_back() {
        let mut mem = [0u8; 4096];
        let ids = [0u32, 1, 2, 300];
        let layout = build(&mut mem, AT, &ids, 0x9000).unwrap();
        assert!(layout.len <= 4096);
        let m = read_madt(AT, &mut reader(&mem)).unwrap();
        assert_eq!(m.apic_ids(), &ids);
        assert_eq!(m.mailbox, Some((0x9000, 0)));
        assert_eq!(parse_madt(&mem[layout.madt.0..layout.madt.1]), Ok(m));
    }

    #[test]
    fn damaged_tables_are_refused() {
        let mut mem = [0u8; 4096];
        build(&mut mem, AT, &[0, 1], 0x9000).unwrap();
        // Every single-byte change in the RSDP, the XSDT or the MADT is refused or, where the
        // byte is not checked (OEM fields are covered by the checksum), caught by it.
        for at in (0..RSDP_SIZE)
            .chain(XSDT_AT..XSDT_AT + 44)
            .chain(MADT_AT..MADT_AT + 76)
        {
            let mut m = mem;
            m[at] ^= 0x41;
            assert!(
                read_madt(AT, &mut reader(&m)).is_err(),
                "byte {at} changed and still read"
            );
        }
        // Arbitrary bytes never panic.
        let mut x = 0x1234_5678_9abc_def1u64;
        for _ in 0..2000 {
            let mut m = mem;
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                m[(x as usize) % 4096] = (x >> 32) as u8;
            }
            let _ = read_madt(AT, &mut reader(&m));
            let _ = parse_madt(&m[MADT_AT..]);
        }
        assert_eq!(
            read_madt(AT + 1, &mut reader(&mem)),
            Err(AcpiError::BadRsdp)
        );
        assert_eq!(
            build(&mut [0u8; 100], AT, &[0], 0x9000),
            Err(AcpiError::NoRoom)
        );
        assert_eq!(
            build(&mut mem, AT, &[0; MAX_CPUS + 1], 0x9000),
            Err(AcpiError::TooManyCpus)
        );
    }
}
