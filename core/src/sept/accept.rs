//! The guest side: TDG.MEM.PAGE.ACCEPT and plain guest accesses to private memory.
//!
//! ACCEPT follows tdx-module src/td_dispatcher/vm_exits/tdg_mem_page_accept.c: decode RCX
//! (`verify_page_info_input`, `check_gpa_validity`: any failure is TDX_OPERAND_INVALID | RCX),
//! walk towards the requested level, and then the outcomes A–G of
//! shared/reference/tdx-module.md. A 2M accept zeroes one 4K page at a time and checks for a
//! pending interrupt after every page but the last; on one it saves its progress in the entry's
//! accept counter and returns without retiring the TDCALL.
//!
//! Guest accesses follow src/td_dispatcher/vm_exits/td_ept_violation.c: a MAPPED leaf is
//! accessible; a PENDING leaf raises #VE, or with SEPT_VE_DISABLE exits with EEQ type
//! PENDING_EPT_VIOLATION; anything else is an ordinary EPT violation the VMM resolves.

use crate::abi::{
    AcceptExitInfo, AcceptOperand, ExitQualification, ExtendedExitQualification, Gpa, OperandId,
    PageLevel, SeptEntryState, StatusCode, TdxStatus,
};

use core::fmt;

use super::{Content, Flight, Sept, SeptError, SeptStorage, View, WalkStop};

/// An EPT-violation TD exit (exit reason 48) as the VMM sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EptViolationExit {
    /// RCX: the exit qualification.
    pub exit_qualification: ExitQualification,
    /// RDX: the extended exit qualification.
    pub eeq: ExtendedExitQualification,
    /// R8: the GPA, bits 11:0 clear.
    pub gpa: Gpa,
}

impl fmt::Display for EptViolationExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EPT violation at {}", self.gpa)?;
        match self.eeq {
            ExtendedExitQualification::Accept(a) => write!(
                f,
                " (ACCEPT {}: walk stopped at {} {}{})",
                a.requested,
                a.error_level,
                a.error_state,
                if a.error_is_leaf { " leaf" } else { "" }
            ),
            ExtendedExitQualification::PendingEptViolation => {
                f.write_str(" (access to a PENDING page)")
            }
            ExtendedExitQualification::None => Ok(()),
            ExtendedExitQualification::GpaDetails(i) => write!(f, " (GPA details {i:#x})"),
            ExtendedExitQualification::AttrWr(i) => write!(f, " (ATTR.WR {i:#x})"),
        }
    }
}

/// What one execution of the ACCEPT TDCALL ends in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AcceptOutcome {
    /// Retired, with this status in RAX.
    Completed(TdxStatus),
    /// Not retired: the module exited to the VMM (outcomes B and F). The guest runs the same
    /// TDCALL again after the next TD entry.
    Exit(EptViolationExit),
    /// Not retired: an interrupt was pending during a 2M zeroing; progress is kept in the accept
    /// counter and the guest re-executes the TDCALL after handling the interrupt.
    Interrupted,
}

impl fmt::Display for AcceptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcceptOutcome::Completed(s) => write!(f, "{s}"),
            AcceptOutcome::Exit(e) => write!(f, "{e}"),
            AcceptOutcome::Interrupted => f.write_str("interrupted (not retired; progress kept)"),
        }
    }
}

/// An ACCEPT that holds its entry lock and is zeroing the page(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AcceptOp {
    slot: u8,
    gpa: Gpa,
    level: PageLevel,
}

impl AcceptOp {
    /// The GPA being accepted.
    pub fn gpa(&self) -> Gpa {
        self.gpa
    }

    /// The level being accepted.
    pub fn level(&self) -> PageLevel {
        self.level
    }
}

