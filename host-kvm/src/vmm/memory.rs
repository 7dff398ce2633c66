//! Guest memory: two anonymous mappings the VMM owns and registers with KVM — the payload's
//! build-time memory (low memory: GDT, boot block, reports, page tables, the image) and the
//! scenario's window of private memory — with bounds-checked access by GPA.
//!
//! Every access the VMM makes on the guest's behalf goes through [`GuestMemory::read`] and
//! [`GuestMemory::write`]: a GPA range outside both mappings is an error, never a stray pointer.
//! The guest's vCPUs write the same memory concurrently (through KVM), so these copy with
//! volatile byte-wise semantics and never hand out references into guest memory.

use std::fmt;
use std::ptr::NonNull;

use hugesept_core::abi::PAGE_SIZE_4K;

/// A range of guest memory the VMM cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange {
    /// The first GPA.
    pub gpa: u64,
    /// Its length.
    pub len: u64,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "guest memory [{:#x}, +{:#x}) is not backed by the VMM",
            self.gpa, self.len
        )
    }
}

/// One anonymous mapping backing [gpa, gpa + len).
#[derive(Debug)]
pub struct Area {
    gpa: u64,
    len: u64,
    host: NonNull<u8>,
}

// SAFETY: an `Area` is a plain anonymous mapping the VMM owns until drop; all access is by
// volatile copies through bounds-checked methods, which are sound from any thread (the guest's
// vCPUs access the same bytes concurrently anyway, as memory shared with a VM is).
unsafe impl Send for Area {}
// SAFETY: as for `Send`: no method hands out references into the mapping.
unsafe impl Sync for Area {}

impl Area {
    /// Maps `len` bytes (a multiple of 4K) of zeroed memory for [gpa, gpa + len), reserving no
    /// swap (a 64 GiB window costs only what the guest touches).
    pub fn new(gpa: u64, len: u64) -> std::io::Result<Area> {
        if len == 0 || !len.is_multiple_of(PAGE_SIZE_4K) || gpa.checked_add(len).is_none() {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        }
        let size = usize::try_from(len).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: an anonymous private mapping at an address the kernel picks; no existing
        // memory is affected. The result is checked for MAP_FAILED below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let host = NonNull::new(p.cast::<u8>()).ok_or(std::io::ErrorKind::OutOfMemory)?;
        Ok(Area { gpa, len, host })
    }

    /// Its first GPA.
    pub fn gpa(&self) -> u64 {
        self.gpa
    }

    /// Its length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty (never: [`Area::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The host address of its first byte (for KVM_SET_USER_MEMORY_REGION).
    pub fn host_address(&self) -> u64 {
        self.host.as_ptr() as u64
    }

    /// The offset of [gpa, gpa + len) in this area, if it lies inside.
    fn offset(&self, gpa: u64, len: u64) -> Option<usize> {
        let off = gpa.checked_sub(self.gpa)?;
        (off.checked_add(len)? <= self.len).then_some(off as usize)
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `Area::new` with this address and length and is
        // unmapped once; KVM's memory slots referring to it are gone with the VM fd, which the
        // VMM drops before its memory.
        unsafe { libc::munmap(self.host.as_ptr().cast(), self.len as usize) };
    }
}

/// The VMM's guest memory.
#[derive(Debug)]
pub struct GuestMemory {
    areas: Vec<Area>,
}

impl GuestMemory {
    /// Memory made of these areas (they must not overlap).
    pub fn new(areas: Vec<Area>) -> Result<GuestMemory, OutOfRange> {
        for (i, a) in areas.iter().enumerate() {
            for b in areas.iter().skip(i + 1) {
                if a.gpa < b.gpa + b.len && b.gpa < a.gpa + a.len {
                    return Err(OutOfRange {
                        gpa: b.gpa,
                        len: b.len,
                    });
                }
            }
        }
        Ok(GuestMemory { areas })
    }

    /// The areas (for the memory slots).
    pub fn areas(&self) -> &[Area] {
        &self.areas
    }

    fn locate(&self, gpa: u64, len: u64) -> Result<(&Area, usize), OutOfRange> {
        self.areas
            .iter()
            .find_map(|a| a.offset(gpa, len).map(|o| (a, o)))
            .ok_or(OutOfRange { gpa, len })
    }

