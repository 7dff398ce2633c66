//! The guests: how real TD firmware and kernels accept memory, as step machines that issue
//! TDCALLs or memory operations and react to what comes back (shared/reference/guests.md).
//!
//! A guest sees only what a real one sees: the status an ACCEPT retires with (an EPT-violation
//! exit is invisible to it — the TDCALL simply runs again after the host resolved the fault),
//! the content a read returns, or a #VE. Each strategy accepts its ranges by its own rules,
//! then writes a content marker over what it accepted and checks it at the end, so data the
//! host lost is noticed; each has a fatal path (the guest panics) where the real one has.
//!
//! Two strategies need state shared between vCPUs, which the world keeps: linux-lazy asks the
//! world for each 2 MiB unit of the pages it uses (the EFI unaccepted-memory bitmap and the lock
//! that serialises a unit, drivers/firmware/efi/unaccepted_memory.c), and OVMF or td-shim running
//! on several vCPUs each take every n-th chunk of the range ([`Guest::strided`]).

mod complete;
mod display;
mod plan;
pub mod rules;

use core::fmt;

use crate::abi::{AcceptOperand, Gpa, PAGE_SIZE_2M as PAGE_2M, PageLevel, TdxStatus};
use crate::sept::Content;

pub use rules::Reaction;

/// The accept strategies of shared/reference/guests.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestKind {
    /// Linux `tdx_accept_memory` / `try_accept_one` (arch/x86/coco/tdx/tdx-shared.c):
    /// 1G → 2M → 4K, levels skipped when misaligned or too short; any non-zero status is a
    /// failure → next level; failure at 4K panics ("Failed to accept memory").
    Linux,
    /// Linux with lazy accept (drivers/firmware/efi/unaccepted_memory.c `accept_memory`): the
    /// pages it uses are accepted on demand, one 2 MiB unit at a time: a unit whose bit is set
    /// in the unaccepted bitmap is claimed under the lock (another vCPU wanting it spins until
    /// it is done), accepted with Linux's rules over [unit, unit + 2M), then its bit cleared.
    LinuxLazy,
    /// Linux's accept before the zone watermarks are set (mm/page_alloc.c `cond_accept_memory`
    /// as fixed by upstream 800f1059c99e, "mm/page_alloc: fix memory accept before watermarks
    /// gets initialized", stable 6.5+): unaccepted memory sits on the zone's list in
    /// MAX_PAGE_ORDER (4 MiB) blocks, and while the watermarks are still zero every allocation
    /// accepts one whole block, however little it needs (Dstack-TEE/dstack pull request 1220:
    /// 1024 TD exits per allocation on a 4K-only host, about 13 GiB on the boot CPU of a
    /// 248-vCPU TD). The program's range is the pages those allocations use (it marks and
    /// checks those); it accepts the whole 4 MiB blocks they lie in, each through
    /// `accept_memory` like linux-lazy's units (the bitmap's 2 MiB units claimed under its
    /// lock, `tdx_accept_memory`'s 1G → 2M → 4K, failure at 4K panics), a unit the bitmap does
    /// not hold (memory outside it, accepted at boot) skipped. After the watermarks the kernel
    /// accepts lazily: a later linux-lazy stage.
    LinuxEarly,
    /// EDK2 TdxLib AcceptPages.c: 2M → 4K; SIZE_MISMATCH → the 512 smaller pages;
    /// ALREADY_ACCEPTED counted and skipped; BUSY retried up to 3 times.
    Ovmf,
    /// td-shim tdx-tdcall/src/tdx.rs: 2M → 4K; SIZE_MISMATCH → 512 × 4K; ALREADY_ACCEPTED
    /// accepted only if the status equals 0x00000B0A_00000000 exactly (level bits → panic);
    /// BUSY retried up to 5 times.
    TdShim,
    /// The tdx-guest crate 0.6.0: 1G → 2M → 4K skipping misaligned; SIZE_MISMATCH → next level;
    /// ALREADY_ACCEPTED at 4K is accepted, at 2M/1G split into the smaller level; BUSY is an
    /// error returned (fatal here).
    TdxGuest,
    /// asterinas' parallel accept at boot (asterinas pull request 3640, ostd/src/mm/frame/
    /// unaccepted.rs and ostd/src/boot/smp.rs): memory above 4 GiB is left unaccepted by the
    /// firmware; every CPU accepts one contiguous share of its 2 MiB units (scenario files:
    /// `share = "contiguous"`, the default for this strategy), the APs early in their entry
    /// path, the BSP after it booted them, which then waits for all and panics if any failed.
    /// Each share goes through the tdx-guest crate's `accept_memory`, so the per-range rules
    /// are [`GuestKind::TdxGuest`]'s (BUSY an error, the boot panics). Measured in the pull
    /// request on 8 GiB: 25 s on 1 vCPU, 12 s on 4, 9 s on 8.
    Asterinas,
    /// coconut-svsm kernel/src/tdx/tdcall.rs: 2M → 4K; SIZE_MISMATCH → 4K; ALREADY_ACCEPTED →
    /// zero the page itself (accepted memory must read as zero).
    Svsm,
    /// A valid non-Linux guest that accepts 4K only; BUSY retried.
    Accept4kOnly,
    /// Touches memory before accepting: with #VE enabled the #VE handler accepts the page at 4K;
    /// with #VE disabled the touch kills the VM.
    TouchFirst,
    /// The bare TDCALL of the seed scenario: one ACCEPT of its whole range (4K or 2M), retried
    /// while BUSY, then it stops whatever the status; it writes no markers. Not a real guest:
    /// it isolates the race between two ACCEPTs from what a strategy does next.
    SingleAccept,
    /// Arbitrary operands from a seeded sequence: valid 4K and 2M ACCEPTs inside and around its
    /// range, 1G, shared and misaligned GPAs, reserved bits, double accepts, writes. It never
    /// panics and writes no markers; what it may break is the host, or other guests' data.
    Adversarial,
}

