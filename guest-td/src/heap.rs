//! A bump allocator over a static arena. tdx-guest links against `alloc`, so the image needs a
//! global allocator; the payload itself does not allocate. Memory is never reclaimed.

use core::{
    alloc::{GlobalAlloc, Layout},
    cell::UnsafeCell,
    ptr,
    sync::atomic::{AtomicUsize, Ordering},
};

/// Size of the heap arena (in .bss).
const ARENA_SIZE: usize = 16 * 1024;

/// The arena's bytes; handed out by [`BumpAllocator`] only.
#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_SIZE]>);

/// Hands out consecutive ranges of [`Arena`]; `next` is the offset of the first free byte.
pub struct BumpAllocator {
    arena: Arena,
    next: AtomicUsize,
}

// SAFETY: the arena's bytes are only reached through pointers returned by `alloc`, and `alloc`
// reserves each range with an atomic compare-exchange on `next`, so no two callers (on any
// vCPU) ever receive overlapping ranges.
unsafe impl Sync for BumpAllocator {}

impl BumpAllocator {
    const fn new() -> Self {
        BumpAllocator {
            arena: Arena(UnsafeCell::new([0; ARENA_SIZE])),
            next: AtomicUsize::new(0),
        }
    }
}

// SAFETY: `alloc` returns either null or a pointer into the arena, aligned to `layout.align()`,
// followed by at least `layout.size()` bytes that lie inside the arena and that no earlier call
// returned (the offset only grows). `dealloc` does nothing, which is always allowed.
unsafe impl GlobalAlloc for BumpAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.arena.0.get().cast::<u8>();
        let base_addr = base as usize;
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let Some(start) = base_addr
                .checked_add(next)
                .and_then(|addr| addr.checked_next_multiple_of(layout.align()))
                .map(|addr| addr - base_addr)
            else {
                return ptr::null_mut();
            };
            let Some(end) = start.checked_add(layout.size()) else {
                return ptr::null_mut();
            };
            if end > ARENA_SIZE {
                return ptr::null_mut();
            }
            match self
                .next
                .compare_exchange_weak(next, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return base.wrapping_add(start),
                Err(current) => next = current,
            }
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOCATOR: BumpAllocator = BumpAllocator::new();
