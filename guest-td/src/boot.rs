//! The boot block the VMM writes and the report this payload writes back
//! ([`hugesept_core::payload`] holds both formats).
//!
//! Neither address is trusted: the block must be 8-byte aligned, below 4 GiB (where the
//! loader's identity map and this payload's build-time memory are) and clear of the image; its
//! bytes are copied out before they are decoded, and a block that does not decode is reported,
//! never used. The report area must also be 4K aligned.

use hugesept_core::abi::PAGE_SIZE_4K;
use hugesept_core::payload::{BOOT_MAX_SIZE, BootError, BootInfo, REPORT_SIZE, Report};

/// The highest address the payload's build-time memory reaches (the loader's contract).
const LOW_MEMORY_END: u64 = 1 << 32;

/// Whether [at, at + len) is usable build-time memory: 8-byte aligned, below 4 GiB, clear of
/// the image.
fn usable(at: u64, len: u64, image: (u64, u64)) -> bool {
    let Some(end) = at.checked_add(len) else {
        return false;
    };
    at != 0 && at.is_multiple_of(8) && end <= LOW_MEMORY_END && (end <= image.0 || at >= image.1)
}

/// Whether the report area [at, at + len) is usable: 4K aligned and [`usable`].
fn usable_page(at: u64, len: u64, image: (u64, u64)) -> bool {
    at.is_multiple_of(PAGE_SIZE_4K) && usable(at, len, image)
}

/// Reads and validates the boot block of `len` bytes (at most [`BOOT_MAX_SIZE`]) at `gpa`.
pub fn read(gpa: u64, len: u64, image: (u64, u64)) -> Result<BootInfo, BootError> {
    let len = len.min(BOOT_MAX_SIZE as u64);
    if !usable(gpa, len, image) {
        return Err(BootError::Size);
    }
    let mut bytes = [0u8; BOOT_MAX_SIZE];
    let src = gpa as *const u8;
    for (i, b) in bytes.iter_mut().take(len as usize).enumerate() {
        // SAFETY: [gpa, gpa + len) is below 4 GiB and clear of the image (checked above):
        // build-time memory the loader identity-maps and reserves for the block (or the HOB
        // list td-shim hands over), in which no Rust object lives. Volatile: the VMM wrote it.
        *b = unsafe { src.wrapping_add(i).read_volatile() };
    }
    BootInfo::decode(&bytes[..len as usize])
}

/// Writes vCPU `index`'s report into the block's report area. Returns false when the area is
/// not usable memory.
pub fn write_report(info: &BootInfo, index: usize, report: &Report, image: (u64, u64)) -> bool {
    let Some(at) = (index as u64)
        .checked_mul(REPORT_SIZE as u64)
        .and_then(|o| info.report.raw().checked_add(o))
    else {
        return false;
    };
    let area = info.report.raw();
    let len = (u64::from(info.vcpus) * REPORT_SIZE as u64).next_multiple_of(PAGE_SIZE_4K);
    if !usable_page(area, len, image) {
        return false;
    }
    let dst = at as *mut u64;
    for (i, w) in report.to_words().iter().enumerate() {
        // SAFETY: the report area (all vCPUs' reports, rounded up to pages) is below 4 GiB and
        // clear of the image (checked above), and the boot block's decoder checked it is
        // outside the window; this vCPU writes only its own REPORT_SIZE bytes of it, 8-byte
        // aligned (REPORT_SIZE is a multiple of 8 and the area is page aligned).
        unsafe { dst.wrapping_add(i).write_volatile(*w) };
    }
    true
}
