//! `kvm->mmu_lock`, a reader/writer lock whose acquisition is a step that can wait.
//!
//! The fault path maps under the read lock; splits and removals that must succeed run under the
//! write lock (shared/reference/kvm-fault-path.md). Linux's queued rwlock lets a waiting writer
//! hold off new readers, so a writer is not starved: [`MmuLock::try_read`] fails while a writer
//! waits.

/// The lock's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MmuLock {
    readers: u16,
    writer: bool,
    writers_waiting: u16,
}

/// A release of a lock that was not held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NotHeld;

impl MmuLock {
    /// Readers holding the lock.
    pub const fn readers(&self) -> u16 {
        self.readers
    }

    /// Whether a writer holds it.
    pub const fn write_held(&self) -> bool {
        self.writer
    }

    /// Writers waiting for it.
    pub const fn writers_waiting(&self) -> u16 {
        self.writers_waiting
    }

    /// Takes the lock for read, unless a writer holds it or waits for it.
    pub fn try_read(&mut self) -> bool {
        if self.writer || self.writers_waiting > 0 {
            return false;
        }
        match self.readers.checked_add(1) {
            Some(n) => {
                self.readers = n;
                true
            }
            None => false,
        }
    }

    /// Releases a read hold.
    pub fn release_read(&mut self) -> Result<(), NotHeld> {
        self.readers = self.readers.checked_sub(1).ok_or(NotHeld)?;
        Ok(())
    }

    /// A writer starts waiting (queued rwlock: new readers now wait behind it).
    pub fn queue_writer(&mut self) {
        self.writers_waiting = self.writers_waiting.saturating_add(1);
    }

    /// A queued writer takes the lock once it is free.
    pub fn try_write(&mut self) -> bool {
        if self.writer || self.readers > 0 || self.writers_waiting == 0 {
            return false;
        }
        self.writers_waiting = self.writers_waiting.saturating_sub(1);
        self.writer = true;
        true
    }

    /// Releases the write hold.
    pub fn release_write(&mut self) -> Result<(), NotHeld> {
        if !self.writer {
            return Err(NotHeld);
        }
        self.writer = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_writer_holds_off_new_readers() {
        let mut l = MmuLock::default();
        assert!(l.try_read());
        l.queue_writer();
        assert!(!l.try_read(), "a queued writer blocks new readers");
        assert!(!l.try_write(), "the writer waits for the reader");
        l.release_read().unwrap();
        assert!(l.try_write());
        assert!(!l.try_read());
        l.release_write().unwrap();
        assert!(l.try_read());
        assert_eq!(l.release_write(), Err(NotHeld));
        assert!(!l.try_write(), "only a queued writer takes the lock");
    }
}