/// The first phase of an ACCEPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AcceptStart {
    /// The TDCALL ended without zeroing anything.
    Done(AcceptOutcome),
    /// The entry is locked and PENDING; [`Sept::accept_finish`] zeroes it.
    Zeroing(AcceptOp),
    /// The entry at the requested level is locked and not PENDING: the module reads it under
    /// the lock, then [`Sept::accept_finish`] unlocks and reports D, E or F. While it holds the
    /// lock, a host SEAMCALL on the entry gets TDX_OPERAND_BUSY (PAGE.AUG or SEPT.ADD racing a
    /// guest ACCEPT on another vCPU).
    Checking(AcceptOp),
}

/// What a guest access to one private 4K page leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessOutcome {
    /// The page is mapped and accepted: the access happens; the page's content (after a write,
    /// the new content).
    Accessible(Content),
    /// The page is PENDING and #VE is enabled: the guest's #VE handler runs.
    VirtualizationException,
    /// The access exits to the VMM.
    Exit(EptViolationExit),
}

fn operand_invalid() -> AcceptOutcome {
    AcceptOutcome::Completed(TdxStatus::with_operand(
        StatusCode::OperandInvalid,
        OperandId::RCX,
    ))
}

fn accept_exit(op: AcceptOperand, stop: &WalkStop) -> AcceptOutcome {
    // td_other_exits.c `async_tdexit_ept_violation`: a write access; the R/W/X bits of the
    // entry where the walk stopped are all clear for every state that exits.
    AcceptOutcome::Exit(EptViolationExit {
        exit_qualification: ExitQualification::WRITE,
        eeq: ExtendedExitQualification::Accept(AcceptExitInfo {
            requested: op.level,
            error_level: stop.level,
            error_state: stop.view.state,
            error_is_leaf: stop.view.state.is_leaf(),
            vm_index: 0,
        }),
        gpa: op.gpa,
    })
}

impl<S: SeptStorage, const F: usize> Sept<S, F> {
    /// TDG.MEM.PAGE.ACCEPT, first phase: everything up to taking the entry lock on a PENDING
    /// entry.
    pub fn accept_begin(&mut self, rcx: u64) -> Result<AcceptStart, SeptError> {
        let done = |o| Ok(AcceptStart::Done(o));
        let Ok(op) = AcceptOperand::decode_for(rcx, self.config.gpaw) else {
            return done(operand_invalid());
        };
        // verify_page_info_input(gpa, LVL_PT, LVL_PD): only 4K and 2M, unless the 1G proposal
        // is on.
        if op.level == PageLevel::Size1G && !self.config.profile.accept_1g {
            return done(operand_invalid());
        }
        let stop = self.walk(op.gpa, op.level)?;
        if !stop.reached {
            return done(match stop.view.state {
                // A: a guest-accessible leaf above the requested level.
                SeptEntryState::Mapped => AcceptOutcome::Completed(TdxStatus::with_level(
                    StatusCode::PageAlreadyAccepted,
                    stop.level,
                )),
                // Proposed: a PENDING leaf larger than requested tells the guest instead of
                // asking the VMM to split; the level says which size would work.
                SeptEntryState::Pending if self.config.profile.explicit_demotion => {
                    AcceptOutcome::Completed(TdxStatus::with_level(
                        StatusCode::PageSizeMismatch,
                        stop.level,
                    ))
                }
                // B: anything else above the requested level.
                _ => accept_exit(op, &stop),
            });
        }
        let Some(loc) = stop.loc else {
            // Outside the window everything is FREE: F.
            return done(accept_exit(op, &stop));
        };
        // C: sept_lock_acquire_guest. A lock held by anyone is BUSY; a free lock with the
        // host-priority bit set is BUSY_HOST_PRIORITY, which the TDCALL path reports to the
        // guest as TDX_OPERAND_BUSY (tdx_td_dispatcher.c `td_call`).
        let host_priority = stop.view.lock.host_priority()
            && !crate::broken::active(crate::broken::Variant::AcceptIgnoresHostPriority);
        if stop.view.lock.is_locked() || host_priority {
            return done(AcceptOutcome::Completed(TdxStatus::with_operand(
                StatusCode::OperandBusy,
                OperandId::RCX,
            )));
        }
        // The entry lock is taken whatever the entry holds; the module then re-reads it.
        let slot = self.free_slot()?;
        let slot_id = u8::try_from(slot).map_err(|_| SeptError::TooManyInFlight)?;
        let zeroing = stop.view.state == SeptEntryState::Pending;
        self.set_flight(
            slot,
            Some(Flight::Accept {
                gpa: op.gpa,
                level: op.level,
                loc,
                zeroing,
            }),
        )?;
        self.store(
            loc,
            View {
                lock: stop.view.lock.with_locked(true),
                ..stop.view
            },
        )?;
        let token = AcceptOp {
            slot: slot_id,
            gpa: op.gpa,
            level: op.level,
        };
        Ok(if zeroing {
            AcceptStart::Zeroing(token)
        } else {
            AcceptStart::Checking(token)
        })
    }

