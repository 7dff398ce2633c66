//! Real loads and stores on the window's private pages: markers written over a page, pages
//! read back word by word and decoded with [`hugesept_core::payload::page_content`].
//!
//! The loads and stores are the two assembly loops below, each of whose memory instructions has
//! an exception-table entry: a #VE there (a PENDING page with #VE enabled — the VMM keeps pages
//! the model has not accepted out of the guest's mapping, so the access exits and the VMM
//! delivers #VE where the TDX module would) makes the #VE handler (src/exceptions.rs) resume at
//! the loop's fixup, which returns the address whose access took it. Any other exit the access
//! takes (an EPT violation KVM resolves, the TD killed) is invisible here: the instruction runs
//! again, or never. The program touches only the window the boot block names (validated in
//! src/boot.rs), which the loader identity-maps.

use hugesept_core::abi::{Gpa, PAGE_SIZE_4K};
use hugesept_core::payload::{content_word, page_content};
use hugesept_core::sept::Content;

/// 64-bit words in a 4K page.
const WORDS_PER_PAGE: usize = (PAGE_SIZE_4K / 8) as usize;

// hs_fill(dst, pages, value) -> 0, or the address of the page whose probe load took #VE.
// hs_copy_in(src, dst, words) -> 0, or the source address whose load took #VE.
//
// A load of a page the VMM keeps out of the guest's mapping stops before it happens (KVM
// reports it before emulating anything), so the VMM can give it the TDX module's fault
// semantics: an EPT violation the instruction is executed again after, or a #VE at the
// instruction. A store there KVM reports only after emulating it past its instruction. So
// hs_fill loads from each page before it stores to it: the load is where a page that is not
// accepted stops the fill (the VMM keeps a page's mapping fixed while the access is in
// flight), and the string store over the page then runs without exits.
//
// Each instruction that can take #VE has an entry in .hs_extable: its address, then its fixup
// (link.ld collects the entries between __hs_extable_start and __hs_extable_end).
core::arch::global_asm!(
    ".section .text.hs_touch, \"ax\", @progbits",
    ".global hs_fill",
    "hs_fill:",
    "    mov rax, rdx",
    "    cld",
    "    test rsi, rsi",
    "    jz 4f",
    "2:  mov rcx, qword ptr [rdi]",
    "    mov ecx, {words}",
    "    rep stosq",
    "    dec rsi",
    "    jnz 2b",
    "4:  xor eax, eax",
    "    ret",
    "3:  mov rax, rdi",
    "    ret",
    ".pushsection .hs_extable, \"a\", @progbits",
    ".balign 8",
    ".quad 2b, 3b",
    ".popsection",
    ".global hs_copy_in",
    "hs_copy_in:",
    // The string move copies from RSI to RDI; a load that takes #VE leaves RSI at its element.
    "    xchg rdi, rsi",
    "    mov rcx, rdx",
    "    cld",
    "2:  rep movsq",
    "    xor eax, eax",
    "    ret",
    "3:  mov rax, rsi",
    "    ret",
    ".pushsection .hs_extable, \"a\", @progbits",
    ".balign 8",
    ".quad 2b, 3b",
    ".popsection",
    words = const WORDS_PER_PAGE,
);

unsafe extern "C" {
    fn hs_fill(dst: *mut u64, pages: u64, value: u64) -> u64;
    fn hs_copy_in(src: *const u64, dst: *mut u64, words: u64) -> u64;
    static __hs_extable_start: [u64; 2];
    static __hs_extable_end: [u64; 2];
}

/// Where execution resumes when the instruction at `rip` takes #VE, if it is one of the
/// loops' memory instructions.
pub fn fixup(rip: u64) -> Option<u64> {
    let start = (&raw const __hs_extable_start).addr();
    let end = (&raw const __hs_extable_end).addr();
    let n = end.saturating_sub(start) / core::mem::size_of::<[u64; 2]>();
    (0..n).find_map(|i| {
        let entry = (start as *const [u64; 2]).wrapping_add(i);
        // SAFETY: [start, end) is the .hs_extable section link.ld lays out, an array of
        // (fault, fixup) address pairs the assembly above wrote; `i < n` keeps the read inside.
        let [fault, fix] = unsafe { entry.read() };
        (fault == rip).then_some(fix)
    })
}

/// What a touch of window memory ended in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch<T> {
    /// Every access retired.
    Done(T),
    /// The access at this address took #VE; the ones before it retired.
    Ve(u64),
}

/// The range lies outside the window the boot block names.
#[derive(Clone, Copy, Debug)]
pub struct OutsideWindow;

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

    /// Writes `content`'s marker word into every 8 bytes of `pages` pages from `gpa`.
    pub fn write(
        &self,
        gpa: Gpa,
        pages: u32,
        content: Content,
    ) -> Result<Touch<()>, OutsideWindow> {
        if !self.holds(gpa, pages) {
            return Err(OutsideWindow);
        }
        // SAFETY: the range is inside the window (checked above), which the loader
        // identity-maps and no Rust object lives in; a store that takes #VE resumes at the
        // loop's fixup, which returns. The VMM reads these pages, so the stores are plain
        // instructions in assembly the compiler cannot elide.
        let at = unsafe {
            hs_fill(
                gpa.raw() as *mut u64,
                u64::from(pages),
                content_word(content),
            )
        };
        Ok(if at == 0 {
            Touch::Done(())
        } else {
            Touch::Ve(at)
        })
    }

    /// What the 4K page at `gpa` holds: `Some(content)` when every word encodes it, `None`
    /// when the words differ or encode nothing (torn or foreign data).
    pub fn read(&self, gpa: Gpa) -> Result<Touch<Option<Content>>, OutsideWindow> {
        if !self.holds(gpa, 1) {
            return Err(OutsideWindow);
        }
        let mut words = [0u64; WORDS_PER_PAGE];
        // SAFETY: as in `write`: the source page is inside the identity-mapped window, the
        // destination is this local array of exactly `WORDS_PER_PAGE` words; a load that takes
        // #VE resumes at the fixup.
        let at = unsafe {
            hs_copy_in(
                gpa.raw() as *const u64,
                words.as_mut_ptr(),
                WORDS_PER_PAGE as u64,
            )
        };
        Ok(if at == 0 {
            Touch::Done(page_content(words))
        } else {
            Touch::Ve(at)
        })
    }
}
