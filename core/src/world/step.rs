//! One step of a world's vCPU: a kick bounce, the guest's next operation (an ACCEPT TDCALL's
//! first phase, an access, a lazy-accept claim), the TDCALL's second phase, or one step of the
//! host's fault path on the same vCPU thread after an exit. Also the step's entry point, which
//! delivers a pending kick first.

use crate::abi::{Gpa, StatusCode};
use crate::guest::{GuestEnd, GuestEvent, GuestOp, GuestStep};
use crate::kvm::{FaultCtx, FaultEnd, FaultPath, FaultStep, KvmError, KvmStorage};
use crate::policy::VcpuPolicyState;
use crate::sept::{AcceptOutcome, AcceptStart, AccessOutcome, EpochTicket, SeptStorage};

use super::snapshot::LAZY_PART;
use super::{
    Choice, INTERRUPT_AFTER_PAGES, Metrics, PerVcpu, StepNote, Stepped, VcpuActor, VcpuState, World,
};

/// Adds one to vCPU `i`'s counter in `counts`.
fn bump(counts: &mut PerVcpu, i: usize) {
    if let Some(n) = counts.get_mut(i) {
        *n = n.saturating_add(1);
    }
}

/// A step that made the state move, with or without progress.
const fn moved(progress: bool) -> Result<Stepped, KvmError> {
    Ok(Stepped::Moved { progress })
}