    /// Copies guest bytes at `gpa` into `out`.
    pub fn read(&self, gpa: u64, out: &mut [u8]) -> Result<(), OutOfRange> {
        let (a, off) = self.locate(gpa, out.len() as u64)?;
        // SAFETY: [off, off + out.len()) lies inside the area's live mapping (`locate`); the
        // copy is volatile so that concurrent guest stores are seen as whatever bytes they left,
        // never assumed stable by the compiler.
        let src = unsafe { a.host.as_ptr().add(off) };
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: `src + i` is inside the checked range.
            *b = unsafe { src.add(i).read_volatile() };
        }
        Ok(())
    }

    /// Copies `bytes` into guest memory at `gpa`.
    pub fn write(&self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfRange> {
        let (a, off) = self.locate(gpa, bytes.len() as u64)?;
        // SAFETY: as in `read`.
        let dst = unsafe { a.host.as_ptr().add(off) };
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: `dst + i` is inside the checked range.
            unsafe { dst.add(i).write_volatile(*b) };
        }
        Ok(())
    }

    /// Reads a little-endian u64.
    pub fn read_u64(&self, gpa: u64) -> Result<u64, OutOfRange> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Fills `len` bytes at `gpa` with the 64-bit `word` (8-byte aligned ranges).
    pub fn fill_words(&self, gpa: u64, len: u64, word: u64) -> Result<(), OutOfRange> {
        let (a, off) = self.locate(gpa, len)?;
        if !gpa.is_multiple_of(8) || !len.is_multiple_of(8) {
            return Err(OutOfRange { gpa, len });
        }
        // SAFETY: inside the checked range, 8-byte aligned (the mapping is page aligned).
        let dst = unsafe { a.host.as_ptr().add(off) }.cast::<u64>();
        for i in 0..(len / 8) as usize {
            // SAFETY: `dst + i` is inside the checked range and aligned.
            unsafe { dst.add(i).write_volatile(word) };
        }
        Ok(())
    }

    /// Zeroes `len` bytes at `gpa` (4K-aligned): whole pages go back to the kernel
    /// (MADV_DONTNEED on a private anonymous mapping reads back as zeros), which is how
    /// ACCEPT's zeroing of a 2M page stays cheap.
    pub fn zero_pages(&self, gpa: u64, len: u64) -> Result<(), OutOfRange> {
        let (a, off) = self.locate(gpa, len)?;
        if !gpa.is_multiple_of(PAGE_SIZE_4K) || !len.is_multiple_of(PAGE_SIZE_4K) {
            return Err(OutOfRange { gpa, len });
        }
        if len < (64 << 10) {
            return self.fill_words(gpa, len, 0);
        }
        // SAFETY: the range is inside the area's private anonymous mapping and page aligned;
        // MADV_DONTNEED drops its pages, which then read as zero. KVM's mappings of them are
        // invalidated by the kernel's MMU notifier.
        let r = unsafe {
            libc::madvise(
                a.host.as_ptr().add(off).cast(),
                len as usize,
                libc::MADV_DONTNEED,
            )
        };
        if r != 0 {
            return self.fill_words(gpa, len, 0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_are_bounds_checked() {
        let m = GuestMemory::new(vec![
            Area::new(0, 0x10000).unwrap(),
            Area::new(0x4000_0000, 0x20_0000).unwrap(),
        ])
        .unwrap();
        m.write(0x4000_0ff8, &7u64.to_le_bytes()).unwrap();
        assert_eq!(m.read_u64(0x4000_0ff8), Ok(7));
        assert!(m.read_u64(0xfffc).is_err());
        assert!(m.read_u64(0x4020_0000 - 4).is_err());
        assert!(m.read_u64(u64::MAX - 3).is_err());
        m.fill_words(0x4000_0000, 0x20_0000, 0xabcd).unwrap();
        assert_eq!(m.read_u64(0x401f_fff8), Ok(0xabcd));
        m.zero_pages(0x4000_0000, 0x20_0000).unwrap();
        assert_eq!(m.read_u64(0x401f_fff8), Ok(0));
        assert!(m.zero_pages(0x4000_0800, 0x1000).is_err());
        assert!(
            GuestMemory::new(vec![
                Area::new(0, 0x2000).unwrap(),
                Area::new(0x1000, 0x1000).unwrap()
            ])
            .is_err()
        );
    }
}
