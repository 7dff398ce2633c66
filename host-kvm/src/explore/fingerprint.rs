//! State fingerprints and the table of states seen: a 128-bit hash of a state's full value
//! (hash compaction, as explicit-state model checkers do), and an open-addressing table from
//! fingerprints to state ids that keeps 8 bytes per slot and each fingerprint by id.

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

/// The states seen, by fingerprint: open addressing with linear probing over 8-byte slots,
/// each the top 32 bits of a fingerprint and its state's id (eight to a cache line, so the
/// table of a small world stays in cache), with every state's whole fingerprint kept by id,
/// read only when the 32 bits match (a state met again is most often one met a few steps
/// before, whose fingerprint is in cache too). States are told apart by all 128 bits: with n
/// states, the chance that two share a fingerprint is about n²/2¹²⁹.
pub(crate) struct StateTable {
    /// 0 when empty, else the fingerprint's top 32 bits above the id plus one.
    slots: Vec<u64>,
    /// Each id's fingerprint.
    fps: Vec<u128>,
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
const INITIAL_SLOTS: usize = 1 << 12;

impl StateTable {
    /// An empty table.
    pub(crate) fn new() -> Self {
        StateTable {
            slots: vec![0; INITIAL_SLOTS],
            fps: Vec::with_capacity(INITIAL_SLOTS),
        }
    }

    /// Bytes the table holds once `k` more states are inserted (an upper bound): the
    /// fingerprints' capacity as the vector grows, the slots doubled each time they pass five
    /// eighths full, and while the last doubling rebuilds them, the slots it replaces.
    pub(crate) fn bytes_after(&self, k: usize) -> usize {
        let states = self.fps.len() + k;
        let mut slots = self.slots.len();
        let mut replaced = 0;
        while states * 8 > slots * 5 {
            replaced = slots;
            slots *= 2;
        }
        super::capacity_after(&self.fps, k) * size_of::<u128>()
            + (slots + replaced) * size_of::<u64>()
    }

    /// The slot a search for `fp` starts at, in a table of `len` slots (a power of two).
    fn home(fp: u128, len: usize) -> usize {
        (fp >> 64) as usize & (len - 1)
    }

    /// `fp`'s 32 bits in a slot.
    fn tag(fp: u128) -> u64 {
        ((fp >> 96) as u64) << 32
    }

    /// Starts loading the slot where the search for `fp` begins (a hint: nothing changes).
    pub(crate) fn prefetch(&self, fp: u128) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let slot = &self.slots[Self::home(fp, self.slots.len())];
            // SAFETY: PREFETCHT0 is a hint: it never faults and changes no memory, and SSE,
            // which it needs, is part of x86-64's baseline; the pointer is to a live slot.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(slot).cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = fp;
    }

    /// Where `fp` is or would go.
    pub(crate) fn find(&self, fp: u128) -> Lookup {
        let tag = Self::tag(fp);
        let mask = self.slots.len() - 1;
        let mut i = Self::home(fp, self.slots.len());
        loop {
            let s = self.slots[i];
            if s == 0 {
                return Lookup::Vacant(i);
            }
            if s & !0xFFFF_FFFF == tag {
                let id = (s as u32).wrapping_sub(1);
                if self.fps.get(id as usize) == Some(&fp) {
                    return Lookup::Known(id);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Puts `fp` with `id` into `slot`, which [`StateTable::find`] returned as vacant for it
    /// with nothing inserted since; grows the table past five eighths full. Ids are given in
    /// order from 0 (`id` is the number of states before it).
    pub(crate) fn insert_at(&mut self, slot: usize, fp: u128, id: u32) {
        self.slots[slot] = Self::tag(fp) | u64::from(id.wrapping_add(1));
        let id = id as usize;
        if id >= self.fps.len() {
            self.fps.resize(id + 1, 0);
        }
        self.fps[id] = fp;
        if self.fps.len() * 8 > self.slots.len() * 5 {
            self.grow();
        }
    }

    /// Twice the slots, every state placed again.
    fn grow(&mut self) {
        let len = self.slots.len() * 2;
        let mut slots = vec![0u64; len];
        for &s in self.slots.iter().filter(|&&s| s != 0) {
            let fp = self.fps[(s as u32).wrapping_sub(1) as usize];
            let mut i = Self::home(fp, len);
            while slots[i] != 0 {
                i = (i + 1) & (len - 1);
            }
            slots[i] = s;
        }
        self.slots = slots;
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
        assert_eq!(t.fps.len(), 10_000);
        assert!(t.slots.len() * 5 >= t.fps.len() * 8);
        for i in 0..10_000u32 {
            assert_eq!(t.find(fp(i)), Lookup::Known(i));
        }
        assert!(matches!(t.find(fp(10_000)), Lookup::Vacant(_)));
    }

    #[test]
    fn fingerprints_sharing_a_slot_and_its_bits_stay_apart() {
        // The same home slot and the same 32 bits in it, different elsewhere: two states.
        let mut t = StateTable::new();
        let a = (7u128 << 96) | (5 << 64) | 1;
        let b = (7u128 << 96) | (5 << 64) | 2;
        let Lookup::Vacant(s) = t.find(a) else {
            panic!()
        };
        t.insert_at(s, a, 0);
        let Lookup::Vacant(s) = t.find(b) else {
            panic!()
        };
        t.insert_at(s, b, 1);
        assert_eq!(t.find(a), Lookup::Known(0));
        assert_eq!(t.find(b), Lookup::Known(1));
        // An all-zero fingerprint is a state like any other.
        let Lookup::Vacant(s) = t.find(0) else {
            panic!()
        };
        t.insert_at(s, 0, 2);
        assert_eq!(t.find(0), Lookup::Known(2));
    }
}
