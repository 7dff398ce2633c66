//! The payload's defmt log, read while the guest runs: the ring the payload's `HUGESEPT_LOG`
//! symbol names ([`hugesept_core::payload::log`]: header, then records {vCPU, length, frame}),
//! each frame decoded with defmt-decoder against the table in the ELF's `.defmt` section, as
//! `[vCPU i] timestamp LEVEL message` lines. A reader that falls more than the ring's capacity
//! behind says how many bytes it lost and starts again from the writer's position.

use defmt_decoder::Table;
use hugesept_core::payload::log::{self, LOG_HEADER, LOG_SYMBOL, Record};

use super::elf;
use super::memory::GuestMemory;

/// One decoded line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The vCPU that logged it.
    pub vcpu: u8,
    /// `timestamp LEVEL message`.
    pub text: String,
}

/// Reads and decodes the payload's ring.
pub struct LogReader {
    table: Table,
    ring: u64,
    consumed: u64,
    pending: Vec<u8>,
    /// Bytes the reader lost (overwritten before it read them).
    pub lost: u64,
}

impl LogReader {
    /// A reader for the payload `elf`: `None` when it has no log ring symbol or no defmt table.
    pub fn new(elf_bytes: &[u8]) -> Result<Option<LogReader>, String> {
        let Some(ring) = elf::symbol(elf_bytes, LOG_SYMBOL) else {
            return Ok(None);
        };
        let table =
            Table::parse(elf_bytes).map_err(|e| format!("the payload's .defmt section: {e}"))?;
        Ok(table.map(|table| LogReader {
            table,
            ring,
            consumed: 0,
            pending: Vec::new(),
            lost: 0,
        }))
    }

    /// The lines written since the last call.
    pub fn poll(&mut self, mem: &GuestMemory) -> Vec<LogLine> {
        let mut out = Vec::new();
        let mut head = [0u8; LOG_HEADER];
        if mem.read(self.ring, &mut head).is_err() {
            return out;
        }
        let Some(h) = log::header(&head) else {
            return out;
        };
        let capacity = u64::from(h.capacity);
        if h.written < self.consumed {
            // A writer that went backwards: start over from it.
            self.consumed = h.written;
            self.pending.clear();
            return out;
        }
        if h.written - self.consumed > capacity {
            let lost = h.written - self.consumed;
            self.lost += lost;
            out.push(LogLine {
                vcpu: u8::MAX,
                text: format!("[log: {lost} bytes overwritten before they were read]"),
            });
            self.consumed = h.written;
            self.pending.clear();
            return out;
        }
        let mut at = self.consumed;
        while at < h.written {
            let pos = at % capacity;
            let n = (capacity - pos).min(h.written - at);
            let mut chunk = vec![0u8; n as usize];
            if mem
                .read(self.ring + LOG_HEADER as u64 + pos, &mut chunk)
                .is_err()
            {
                return out;
            }
            self.pending.extend_from_slice(&chunk);
            at += n;
        }
        self.consumed = h.written;
        let table = &self.table;
        let used = log::records(&self.pending, &mut |r: Record<'_>| {
            out.push(LogLine {
                vcpu: r.vcpu,
                text: decode(table, r.frame),
            });
        });
        self.pending.drain(..used);
        out
    }
}

/// One frame as `timestamp LEVEL message`, or what was wrong with it.
fn decode(table: &Table, frame: &[u8]) -> String {
    let mut d = table.new_stream_decoder();
    d.received(frame);
    match d.decode() {
        Ok(f) => {
            let ts = f
                .display_timestamp()
                .map(|t| format!("{t} "))
                .unwrap_or_default();
            let level = f
                .level()
                .map(|l| format!("{} ", l.as_str().to_uppercase()))
                .unwrap_or_default();
            format!("{ts}{level}{}", f.display_message())
        }
        Err(e) => format!("[undecodable defmt frame of {} bytes: {e:?}]", frame.len()),
    }
}
