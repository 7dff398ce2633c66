//! Loading the payload: an ELF64 x86_64 executable whose PT_LOAD segments are copied to their
//! physical addresses, the bytes past each segment's file size left zero (the ELF rule the
//! payload's .bss relies on). Every header field is checked against the file and against the
//! build-time memory the segments must land in; a bad file is an [`ElfError`].

use std::fmt;

/// Why a file cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF64 little-endian x86_64 executable.
    NotElf64,
    /// A header or segment points outside the file.
    Truncated,
    /// A segment lands outside the memory the payload may occupy.
    Placement {
        /// The segment's physical address.
        paddr: u64,
        /// Its size in memory.
        memsz: u64,
    },
    /// No PT_LOAD segment, or the entry point is in none of them.
    Entry(u64),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotElf64 => f.write_str("not an ELF64 little-endian x86_64 executable"),
            ElfError::Truncated => {
                f.write_str("a header or segment points past the end of the file")
            }
            ElfError::Placement { paddr, memsz } => write!(
                f,
                "segment [{paddr:#x}, +{memsz:#x}) is outside the payload's memory"
            ),
            ElfError::Entry(e) => write!(f, "entry point {e:#x} is in no loadable segment"),
        }
    }
}

impl std::error::Error for ElfError {}

/// One segment to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Where it goes.
    pub paddr: u64,
    /// Its bytes from the file.
    pub data: Vec<u8>,
    /// Its size in memory (at least `data.len()`).
    pub memsz: u64,
}

/// A parsed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The entry point.
    pub entry: u64,
    /// The segments.
    pub segments: Vec<Segment>,
}

