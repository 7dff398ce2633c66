//! Real loads and stores on the window's private pages: markers written over a page, pages
//! read back word by word and decoded with [`hugesept_core::payload::page_content`].
//!
//! The program touches a window page only between [`hugesept_core::payload::Call::AccessBegin`]
//! answered "go" (the model says the page is accepted and the access retires) and
//! [`hugesept_core::payload::Call::AccessEnd`], and only inside the window the boot block
//! names (validated in src/boot.rs). The window is identity-mapped by the loader.

use hugesept_core::abi::{Gpa, PAGE_SIZE_4K};
use hugesept_core::payload::{content_word, page_content};
use hugesept_core::sept::Content;

/// 64-bit words in a 4K page.
const WORDS_PER_PAGE: usize = (PAGE_SIZE_4K / 8) as usize;

/// The window the boot block names: [start, end).
#[derive(Clone, Copy)]
pub struct Window {
    start: u64,
    end: u64,
}

impl Window {
    /// The validated window.
    pub const fn new(start: Gpa, end: Gpa) -> Window {
        Window {
            start: start.raw(),
            end: end.raw(),
        }
    }

    /// Whether `pages` 4K pages from `gpa` lie inside it.
    fn holds(&self, gpa: Gpa, pages: u32) -> bool {
        let len = u64::from(pages) * PAGE_SIZE_4K;
        gpa.raw() >= self.start
            && gpa.raw().checked_add(len).is_some_and(|e| e <= self.end)
            && gpa.raw().is_multiple_of(PAGE_SIZE_4K)
    }

    /// Writes `content`'s marker word into every 8 bytes of `pages` pages from `gpa`. Returns
    /// false (writing nothing) if the range is not inside the window.
    pub fn write(&self, gpa: Gpa, pages: u32, content: Content) -> bool {
        if !self.holds(gpa, pages) {
            return false;
        }
        let word = content_word(content);
        let base = gpa.raw() as *mut u64;
        for i in 0..(pages as usize * WORDS_PER_PAGE) {
            // SAFETY: the range is inside the window (checked above), which the loader
            // identity-maps and no Rust object lives in; the model has just said the pages are
            // accepted and this vCPU's access retires (the caller's AccessBegin), so the TDX
            // module (here the VMM) lets the store through. Volatile: the VMM reads the pages.
            unsafe { base.wrapping_add(i).write_volatile(word) };
        }
        true
    }

    /// What the 4K page at `gpa` holds: `Some(content)` when every word encodes it, `None`
    /// when the words differ or encode nothing (torn or foreign data), or the page is outside
    /// the window.
    pub fn read(&self, gpa: Gpa) -> Option<Content> {
        if !self.holds(gpa, 1) {
            return None;
        }
        let base = gpa.raw() as *const u64;
        page_content((0..WORDS_PER_PAGE).map(|i| {
            // SAFETY: as in `write`: inside the identity-mapped window, accepted as far as the
            // model says, no Rust object there; volatile because the VMM writes these pages.
            unsafe { base.wrapping_add(i).read_volatile() }
        }))
    }
}
