//! The explorer's incremental-state plumbing, one trait for every model: a change record that
//! names what steps changed since it was cleared, copies that take only what a record names,
//! and hashing apart the model's own fields and each 2 MiB region, so that an explorer
//! stepping one scratch state through every choice copies, checks and fingerprints what a
//! step changed instead of the whole state.
//!
//! The S-EPT model (`sept/snapshot.rs`), KVM's model (`kvm/snapshot.rs`) and the world
//! (`world/snapshot.rs`, composing the two with the actors a step ran) implement it; the
//! copy-back in both directions is written once, here.

use core::hash::Hasher;

/// The change-record methods of a [`Snapshot`] whose record is one field of a type with
/// `clear` and `absorb` (the S-EPT and KVM models keep a `sept::Dirty` each).
macro_rules! change_record_in {
    ($field:ident: $changes:ty) => {
        /// The regions (and own fields) changed since the record was last cleared.
        fn changes(&self) -> $changes {
            self.$field
        }

        fn clear_changes(&mut self) {
            self.$field.clear();
        }

        fn absorb_changes(&mut self, changes: &$changes) {
            self.$field.absorb(changes);
        }
    };
}
pub(crate) use change_record_in;

/// A state kept up to date, and put back, by what changed.
pub trait Snapshot {
    /// The change record: what may differ from the state it was cleared in. It is
    /// bookkeeping, not state: it compares equal and hashes to nothing.
    type Changes: Copy;

    /// The change record.
    fn changes(&self) -> Self::Changes;

    /// Starts a new record of what the next steps change.
    fn clear_changes(&mut self);

    /// Adds `changes` to the record (an explorer moving a record between copies): a copy
    /// that differs from another only where its record says can be brought back by
    /// [`Snapshot::revert_to`].
    fn absorb_changes(&mut self, changes: &Self::Changes);

    /// Copies from `other` what `changes` names (everything when it cannot place a change)
    /// and takes `other`'s record, given that both are equal everywhere else.
    fn copy_changed(&mut self, other: &Self, changes: &Self::Changes);

    /// Hashes everything but the regions and what is fixed when the model is built: with
    /// [`Snapshot::hash_region`] of every region, it tells apart every two states of one model.
    fn hash_small<H: Hasher>(&self, h: &mut H);

    /// Whether everything [`Snapshot::hash_small`] hashes is equal in both.
    fn small_eq(&self, other: &Self) -> bool;

    /// Hashes region `r`'s records and tables.
    fn hash_region<H: Hasher>(&self, r: usize, h: &mut H);

    /// Makes this state equal to `other`, given that it equals what `other` was when its
    /// change record was last cleared: copies only what changed.
    fn sync_from(&mut self, other: &Self) {
        let changes = other.changes();
        self.copy_changed(other, &changes);
    }

    /// Undoes what changed since the change record was cleared, given that `original` is the
    /// state from then.
    fn revert_to(&mut self, original: &Self) {
        let changes = self.changes();
        self.copy_changed(original, &changes);
    }
}
