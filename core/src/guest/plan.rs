//! Planning a guest's next operation: where its program stands in the range (its chunk when
//! strided, the level that fits), and the operation each phase issues next.

use crate::abi::{AcceptOperand, Gpa, PAGE_SIZE_2M as PAGE_2M, PageLevel};
use crate::sept::Content;

use super::{Guest, GuestEnd, GuestOp, GuestStep, Phase};

impl Guest {
    /// The chunk number of `pos` (0 when the range is not strided).
    fn chunk_of(&self, pos: Gpa) -> u64 {
        pos.raw()
            .saturating_sub(self.start.raw())
            .checked_shr(u32::from(self.stride.chunk_shift))
            .unwrap_or(0)
    }

    /// `pos`, or the start of this vCPU's next chunk when `pos` lies in another's.
    fn owned_from(&self, pos: Gpa) -> Gpa {
        let count = u64::from(self.stride.count);
        if count <= 1 {
            return pos;
        }
        let chunk = self.chunk_of(pos);
        let mine = u64::from(self.stride.index);
        let rem = chunk.checked_rem(count).unwrap_or(0);
        if rem == mine {
            return pos;
        }
        let ahead = if mine > rem {
            mine.saturating_sub(rem)
        } else {
            count.saturating_sub(rem).saturating_add(mine)
        };
        let next = chunk.saturating_add(ahead);
        Gpa(self.start.raw().saturating_add(
            next.checked_shl(u32::from(self.stride.chunk_shift))
                .unwrap_or(u64::MAX),
        ))
    }

    /// Where the span `pos` lies in ends: the end of the range (or of the unit being
    /// accepted), or of the chunk when strided.
    fn span_end(&self, pos: Gpa, end: Gpa) -> Gpa {
        if self.stride.count <= 1 {
            return end;
        }
        let next = self.chunk_of(pos).saturating_add(1);
        let chunk_end = Gpa(self.start.raw().saturating_add(
            next.checked_shl(u32::from(self.stride.chunk_shift))
                .unwrap_or(u64::MAX),
        ));
        chunk_end.min(end)
    }

    fn remaining(&self, pos: Gpa) -> u64 {
        let end = match self.phase {
            Phase::Accept { .. } | Phase::Children { .. } | Phase::Zero { .. } => self.accept_end,
            _ => self.end,
        };
        self.span_end(pos, end).raw().saturating_sub(pos.raw())
    }

    /// The largest level from `from` down that fits at `pos` (aligned, not too long).
    fn fitting_level(&self, pos: Gpa, from: PageLevel) -> Option<PageLevel> {
        let mut l = from;
        loop {
            if pos.is_aligned(l) && self.remaining(pos) >= l.bytes() {
                return Some(l);
            }
            l = l.smaller()?;
        }
    }

    fn end_with(&mut self, e: GuestEnd) -> GuestStep {
        self.phase = Phase::Ended(e);
        GuestStep::End(e)
    }

    /// The marking pass: one write per chunk (2M where aligned and whole, else 4K).
    fn chunk(&self, pos: Gpa) -> PageLevel {
        self.fitting_level(pos, PageLevel::Size2M)
            .unwrap_or(PageLevel::Size4K)
    }

    /// The adversary's operation for generator state `rng`.
    fn adversary_op(&self, rng: u64) -> GuestOp {
        let span = self.end.raw().saturating_sub(self.start.raw()).max(1);
        // A page in the range or just around it.
        let around = self
            .start
            .raw()
            .saturating_add(
                (rng >> 8)
                    .checked_rem(span.saturating_add(0x40_0000))
                    .unwrap_or(0),
            )
            .saturating_sub(0x20_0000);
        let page = Gpa(around).align_down(PageLevel::Size4K);
        match rng % 8 {
            0 | 1 => GuestOp::Accept(AcceptOperand {
                gpa: page,
                level: PageLevel::Size4K,
            }),
            2 | 3 => GuestOp::Accept(AcceptOperand {
                gpa: page.align_down(PageLevel::Size2M),
                level: PageLevel::Size2M,
            }),
            4 => GuestOp::Accept(AcceptOperand {
                gpa: page.align_down(PageLevel::Size1G),
                level: PageLevel::Size1G,
            }),
            // Shared bit (GPAW 48), misaligned 2M, reserved bits.
            5 => GuestOp::AcceptRaw(page.raw() | (1 << 47)),
            6 => GuestOp::AcceptRaw(page.raw() | 0x1001 | ((rng >> 3) & 0x8)),
            _ => GuestOp::Read(page),
        }
    }

