//! Completing a guest's operation: what each phase makes of the status, content or #VE the
//! operation came back with, by the strategy's rules ([`super::rules`]).

use crate::abi::{AcceptOperand, Gpa, PAGE_SIZE_2M as PAGE_2M, PageLevel, StatusCode, TdxStatus};

use super::rules::{self, Reaction};
use super::{Guest, GuestEnd, GuestEvent, GuestKind, GuestOp, Phase};

impl Guest {
    /// The result of the operation [`Guest::next_op`] returned.
    pub fn complete(&mut self, event: GuestEvent) {
        let Some(op) = self.pending.take() else {
            return;
        };
        self.phase = match (self.phase, op, event) {
            // Whatever came back, on to the next operation.
            (Phase::Adversary { rng, left }, _, _) => Phase::Adversary {
                rng: xorshift(rng),
                left: left.saturating_sub(1),
            },
            (
                Phase::Accept {
                    pos,
                    level,
                    retries,
                },
                GuestOp::Accept(a),
                GuestEvent::Status(s),
            ) => self.after_accept(pos, level, retries, a, s),
            (
                Phase::Children {
                    base,
                    level,
                    index,
                    retries,
                },
                GuestOp::Accept(a),
                GuestEvent::Status(s),
            ) => self.after_child_accept(base, level, index, retries, a, s),
            (
                Phase::Zero {
                    resume,
                    from_children,
                    ..
                },
                GuestOp::Write { gpa, level, .. },
                GuestEvent::Wrote,
            ) => self.after_zero(gpa, level, resume, from_children),
            (Phase::Touch { pos, .. }, op, event) => after_touch(pos, op, event),
            (Phase::Claim { unit }, GuestOp::ClaimUnit(_), GuestEvent::UnitClaimed) => {
                // unaccepted_memory.c: arch_accept_memory over the unit, Linux's rules.
                self.accept_end = Gpa(unit.raw().saturating_add(PAGE_2M));
                Phase::Accept {
                    pos: unit,
                    level: self.kind.max_level(),
                    retries: 0,
                }
            }
            (Phase::Claim { unit }, GuestOp::ClaimUnit(_), GuestEvent::UnitAccepted)
            | (Phase::Release { unit }, GuestOp::ReleaseUnit(_), GuestEvent::UnitReleased) => {
                self.accept_end = self.end;
                Phase::Claim {
                    unit: Gpa(unit.raw().saturating_add(PAGE_2M)),
                }
            }
            (Phase::Mark { pos }, GuestOp::Write { level, .. }, GuestEvent::Wrote) => Phase::Mark {
                pos: Gpa(pos.raw().saturating_add(level.bytes())),
            },
            (Phase::Verify { pos }, GuestOp::Verify { level, .. }, GuestEvent::Verified) => {
                Phase::Verify {
                    pos: Gpa(pos.raw().saturating_add(level.bytes())),
                }
            }
            (
                Phase::Verify { .. },
                GuestOp::Verify { content, .. },
                GuestEvent::Mismatch { gpa, found },
            ) => Phase::Ended(GuestEnd::DataLoss {
                gpa,
                expected: content,
                found,
            }),
            _ => Phase::Ended(GuestEnd::Confused),
        };
    }

    /// After the ACCEPT `a` of the unit at `pos` (at `level`, its `retries`-th retry) retired
    /// with `s`.
    fn after_accept(
        &self,
        pos: Gpa,
        level: PageLevel,
        retries: u8,
        a: AcceptOperand,
        s: TdxStatus,
    ) -> Phase {
        if self.kind == GuestKind::SingleAccept {
            // BUSY: the same ACCEPT again (no count: it retries for as long as it takes).
            return if s.code() == StatusCode::OperandBusy {
                Phase::Accept {
                    pos,
                    level,
                    retries: 0,
                }
            } else {
                Phase::Ended(GuestEnd::Done)
            };
        }
        let panic = Phase::Ended(GuestEnd::Panic { op: a, status: s });
        match rules::react(self.kind, level, s, retries) {
            Reaction::Advance => Phase::Accept {
                pos: Gpa(pos.raw().saturating_add(level.bytes())),
                level: self.kind.max_level(),
                retries: 0,
            },
            Reaction::Retry => Phase::Accept {
                pos,
                level,
                retries: rules::next_retry(self.kind, retries),
            },
            Reaction::Smaller => match level.smaller() {
                Some(l) => Phase::Accept {
                    pos,
                    level: l,
                    retries: 0,
                },
                None => panic,
            },
            Reaction::Children => match level.smaller() {
                Some(l) => Phase::Children {
                    base: pos,
                    level: l,
                    index: 0,
                    retries: 0,
                },
                None => panic,
            },
            Reaction::ZeroThenAdvance => Phase::Zero {
                gpa: pos,
                level,
                resume: Gpa(pos.raw().saturating_add(level.bytes())),
                from_children: false,
            },
            Reaction::Panic => panic,
        }
    }