impl GuestKind {
    /// The real guests' strategies (shared/reference/guests.md): every kind but the seed
    /// scenario's bare [`GuestKind::SingleAccept`].
    pub const STRATEGIES: [GuestKind; 11] = [
        GuestKind::Linux,
        GuestKind::LinuxLazy,
        GuestKind::LinuxEarly,
        GuestKind::Ovmf,
        GuestKind::TdShim,
        GuestKind::TdxGuest,
        GuestKind::Asterinas,
        GuestKind::Svsm,
        GuestKind::Accept4kOnly,
        GuestKind::TouchFirst,
        GuestKind::Adversarial,
    ];

    /// Every kind this module implements.
    pub const ALL: [GuestKind; 12] = [
        GuestKind::Linux,
        GuestKind::LinuxLazy,
        GuestKind::LinuxEarly,
        GuestKind::Ovmf,
        GuestKind::TdShim,
        GuestKind::TdxGuest,
        GuestKind::Asterinas,
        GuestKind::Svsm,
        GuestKind::Accept4kOnly,
        GuestKind::TouchFirst,
        GuestKind::SingleAccept,
        GuestKind::Adversarial,
    ];

    /// The name scenario files use.
    pub const fn name(self) -> &'static str {
        match self {
            GuestKind::Linux => "linux",
            GuestKind::LinuxLazy => "linux-lazy",
            GuestKind::LinuxEarly => "linux-early",
            GuestKind::Ovmf => "ovmf",
            GuestKind::TdShim => "td-shim",
            GuestKind::TdxGuest => "tdx-guest",
            GuestKind::Asterinas => "asterinas",
            GuestKind::Svsm => "svsm",
            GuestKind::Accept4kOnly => "accept-4k-only",
            GuestKind::TouchFirst => "touch-first",
            GuestKind::SingleAccept => "single-accept",
            GuestKind::Adversarial => "adversarial",
        }
    }

    /// The strategy with this name.
    pub fn parse(name: &str) -> Option<GuestKind> {
        GuestKind::ALL.into_iter().find(|g| g.name() == name)
    }

    /// The largest level the strategy tries.
    pub const fn max_level(self) -> PageLevel {
        match self {
            GuestKind::Linux
            | GuestKind::LinuxLazy
            | GuestKind::LinuxEarly
            | GuestKind::TdxGuest
            | GuestKind::Asterinas => PageLevel::Size1G,
            GuestKind::Ovmf | GuestKind::TdShim | GuestKind::Svsm => PageLevel::Size2M,
            GuestKind::Accept4kOnly
            | GuestKind::TouchFirst
            | GuestKind::Adversarial
            | GuestKind::SingleAccept => PageLevel::Size4K,
        }
    }
}

impl GuestKind {
    /// Whether the strategy accepts through the unaccepted bitmap, one 2 MiB unit at a time
    /// under its lock (drivers/firmware/efi/unaccepted_memory.c `accept_memory`): linux-lazy
    /// and linux-early.
    pub const fn accepts_by_unit(self) -> bool {
        matches!(self, GuestKind::LinuxLazy | GuestKind::LinuxEarly)
    }
}

