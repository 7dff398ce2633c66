//! The HOB list td-shim hands an ELF payload in RDI (td-shim src/bin/td-shim/main.rs
//! `boot_builtin_payload`: `extern "sysv64" fn(hob: u64, payload: u64)`), as far as a payload
//! needs it: the memory map and the ACPI tables, and — only from the hugesept VMM when it
//! enters the payload the way td-shim does — the hugesept boot block.
//!
//! Formats (td-shim-interface src/td_uefi_pi/pi/hob.rs, td-shim src/bin/td-shim/payload_hob.rs,
//! src/e820.rs): every HOB starts with {type u16, length u16, reserved u32}; the list starts
//! with the PHIT (type 1, 56 bytes; `efi_end_of_hob_list` at offset 48 is the GPA one past the
//! End HOB) and ends with the End HOB (type 0xFFFF). td-shim's payload HOB carries the memory
//! map as a GUID extension HOB (type 4: the GUID at offset 8, data from 24) holding packed E820
//! entries {addr u64, size u64, type u32} (type 1 memory, 2 reserved, 3 ACPI, 4 NVS,
//! 8 unaccepted), and each ACPI table as a GUID extension HOB of its own. A VMM's TD HOB
//! describes memory with Resource Descriptor HOBs (type 3, 48 bytes: resource type u32 at 24 —
//! 0 system memory, 7 unaccepted —, start u64 at 32, length u64 at 40); both are read.

use core::fmt;

use super::bytes::{array, put, u16_at, u32_at, u64_at};

/// HOB type: Handoff Information Table (PHIT).
pub const HOB_HANDOFF: u16 = 1;
/// HOB type: Resource Descriptor.
pub const HOB_RESOURCE: u16 = 3;
/// HOB type: GUID extension.
pub const HOB_GUID: u16 = 4;
/// HOB type: End of list.
pub const HOB_END: u16 = 0xffff;
/// The PHIT's size.
pub const PHIT_SIZE: usize = 56;
/// Resource type: system memory (private, added at build time).
pub const RESOURCE_SYSTEM_MEMORY: u32 = 0;
/// Resource type: memory the TD has to accept (EFI_RESOURCE_MEMORY_UNACCEPTED).
pub const RESOURCE_UNACCEPTED: u32 = 7;
/// E820 type: usable memory.
pub const E820_MEMORY: u32 = 1;
/// E820 type: memory the TD has to accept (td-shim src/e820.rs `Unaccepted`).
pub const E820_UNACCEPTED: u32 = 8;

/// An EFI GUID in its byte order (the first three fields little-endian).
pub type Guid = [u8; 16];

/// td-shim's E820 table HOB (`E820_TABLE_GUID` 8f8072ea-3486-4b47-86a7-2353b88a8773).
pub const E820_GUID: Guid = [
    0xea, 0x72, 0x80, 0x8f, 0x86, 0x34, 0x47, 0x4b, 0x86, 0xa7, 0x23, 0x53, 0xb8, 0x8a, 0x87, 0x73,
];
/// td-shim's ACPI table HOB (`ACPI_TABLE_HOB_GUID` 6a0c5870-d4ed-44f4-a135-dd238b6f0c8d): one
/// table each.
pub const ACPI_TABLE_GUID: Guid = [
    0x70, 0x58, 0x0c, 0x6a, 0xed, 0xd4, 0xf4, 0x44, 0xa1, 0x35, 0xdd, 0x23, 0x8b, 0x6f, 0x0c, 0x8d,
];
/// The hugesept boot block, when the hugesept VMM enters the payload as td-shim does
/// (hugesept's own GUID, 5a1c3e2b-9d4f-4e61-8b7a-68736570740a).
pub const BOOT_BLOCK_GUID: Guid = [
    0x2b, 0x3e, 0x1c, 0x5a, 0x4f, 0x9d, 0x61, 0x4e, 0x8b, 0x7a, 0x68, 0x73, 0x65, 0x70, 0x74, 0x0a,
];

/// Memory ranges a HOB list may describe at most here.
pub const MAX_RANGES: usize = 32;
/// ACPI tables a HOB list may carry at most here.
pub const MAX_TABLES: usize = 8;