    /// Everything is accepted: mark and check, unless markers are off.
    fn accepted(&mut self) -> GuestStep {
        if self.marker == Content::NONE {
            return self.end_with(GuestEnd::Done);
        }
        self.phase = Phase::Mark { pos: self.start };
        self.plan()
    }

    /// The operation the current phase issues next (or the end it has reached).
    pub(super) fn plan(&mut self) -> GuestStep {
        match self.phase {
            Phase::Ended(e) => GuestStep::End(e),
            Phase::Accept { pos, level, .. } => self.plan_accept(pos, level),
            Phase::Children {
                base, level, index, ..
            } => {
                let gpa = Gpa(base.raw().saturating_add(u64::from(index) << level.shift()));
                GuestStep::Op(GuestOp::Accept(AcceptOperand { gpa, level }))
            }
            Phase::Zero { gpa, level, .. } => GuestStep::Op(GuestOp::Write {
                gpa,
                level,
                content: Content::ZERO,
            }),
            Phase::Adversary { rng, left } => {
                if left == 0 {
                    return self.end_with(GuestEnd::Done);
                }
                GuestStep::Op(self.adversary_op(rng))
            }
            Phase::Touch { pos, accepting } => self.plan_touch(pos, accepting),
            Phase::Claim { unit } => {
                if self.claims_end().is_none_or(|end| unit >= end) {
                    return self.accepted();
                }
                GuestStep::Op(GuestOp::ClaimUnit(unit))
            }
            Phase::Release { unit } => GuestStep::Op(GuestOp::ReleaseUnit(unit)),
            Phase::Mark { pos } => self.plan_mark(pos),
            Phase::Verify { pos } => self.plan_verify(pos),
        }
    }

    /// Accepting at `pos`, trying `level` first: the largest level that fits there, or, past
    /// the end of what is being accepted, what comes after accepting.
    fn plan_accept(&mut self, pos: Gpa, level: PageLevel) -> GuestStep {
        let pos = self.owned_from(pos);
        if pos >= self.accept_end {
            if self.kind.accepts_by_unit() {
                let unit = Gpa(self.accept_end.raw().saturating_sub(PAGE_2M));
                self.phase = Phase::Release { unit };
                return GuestStep::Op(GuestOp::ReleaseUnit(unit));
            }
            return self.accepted();
        }
        if let Phase::Accept { pos: p, .. } = &mut self.phase {
            *p = pos;
        }
        match self.fitting_level(pos, level) {
            Some(l) => {
                if let Phase::Accept { level, .. } = &mut self.phase {
                    *level = l;
                }
                GuestStep::Op(GuestOp::Accept(AcceptOperand { gpa: pos, level: l }))
            }
            None => self.end_with(GuestEnd::Confused),
        }
    }

    /// touch-first: touch the page at `pos`, or accept it at 4K after the touch took a #VE.
    fn plan_touch(&mut self, pos: Gpa, accepting: bool) -> GuestStep {
        if pos >= self.end {
            return self.accepted();
        }
        if accepting {
            GuestStep::Op(GuestOp::Accept(AcceptOperand {
                gpa: pos,
                level: PageLevel::Size4K,
            }))
        } else {
            GuestStep::Op(GuestOp::Read(pos))
        }
    }

    /// The marking pass at `pos` (this vCPU's chunks only), then the verifying pass.
    fn plan_mark(&mut self, pos: Gpa) -> GuestStep {
        let pos = self.owned_from(pos);
        self.phase = Phase::Mark { pos };
        if pos >= self.end {
            self.phase = Phase::Verify { pos: self.start };
            return self.plan();
        }
        GuestStep::Op(GuestOp::Write {
            gpa: pos,
            level: self.chunk(pos),
            content: self.marker,
        })
    }

    /// The verifying pass at `pos` (this vCPU's chunks only), then the end.
    fn plan_verify(&mut self, pos: Gpa) -> GuestStep {
        let pos = self.owned_from(pos);
        self.phase = Phase::Verify { pos };
        if pos >= self.end {
            return self.end_with(GuestEnd::Done);
        }
        GuestStep::Op(GuestOp::Verify {
            gpa: pos,
            level: self.chunk(pos),
            content: self.marker,
        })
    }
}