/// MAX_PAGE_ORDER's block (order 10 of 4K pages, 4 MiB on x86-64): what an allocation accepts
/// before the zone watermarks are set ([`GuestKind::LinuxEarly`]).
pub const MAX_PAGE_ORDER_BYTES: u64 = 4 << 20;

impl fmt::Display for GuestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a guest does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestOp {
    /// TDG.MEM.PAGE.ACCEPT with this operand.
    Accept(AcceptOperand),
    /// TDG.MEM.PAGE.ACCEPT with this raw RCX (possibly invalid).
    AcceptRaw(u64),
    /// A read of the private 4K page (a touch).
    Read(Gpa),
    /// A write of `content` over the private page of `level`.
    Write {
        /// The page.
        gpa: Gpa,
        /// 4K or 2M.
        level: PageLevel,
        /// What is written.
        content: Content,
    },
    /// Check that every 4K page of the `level` page holds `content` (the guest reading its
    /// markers back).
    Verify {
        /// The page.
        gpa: Gpa,
        /// 4K or 2M.
        level: PageLevel,
        /// What it should hold.
        content: Content,
    },
    /// linux-lazy: claim the 2 MiB unit at this GPA in the unaccepted bitmap (spinning while
    /// another vCPU accepts it).
    ClaimUnit(Gpa),
    /// linux-lazy: the unit is accepted; clear its bit and release it.
    ReleaseUnit(Gpa),
}

/// What came back to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestEvent {
    /// An ACCEPT retired with this status.
    Status(TdxStatus),
    /// A read returned this content.
    Read(Content),
    /// A #VE was delivered for the access (a PENDING page, #VE enabled).
    VirtualizationException,
    /// A write completed.
    Wrote,
    /// A verify found every page as written.
    Verified,
    /// The unit was claimed: its bit is set and this vCPU accepts it now.
    UnitClaimed,
    /// The unit's bit is clear: it is accepted already.
    UnitAccepted,
    /// The unit's bit is cleared and the claim released.
    UnitReleased,
    /// A verify found a page that does not hold the marker.
    Mismatch {
        /// The page.
        gpa: Gpa,
        /// What it held.
        found: Content,
    },
}

/// Why a guest stopped for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestEnd {
    /// All ranges accepted and their markers intact.
    Done,
    /// The strategy's fatal path: the ACCEPT at this operand retired with this status.
    Panic {
        /// The failing ACCEPT.
        op: AcceptOperand,
        /// Its status.
        status: TdxStatus,
    },
    /// A marker the guest wrote is gone.
    DataLoss {
        /// The page.
        gpa: Gpa,
        /// The marker.
        expected: Content,
        /// What the page held.
        found: Content,
    },
    /// The guest got an event it has no handling for (a model error, not a verdict).
    Confused,
}

/// One step of a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestStep {
    /// Perform this operation and hand the result to [`Guest::complete`].
    Op(GuestOp),
    /// The guest has stopped.
    End(GuestEnd),
}

/// Where a guest is in its program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    /// Accepting; `level` is the level to try at `pos` next.
    Accept {
        pos: Gpa,
        level: PageLevel,
        retries: u8,
    },
    /// Accepting the 512 children of a unit whose accept asked for it.
    Children {
        /// The parent unit.
        base: Gpa,
        /// The children's level.
        level: PageLevel,
        /// The next child.
        index: u32,
        retries: u8,
    },
    /// svsm: zeroing a page found already accepted, then going on at `resume`.
    Zero {
        gpa: Gpa,
        level: PageLevel,
        resume: Gpa,
        from_children: bool,
    },
    /// adversarial: `left` more operations from the generator state `rng`.
    Adversary {
        rng: u64,
        left: u16,
    },
    /// touch-first: touching the page at `pos` (then `accepting` after a #VE).
    Touch {
        pos: Gpa,
        accepting: bool,
    },
    /// linux-lazy: asking for the unit at `unit`.
    Claim {
        unit: Gpa,
    },
    /// linux-lazy: releasing the unit at `unit` after accepting it.
    Release {
        unit: Gpa,
    },
    /// Writing markers at `pos`.
    Mark {
        pos: Gpa,
    },
    /// Reading markers back at `pos`.
    Verify {
        pos: Gpa,
    },
    Ended(GuestEnd),
}