    /// The outcome of an ACCEPT that reached its level and found `state` (not PENDING).
    fn reached_outcome(op: AcceptOperand, stop: &WalkStop) -> AcceptOutcome {
        match stop.view.state {
            // D: mapped smaller than requested.
            SeptEntryState::NlMapped | SeptEntryState::NlBlocked => AcceptOutcome::Completed(
                TdxStatus::with_level(StatusCode::PageSizeMismatch, op.level),
            ),
            // E.
            SeptEntryState::Mapped => AcceptOutcome::Completed(TdxStatus::with_level(
                StatusCode::PageAlreadyAccepted,
                op.level,
            )),
            // F: FREE, BLOCKED, PENDING_BLOCKED at the requested level (tdcall_sept_state_lookup
            // refuses them: unlock, EPT-violation exit).
            _ => accept_exit(op, stop),
        }
    }

    /// TDG.MEM.PAGE.ACCEPT, second phase: zero from the accept counter on. With
    /// `interrupt_after = Some(n)` an interrupt becomes pending after `n` more pages (at least
    /// one page is always zeroed; the module checks after every page but the last).
    pub fn accept_finish(
        &mut self,
        op: AcceptOp,
        interrupt_after: Option<u32>,
    ) -> Result<AcceptOutcome, SeptError> {
        let (loc, zeroing) = match self.flight(op.slot) {
            Some(Flight::Accept {
                gpa,
                level,
                loc,
                zeroing,
            }) if gpa == op.gpa && level == op.level => (loc, zeroing),
            _ => return Err(SeptError::StaleOperation),
        };
        if !zeroing {
            // Outcomes D, E, F: the module read the entry under its lock; unlock and report.
            let v = self.load(loc)?;
            self.set_flight(usize::from(op.slot), None)?;
            self.store(
                loc,
                View {
                    lock: v.lock.with_locked(false),
                    ..v
                },
            )?;
            let stop = WalkStop {
                level: op.level,
                loc: Some(loc),
                view: v,
                reached: true,
            };
            let operand = AcceptOperand {
                gpa: op.gpa,
                level: op.level,
            };
            return Ok(Self::reached_outcome(operand, &stop));
        }
        let v = self.load(loc)?;
        if !v.lock.is_locked() || v.state != SeptEntryState::Pending {
            return Err(SeptError::StorageInconsistent);
        }
        self.set_flight(usize::from(op.slot), None)?;
        let total = op.level.pages_4k();
        if let Some(n) = interrupt_after {
            let done = v.counter.saturating_add(n.max(1));
            if done < total {
                self.store(
                    loc,
                    View {
                        counter: done,
                        lock: v.lock.with_locked(false),
                        ..v
                    },
                )?;
                return Ok(AcceptOutcome::Interrupted);
            }
        }
        self.store(
            loc,
            View {
                state: SeptEntryState::Mapped,
                lock: v.lock.with_locked(false),
                counter: 0,
                bepoch: 0,
            },
        )?;
        self.zero_range(op.gpa, op.level)?;
        Ok(AcceptOutcome::Completed(TdxStatus::SUCCESS))
    }

