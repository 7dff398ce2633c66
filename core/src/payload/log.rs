//! The payload's log ring: defmt frames (rzcobs-encoded, so each ends with a zero byte) written
//! by every vCPU into one ring in the payload's memory, under a cross-CPU lock, as records
//! {vCPU u8, length u16 little-endian, frame bytes}; the VMM reads the ring while the guest runs
//! and decodes the frames with defmt-decoder from the ELF's `.defmt` section. A log line costs
//! the guest a few stores instead of one exit per byte (shared/reference/environment.md).
//!
//! The ring is the payload's static `HUGESEPT_LOG` (the VMM finds it by the ELF's symbol
//! table): a 64-byte header — magic, version, capacity, then `written`, the count of bytes ever
//! written (the write position modulo the capacity) — and `capacity` bytes of data. The writer
//! stores a record's bytes first, then advances `written` with release ordering; a reader that
//! finds `written` moved by more than the capacity since it last read has lost the records in
//! between and says so, resuming at the oldest record still whole.

use super::bytes::{u8_at, u16_at, u32_at, u64_at};

/// The header's first word: "hsdefmt0".
pub const LOG_MAGIC: u64 = u64::from_le_bytes(*b"hsdefmt0");
/// The format's version.
pub const LOG_VERSION: u32 = 1;
/// The header's size.
pub const LOG_HEADER: usize = 64;
/// Header offset of the capacity (u32).
pub const LOG_CAPACITY_AT: usize = 12;
/// Header offset of the bytes written so far (u64).
pub const LOG_WRITTEN_AT: usize = 16;
/// A record's header: vCPU, then the frame's length.
pub const RECORD_HEADER: usize = 3;
/// The longest frame a record carries (a longer one is cut and marked by length 0xffff).
pub const MAX_FRAME: usize = 1024;
/// The ring's symbol in the payload's ELF.
pub const LOG_SYMBOL: &str = "HUGESEPT_LOG";

/// A ring's header, as the reader finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingHeader {
    /// Data bytes.
    pub capacity: u32,
    /// Bytes ever written.
    pub written: u64,
}

/// Reads a ring's header: `None` when the magic, version or capacity is wrong.
pub fn header(h: &[u8]) -> Option<RingHeader> {
    if u64_at(h, 0)? != LOG_MAGIC || u32_at(h, 8)? != LOG_VERSION {
        return None;
    }
    let capacity = u32_at(h, LOG_CAPACITY_AT)?;
    (capacity >= 64).then_some(RingHeader {
        capacity,
        written: u64_at(h, LOG_WRITTEN_AT)?,
    })
}

/// One record read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The vCPU that wrote it.
    pub vcpu: u8,
    /// Its defmt frame.
    pub frame: &'a [u8],
}

/// Splits `bytes` — the ring's data from a record boundary on, unwrapped — into records; the
/// bytes of a record not yet whole are left (the count of bytes consumed is returned with the
/// records, which go to `out`).
pub fn records<'a>(bytes: &'a [u8], out: &mut impl FnMut(Record<'a>)) -> usize {
    let mut off = 0usize;
    loop {
        let (Some(vcpu), Some(len)) = (u8_at(bytes, off), u16_at(bytes, off.saturating_add(1)))
        else {
            return off;
        };
        let start = off.saturating_add(RECORD_HEADER);
        let Some(frame) = bytes.get(start..start.saturating_add(usize::from(len))) else {
            return off;
        };
        out(Record { vcpu, frame });
        off = start.saturating_add(usize::from(len));
    }
}

/// Writes a record's bytes for `frame` from `vcpu` into `out` (the writer's side, also used by
/// tests); the bytes used, or `None` if `out` is too small or the frame too long.
pub fn encode_record(vcpu: u8, frame: &[u8], out: &mut [u8]) -> Option<usize> {
    let len = u16::try_from(frame.len())
        .ok()
        .filter(|&l| usize::from(l) <= MAX_FRAME)?;
    let total = RECORD_HEADER.checked_add(frame.len())?;
    let dst = out.get_mut(..total)?;
    let (head, body) = dst.split_at_mut(RECORD_HEADER);
    let [lo, hi] = len.to_le_bytes();
    head.copy_from_slice(&[vcpu, lo, hi]);
    body.copy_from_slice(frame);
    Some(total)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_partial_one_waits() {
        let mut buf = [0u8; 64];
        let a = encode_record(1, b"abc\0", &mut buf).unwrap();
        let b = encode_record(3, b"\x05xy\0", &mut buf[a..]).unwrap();
        let mut seen = [(0u8, [0u8; 4], 0usize); 2];
        let mut n = 0;
        let used = records(&buf[..a + b - 1], &mut |r| {
            seen[n] = (r.vcpu, [0; 4], r.frame.len());
            seen[n].1[..r.frame.len()].copy_from_slice(r.frame);
            n += 1;
        });
        assert_eq!((n, used), (1, a));
        assert_eq!(seen[0], (1, *b"abc\0", 4));
        let used = records(&buf[..a + b], &mut |_| n += 1);
        assert_eq!((n, used), (3, a + b));
        assert_eq!(encode_record(0, &[0; MAX_FRAME + 1], &mut [0; 2048]), None);
        assert_eq!(encode_record(0, b"abc", &mut [0; 5]), None);
    }

    #[test]
    fn the_header_is_checked() {
        let mut h = [0u8; LOG_HEADER];
        h[..8].copy_from_slice(&LOG_MAGIC.to_le_bytes());
        h[8..12].copy_from_slice(&LOG_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&4096u32.to_le_bytes());
        h[16..24].copy_from_slice(&77u64.to_le_bytes());
        assert_eq!(
            header(&h),
            Some(RingHeader {
                capacity: 4096,
                written: 77
            })
        );
        h[8] = 2;
        assert_eq!(header(&h), None);
    }
}
