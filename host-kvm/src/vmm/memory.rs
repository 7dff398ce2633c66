//! Guest memory: the mappings the VMM owns and registers with KVM — the payload's build-time
//! memory (low memory: GDT, boot block, reports, page tables, ACPI tables, the image; one
//! anonymous mapping) and the scenario's window of private memory — with bounds-checked access
//! by GPA.
//!
//! The window is a memfd mapped twice: the VMM's view, always readable and writable, through
//! which the VMM mirrors the model's content, and the guest's view, the one KVM maps, in which
//! a page is readable and writable only while the model has it accepted
//! ([`GuestMemory::set_guest_access`]: `mprotect`, whose MMU-notifier invalidation drops KVM's
//! mapping of a page that stops being accessible). A guest load or store on any other window
//! page cannot be backed and exits to the VMM (as an MMIO access), so the access reaches the
//! model for real.
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

/// One mapping backing [gpa, gpa + len): anonymous, or a memfd with a second, guest view.
#[derive(Debug)]
pub struct Area {
    gpa: u64,
    len: u64,
    host: NonNull<u8>,
    /// The memfd and the guest's view of it (a shared window), if this area has them.
    shared: Option<(libc::c_int, NonNull<u8>)>,
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
        Ok(Area {
            gpa,
            len,
            host,
            shared: None,
        })
    }

    /// Maps `len` bytes (a multiple of 4K) of zeroed memory for [gpa, gpa + len) as a memfd
    /// with two views: the VMM's (readable and writable) and the guest's, which starts with
    /// every page inaccessible.
    pub fn new_shared(gpa: u64, len: u64) -> std::io::Result<Area> {
        if len == 0 || !len.is_multiple_of(PAGE_SIZE_4K) || gpa.checked_add(len).is_none() {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        }
        let size = usize::try_from(len).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: memfd_create with a NUL-terminated name and no flags creates a new file
        // descriptor; the result is checked below.
        let fd = unsafe { libc::memfd_create(c"hugesept-window".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let close = |e: std::io::Error| {
            // SAFETY: `fd` is the descriptor created above, closed once on this error path.
            unsafe { libc::close(fd) };
            e
        };
        // SAFETY: `fd` is a fresh memfd; ftruncate sizes it (sparse: pages are allocated on
        // first touch).
        if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
            return Err(close(std::io::Error::last_os_error()));
        }
        let map = |prot| {
            // SAFETY: a shared mapping of the whole memfd at an address the kernel picks; no
            // existing memory is affected; checked for MAP_FAILED below.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    size,
                    prot,
                    libc::MAP_SHARED | libc::MAP_NORESERVE,
                    fd,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                Err(std::io::Error::last_os_error())
            } else {
                NonNull::new(p.cast::<u8>())
                    .ok_or(std::io::Error::from(std::io::ErrorKind::OutOfMemory))
            }
        };
        let host = map(libc::PROT_READ | libc::PROT_WRITE).map_err(close)?;
        let guest = match map(libc::PROT_NONE) {
            Ok(g) => g,
            Err(e) => {
                // SAFETY: `host` was mapped above with this length and is unmapped once.
                unsafe { libc::munmap(host.as_ptr().cast(), size) };
                return Err(close(e));
            }
        };
        Ok(Area {
            gpa,
            len,
            host,
            shared: Some((fd, guest)),
        })
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

    /// The host address of its first byte as the guest sees it (for
    /// KVM_SET_USER_MEMORY_REGION): the guest view of a shared window.
    pub fn host_address(&self) -> u64 {
        match self.shared {
            Some((_, guest)) => guest.as_ptr() as u64,
            None => self.host.as_ptr() as u64,
        }
    }

    /// The offset of [gpa, gpa + len) in this area, if it lies inside.
    fn offset(&self, gpa: u64, len: u64) -> Option<usize> {
        let off = gpa.checked_sub(self.gpa)?;
        (off.checked_add(len)? <= self.len).then_some(off as usize)
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `Area::new` or `Area::new_shared` with this address
        // and length and is unmapped once; KVM's memory slots referring to it are gone with the
        // VM fd, which the VMM drops before its memory.
        unsafe { libc::munmap(self.host.as_ptr().cast(), self.len as usize) };
        if let Some((fd, guest)) = self.shared {
            // SAFETY: the guest view was mapped by `Area::new_shared` with this length and is
            // unmapped once, after the VM that used it.
            unsafe { libc::munmap(guest.as_ptr().cast(), self.len as usize) };
            // SAFETY: the memfd is closed once, after both its mappings are gone.
            unsafe { libc::close(fd) };
        }
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
    /// (MADV_DONTNEED on a private anonymous mapping, a punched hole in a window's memfd: both
    /// read back as zeros), which is how ACCEPT's zeroing of a 2M page stays cheap.
    pub fn zero_pages(&self, gpa: u64, len: u64) -> Result<(), OutOfRange> {
        let (a, off) = self.locate(gpa, len)?;
        if !gpa.is_multiple_of(PAGE_SIZE_4K) || !len.is_multiple_of(PAGE_SIZE_4K) {
            return Err(OutOfRange { gpa, len });
        }
        if len < (64 << 10) {
            return self.fill_words(gpa, len, 0);
        }
        if let Some((fd, _)) = a.shared {
            // SAFETY: punching a hole in the window's own memfd, inside its size (the range is
            // inside the area): the pages read back as zeros through both views, and the
            // kernel's MMU notifier drops KVM's mappings of them.
            let r = unsafe {
                libc::fallocate(
                    fd,
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    off as libc::off_t,
                    len as libc::off_t,
                )
            };
            return if r == 0 {
                Ok(())
            } else {
                self.fill_words(gpa, len, 0)
            };
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

    /// Makes [gpa, gpa + len) (4K-aligned, inside a shared window) readable and writable in
    /// the guest's view, or not. Fails for memory outside a shared window, or when the kernel
    /// refuses (its limit on mappings, `vm.max_map_count`, can be reached by a window split
    /// into very many runs of alternating access).
    pub fn set_guest_access(
        &self,
        gpa: u64,
        len: u64,
        accessible: bool,
    ) -> Result<(), AccessError> {
        let (a, off) = self.locate(gpa, len).map_err(AccessError::Range)?;
        let Some((_, guest)) = a.shared else {
            return Err(AccessError::Range(OutOfRange { gpa, len }));
        };
        if !gpa.is_multiple_of(PAGE_SIZE_4K) || !len.is_multiple_of(PAGE_SIZE_4K) {
            return Err(AccessError::Range(OutOfRange { gpa, len }));
        }
        let prot = if accessible {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_NONE
        };
        // SAFETY: the range lies inside the area's guest view (`locate`), page aligned; changing
        // its protection affects only what the guest (through KVM) may access there.
        let r = unsafe { libc::mprotect(guest.as_ptr().add(off).cast(), len as usize, prot) };
        if r == 0 {
            Ok(())
        } else {
            Err(AccessError::Kernel(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ))
        }
    }
}

/// Why a window page's guest access could not be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessError {
    /// The range is not page aligned or not inside a shared window.
    Range(OutOfRange),
    /// `mprotect` failed with this errno.
    Kernel(i32),
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessError::Range(r) => write!(f, "{r} as a window"),
            AccessError::Kernel(e) => write!(
                f,
                "mprotect of the guest's view failed (errno {e}; ENOMEM is the kernel's limit on \
                 mappings, vm.max_map_count)"
            ),
        }
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

    #[test]
    fn a_shared_window_has_a_guest_view_that_follows_set_guest_access() {
        let m = GuestMemory::new(vec![
            Area::new(0, 0x10000).unwrap(),
            Area::new_shared(0x4000_0000, 0x40_0000).unwrap(),
        ])
        .unwrap();
        let w = &m.areas()[1];
        assert_ne!(w.host_address(), w.host.as_ptr() as u64);
        m.write(0x4000_1000, &9u64.to_le_bytes()).unwrap();
        m.set_guest_access(0x4000_1000, 0x1000, true).unwrap();
        // SAFETY: the guest view's page 1 was just made readable; it maps the same memfd bytes.
        let seen = unsafe {
            (w.host_address() as *const u64)
                .add(0x1000 / 8)
                .read_volatile()
        };
        assert_eq!(seen, 9);
        // Zeroing a 2M page punches a hole: both views read zeros.
        m.zero_pages(0x4000_0000, 0x20_0000).unwrap();
        assert_eq!(m.read_u64(0x4000_1000), Ok(0));
        // SAFETY: as above.
        let seen = unsafe {
            (w.host_address() as *const u64)
                .add(0x1000 / 8)
                .read_volatile()
        };
        assert_eq!(seen, 0);
        assert!(m.set_guest_access(0x4000_0800, 0x1000, true).is_err());
        assert!(m.set_guest_access(0x1000, 0x1000, true).is_err());
        m.set_guest_access(0x4000_1000, 0x1000, false).unwrap();
    }
}