/// Why a HOB list could not be built or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HobError {
    /// The output buffer is too small.
    NoRoom,
    /// The list does not start with a PHIT.
    NoPhit,
    /// A HOB's length is below its header, not a multiple of 8, or runs past the list.
    BadLength(u16),
    /// The list has no End HOB within its bytes.
    NoEnd,
    /// More memory ranges or ACPI tables than this reader keeps.
    TooMany,
}

impl fmt::Display for HobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HobError::NoRoom => f.write_str("no room for the HOB list"),
            HobError::NoPhit => f.write_str("the HOB list does not start with a PHIT"),
            HobError::BadLength(t) => write!(f, "a HOB of type {t:#x} has a bad length"),
            HobError::NoEnd => f.write_str("the HOB list has no end"),
            HobError::TooMany => f.write_str("more memory ranges or ACPI tables than kept"),
        }
    }
}

/// What a range of memory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Usable private memory (accepted or added at build time).
    Usable,
    /// Memory the TD has to accept before use.
    Unaccepted,
    /// Anything else (reserved, ACPI, NVS...).
    Other,
}

/// A memory range from the HOB list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRange {
    /// First GPA.
    pub start: u64,
    /// Bytes.
    pub len: u64,
    /// What it is.
    pub kind: MemoryKind,
}

/// What a payload reads from a HOB list.
#[derive(Clone, Copy, Debug)]
pub struct HobInfo<'a> {
    /// The GPA one past the list (the PHIT's `efi_end_of_hob_list`).
    pub end: u64,
    ranges: [Option<MemoryRange>; MAX_RANGES],
    tables: [&'a [u8]; MAX_TABLES],
    table_count: usize,
    /// The hugesept boot block, if the list carries one.
    pub boot_block: Option<&'a [u8]>,
}

impl<'a> HobInfo<'a> {
    /// The memory ranges, in list order.
    pub fn ranges(&self) -> impl Iterator<Item = MemoryRange> + '_ {
        self.ranges.iter().flatten().copied()
    }

    /// The ACPI tables' bytes, in list order.
    pub fn acpi_tables(&self) -> &[&'a [u8]] {
        self.tables.get(..self.table_count).unwrap_or(&[])
    }

    fn add_range(&mut self, r: MemoryRange) -> Result<(), HobError> {
        let slot = self
            .ranges
            .iter_mut()
            .find(|s| s.is_none())
            .ok_or(HobError::TooMany)?;
        *slot = Some(r);
        Ok(())
    }
}

/// The length the PHIT gives the list that starts at GPA `at`, from its first bytes (a
/// payload reads the PHIT first, then the whole list): `None` if `phit` is not a PHIT.
pub fn list_len(phit: &[u8], at: u64) -> Option<u64> {
    if u16_at(phit, 0)? != HOB_HANDOFF || usize::from(u16_at(phit, 2)?) < PHIT_SIZE {
        return None;
    }
    u64_at(phit, 48)?.checked_sub(at)
}

