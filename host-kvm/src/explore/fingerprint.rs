//! State fingerprints and the table of states seen: a 128-bit hash of a state's full value
//! (hash compaction, as explicit-state model checkers do), and an open-addressing table from
//! fingerprints to state ids that keeps 16 bytes per slot.

use std::hash::{Hash, Hasher};

/// A fast 128-bit fingerprint: two independent multiply-rotate lanes over the words the
/// derived `Hash` implementations write.
#[derive(Clone, Copy)]
pub struct Fingerprint {
    a: u64,
    b: u64,
}

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint {
            a: 0x243F_6A88_85A3_08D3,
            b: 0x1319_8A2E_0370_7344,
        }
    }
}

impl Fingerprint {
    #[inline]
    fn mix(&mut self, x: u64) {
        self.a = (self.a ^ x)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
        self.b = (self.b.rotate_left(23) ^ x).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    }

    /// The 128-bit value.
    pub fn value(&self) -> u128 {
        let a = self.a ^ (self.b >> 31);
        let b = self.b ^ (self.a >> 29);
        (u128::from(a.wrapping_mul(0xFF51_AFD7_ED55_8CCD)) << 64)
            | u128::from(b.wrapping_mul(0xC4CE_B9FE_1A85_EC53))
    }

    /// The fingerprint of `v`.
    pub fn of<T: Hash + ?Sized>(v: &T) -> u128 {
        let mut f = Fingerprint::default();
        v.hash(&mut f);
        f.value()
    }
}

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.value() as u64
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
}

/// The states seen, by fingerprint: open addressing with linear probing over 16-byte slots
/// (four to a cache line, so a lookup usually reads one line). A slot keeps 96 bits of the
/// fingerprint and the state's 32-bit id: with n states, the chance that two share the 96
/// bits is about n²/2⁹⁷, under 10⁻¹³ for a hundred million states.
pub(crate) struct StateTable {
    slots: Vec<Slot>,
    len: usize,
}

/// One slot: `tag` is the fingerprint's high 64 bits (never 0: 0 marks an empty slot), `rest`
/// its next 32 bits above the state's id.
#[derive(Clone, Copy, Default)]
struct Slot {
    tag: u64,
    rest: u64,
}

/// Where a fingerprint is, or would go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Known, with this id.
    Known(u32),
    /// Not known; this slot is where [`StateTable::insert_at`] puts it.
    Vacant(usize),
}

/// Slots of a new table.
const INITIAL_SLOTS: usize = 1 << 10;

impl StateTable {
    /// An empty table.
    pub(crate) fn new() -> Self {
        StateTable {
            slots: vec![Slot::default(); INITIAL_SLOTS],
            len: 0,
        }
    }

    /// The slot's two words for `fp`.
    fn key(fp: u128) -> (u64, u64) {
        let tag = ((fp >> 64) as u64).max(1);
        let rest = ((fp >> 32) as u64) << 32;
        (tag, rest)
    }

    /// Starts loading the slot where the search for `fp` begins (a hint: nothing changes).
    pub(crate) fn prefetch(&self, fp: u128) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let (tag, _) = Self::key(fp);
            let slot = &self.slots[tag as usize & (self.slots.len() - 1)];
            // SAFETY: PREFETCHT0 is a hint: it never faults and changes no memory, and SSE,
            // which it needs, is part of x86-64's baseline; the pointer is to a live slot.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(slot).cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = fp;
    }

    /// Where `fp` is or would go.
    pub(crate) fn find(&self, fp: u128) -> Lookup {
        let (tag, rest) = Self::key(fp);
        let mask = self.slots.len() - 1;
        let mut i = tag as usize & mask;
        loop {
            let s = self.slots[i];
            if s.tag == 0 {
                return Lookup::Vacant(i);
            }
            if s.tag == tag && s.rest >> 32 == rest >> 32 {
                return Lookup::Known(s.rest as u32);
            }
            i = (i + 1) & mask;
        }
    }

    /// Puts `fp` with `id` into `slot`, which [`StateTable::find`] returned as vacant for it
    /// with nothing inserted since; grows the table past five eighths full.
    pub(crate) fn insert_at(&mut self, slot: usize, fp: u128, id: u32) {
        let (tag, rest) = Self::key(fp);
        self.slots[slot] = Slot {
            tag,
            rest: rest | u64::from(id),
        };
        self.len += 1;
        if self.len * 8 > self.slots.len() * 5 {
            self.grow();
        }
    }

    /// Twice the slots, every entry placed again.
    fn grow(&mut self) {
        let bigger = vec![Slot::default(); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, bigger);
        let mask = self.slots.len() - 1;
        for s in old.into_iter().filter(|s| s.tag != 0) {
            let mut i = s.tag as usize & mask;
            while self.slots[i].tag != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_it_holds_through_growth() {
        let mut t = StateTable::new();
        let fp = |i: u32| Fingerprint::of(&i);
        for i in 0..10_000u32 {
            match t.find(fp(i)) {
                Lookup::Vacant(slot) => t.insert_at(slot, fp(i), i),
                Lookup::Known(id) => panic!("{i} found as {id} before it was added"),
            }
        }
        assert_eq!(t.len, 10_000);
        assert!(t.slots.len() * 5 >= t.len * 8);
        for i in 0..10_000u32 {
            assert_eq!(t.find(fp(i)), Lookup::Known(i));
        }
        assert!(matches!(t.find(fp(10_000)), Lookup::Vacant(_)));
    }

    #[test]
    fn keys_differ_in_the_low_bits_and_collide_in_the_slot() {
        // Same high 64 bits (same home slot), different next 32 bits: two states.
        let mut t = StateTable::new();
        let a = (7u128 << 64) | (1 << 32);
        let b = (7u128 << 64) | (2 << 32);
        let Lookup::Vacant(s) = t.find(a) else {
            panic!()
        };
        t.insert_at(s, a, 1);
        let Lookup::Vacant(s) = t.find(b) else {
            panic!()
        };
        t.insert_at(s, b, 2);
        assert_eq!(t.find(a), Lookup::Known(1));
        assert_eq!(t.find(b), Lookup::Known(2));
        // A zero high word still finds its state (it is stored as 1).
        let z = 5u128 << 32;
        let Lookup::Vacant(s) = t.find(z) else {
            panic!()
        };
        t.insert_at(s, z, 3);
        assert_eq!(t.find(z), Lookup::Known(3));
    }
}
