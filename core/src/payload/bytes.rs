//! Little-endian fields in byte buffers, bounds-checked: the firmware tables (ACPI, HOBs) and
//! the log ring are read from bytes a guest or a VMM wrote, so every read can fail and none
//! can panic.

/// `N` bytes at `at`, if they are there.
pub(crate) fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    b.get(at..end)?.try_into().ok()
}

/// A `u8` at `at`.
pub(crate) fn u8_at(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

/// A little-endian `u16` at `at`.
pub(crate) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    array(b, at).map(u16::from_le_bytes)
}

/// A little-endian `u32` at `at`.
pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    array(b, at).map(u32::from_le_bytes)
}

/// A little-endian `u64` at `at`.
pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    array(b, at).map(u64::from_le_bytes)
}

/// Writes `v` at `at`; false if it does not fit.
pub(crate) fn put(b: &mut [u8], at: usize, v: &[u8]) -> bool {
    let Some(end) = at.checked_add(v.len()) else {
        return false;
    };
    match b.get_mut(at..end) {
        Some(dst) => {
            dst.copy_from_slice(v);
            true
        }
        None => false,
    }
}

/// The byte sum of `b`, wrapping (ACPI checksums make a table's sum 0).
pub(crate) fn byte_sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
}