impl Image {
    /// The range [start, end) the segments occupy.
    pub fn span(&self) -> (u64, u64) {
        let start = self.segments.iter().map(|s| s.paddr).min().unwrap_or(0);
        let end = self
            .segments
            .iter()
            .map(|s| s.paddr + s.memsz)
            .max()
            .unwrap_or(0);
        (start, end)
    }
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, ElfError> {
    let s = b.get(at..at + 2).ok_or(ElfError::Truncated)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, ElfError> {
    let s = b.get(at..at + 4).ok_or(ElfError::Truncated)?;
    Ok(u32::from_le_bytes(
        s.try_into().map_err(|_| ElfError::Truncated)?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, ElfError> {
    let s = b.get(at..at + 8).ok_or(ElfError::Truncated)?;
    Ok(u64::from_le_bytes(
        s.try_into().map_err(|_| ElfError::Truncated)?,
    ))
}

/// PT_LOAD.
const PT_LOAD: u32 = 1;
/// ET_EXEC.
const ET_EXEC: u16 = 2;
/// EM_X86_64.
const EM_X86_64: u16 = 62;

/// Parses `file`; its segments must lie inside `[lo, hi)`.
pub fn parse(file: &[u8], lo: u64, hi: u64) -> Result<Image, ElfError> {
    if file.get(..4) != Some(b"\x7fELF".as_slice())
        || file.get(4) != Some(&2)
        || file.get(5) != Some(&1)
        || u16_at(file, 16)? != ET_EXEC
        || u16_at(file, 18)? != EM_X86_64
    {
        return Err(ElfError::NotElf64);
    }
    let entry = u64_at(file, 24)?;
    let phoff = usize::try_from(u64_at(file, 32)?).map_err(|_| ElfError::Truncated)?;
    let phentsize = usize::from(u16_at(file, 54)?);
    let phnum = usize::from(u16_at(file, 56)?);
    if phentsize < 56 {
        return Err(ElfError::NotElf64);
    }
    let mut segments = Vec::new();
    for i in 0..phnum {
        let at = phentsize
            .checked_mul(i)
            .and_then(|o| o.checked_add(phoff))
            .ok_or(ElfError::Truncated)?;
        if u32_at(file, at)? != PT_LOAD {
            continue;
        }
        let offset = u64_at(file, at + 8)?;
        let paddr = u64_at(file, at + 24)?;
        let filesz = u64_at(file, at + 32)?;
        let memsz = u64_at(file, at + 40)?;
        if filesz > memsz {
            return Err(ElfError::Truncated);
        }
        let end = paddr.checked_add(memsz);
        if paddr < lo || end.is_none_or(|e| e > hi) {
            return Err(ElfError::Placement { paddr, memsz });
        }
        let start = usize::try_from(offset).map_err(|_| ElfError::Truncated)?;
        let len = usize::try_from(filesz).map_err(|_| ElfError::Truncated)?;
        let data = file
            .get(start..start.checked_add(len).ok_or(ElfError::Truncated)?)
            .ok_or(ElfError::Truncated)?
            .to_vec();
        segments.push(Segment { paddr, data, memsz });
    }
    if !segments
        .iter()
        .any(|s| (s.paddr..s.paddr + s.memsz).contains(&entry))
    {
        return Err(ElfError::Entry(entry));
    }
    Ok(Image { entry, segments })
}

/// SHT_SYMTAB.
const SHT_SYMTAB: u32 = 2;

/// The value of the symbol `name` in `file`'s symbol table, if it has one (the payload's log
/// ring, `HUGESEPT_LOG`). A file without a symbol table, or with a malformed one, has none.
pub fn symbol(file: &[u8], name: &str) -> Option<u64> {
    let shoff = usize::try_from(u64_at(file, 40).ok()?).ok()?;
    let shentsize = usize::from(u16_at(file, 58).ok()?);
    let shnum = usize::from(u16_at(file, 60).ok()?);
    if shentsize < 64 {
        return None;
    }
    let section = |i: usize| shoff.checked_add(shentsize.checked_mul(i)?);
    for i in 0..shnum {
        let at = section(i)?;
        if u32_at(file, at + 4).ok()? != SHT_SYMTAB {
            continue;
        }
        let off = usize::try_from(u64_at(file, at + 24).ok()?).ok()?;
        let size = usize::try_from(u64_at(file, at + 32).ok()?).ok()?;
        let strtab = section(usize::try_from(u32_at(file, at + 40).ok()?).ok()?)?;
        let str_off = usize::try_from(u64_at(file, strtab + 24).ok()?).ok()?;
        let str_size = usize::try_from(u64_at(file, strtab + 32).ok()?).ok()?;
        let strings = file.get(str_off..str_off.checked_add(str_size)?)?;
        let entries = file.get(off..off.checked_add(size)?)?;
        for e in entries.chunks_exact(24) {
            let name_at = usize::try_from(u32_at(e, 0).ok()?).ok()?;
            let rest = strings.get(name_at..)?;
            let end = rest.iter().position(|&b| b == 0)?;
            if &rest[..end] == name.as_bytes() {
                return u64_at(e, 8).ok();
            }
        }
    }
    None
}

/// A minimal ELF64 executable: one segment holding `code` at 1 MiB (the payload's load
/// address), the entry at its first byte, 4K in memory. Hand-written guests for tests and
/// benchmarks (a TDCALL storm, a guest that never exits) are built with it.
pub fn tiny_image(code: &[u8]) -> Vec<u8> {
    let paddr: u64 = 0x10_0000;
    let mut f = vec![0u8; 120];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[6] = 1;
    f[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
    f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
    f[24..32].copy_from_slice(&paddr.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&1u16.to_le_bytes());
    let ph = 64;
    f[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
    f[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes());
    f[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
    f[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
    f[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
    f[ph + 40..ph + 48].copy_from_slice(&(code.len() as u64).max(0x1000).to_le_bytes());
    f.extend_from_slice(code);
    f
}

/// Guest code that issues `n` TDCALLs of a leaf that does not exist (each one emulation-failure
/// exit the VMM answers with TDX_OPERAND_INVALID, nothing else), then halts: the bare cost of a
/// TDCALL exit.
pub fn tdcall_loop(n: u32) -> Vec<u8> {
    let mut c = vec![0x41, 0xbf]; // mov r15d, n
    c.extend_from_slice(&n.to_le_bytes());
    c.extend_from_slice(&[
        0xb8, 0xff, 0xff, 0x00, 0x00, // mov eax, 0xffff
        0x66, 0x0f, 0x01, 0xcc, // tdcall
        0x41, 0xff, 0xcf, // dec r15d
        0x75, 0xf2, // jnz back to the mov
        0xf4, // hlt
    ]);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_refuses() {
        let f = tiny_image(&[0xf4]);
        let img = parse(&f, 0x10_0000, 0x100_0000).unwrap();
        assert_eq!(img.entry, 0x10_0000);
        assert_eq!(img.span(), (0x10_0000, 0x10_1000));
        assert_eq!(
            parse(&f, 0x20_0000, 0x100_0000),
            Err(ElfError::Placement {
                paddr: 0x10_0000,
                memsz: 0x1000
            })
        );
        assert_eq!(parse(&f[..100], 0, u64::MAX), Err(ElfError::Truncated));
        let t = parse(&tiny_image(&tdcall_loop(3)), 0x10_0000, 0x100_0000).unwrap();
        assert_eq!(t.entry, 0x10_0000);
        assert_eq!(parse(b"garbage", 0, u64::MAX), Err(ElfError::NotElf64));
        let mut bad = f.clone();
        bad[24..32].copy_from_slice(&0x5000u64.to_le_bytes());
        assert_eq!(parse(&bad, 0, u64::MAX), Err(ElfError::Entry(0x5000)));
        // Every truncation is refused, never a panic.
        for cut in 0..f.len() {
            assert!(parse(&f[..cut], 0, u64::MAX).is_err());
            assert_eq!(symbol(&f[..cut], "x"), None);
        }
        assert_eq!(symbol(&f, "HUGESEPT_LOG"), None);
    }
}
