//! A host actor's step: the next action of its script, or the next step of the operation it
//! runs (a conversion or punch hole, a prefetch, a build-time INIT_MEM_REGION page).

use crate::abi::Gfn;
use crate::kvm::{FaultPath, FaultStep, HostOpEnd, HostOperation, HostStep, KvmError, KvmStorage};
use crate::sept::SeptStorage;

use super::{HostAction, HostRun, Metrics, Stepped, World};

impl<SS: SeptStorage, KS: KvmStorage, const V: usize, const F: usize, const L: usize>
    World<SS, KS, V, F, L>
{
    /// Host actor `i` takes its next step.
    pub(super) fn step_host(&mut self, i: usize, m: &mut Metrics) -> Result<Stepped, KvmError> {
        let Some(Some(mut h)) = self.hosts.get(i).copied() else {
            return Ok(Stepped::Invalid);
        };
        let r = match h.run {
            HostRun::Idle => {
                let Some(action) = h.script.get(usize::from(h.next)).copied().flatten() else {
                    return Ok(Stepped::Invalid);
                };
                h.next = h.next.saturating_add(1);
                h.run = self.begin_action(action);
                Stepped::Moved { progress: false }
            }
            HostRun::Await(n) => {
                if !self.stages_reached(n) {
                    return Ok(Stepped::Blocked);
                }
                h.run = HostRun::Idle;
                Stepped::Moved { progress: true }
            }
            HostRun::InitMem {
                mut path,
                next,
                end,
            } => match self.fault_step(&mut path, &mut h.prefetch_state, true, m)? {
                FaultStep::Progress => {
                    h.run = HostRun::InitMem { path, next, end };
                    Stepped::Moved { progress: false }
                }
                FaultStep::Blocked => return Ok(Stepped::Blocked),
                FaultStep::Done(_) => {
                    h.run = self.init_mem_from(next, end);
                    Stepped::Moved { progress: true }
                }
            },
            HostRun::Operation(mut op) => match op.step(&mut self.kvm, &mut self.sept)? {
                HostStep::Progress => {
                    h.run = HostRun::Operation(op);
                    Stepped::Moved { progress: false }
                }
                HostStep::Blocked => return Ok(Stepped::Blocked),
                HostStep::Done(end) => {
                    self.operation_done(&op, end, m);
                    h.run = HostRun::Idle;
                    Stepped::Moved { progress: true }
                }
            },
            HostRun::Prefetch(mut p) => {
                match self.fault_step(&mut p, &mut h.prefetch_state, true, m)? {
                    FaultStep::Progress => {
                        h.run = HostRun::Prefetch(p);
                        Stepped::Moved { progress: false }
                    }
                    FaultStep::Blocked => return Ok(Stepped::Blocked),
                    FaultStep::Done(_) => {
                        h.run = HostRun::Idle;
                        Stepped::Moved { progress: true }
                    }
                }
            }
        };
        if let Some(slot) = self.hosts.get_mut(i) {
            *slot = Some(h);
        }
        Ok(r)
    }

    /// What a host actor runs for the script action it starts.
    fn begin_action(&mut self, action: HostAction) -> HostRun {
        match action {
            HostAction::Operation { kind, start, end } => {
                HostRun::Operation(HostOperation::new(kind, start, end))
            }
            // KVM_PRE_FAULT_MEMORY is refused before finalization.
            HostAction::Prefetch(gfn) => FaultPath::prefetch(gfn, self.sept.op_state())
                .map_or(HostRun::Idle, HostRun::Prefetch),
            HostAction::InitMemRegion { start, end } => self.init_mem_from(start, end),
            HostAction::Finalize => {
                // TDH.MR.FINALIZE; KVM_TDX_FINALIZE_VM refuses a second time.
                let _ = self.sept.finalize();
                HostRun::Idle
            }
            HostAction::AwaitStage(n) => HostRun::Await(n),
        }
    }

    /// KVM_TDX_INIT_MEM_REGION from `gfn` on to `end`: the fault path of page `gfn`, or idle
    /// once the range is done (or when the ioctl is refused, after finalization).
    fn init_mem_from(&self, gfn: Gfn, end: Gfn) -> HostRun {
        match FaultPath::init_mem_region(gfn, self.sept.op_state()) {
            Some(path) if gfn < end => HostRun::InitMem {
                path,
                next: Gfn(gfn.raw().saturating_add(1)),
                end,
            },
            _ => HostRun::Idle,
        }
    }

    /// A host operation ended: its counts into the metrics, a KVM_BUG_ON into the VM.
    fn operation_done(&mut self, op: &HostOperation, end: HostOpEnd, m: &mut Metrics) {
        m.note.host_end = Some(end);
        let (seamcalls, demotions, _) = op.counts();
        m.host_seamcalls = m.host_seamcalls.saturating_add(seamcalls);
        m.host_demotions = m.host_demotions.saturating_add(demotions);
        if let HostOpEnd::VmBugged(_) = end {
            self.kvm.bugged = true;
        }
    }
}