impl<SS: SeptStorage, KS: KvmStorage, const V: usize, const F: usize, const L: usize>
    World<SS, KS, V, F, L>
{
    /// Takes one step.
    pub fn step(&mut self, choice: Choice, m: &mut Metrics) -> Result<Stepped, KvmError> {
        m.note = StepNote::default();
        // A pending kick reaches every vCPU in the guest.
        if self.kvm.kick_pending {
            self.kvm.kick_pending = false;
            for (i, v) in self.vcpus.iter_mut().enumerate() {
                if let Some(v) = v {
                    match &mut v.state {
                        VcpuState::InGuest { kicked, .. } | VcpuState::InTdcall { kicked, .. } => {
                            *kicked = true;
                            self.touched.vcpu(i);
                        }
                        _ => {}
                    }
                }
            }
        }
        // Each actor's operations hold its own in-flight slot: vCPUs first, then host actors.
        match choice {
            Choice::Vcpu(i) | Choice::Interrupt(i) => {
                self.touched.vcpu(usize::from(i));
                self.sept.set_caller(Some(usize::from(i)));
            }
            Choice::Host(i) => {
                self.touched.host(V, usize::from(i));
                self.sept.set_caller(Some(V.saturating_add(usize::from(i))));
            }
        }
        let r = match choice {
            Choice::Vcpu(i) => self.step_vcpu(usize::from(i), None, m),
            Choice::Interrupt(i) => self.step_vcpu(usize::from(i), Some(INTERRUPT_AFTER_PAGES), m),
            Choice::Host(i) => self.step_host(usize::from(i), m),
        }?;
        // Who took the step, and who had to wait.
        let waited = matches!(r, Stepped::Blocked);
        match choice {
            Choice::Vcpu(i) | Choice::Interrupt(i) if !matches!(r, Stepped::Invalid) => {
                let i = usize::from(i);
                bump(&mut m.vcpu_steps, i);
                if waited {
                    bump(&mut m.vcpu_waits, i);
                }
            }
            Choice::Host(_) if waited => m.host_waits = m.host_waits.saturating_add(1),
            _ => {}
        }
        Ok(r)
    }

    /// One step of the fault path `path` (a vCPU's after an exit, or a host actor's prefetch
    /// or INIT_MEM_REGION page) over this world's models and policy.
    pub(super) fn fault_step(
        &mut self,
        path: &mut FaultPath,
        vcpu: &mut VcpuPolicyState,
        event_pending: bool,
        m: &mut Metrics,
    ) -> Result<FaultStep, KvmError> {
        let mut ctx = FaultCtx {
            kvm: &mut self.kvm,
            sept: &mut self.sept,
            policy: &self.policy,
            vcpu,
            event_pending,
            stats: &mut m.fault,
            decision: &mut m.note.decision,
        };
        path.step(&mut ctx)
    }

    fn step_vcpu(
        &mut self,
        i: usize,
        interrupt: Option<u32>,
        m: &mut Metrics,
    ) -> Result<Stepped, KvmError> {
        let Some(Some(mut v)) = self.vcpus.get(i).copied() else {
            return Ok(Stepped::Invalid);
        };
        let r = self.vcpu_step(&mut v, i, interrupt, m)?;
        // A blocked step may still have changed what it waits on (a kick requested, a TRACK
        // issued, a BUSY retry counted): keep it.
        if !matches!(r, Stepped::Invalid)
            && let Some(slot) = self.vcpus.get_mut(i)
        {
            *slot = Some(v);
        }
        Ok(r)
    }

    fn enter(&mut self, v: &mut VcpuActor) -> Result<(), KvmError> {
        let ticket = self.sept.vcpu_enter()?;
        v.state = VcpuState::InGuest {
            ticket,
            kicked: false,
        };
        Ok(())
    }

    /// The guest's TDCALL or access exited: to the host's fault path.
    fn exit_to_host(
        &mut self,
        v: &mut VcpuActor,
        i: usize,
        ticket: EpochTicket,
        path: FaultPath,
        m: &mut Metrics,
    ) -> Result<(), KvmError> {
        self.sept.vcpu_exit(ticket)?;
        bump(&mut m.vcpu_exits, i);
        if self.reentered.get(i).copied().unwrap_or(false) {
            m.entries_without_progress = m.entries_without_progress.saturating_add(1);
        }
        v.state = VcpuState::InHost(path);
        Ok(())
    }

    /// The guest's operation retired with `ev`.
    fn retired(&mut self, v: &mut VcpuActor, i: usize, ev: GuestEvent, m: &mut Metrics) {
        if let GuestStep::Op(op) = v.guest.next_op() {
            m.note.retired = Some((op, ev));
        }
        v.guest.complete(ev);
        if let Some(r) = self.reentered.get_mut(i) {
            *r = false;
        }
    }

    /// [`World::retired`], a step with progress.
    fn retire(
        &mut self,
        v: &mut VcpuActor,
        i: usize,
        ev: GuestEvent,
        m: &mut Metrics,
    ) -> Result<Stepped, KvmError> {
        self.retired(v, i, ev, m);
        moved(true)
    }

    fn vcpu_step(
        &mut self,
        v: &mut VcpuActor,
        i: usize,
        interrupt: Option<u32>,
        m: &mut Metrics,
    ) -> Result<Stepped, KvmError> {
        match v.state {
            VcpuState::Finished(_) | VcpuState::Stopped(_) => Ok(Stepped::Invalid),
            VcpuState::InGuest {
                ticket,
                kicked: true,
            } => {
                self.sept.vcpu_exit(ticket)?;
                m.kicks = m.kicks.saturating_add(1);
                self.enter(v)?;
                moved(false)
            }
            VcpuState::InGuest { ticket, .. } => {
                if interrupt.is_some() {
                    return Ok(Stepped::Invalid);
                }
                // TDH.VP.ENTER needs a finalized TD: until then the vCPU thread waits.
                if !self.runnable() {
                    return Ok(Stepped::Blocked);
                }
                self.guest_op(v, i, ticket, m)
            }
            VcpuState::InTdcall { ticket, op, kicked } => {
                if interrupt.is_some() {
                    if v.interrupts_left == 0 {
                        return Ok(Stepped::Invalid);
                    }
                    v.interrupts_left = v.interrupts_left.saturating_sub(1);
                }
                let out = self.sept.accept_finish(op, interrupt)?;
                v.state = VcpuState::InGuest { ticket, kicked };
                self.accept_outcome(v, i, ticket, out, m)
            }
            VcpuState::InHost(path) => self.in_host_step(v, i, path, interrupt.is_some(), m),
        }
    }

    /// A vCPU in the host's fault path: a host event lands (`interrupt`), or the path takes a
    /// step, and at its end the vCPU re-enters the guest or the VM ends under it.
    fn in_host_step(
        &mut self,
        v: &mut VcpuActor,
        i: usize,
        mut path: FaultPath,
        interrupt: bool,
        m: &mut Metrics,
    ) -> Result<Stepped, KvmError> {
        if interrupt {
            if v.event {
                return Ok(Stepped::Invalid);
            }
            v.event = true;
            return moved(false);
        }
        let before = m.fault.seamcalls;
        let r = self.fault_step(&mut path, &mut v.policy, v.event, m)?;
        if let Some(n) = m.vcpu_seamcalls.get_mut(i) {
            *n = n.saturating_add(m.fault.seamcalls.saturating_sub(before));
        }
        if let FaultStep::Done(end) = r {
            m.note.fault_end = Some(end);
            // Back in the guest, the event is delivered there.
            v.event = false;
        }
        match r {
            FaultStep::Progress => {
                v.state = VcpuState::InHost(path);
                moved(false)
            }
            FaultStep::Blocked => Ok(Stepped::Blocked),
            FaultStep::Done(FaultEnd::Resume(_)) => {
                self.enter(v)?;
                if let Some(r) = self.reentered.get_mut(i) {
                    *r = true;
                }
                moved(false)
            }
            FaultStep::Done(FaultEnd::ExitToUserspace) => {
                // The model's userspace does not resolve memory faults: the VM ends.
                self.kvm.killed = true;
                v.state = VcpuState::Stopped(FaultEnd::ExitToUserspace);
                moved(false)
            }
            FaultStep::Done(end) => {
                v.state = VcpuState::Stopped(end);
                moved(false)
            }
        }
    }

    fn accept_outcome(
        &mut self,
        v: &mut VcpuActor,
        i: usize,
        ticket: EpochTicket,
        out: AcceptOutcome,
        m: &mut Metrics,
    ) -> Result<Stepped, KvmError> {
        match out {
            AcceptOutcome::Completed(s) => {
                if s.code() == StatusCode::OperandBusy {
                    m.accept_busy = m.accept_busy.saturating_add(1);
                }
                if s.is_error() || s.code() != StatusCode::Success {
                    m.accept_failed = m.accept_failed.saturating_add(1);
                } else {
                    m.accept_success = m.accept_success.saturating_add(1);
                    // The pages the module initialised: the accepted page's 4K pages.
                    let level = match v.guest.next_op() {
                        GuestStep::Op(GuestOp::Accept(a)) => Some(a.level),
                        GuestStep::Op(GuestOp::AcceptRaw(rcx)) => {
                            crate::abi::AcceptOperand::decode(rcx).ok().map(|a| a.level)
                        }
                        _ => None,
                    };
                    if let (Some(l), Some(n)) = (level, m.vcpu_pages.get_mut(i)) {
                        *n = n.saturating_add(l.pages_4k());
                    }
                }
                self.retire(v, i, GuestEvent::Status(s), m)
            }
            AcceptOutcome::Exit(e) => {
                m.exits_accept = m.exits_accept.saturating_add(1);
                self.exit_to_host(v, i, ticket, FaultPath::new(e), m)?;
                moved(false)
            }
            // Not retired: the guest re-executes the TDCALL.
            AcceptOutcome::Interrupted => moved(false),
        }
    }

    /// The guest's next operation, from inside the guest.
    fn guest_op(
        &mut self,
        v: &mut VcpuActor,
        i: usize,
        ticket: EpochTicket,
        m: &mut Metrics,
    ) -> Result<Stepped, KvmError> {
        let op = match v.guest.next_op() {
            GuestStep::End(end) => return self.program_end(v, i, ticket, end),
            GuestStep::Op(op) => op,
        };
        let base = self.sept.config().base;
        let access = match op {
            GuestOp::Accept(a) => return self.accept_begin(v, i, ticket, a.encode(), m),
            GuestOp::AcceptRaw(rcx) => return self.accept_begin(v, i, ticket, rcx, m),
            GuestOp::ClaimUnit(unit) => {
                self.touched.part(LAZY_PART);
                let Some(ev) = self.lazy.claim(base, unit) else {
                    return Ok(Stepped::Blocked);
                };
                return self.retire(v, i, ev, m);
            }
            GuestOp::ReleaseUnit(unit) => {
                self.touched.part(LAZY_PART);
                self.lazy.release(base, unit);
                return self.retire(v, i, GuestEvent::UnitReleased, m);
            }
            GuestOp::Verify {
                gpa,
                level,
                content,
            } => {
                let ev = self.verify(gpa, level.pages_4k(), content)?;
                return self.retire(v, i, ev, m);
            }
            GuestOp::Read(gpa) => self.sept.guest_read(gpa)?,
            GuestOp::Write {
                gpa,
                level,
                content,
            } => self.sept.guest_write(gpa, level, content)?,
        };
        match access {
            AccessOutcome::Accessible(c) => {
                let ev = match op {
                    GuestOp::Read(_) => GuestEvent::Read(c),
                    _ => GuestEvent::Wrote,
                };
                self.retire(v, i, ev, m)
            }
            AccessOutcome::VirtualizationException => {
                self.retire(v, i, GuestEvent::VirtualizationException, m)
            }
            AccessOutcome::Exit(e) => {
                m.exits_other = m.exits_other.saturating_add(1);
                self.exit_to_host(v, i, ticket, FaultPath::new(e), m)?;
                moved(false)
            }
        }
    }

    /// The guest program ended with `end`: the next stage starts once every vCPU is through
    /// this one, or the vCPU is finished.
    fn program_end(
        &mut self,
        v: &mut VcpuActor,
        i: usize,
        ticket: EpochTicket,
        end: GuestEnd,
    ) -> Result<Stepped, KvmError> {
        if end == GuestEnd::Done && v.stage.saturating_add(1) < v.stages {
            if !self.stages_reached(v.stage.saturating_add(1)) {
                return Ok(Stepped::Blocked);
            }
            let next = self
                .stages
                .get(i)
                .and_then(|s| s.get(usize::from(v.stage)))
                .copied()
                .flatten();
            let Some(g) = next else {
                return Err(KvmError::Inconsistent);
            };
            v.guest = g;
            v.stage = v.stage.saturating_add(1);
            return moved(true);
        }
        self.sept.vcpu_exit(ticket)?;
        v.state = VcpuState::Finished(end);
        moved(true)
    }

    /// TDG.MEM.PAGE.ACCEPT with operand `rcx`: its first phase, to its end or to the TDCALL
    /// in flight between its phases.
    fn accept_begin(
        &mut self,
        v: &mut VcpuActor,
        i: usize,
        ticket: EpochTicket,
        rcx: u64,
        m: &mut Metrics,
    ) -> Result<Stepped, KvmError> {
        m.tdcalls = m.tdcalls.saturating_add(1);
        bump(&mut m.vcpu_tdcalls, i);
        match self.sept.accept_begin(rcx)? {
            AcceptStart::Done(out) => self.accept_outcome(v, i, ticket, out, m),
            AcceptStart::Zeroing(op) | AcceptStart::Checking(op) => {
                v.state = VcpuState::InTdcall {
                    ticket,
                    op,
                    kicked: false,
                };
                moved(false)
            }
        }
    }

    /// The guest reads back `pages` 4K pages from `gpa` and compares them with `content`.
    fn verify(
        &self,
        gpa: Gpa,
        pages: u32,
        content: crate::sept::Content,
    ) -> Result<GuestEvent, KvmError> {
        for p in 0..pages {
            let page = Gpa(gpa.raw().saturating_add(u64::from(p) << 12));
            let found = self.sept.content(page)?;
            if found != content {
                return Ok(GuestEvent::Mismatch { gpa: page, found });
            }
        }
        Ok(GuestEvent::Verified)
    }
}