/// Reads a HOB list from its bytes (starting with the PHIT).
pub fn parse(b: &[u8]) -> Result<HobInfo<'_>, HobError> {
    if u16_at(b, 0) != Some(HOB_HANDOFF) {
        return Err(HobError::NoPhit);
    }
    let mut info = HobInfo {
        end: u64_at(b, 48).ok_or(HobError::NoPhit)?,
        ranges: [None; MAX_RANGES],
        tables: [&[]; MAX_TABLES],
        table_count: 0,
        boot_block: None,
    };
    let mut off = 0usize;
    loop {
        let ty = u16_at(b, off).ok_or(HobError::NoEnd)?;
        if ty == HOB_END {
            return Ok(info);
        }
        let len = usize::from(u16_at(b, off.saturating_add(2)).ok_or(HobError::NoEnd)?);
        let hob = b
            .get(off..off.saturating_add(len))
            .filter(|_| len >= 8 && len.is_multiple_of(8))
            .ok_or(HobError::BadLength(ty))?;
        match ty {
            HOB_RESOURCE => {
                let (Some(rt), Some(start), Some(size)) =
                    (u32_at(hob, 24), u64_at(hob, 32), u64_at(hob, 40))
                else {
                    return Err(HobError::BadLength(ty));
                };
                let kind = match rt {
                    RESOURCE_SYSTEM_MEMORY => MemoryKind::Usable,
                    RESOURCE_UNACCEPTED => MemoryKind::Unaccepted,
                    _ => MemoryKind::Other,
                };
                info.add_range(MemoryRange {
                    start,
                    len: size,
                    kind,
                })?;
            }
            HOB_GUID => {
                let guid: Guid = array(hob, 8).ok_or(HobError::BadLength(ty))?;
                let data = hob.get(24..).ok_or(HobError::BadLength(ty))?;
                match guid {
                    E820_GUID => {
                        for e in data.chunks_exact(20) {
                            let (Some(start), Some(size), Some(t)) =
                                (u64_at(e, 0), u64_at(e, 8), u32_at(e, 16))
                            else {
                                continue;
                            };
                            // The padding after the last entry reads as an empty range.
                            if size == 0 {
                                continue;
                            }
                            let kind = match t {
                                E820_MEMORY => MemoryKind::Usable,
                                E820_UNACCEPTED => MemoryKind::Unaccepted,
                                _ => MemoryKind::Other,
                            };
                            info.add_range(MemoryRange {
                                start,
                                len: size,
                                kind,
                            })?;
                        }
                    }
                    ACPI_TABLE_GUID => {
                        let slot = info
                            .tables
                            .get_mut(info.table_count)
                            .ok_or(HobError::TooMany)?;
                        *slot = data;
                        info.table_count = info.table_count.saturating_add(1);
                    }
                    BOOT_BLOCK_GUID => info.boot_block = Some(data),
                    _ => {}
                }
            }
            _ => {}
        }
        off = off.saturating_add(len);
    }
}

/// A HOB list under construction in a caller's buffer.
pub struct Builder<'o> {
    out: &'o mut [u8],
    at: u64,
    len: usize,
    ok: bool,
}

