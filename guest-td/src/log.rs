//! defmt logging into a ring in the payload's memory ([`hugesept_core::payload::log`]): every
//! vCPU's frames go into one ring under a cross-CPU lock, as records {vCPU, length, frame};
//! the VMM finds the ring by its symbol and decodes the frames with defmt-decoder from this
//! ELF's `.defmt` section. A line costs a few stores, no exit. Timestamps are the TSC.
//!
//! The lock is taken with the vCPU's index as owner: a frame begun by an exception handler on
//! a vCPU that was itself logging (the lock is its own) is dropped rather than deadlocking,
//! and a frame longer than [`MAX_FRAME`] is dropped too.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hugesept_core::payload::log::{
    LOG_CAPACITY_AT, LOG_HEADER, LOG_MAGIC, LOG_VERSION, LOG_WRITTEN_AT, MAX_FRAME, RECORD_HEADER,
};

/// Data bytes in the ring.
const CAPACITY: usize = 64 << 10;

/// The ring: header, then data. The VMM reads it by the symbol `HUGESEPT_LOG`.
#[repr(C, align(64))]
pub struct Ring {
    header: [u8; LOG_HEADER],
    data: UnsafeCell<[u8; CAPACITY]>,
}

const fn ring_header() -> [u8; LOG_HEADER] {
    let mut h = [0u8; LOG_HEADER];
    let magic = LOG_MAGIC.to_le_bytes();
    let version = LOG_VERSION.to_le_bytes();
    let capacity = (CAPACITY as u32).to_le_bytes();
    let mut i = 0;
    while i < 8 {
        h[i] = magic[i];
        i += 1;
    }
    let mut i = 0;
    while i < 4 {
        h[8 + i] = version[i];
        h[LOG_CAPACITY_AT + i] = capacity[i];
        i += 1;
    }
    h
}

// SAFETY: the data is written only under `OWNER` (one vCPU at a time) and read by the VMM, not
// by Rust code; the header's `written` word is reached only through `written()`, atomically.
unsafe impl Sync for Ring {}

/// The ring.
#[unsafe(no_mangle)]
#[used]
pub static HUGESEPT_LOG: Ring = Ring {
    header: ring_header(),
    data: UnsafeCell::new([0; CAPACITY]),
};

/// The header's bytes-written word.
fn written() -> &'static AtomicU64 {
    let at = HUGESEPT_LOG.header.as_ptr().wrapping_add(LOG_WRITTEN_AT);
    // SAFETY: the word is 8-byte aligned (the header is 64-byte aligned, the offset 16), lives
    // as long as the static, and is only ever accessed through this atomic (the VMM reads it
    // too, from outside the program).
    unsafe { AtomicU64::from_ptr(at.cast_mut().cast()) }
}

/// The vCPU holding the lock, plus one (0: free).
static OWNER: AtomicU64 = AtomicU64::new(0);
/// The frame being built (under the lock) and its length; `DROP` when it is to be discarded.
struct Frame(UnsafeCell<([u8; MAX_FRAME], usize)>);
// SAFETY: only the lock's owner touches the frame.
unsafe impl Sync for Frame {}
static FRAME: Frame = Frame(UnsafeCell::new(([0; MAX_FRAME], 0)));
static DROP: AtomicBool = AtomicBool::new(false);
struct Encoder(UnsafeCell<defmt::Encoder>);
// SAFETY: only the lock's owner touches the encoder.
unsafe impl Sync for Encoder {}
static ENCODER: Encoder = Encoder(UnsafeCell::new(defmt::Encoder::new()));

/// The encoder (the caller holds the lock).
fn encoder() -> &'static mut defmt::Encoder {
    // SAFETY: every caller holds the lock (acquire, write, release), so this is the only
    // reference to the encoder while it lives.
    unsafe { &mut *ENCODER.0.get() }
}

/// Whether this vCPU holds the lock as a nested (dropped) frame.
static NESTED: [AtomicBool; crate::cpu::CPUS] =
    [const { AtomicBool::new(false) }; crate::cpu::CPUS];

fn me() -> u64 {
    crate::cpu::this().index
}

fn push(bytes: &[u8]) {
    // SAFETY: called only by the lock's owner (from the encoder callbacks below).
    let (buf, len) = unsafe { &mut *FRAME.0.get() };
    match buf.get_mut(*len..*len + bytes.len()) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            *len += bytes.len();
        }
        None => DROP.store(true, Ordering::Relaxed),
    }
}

/// Appends the finished frame as a record for `vcpu`.
fn commit(vcpu: u8) {
    // SAFETY: called only by the lock's owner.
    let (buf, len) = unsafe { &*FRAME.0.get() };
    let mut rec = [0u8; RECORD_HEADER + MAX_FRAME];
    let Some(n) = hugesept_core::payload::log::encode_record(vcpu, &buf[..*len], &mut rec) else {
        return;
    };
    let at = written().load(Ordering::Relaxed);
    let data = HUGESEPT_LOG.data.get().cast::<u8>();
    for (k, b) in rec[..n].iter().enumerate() {
        let pos = (at as usize + k) % CAPACITY;
        // SAFETY: `pos < CAPACITY`, inside the ring's data, written only by the lock's owner.
        unsafe { data.wrapping_add(pos).write_volatile(*b) };
    }
    written().store(at + n as u64, Ordering::Release);
}

#[defmt::global_logger]
struct Logger;

// SAFETY: `acquire` takes a cross-CPU lock (or marks the frame nested and dropped when this vCPU
// already holds it, i.e. an exception handler interrupted its logging), the other methods run
// only between `acquire` and `release` on the same vCPU, and the encoder and frame are touched
// only by the lock's owner.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        let me = me();
        if OWNER.load(Ordering::Acquire) == me + 1 {
            NESTED[me as usize].store(true, Ordering::Relaxed);
            return;
        }
        while OWNER
            .compare_exchange(0, me + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        DROP.store(false, Ordering::Relaxed);
        // SAFETY: the lock is ours: nobody else touches the frame.
        unsafe { (*FRAME.0.get()).1 = 0 };
        encoder().start_frame(push);
    }

    unsafe fn flush() {}

    unsafe fn release() {
        let me = me();
        if NESTED[me as usize].swap(false, Ordering::Relaxed) {
            return;
        }
        encoder().end_frame(push);
        if !DROP.load(Ordering::Relaxed) {
            commit(me as u8);
        }
        OWNER.store(0, Ordering::Release);
    }

    unsafe fn write(bytes: &[u8]) {
        if NESTED[me() as usize].load(Ordering::Relaxed) {
            return;
        }
        encoder().write(bytes, push);
    }
}

defmt::timestamp!("{=u64}", {
    // SAFETY: RDTSC has no memory effects and is allowed at CPL 0 in a TD and in a VM.
    unsafe { core::arch::x86_64::_rdtsc() }
});