/// How a range is shared between the vCPUs that accept it together (OVMF's and td-shim's
/// mailbox: chunks of `1 << chunk_shift` bytes from the start of the range, chunk k to vCPU
/// k mod `count`; shared/reference/guests.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Stride {
    index: u8,
    count: u8,
    chunk_shift: u8,
}

/// The chunk size OVMF and td-shim give each vCPU: 32 MiB (guests.md).
pub const MAILBOX_CHUNK_SHIFT: u8 = 25;

/// One vCPU's guest program: a strategy over the range [start, end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Guest {
    kind: GuestKind,
    start: Gpa,
    end: Gpa,
    /// Where the accepting pass stops: `end`, or for linux-lazy the end of the unit claimed.
    accept_end: Gpa,
    stride: Stride,
    marker: Content,
    phase: Phase,
    /// The operation in flight, if any.
    pending: Option<GuestOp>,
}

impl Guest {
    /// Hashes what changes as the program runs: where its accepting pass ends, its phase and
    /// the operation in flight. The rest (kind, range, stride, marker) is fixed when the
    /// program is built, so a world hashes it by the stage it runs ([`crate::world::World`]'s
    /// `hash_part`).
    pub fn hash_progress<H: core::hash::Hasher>(&self, h: &mut H) {
        use core::hash::Hash;
        let Guest {
            kind: _,
            start: _,
            end: _,
            accept_end,
            stride: _,
            marker: _,
            phase,
            pending,
        } = self;
        accept_end.hash(h);
        phase.hash(h);
        pending.hash(h);
    }

    /// A guest of `kind` that accepts [start, end) (4K-aligned) and marks it with `tag`.
    pub fn new(kind: GuestKind, start: Gpa, end: Gpa, tag: u16) -> Guest {
        let start = start.align_down(PageLevel::Size4K);
        let end = end.align_down(PageLevel::Size4K);
        let phase = if kind == GuestKind::TouchFirst {
            Phase::Touch {
                pos: start,
                accepting: false,
            }
        } else if kind == GuestKind::SingleAccept {
            let level = if end.raw().saturating_sub(start.raw()) >= PAGE_2M
                && start.is_aligned(PageLevel::Size2M)
            {
                PageLevel::Size2M
            } else {
                PageLevel::Size4K
            };
            Phase::Accept {
                pos: start,
                level,
                retries: 0,
            }
        } else if kind == GuestKind::LinuxEarly {
            Phase::Claim {
                unit: Gpa(start.raw() & !(MAX_PAGE_ORDER_BYTES - 1)),
            }
        } else if kind == GuestKind::LinuxLazy {
            Phase::Claim {
                unit: start.align_down(PageLevel::Size2M),
            }
        } else if kind == GuestKind::Adversarial {
            Phase::Adversary {
                rng: u64::from(tag).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
                left: 24,
            }
        } else {
            Phase::Accept {
                pos: start,
                level: kind.max_level(),
                retries: 0,
            }
        };
        let marker = if kind == GuestKind::SingleAccept {
            Content::NONE
        } else {
            Content::data(tag)
        };
        Guest {
            kind,
            start,
            end,
            accept_end: end,
            stride: Stride {
                index: 0,
                count: 1,
                chunk_shift: MAILBOX_CHUNK_SHIFT,
            },
            marker,
            phase,
            pending: None,
        }
    }

    /// The same program without the marking and checking passes (for guests whose ranges
    /// overlap on purpose, like the seed scenario's, where one's marker would overwrite the
    /// other's).
    pub fn without_markers(mut self) -> Guest {
        self.marker = Content::NONE;
        self
    }

    /// A program that only reads back the markers an earlier stage with the same tag wrote
    /// over [start, end) (the guest using its data later); it accepts nothing.
    pub fn verify_only(mut self) -> Guest {
        self.phase = if self.marker == Content::NONE {
            Phase::Ended(GuestEnd::Done)
        } else {
            Phase::Verify { pos: self.start }
        };
        self
    }

    /// The same program sharing its range with `count` vCPUs (this one being `index`): it
    /// accepts, marks and checks only every `count`-th chunk of `1 << chunk_shift` bytes,
    /// starting with chunk `index` (OVMF's and td-shim's parallel accept; use
    /// [`MAILBOX_CHUNK_SHIFT`] for the real 32 MiB). Chunks smaller than 4K, a zero count or
    /// an index beyond it leave the program as it was.
    pub fn strided(mut self, index: u8, count: u8, chunk_shift: u8) -> Guest {
        if count > 0 && index < count && (12..64).contains(&chunk_shift) {
            self.stride = Stride {
                index,
                count,
                chunk_shift,
            };
        }
        self
    }

