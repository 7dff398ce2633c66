//! Bringing up the other vCPUs the way a TD must: through the ACPI multiprocessor-wakeup
//! mailbox the MADT names ([`hugesept_core::payload::acpi`]). For each vCPU, one at a time, the
//! boot vCPU publishes the vCPU's index in [`WAKING`], writes the processor's APIC ID and the
//! wakeup vector (`_ap_start`, src/entry.rs) into the mailbox, then the command (1, wakeup)
//! with release ordering, and waits until the firmware has cleared the command (its
//! acknowledgement; Linux madt_wakeup.c waits without a timeout, since a timeout is a VMM's
//! lever) and the woken vCPU has counted itself in [`STARTED`] — only then may [`WAKING`]
//! change. The mailbox is written with volatile accesses: the firmware reads and clears it.

use core::sync::atomic::{AtomicU64, Ordering, fence};

use hugesept_core::payload::acpi::{
    AcpiError, MAILBOX_APIC_ID, MAILBOX_COMMAND, MAILBOX_SIZE, MAILBOX_WAKEUP,
    MAILBOX_WAKEUP_VECTOR, Madt,
};

/// The index of the vCPU being woken (read by `_ap_start` before it has a stack).
#[unsafe(no_mangle)]
pub static WAKING: AtomicU64 = AtomicU64::new(0);
/// vCPUs that reached [`crate::ap_main`].
pub static STARTED: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" {
    /// The wakeup vector (src/entry.rs).
    fn _ap_start() -> !;
}

/// Why vCPUs could not be woken.
#[derive(Clone, Copy, Debug)]
pub enum SmpError {
    /// The ACPI tables could not be read.
    Acpi(AcpiError),
    /// The MADT has no multiprocessor-wakeup structure.
    NoMailbox,
    /// The mailbox is not 4K aligned or not in low memory.
    BadMailbox(u64),
    /// No enabled processor has the vCPU's APIC ID (the vCPU index).
    NoProcessor(u64),
}

impl core::fmt::Display for SmpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SmpError::Acpi(e) => write!(f, "the ACPI tables: {e}"),
            SmpError::NoMailbox => f.write_str("the MADT has no multiprocessor-wakeup structure"),
            SmpError::BadMailbox(at) => write!(f, "the wakeup mailbox at {at:#x} is unusable"),
            SmpError::NoProcessor(i) => write!(f, "no enabled processor has APIC ID {i}"),
        }
    }
}

/// Reads the ACPI tables through `rsdp` with volatile loads of identity-mapped memory below
/// 4 GiB (where firmware places them).
pub fn read_madt(rsdp: u64) -> Result<Madt, SmpError> {
    hugesept_core::payload::acpi::read_madt(rsdp, &mut |gpa, buf| {
        let Some(end) = gpa.checked_add(buf.len() as u64) else {
            return false;
        };
        if gpa == 0 || end > 1 << 32 {
            return false;
        }
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: [gpa, end) lies below 4 GiB, which every entry identity-maps (the
            // hugesept VMM's and td-shim's page tables, and the PVH entry's); the firmware put
            // its tables there and no Rust object lives in firmware memory.
            *b = unsafe { (gpa as *const u8).wrapping_add(i).read_volatile() };
        }
        true
    })
    .map_err(SmpError::Acpi)
}

/// Wakes vCPUs 1 to `count - 1` through `madt`'s mailbox; returns when each has started.
pub fn wake(madt: &Madt, count: u64) -> Result<(), SmpError> {
    let (mailbox, _) = madt.mailbox.ok_or(SmpError::NoMailbox)?;
    if !mailbox.is_multiple_of(4096) || mailbox == 0 || mailbox + MAILBOX_SIZE as u64 > 1 << 32 {
        return Err(SmpError::BadMailbox(mailbox));
    }
    let vector = _ap_start as *const () as usize as u64;
    for index in 1..count {
        if !madt.apic_ids().contains(&(index as u32)) {
            return Err(SmpError::NoProcessor(index));
        }
        let before = STARTED.load(Ordering::Acquire);
        WAKING.store(index, Ordering::Release);
        let base = mailbox as *mut u8;
        // SAFETY: the mailbox is a 4 KiB page below 4 GiB (checked above) that the MADT
        // gives the OS to write; these are the ApicId and WakeupVector fields (ACPI Table
        // 5.46), written before the command that publishes them.
        unsafe {
            base.wrapping_add(MAILBOX_APIC_ID)
                .cast::<u32>()
                .write_volatile(index as u32);
        }
        // SAFETY: as above: the WakeupVector field, 8-byte aligned in the mailbox page.
        unsafe {
            base.wrapping_add(MAILBOX_WAKEUP_VECTOR)
                .cast::<u64>()
                .write_volatile(vector);
        }
        fence(Ordering::Release);
        let command = base.wrapping_add(MAILBOX_COMMAND).cast::<u16>();
        // SAFETY: the Command field at the mailbox's start; the firmware reads it.
        unsafe { command.write_volatile(MAILBOX_WAKEUP) };
        // SAFETY: reading the Command field the firmware clears to acknowledge.
        while unsafe { command.read_volatile() } != 0 {
            core::hint::spin_loop();
        }
        while STARTED.load(Ordering::Acquire) == before {
            core::hint::spin_loop();
        }
    }
    Ok(())
}