    /// After the ACCEPT `a` of child `index` (at `level`) of the unit at `base` retired with
    /// `s`.
    fn after_child_accept(
        &self,
        base: Gpa,
        level: PageLevel,
        index: u32,
        retries: u8,
        a: AcceptOperand,
        s: TdxStatus,
    ) -> Phase {
        match rules::react(self.kind, level, s, retries) {
            Reaction::Advance => self.after_child(base, level, index),
            Reaction::Retry => Phase::Children {
                base,
                level,
                index,
                retries: rules::next_retry(self.kind, retries),
            },
            Reaction::ZeroThenAdvance => Phase::Zero {
                gpa: a.gpa,
                level,
                resume: a.gpa,
                from_children: true,
            },
            // A child that needs splitting again (tdx-guest: 1G → 2M → 4K) or failing.
            Reaction::Smaller | Reaction::Children | Reaction::Panic => {
                Phase::Ended(GuestEnd::Panic { op: a, status: s })
            }
        }
    }

    /// svsm: the page at `gpa` found already accepted is zeroed; back to the next child of the
    /// unit being split, or on at `resume`.
    fn after_zero(&self, gpa: Gpa, level: PageLevel, resume: Gpa, from_children: bool) -> Phase {
        if from_children {
            let parent_level = level.larger().unwrap_or(PageLevel::Size1G);
            let base = gpa.align_down(parent_level);
            let index = ((gpa.raw().wrapping_sub(base.raw())) >> level.shift()) as u32;
            self.after_child(base, level, index)
        } else {
            Phase::Accept {
                pos: resume,
                level: self.kind.max_level(),
                retries: 0,
            }
        }
    }

    /// Where the program goes after child `index` (of the `level`-sized children of the unit at
    /// `base`) is done: the next child, or on after the unit.
    fn after_child(&self, base: Gpa, level: PageLevel, index: u32) -> Phase {
        if index.saturating_add(1) >= crate::abi::ENTRIES_PER_TABLE {
            let parent = level.larger().unwrap_or(PageLevel::Size1G);
            Phase::Accept {
                pos: Gpa(base.raw().saturating_add(parent.bytes())),
                level: self.kind.max_level(),
                retries: 0,
            }
        } else {
            Phase::Children {
                base,
                level,
                index: index.saturating_add(1),
                retries: 0,
            }
        }
    }
}

/// touch-first: after the touch or the #VE handler's 4K ACCEPT of the page at `pos`.
fn after_touch(pos: Gpa, op: GuestOp, event: GuestEvent) -> Phase {
    match (op, event) {
        (GuestOp::Read(_), GuestEvent::Read(_)) => Phase::Touch {
            pos: Gpa(pos.raw().saturating_add(PageLevel::Size4K.bytes())),
            accepting: false,
        },
        // The #VE handler accepts the page at 4K, then the touch runs again.
        (GuestOp::Read(_), GuestEvent::VirtualizationException) => Phase::Touch {
            pos,
            accepting: true,
        },
        (GuestOp::Accept(a), GuestEvent::Status(s)) => {
            match rules::react(GuestKind::Accept4kOnly, PageLevel::Size4K, s, 0) {
                Reaction::Advance => Phase::Touch {
                    pos,
                    accepting: false,
                },
                Reaction::Retry => Phase::Touch {
                    pos,
                    accepting: true,
                },
                _ => Phase::Ended(GuestEnd::Panic { op: a, status: s }),
            }
        }
        _ => Phase::Ended(GuestEnd::Confused),
    }
}

/// The adversary's generator (xorshift64).
const fn xorshift(rng: u64) -> u64 {
    let mut x = rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}