impl<'o> Builder<'o> {
    /// A list starting with a PHIT, in `out`, which lies at GPA `at`.
    pub fn new(out: &'o mut [u8], at: u64) -> Builder<'o> {
        let mut b = Builder {
            out,
            at,
            len: 0,
            ok: true,
        };
        let mut phit = [0u8; PHIT_SIZE];
        let _ = put(&mut phit, 0, &HOB_HANDOFF.to_le_bytes())
            && put(&mut phit, 2, &(PHIT_SIZE as u16).to_le_bytes())
            && put(&mut phit, 8, &9u32.to_le_bytes());
        b.push(&phit);
        b
    }

    fn push(&mut self, bytes: &[u8]) {
        self.ok &= put(self.out, self.len, bytes);
        self.len = self.len.saturating_add(bytes.len());
    }

    /// A GUID extension HOB with `data`, padded to 8 bytes.
    pub fn guid(&mut self, guid: &Guid, data: &[u8]) -> &mut Self {
        let len = 24usize.saturating_add(data.len()).next_multiple_of(8);
        let Ok(len16) = u16::try_from(len) else {
            self.ok = false;
            return self;
        };
        let start = self.len;
        self.push(&HOB_GUID.to_le_bytes());
        self.push(&len16.to_le_bytes());
        self.push(&[0; 4]);
        self.push(guid);
        self.push(data);
        let pad = start.saturating_add(len).saturating_sub(self.len);
        for _ in 0..pad {
            self.push(&[0]);
        }
        self
    }

    /// td-shim's E820 HOB over `entries` (start, length, E820 type).
    pub fn e820(&mut self, entries: &[(u64, u64, u32)]) -> &mut Self {
        let mut data = [0u8; 20 * MAX_RANGES];
        let mut n = 0usize;
        for (k, (start, len, t)) in entries.iter().take(MAX_RANGES).enumerate() {
            let at = k.saturating_mul(20);
            self.ok &= put(&mut data, at, &start.to_le_bytes())
                && put(&mut data, at.saturating_add(8), &len.to_le_bytes())
                && put(&mut data, at.saturating_add(16), &t.to_le_bytes());
            n = at.saturating_add(20);
        }
        self.ok &= entries.len() <= MAX_RANGES;
        self.guid(&E820_GUID, data.get(..n).unwrap_or(&[]))
    }

    /// Ends the list and fills in the PHIT's end; the bytes used.
    pub fn finish(mut self) -> Result<usize, HobError> {
        self.push(&HOB_END.to_le_bytes());
        self.push(&8u16.to_le_bytes());
        self.push(&[0; 4]);
        let end = self
            .at
            .checked_add(self.len as u64)
            .ok_or(HobError::NoRoom)?;
        self.ok &= put(self.out, 48, &end.to_le_bytes());
        if self.ok {
            Ok(self.len)
        } else {
            Err(HobError::NoRoom)
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn a_built_list_reads_back() {
        let mut out = [0u8; 1024];
        let mut b = Builder::new(&mut out, 0x80_0000);
        b.e820(&[
            (0, 0x100_0000, E820_MEMORY),
            (0x4000_0000, 0x40_0000, E820_UNACCEPTED),
        ])
        .guid(&ACPI_TABLE_GUID, b"APIC....")
        .guid(&BOOT_BLOCK_GUID, &[7u8; 13]);
        let n = b.finish().unwrap();
        let list = &out[..n];
        assert_eq!(list_len(list, 0x80_0000), Some(n as u64));
        let info = parse(list).unwrap();
        assert_eq!(info.end, 0x80_0000 + n as u64);
        let ranges: Vec<MemoryRange> = info.ranges().collect();
        assert_eq!(
            ranges,
            [
                MemoryRange {
                    start: 0,
                    len: 0x100_0000,
                    kind: MemoryKind::Usable
                },
                MemoryRange {
                    start: 0x4000_0000,
                    len: 0x40_0000,
                    kind: MemoryKind::Unaccepted
                }
            ]
        );
        assert_eq!(info.acpi_tables(), &[b"APIC....".as_slice()]);
        // GUID HOB data is padded to 8 bytes: the block reads back with its padding.
        assert_eq!(&info.boot_block.unwrap()[..13], &[7u8; 13]);
    }

    #[test]
    fn td_shim_style_resource_hobs_and_bad_lists() {
        // A VMM's TD HOB: PHIT, one unaccepted resource descriptor, End.
        let mut l = [0u8; PHIT_SIZE + 48 + 8];
        l[0] = 1;
        l[2] = PHIT_SIZE as u8;
        l[PHIT_SIZE] = 3;
        l[PHIT_SIZE + 2] = 48;
        l[PHIT_SIZE + 24] = 7;
        l[PHIT_SIZE + 32..PHIT_SIZE + 40].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
        l[PHIT_SIZE + 40..PHIT_SIZE + 48].copy_from_slice(&0x20_0000u64.to_le_bytes());
        l[PHIT_SIZE + 48..PHIT_SIZE + 50].copy_from_slice(&0xffffu16.to_le_bytes());
        let info = parse(&l).unwrap();
        assert_eq!(
            info.ranges().next(),
            Some(MemoryRange {
                start: 0x1_0000_0000,
                len: 0x20_0000,
                kind: MemoryKind::Unaccepted
            })
        );
        assert!(info.boot_block.is_none());
        // No End, a zero-length HOB, no PHIT: refused, never a panic.
        assert_eq!(parse(&l[..PHIT_SIZE + 48]).err(), Some(HobError::NoEnd));
        let mut z = l;
        z[PHIT_SIZE + 2] = 0;
        assert_eq!(parse(&z).err(), Some(HobError::BadLength(3)));
        assert_eq!(parse(&l[8..]).err(), Some(HobError::NoPhit));
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5000 {
            let mut m = l;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m[(x as usize) % m.len()] = (x >> 40) as u8;
            let _ = parse(&m);
        }
        let mut small = [0u8; 40];
        assert_eq!(Builder::new(&mut small, 0).finish(), Err(HobError::NoRoom));
    }
}