    /// TDG.MEM.PAGE.ACCEPT with no interrupt: both phases at once.
    pub fn accept(&mut self, rcx: u64) -> Result<AcceptOutcome, SeptError> {
        match self.accept_begin(rcx)? {
            AcceptStart::Done(o) => Ok(o),
            AcceptStart::Zeroing(op) | AcceptStart::Checking(op) => self.accept_finish(op, None),
        }
    }

    fn zero_range(&mut self, gpa: Gpa, level: PageLevel) -> Result<(), SeptError> {
        match level {
            PageLevel::Size4K => self.set_page_content(gpa, Content::ZERO),
            PageLevel::Size2M => {
                let r = self.region_index(gpa).ok_or(SeptError::OutsideModel)?;
                self.set_region_content(r, Content::ZERO)
            }
            PageLevel::Size1G => {
                let gig = self.gig_index(gpa).ok_or(SeptError::OutsideModel)?;
                for r in self.regions_of_gig(gig) {
                    self.set_region_content(r, Content::ZERO)?;
                }
                Ok(())
            }
        }
    }

    /// What a guest access to the private 4K page at `gpa` does.
    fn access_check(&self, gpa: Gpa, write: bool) -> Result<Option<AccessOutcome>, SeptError> {
        if gpa.is_shared(self.config.gpaw) {
            return Err(SeptError::NotPrivate);
        }
        let stop = self.walk(gpa, PageLevel::Size4K)?;
        let access = if write {
            ExitQualification::WRITE
        } else {
            ExitQualification::READ
        };
        let page = gpa.align_down(PageLevel::Size4K);
        Ok(match stop.view.state {
            SeptEntryState::Mapped => None,
            SeptEntryState::Pending if self.config.pending_ve_disable => {
                Some(AccessOutcome::Exit(EptViolationExit {
                    exit_qualification: access,
                    eeq: ExtendedExitQualification::PendingEptViolation,
                    gpa: page,
                }))
            }
            SeptEntryState::Pending => Some(AccessOutcome::VirtualizationException),
            _ => Some(AccessOutcome::Exit(EptViolationExit {
                exit_qualification: access,
                eeq: ExtendedExitQualification::None,
                gpa: page,
            })),
        })
    }

    /// A guest read of the private 4K page at `gpa`.
    pub fn guest_read(&self, gpa: Gpa) -> Result<AccessOutcome, SeptError> {
        match self.access_check(gpa, false)? {
            Some(o) => Ok(o),
            None => Ok(AccessOutcome::Accessible(self.content(gpa)?)),
        }
    }

    /// A guest write of `content` over the private `level`-sized page at `gpa`. A 2M (or 1G)
    /// write goes through its 4K pages in order: the pages before the first one that is not
    /// accessible are written, and that page's fault is the outcome.
    pub fn guest_write(
        &mut self,
        gpa: Gpa,
        level: PageLevel,
        content: Content,
    ) -> Result<AccessOutcome, SeptError> {
        match level {
            PageLevel::Size4K => {
                if let Some(o) = self.access_check(gpa, true)? {
                    return Ok(o);
                }
                self.set_page_content(gpa, content)?;
                Ok(AccessOutcome::Accessible(content))
            }
            PageLevel::Size2M | PageLevel::Size1G => {
                let base = gpa.align_down(level);
                let page = |i: u32| {
                    base.checked_add(u64::from(i) << PageLevel::Size4K.shift())
                        .map_err(|_| SeptError::OutsideModel)
                };
                for i in 0..level.pages_4k() {
                    if let Some(o) = self.access_check(page(i)?, true)? {
                        // The pages before this one were written, as a real guest's loop would.
                        for j in 0..i {
                            self.set_page_content(page(j)?, content)?;
                        }
                        return Ok(o);
                    }
                }
                let first = self.region_index(base).ok_or(SeptError::OutsideModel)?;
                let count = level.pages_4k() >> 9;
                for r in first..first.saturating_add(count as usize) {
                    self.set_region_content(r, content)?;
                }
                Ok(AccessOutcome::Accessible(content))
            }
        }
    }
}