    /// The range [start, end) the program uses.
    pub fn range(&self) -> (Gpa, Gpa) {
        (self.start, self.end)
    }

    /// The GPAs [start, end) the program's operations can touch, `None` when they can touch
    /// any: every strategy issues operations at levels that fit inside its range (plan.rs,
    /// `fitting_level`), and falls back to smaller ones inside them; linux-lazy accepts whole
    /// 2 MiB units it claims, so its reach is its range widened to 2 MiB, and linux-early whole
    /// 4 MiB blocks, so its reach is its range widened to 4 MiB; the adversary's operands go
    /// around its range and to 1G and shared GPAs.
    pub fn reach(&self) -> Option<(Gpa, Gpa)> {
        match self.kind {
            GuestKind::Adversarial => None,
            GuestKind::LinuxLazy => {
                let end = self.end.raw().checked_next_multiple_of(PAGE_2M)?;
                Some((self.start.align_down(PageLevel::Size2M), Gpa(end)))
            }
            GuestKind::LinuxEarly => Some((
                Gpa(self.start.raw() & !(MAX_PAGE_ORDER_BYTES - 1)),
                self.claims_end()?,
            )),
            _ => Some((self.start, self.end)),
        }
    }

    /// Where the claims of a strategy that accepts by unit stop: the end of its range, for
    /// linux-early rounded up to a whole 4 MiB block (`None` past the top of the GPA space).
    fn claims_end(&self) -> Option<Gpa> {
        if self.kind == GuestKind::LinuxEarly {
            self.end
                .raw()
                .checked_next_multiple_of(MAX_PAGE_ORDER_BYTES)
                .map(Gpa)
        } else {
            Some(self.end)
        }
    }

    /// The strategy.
    pub fn kind(&self) -> GuestKind {
        self.kind
    }

    /// Whether the guest has stopped, and how.
    pub fn ended(&self) -> Option<GuestEnd> {
        match self.phase {
            Phase::Ended(e) => Some(e),
            _ => None,
        }
    }

    /// The next operation (the same one again until [`Guest::complete`] is called).
    pub fn next_op(&mut self) -> GuestStep {
        if let Some(op) = self.pending {
            return GuestStep::Op(op);
        }
        let step = self.plan();
        if let GuestStep::Op(op) = step {
            self.pending = Some(op);
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strided_program_takes_every_nth_chunk() {
        // Three vCPUs over 8 MiB in 2 MiB chunks: vCPU 1 takes chunk 1 only, vCPU 0 chunks 0
        // and 3 (OVMF's and td-shim's mailbox split).
        let base = 0x4000_0000u64;
        let accepts = |index| {
            let mut g = Guest::new(GuestKind::Ovmf, Gpa(base), Gpa(base + (8 << 20)), 1)
                .without_markers()
                .strided(index, 3, 21);
            let mut got = [0u64; 4];
            let mut n = 0;
            while let GuestStep::Op(GuestOp::Accept(a)) = g.next_op() {
                if let Some(slot) = got.get_mut(n) {
                    *slot = a.gpa.raw() - base;
                }
                n += 1;
                g.complete(GuestEvent::Status(TdxStatus::SUCCESS));
            }
            assert_eq!(g.ended(), Some(GuestEnd::Done));
            (n, got)
        };
        assert_eq!(accepts(1), (1, [2 << 20, 0, 0, 0]));
        assert_eq!(accepts(0), (2, [0, 6 << 20, 0, 0]));
        // A bad stride leaves the program whole.
        let g = Guest::new(GuestKind::Ovmf, Gpa(base), Gpa(base + (4 << 20)), 1).strided(3, 3, 21);
        assert_eq!(
            g,
            Guest::new(GuestKind::Ovmf, Gpa(base), Gpa(base + (4 << 20)), 1)
        );
    }

    #[test]
    fn verify_only_reads_back_without_accepting() {
        let base = Gpa(0x4020_0000);
        let mut g = Guest::new(GuestKind::Linux, base, Gpa(base.raw() + 0x2000), 5).verify_only();
        assert!(
            matches!(g.next_op(), GuestStep::Op(GuestOp::Verify { content, .. }) if content == Content::data(5))
        );
    }
}
