//! The explored graph's transitions, packed: a target state and its choice in one 32-bit word
//! ([`Step`]: 28 bits of id, 4 of choice), eight bytes a transition with its source, kept in
//! fixed chunks so that the list grows without moving what it holds (a list of a hundred
//! million transitions is never copied whole, nor held twice while it grows) and lists are
//! joined without copying.

use hugesept_core::world::{Choice, MAX_CHOICES, MAX_VCPUS};

/// Bits of a state id in a [`Step`].
const ID_BITS: u32 = 28;

/// The most states an exploration numbers (ids fit [`ID_BITS`] bits: 268 million states,
/// tens of gigabytes of graph, more than these machines hold).
pub(super) const MAX_STATES: usize = (1 << ID_BITS) - 1;

// Every choice has a code below 16.
const _: () = assert!(MAX_CHOICES <= 1 << (32 - ID_BITS));

/// A transition's target and choice in one word. Codes follow [`Choice`]'s order (vCPU steps,
/// interrupts, host steps, each by index), so steps sort by choice as their codes sort.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Step(u32);

impl Step {
    pub(super) fn new(to: u32, c: Choice) -> Step {
        let code = match c {
            Choice::Vcpu(i) => u32::from(i),
            Choice::Interrupt(i) => MAX_VCPUS as u32 + u32::from(i),
            Choice::Host(i) => 2 * MAX_VCPUS as u32 + u32::from(i),
        };
        Step((code << ID_BITS) | (to & MAX_STATES as u32))
    }

    pub(super) fn to(self) -> u32 {
        self.0 & MAX_STATES as u32
    }

    /// The choice's code (its place in [`Choice`]'s order).
    pub(super) fn code(self) -> u32 {
        self.0 >> ID_BITS
    }

    pub(super) fn choice(self) -> Choice {
        let code = self.code();
        let v = MAX_VCPUS as u32;
        // Codes come from `new`: at most MAX_CHOICES - 1, so each index fits a u8.
        let index = |c: u32| u8::try_from(c).unwrap_or(u8::MAX);
        if code < v {
            Choice::Vcpu(index(code))
        } else if code < 2 * v {
            Choice::Interrupt(index(code - v))
        } else {
            Choice::Host(index(code - 2 * v))
        }
    }
}

/// Transitions a chunk holds.
const CHUNK: usize = 1 << 16;

/// Transitions (source, [`Step`]) in chunks of [`CHUNK`].
#[derive(Default)]
pub(super) struct Edges {
    chunks: Vec<Vec<(u32, Step)>>,
    len: usize,
}

impl Edges {
    pub(super) fn push(&mut self, from: u32, to: u32, c: Choice) {
        let room = self.chunks.last().is_some_and(|l| l.len() < l.capacity());
        if !room {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(last) = self.chunks.last_mut() {
            last.push((from, Step::new(to, c)));
            self.len += 1;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Every transition, in the order recorded (chunk by chunk, as appended).
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, Step)> + '_ {
        self.chunks.iter().flatten().copied()
    }

    /// Appends `other`'s transitions, moving its chunks (nothing is copied).
    pub(super) fn append(&mut self, other: Edges) {
        self.len += other.len;
        // A partly filled last chunk stays where it is; pushes go to the last chunk.
        self.chunks.extend(other.chunks);
    }

    /// Bytes the list holds once `k` more transitions are pushed (an upper bound: a chunk
    /// for every [`CHUNK`] of them beyond the room left, and the chunk list's room).
    pub(super) fn bytes_after(&self, k: usize) -> usize {
        let room = self
            .chunks
            .last()
            .map_or(0, |l| l.capacity().saturating_sub(l.len()));
        let new_chunks = k.saturating_sub(room).div_ceil(CHUNK);
        let held: usize = self.chunks.iter().map(Vec::capacity).sum();
        (held + new_chunks * CHUNK) * size_of::<(u32, Step)>()
            + (self.chunks.len() + new_chunks).next_power_of_two() * size_of::<Vec<(u32, Step)>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_keep_their_target_and_choice_and_sort_by_choice() {
        let mut all = Vec::new();
        for i in 0..MAX_VCPUS as u8 {
            all.push(Choice::Vcpu(i));
        }
        for i in 0..MAX_VCPUS as u8 {
            all.push(Choice::Interrupt(i));
        }
        for i in 0..hugesept_core::world::MAX_HOSTS as u8 {
            all.push(Choice::Host(i));
        }
        assert_eq!(all.len(), MAX_CHOICES);
        for (k, &c) in all.iter().enumerate() {
            for to in [0, 1, 12345, MAX_STATES as u32] {
                let s = Step::new(to, c);
                assert_eq!((s.to(), s.choice()), (to, c));
                assert_eq!(s.code() as usize, k);
            }
        }
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, all, "codes follow Choice's order");
    }

    #[test]
    fn lists_grow_by_chunks_and_join_without_losing_order() {
        let mut a = Edges::default();
        let mut b = Edges::default();
        for i in 0..(CHUNK as u32 + 10) {
            a.push(i, i + 1, Choice::Vcpu((i % 4) as u8));
        }
        for i in 0..7u32 {
            b.push(1_000_000 + i, i, Choice::Host(1));
        }
        assert_eq!(a.chunks.len(), 2);
        let before = a.bytes_after(0);
        assert!(a.bytes_after(CHUNK) > before);
        a.append(b);
        assert_eq!(a.len(), CHUNK + 17);
        let all: Vec<_> = a.iter().collect();
        assert_eq!(all.len(), a.len());
        assert_eq!(all[0], (0, Step::new(1, Choice::Vcpu(0))));
        assert_eq!(all[CHUNK + 10], (1_000_000, Step::new(0, Choice::Host(1))));
        // Pushes after a join go on at the end.
        a.push(9, 9, Choice::Interrupt(3));
        assert_eq!(
            a.iter().last(),
            Some((9, Step::new(9, Choice::Interrupt(3))))
        );
        assert!(a.bytes_after(0) >= a.len() * 8);
    }
}
