//! The world the VMM's threads share: the scenario's [`RunWorld`] behind one lock, stepped
//! by whichever thread's actor moves — a vCPU thread after its guest's TDCALL or access, a host
//! thread for its script — each step checked, recorded as a choice, and mirrored into real
//! guest memory.
//!
//! **One lock per step.** The models are one deterministic state whose steps are atomic by
//! construction (`World::step` is one actor's atomic step, with mmu_lock, entry locks and the
//! S-EPT tree lock modelled inside it). Running each step under one mutex makes the real threads'
//! order a sequence of choices `replay` can reproduce exactly, and keeps the per-step invariant
//! checks of `sim` and `explore`. A step that has to wait (an actor blocked on the modelled
//! mmu_lock, a claim another vCPU holds, a finalize not yet done) releases the mutex and waits
//! for another step to move the state, so a waiting vCPU never blocks the others: the modelled
//! locks block exactly where the real host's would, the mutex only for the length of a step.
//!
//! **Real memory follows the model.** After every step the S-EPT model's change record names
//! the regions whose pages may have changed content; each page whose model content changed is
//! written into guest memory as [`hugesept_core::payload::content_word`] says: zeroed when
//! ACCEPT zeroed it, overwritten with the removed pattern when PAGE.REMOVE took it, the
//! PAGE.ADD source content when INIT_MEM_REGION added it. Markers are the one exception: the
//! guest's own stores write them, after the model retired its write. What the guest may touch
//! follows the model too: a window page is mapped into the guest's view exactly while the
//! S-EPT model maps it as an accepted leaf (MAPPED), so a load or store anywhere else exits to
//! the VMM and is answered from the model (src/vmm/vcpu.rs). A guest's loads and stores
//! happen between its access call and its end call, outside the mutex; a region with guest
//! accesses in flight is written and remapped only after they end (a per-region gate), so the
//! bytes a guest reads are always those of the model's state at the step its access retired.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use hugesept_core::abi::{Gpa, PAGE_SIZE_2M, PAGE_SIZE_4K, PageLevel, SeptEntryState};
use hugesept_core::guest::{GuestEvent, GuestOp};
use hugesept_core::kvm::KvmError;
use hugesept_core::payload::{Report, content_word};
use hugesept_core::sept::Content;
use hugesept_core::snapshot::Snapshot;
use hugesept_core::world::{Choice, Limits, Metrics, StepNote, Stepped, Verdict, Violation};

use super::memory::GuestMemory;
use crate::scenario::RunWorld;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The world reached a verdict (a livelock: the scenario's patience ran out).
    Verdict(Verdict),
    /// A safety invariant broke.
    Violation {
        /// The step (from 0).
        step: u32,
        /// Its choice.
        choice: Choice,
        /// What broke.
        violation: Violation,
    },
    /// The models refused a step (a model bug).
    Model(KvmError),
    /// The scenario's step budget ran out with the world still moving.
    BudgetExhausted,
    /// The wall-clock timeout.
    Timeout,
    /// The payload and the model disagree (an operation, a status, a content): an error.
    Disagreement {
        /// The vCPU.
        vcpu: u8,
        /// What differed.
        what: String,
    },
    /// The guest broke the VMM's contract (a bad boot block, an instruction KVM cannot run,
    /// bad port data, a halt before its program ended): the VM is stopped.
    GuestFault {
        /// The vCPU.
        vcpu: u8,
        /// What it did.
        what: String,
    },
    /// The VMM itself failed (a KVM ioctl).
    Vmm(String),
}

impl RunEnd {
    /// The outcome's name: a verdict's, `invariant-violation`, `budget-exhausted` (also for a
    /// timeout: no verdict), or an error's.
    pub fn name(&self) -> &'static str {
        match self {
            RunEnd::Verdict(v) => v.name(),
            RunEnd::Violation { .. } => crate::scenario::VIOLATION,
            RunEnd::BudgetExhausted | RunEnd::Timeout => crate::scenario::BUDGET_EXHAUSTED,
            RunEnd::Model(_) => "model-error",
            RunEnd::Disagreement { .. } => "disagreement",
            RunEnd::GuestFault { .. } => "guest-fault",
            RunEnd::Vmm(_) => "vmm-error",
        }
    }
}

impl std::fmt::Display for RunEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunEnd::Verdict(v) => write!(f, "{v}"),
            RunEnd::Violation {
                step,
                choice,
                violation,
            } => write!(f, "invariant broken at step {step} ({choice}): {violation}"),
            RunEnd::Model(e) => write!(f, "the model failed: {e}"),
            RunEnd::BudgetExhausted => f.write_str("the step budget ran out (no verdict)"),
            RunEnd::Timeout => f.write_str("the timeout passed (no verdict)"),
            RunEnd::Disagreement { vcpu, what } => {
                write!(f, "vCPU {vcpu}: the payload and the model disagree: {what}")
            }
            RunEnd::GuestFault { vcpu, what } => write!(f, "vCPU {vcpu}: guest fault: {what}"),
            RunEnd::Vmm(e) => write!(f, "VMM error: {e}"),
        }
    }
}

/// What a vCPU's access is about to touch, as the model decided it for that vCPU in the step
/// that retired it or made it exit: the guest's view of those pages is set to match before the
/// access's gate opens. The model decides per vCPU — a vCPU that entered the guest before a 2M
/// leaf was blocked still reaches it through its TLB until the host's TRACK and kick — while the
/// guest's view is one for the whole VM: so an access that needs the view changed waits until
/// no other access holds the region.
///
/// A write is exclusive too: the model retires it in one step, but the payload's stores take
/// real time after that step, so no other access to the region may begin (a later read would
/// see the write half done) nor still be going (an earlier read would see it begin) until the
/// write ends. Reads of a region whose view needs no change share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewFix {
    /// The access's first page.
    pub start: u64,
    /// Its 4K pages.
    pub pages: u32,
    /// The page it faults at (unmapped; the pages before it mapped), or none (all mapped).
    pub fault: Option<u64>,
    /// It stores (a marker write): it holds the region alone.
    pub write: bool,
}

/// A region gate's bit for a write in flight (the rest counts the accesses in flight).
const GATE_WRITE: u32 = 1 << 31;

/// What a step gave the thread that took it.
#[derive(Debug, Clone, Copy)]
pub struct Taken {
    /// What the step did.
    pub stepped: Stepped,
    /// Its note (the operation that retired, the fault path's end).
    pub note: StepNote,
    /// The generation after it.
    pub generation: u64,
    /// For a vCPU's step: where that vCPU is after it, and its stage.
    pub vcpu: Option<(hugesept_core::world::VcpuState, u8)>,
}

struct Shared {
    world: RunWorld,
    before: RunWorld,
    metrics: Metrics,
    choices: Vec<Choice>,
    idle: u32,
    end: Option<RunEnd>,
    /// The content each 4K page of the window holds in guest memory (raw).
    shadow: Vec<u16>,
    /// Whether each 4K page of the window is mapped in the guest's view.
    access: Vec<bool>,
    /// Per region: the states of the 1G and 2M entries above it when its access was last
    /// mapped (a change there can change every page's access).
    above: Vec<Option<(SeptEntryState, SeptEntryState)>>,
    /// Per vCPU: the model's side of the payload's report.
    counts: Vec<Report>,
    /// Bumped by every step that moved the state.
    generation: u64,
    /// Threads waiting for it to move (a step wakes them only when there are any).
    waiters: u32,
    /// Actor threads (hosts, and vCPUs once started) that have not ended.
    actors: u32,
}

/// The shared world.
pub struct Service<'m> {
    shared: Mutex<Shared>,
    changed: Condvar,
    mem: &'m GuestMemory,
    /// Per region: guest accesses between their access call and their end call.
    gates: Vec<AtomicU32>,
    stop: AtomicBool,
    /// Per vCPU: a host timer tick is pending (the watchdog sets them; a vCPU's next step
    /// takes it as an interrupt where one can land).
    ticks: Vec<AtomicBool>,
    base: u64,
    limits: Limits,
}

impl<'m> Service<'m> {
    /// The service over `world`, mirrored into `mem` (whose window must hold the world's).
    pub fn new(world: RunWorld, mem: &'m GuestMemory, limits: Limits) -> Service<'m> {
        let regions = world.regions();
        let base = world.sept().config().base.raw();
        let vcpus = world.vcpus().count();
        let mut shared = Shared {
            before: world.clone(),
            world,
            metrics: Metrics::default(),
            choices: Vec::new(),
            idle: 0,
            end: None,
            shadow: vec![Content::NONE.raw(); regions * 512],
            access: vec![true; regions * 512],
            above: vec![None; regions],
            counts: (0..vcpus)
                .map(|i| Report {
                    vcpu: i as u32,
                    ..Report::default()
                })
                .collect(),
            generation: 0,
            waiters: 0,
            actors: 0,
        };
        shared.world.clear_changes();
        let s = Service {
            shared: Mutex::new(shared),
            changed: Condvar::new(),
            mem,
            gates: (0..regions).map(|_| AtomicU32::new(0)).collect(),
            stop: AtomicBool::new(false),
            ticks: (0..vcpus).map(|_| AtomicBool::new(false)).collect(),
            base,
            limits,
        };
        // What the world starts with (a runnable TD's window is all NONE and inaccessible;
        // pages added by a build-time world are not there yet) goes to memory once. The shadow
        // of the guest's access starts as "all mapped", so every page not accepted is
        // unmapped now.
        {
            let mut sh = s.lock();
            let all: Vec<(usize, Option<Vec<u16>>)> = (0..regions).map(|r| (r, None)).collect();
            if let Err(e) = s.mirror(&mut sh, &all, None) {
                drop(sh);
                s.finish(e);
            }
        }
        s
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A thread that panicked while stepping leaves the state as it was after its last
        // complete step: keep going with it (the run reports whatever ends it).
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the run with `end` (the first end sticks) and wakes every waiting thread. The
    /// guests are not stopped: each learns of the end at its next request, writes its report
    /// and halts; one that errs or never asks again ends at [`Service::halt_all`].
    pub fn finish(&self, end: RunEnd) {
        let mut sh = self.lock();
        let hard = !matches!(end, RunEnd::Verdict(_) | RunEnd::BudgetExhausted);
        if sh.end.is_none() {
            sh.end = Some(end);
        }
        drop(sh);
        if hard {
            self.stop.store(true, Ordering::SeqCst);
        }
        self.changed.notify_all();
    }

    /// Stops every thread now: vCPU threads leave KVM_RUN at their next exit (the watchdog
    /// kicks them out of it), waits on gates give up.
    pub fn halt_all(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// A host timer ticks on every vCPU.
    pub fn tick(&self) {
        for t in &self.ticks {
            t.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the threads must stop now.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Whether the run has an end.
    pub fn ended(&self) -> bool {
        self.lock().end.is_some()
    }

    /// Runs `f` on the world under the lock (reads: a vCPU's state, a mapping).
    pub fn with_world<T>(&self, f: impl FnOnce(&RunWorld) -> T) -> T {
        f(&self.lock().world)
    }

    /// An actor thread (a host's, or a vCPU's once it starts) begins; the guard ends it.
    pub fn actor(&self) -> ActorGuard<'_, 'm> {
        self.lock().actors += 1;
        ActorGuard(self)
    }

    /// Waits until a step moves the state past `seen`, the run ends, or `at_most` passes.
    pub fn wait_change(&self, seen: u64, at_most: Duration) {
        let mut sh = self.lock();
        if sh.generation != seen || sh.end.is_some() {
            return;
        }
        sh.waiters += 1;
        let (mut sh, _) = self
            .changed
            .wait_timeout_while(sh, at_most, |sh| sh.generation == seen && sh.end.is_none())
            .unwrap_or_else(|e| e.into_inner());
        sh.waiters -= 1;
    }

    /// Takes one step of `choice` if `pre` (shown the world before it) allows it; `post` runs
    /// under the same lock after it, shown the world after it: a [`ViewFix`] it returns (an
    /// access decided in this step) sets the guest's view of the access's pages and opens the
    /// gate of its region. `None`: the run is over, or `pre` ended it.
    pub fn step(
        &self,
        mut choice: Choice,
        pre: impl FnOnce(&RunWorld) -> Result<(), RunEnd>,
        post: impl FnOnce(&Taken, &RunWorld) -> Option<ViewFix>,
    ) -> Option<Taken> {
        let mut sh = self.lock();
        // A pending timer tick lands as an interrupt where one can: during a 2M ACCEPT
        // between its phases (it returns without retiring) or while KVM handles the vCPU's
        // exit (the fault path's local retry loop stops at it). Elsewhere it is simply handled.
        if let Choice::Vcpu(i) = choice
            && self
                .ticks
                .get(usize::from(i))
                .is_some_and(|t| t.swap(false, Ordering::Relaxed))
            && sh.world.is_enabled(Choice::Interrupt(i))
        {
            choice = Choice::Interrupt(i);
        }
        if sh.end.is_some() {
            return None;
        }
        if let Some(v) = sh.world.ended() {
            drop(sh);
            self.finish(RunEnd::Verdict(v));
            return None;
        }
        if let Err(e) = pre(&sh.world) {
            drop(sh);
            self.finish(e);
            return None;
        }
        if !sh.world.is_enabled(choice) {
            return Some(Taken {
                stepped: Stepped::Invalid,
                note: StepNote::default(),
                generation: sh.generation,
                vcpu: None,
            });
        }
        let n = sh.choices.len() as u32;
        let sh_ref = &mut *sh;
        let metrics_before = sh_ref.metrics;
        let stepped = match sh_ref.world.step(choice, &mut sh_ref.metrics) {
            Ok(s) => s,
            Err(e) => {
                drop(sh);
                self.finish(RunEnd::Model(e));
                return None;
            }
        };
        // A waiting actor asking again while nothing moved changes nothing: while another
        // actor thread is still going (a vCPU in a long real access), its asking is not a
        // step of the run — neither in the trace nor towards the livelock count, which would
        // otherwise measure wall time. When every other actor waits too, it counts as before:
        // a run in which everyone waits on everyone is a livelock.
        if stepped == Stepped::Blocked
            && sh.actors.saturating_sub(sh.waiters) > 1
            && unchanged(&sh.world, &sh.before, &metrics_before, &sh.metrics)
        {
            // Not a step: nor a wait of the run's.
            sh.metrics = metrics_before;
            sh.world.clear_changes();
            return Some(Taken {
                stepped,
                note: StepNote::default(),
                generation: sh.generation,
                vcpu: None,
            });
        }
        sh.choices.push(choice);
        let note = sh.metrics.note;
        if let Err(violation) = sh.world.check_step(&sh.before) {
            drop(sh);
            self.finish(RunEnd::Violation {
                step: n,
                choice,
                violation,
            });
            return None;
        }
        // Real memory follows what the step changed; then the copy and a fresh record.
        let dirty = sh.world.sept().changes();
        let regions: Vec<(usize, Option<Vec<u16>>)> = if dirty.is_all() {
            (0..self.gates.len()).map(|r| (r, None)).collect()
        } else {
            dirty
                .regions()
                .iter()
                .map(|&r| {
                    let r = r as usize;
                    (r, dirty.pages_of(r).map(<[u16]>::to_vec))
                })
                .collect()
        };
        let guest_wrote = match (choice, note.retired) {
            (
                Choice::Vcpu(_) | Choice::Interrupt(_),
                Some((GuestOp::Write { gpa, level, .. }, GuestEvent::Wrote)),
            ) => Some((gpa.raw(), level.bytes())),
            _ => None,
        };
        if let Err(e) = self.mirror(&mut sh, &regions, guest_wrote) {
            drop(sh);
            self.finish(e);
            return None;
        }
        let Shared { world, before, .. } = &mut *sh;
        before.sync_from(world);
        world.clear_changes();
        if let (Choice::Vcpu(i) | Choice::Interrupt(i), Some((op, ev))) = (choice, note.retired)
            && let Some(c) = sh.counts.get_mut(usize::from(i))
        {
            c.count(op, ev);
        }
        sh.idle = match stepped {
            Stepped::Moved { progress: true } => 0,
            _ => sh.idle.saturating_add(1),
        };
        let fix = post(
            &Taken {
                stepped,
                note,
                generation: 0,
                vcpu: None,
            },
            &sh.world,
        );
        if let Some(fix) = fix
            && let Err(e) = self.fix_view(&mut sh, fix)
        {
            drop(sh);
            self.finish(e);
            return None;
        }
        let end = if let Some(v) = sh.world.ended() {
            Some(RunEnd::Verdict(v))
        } else if sh.idle >= self.limits.patience {
            Some(RunEnd::Verdict(Verdict::Livelock))
        } else if sh.choices.len() >= self.limits.bound as usize {
            Some(RunEnd::BudgetExhausted)
        } else {
            None
        };
        if matches!(stepped, Stepped::Moved { .. }) {
            sh.generation += 1;
        }
        let wake = sh.waiters > 0 && matches!(stepped, Stepped::Moved { .. });
        let generation = sh.generation;
        let vcpu = match choice {
            Choice::Vcpu(i) | Choice::Interrupt(i) => sh
                .world
                .vcpus()
                .nth(usize::from(i))
                .map(|v| (v.state(), v.stage())),
            _ => None,
        };
        drop(sh);
        if let Some(e) = end {
            self.finish(e);
        } else if wake {
            self.changed.notify_all();
        }
        Some(Taken {
            stepped,
            note,
            generation,
            vcpu,
        })
    }

    /// Whether the window page at `gpa` is mapped in the guest's view, as this service last
    /// set it, and how the model maps it now (for error messages).
    pub fn page_state(&self, gpa: u64) -> String {
        let sh = self.lock();
        let page = gpa
            .checked_sub(self.base)
            .map(|o| (o / PAGE_SIZE_4K) as usize);
        let view = page.and_then(|p| sh.access.get(p).copied());
        let model = sh
            .world
            .sept()
            .mapping(Gpa(gpa))
            .map(|m| format!("{} at {}", m.state, m.level))
            .unwrap_or_else(|e| e.to_string());
        format!(
            "the model maps it {model}; the guest's view has it {}",
            match view {
                Some(true) => "mapped",
                Some(false) => "unmapped",
                None => "outside the window",
            }
        )
    }

    /// The region index of `gpa`, if it is in the window.
    pub fn region_of(&self, gpa: Gpa) -> Option<usize> {
        let r = gpa.raw().checked_sub(self.base)? / PAGE_SIZE_2M;
        let r = usize::try_from(r).ok()?;
        (r < self.gates.len()).then_some(r)
    }

    /// A guest access to region `r` begins (under the lock, in the step that retired it).
    pub fn open_gate(&self, r: usize) {
        if let Some(g) = self.gates.get(r) {
            g.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The access ends (a write's end frees the region for every other access).
    pub fn close_gate(&self, r: usize) {
        if let Some(g) = self.gates.get(r) {
            let _ = g.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                let n = (v & !GATE_WRITE).checked_sub(1)?;
                Some(if n == 0 { 0 } else { (v & GATE_WRITE) | n })
            });
        }
    }

    /// Waits until no guest access is in flight on region `r`; false when the run was stopped
    /// meanwhile (a guest that never ends its access is stopped by the timeout).
    fn gate_clear(&self, r: usize) -> bool {
        let Some(g) = self.gates.get(r) else {
            return true;
        };
        let mut spins = 0u32;
        while g.load(Ordering::SeqCst) != 0 {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            spins = spins.saturating_add(1);
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        true
    }

    /// Writes the model's content of `regions` into guest memory where it changed (all but
    /// the range the guest just wrote itself), and maps into the guest's view exactly the pages
    /// the model maps as accepted leaves: pages that stop being accessible are unmapped before
    /// their content changes, pages that become accessible are mapped after. An error ends the
    /// run: stopped while waiting on a gate (a timeout), or the kernel refused a mapping change.
    fn mirror(
        &self,
        sh: &mut Shared,
        regions: &[(usize, Option<Vec<u16>>)],
        guest_wrote: Option<(u64, u64)>,
    ) -> Result<(), RunEnd> {
        let sept = sh.world.sept();
        for (r, pages) in regions {
            let r = *r;
            let region_base = self.base + (r as u64) * PAGE_SIZE_2M;
            let (Some(shadow), Some(access)) = (
                sh.shadow.get_mut(r * 512..(r + 1) * 512),
                sh.access.get_mut(r * 512..(r + 1) * 512),
            ) else {
                continue;
            };
            let mut changes: Vec<(usize, Content)> = Vec::new();
            let mut grant: Vec<usize> = Vec::new();
            let mut revoke: Vec<usize> = Vec::new();
            // The record names the pages of a table that changed (none: only its record), or
            // the whole region. A change of the 1G or 2M entry above the region (a 2M leaf's
            // state, a table blocked) can change every page's access: then look at all of them.
            let state = |l| {
                sept.entry(Gpa(region_base), l)
                    .ok()
                    .flatten()
                    .map_or(SeptEntryState::Free, |e| e.state)
            };
            let now_above = (state(PageLevel::Size1G), state(PageLevel::Size2M));
            let above_changed = sh.above.get(r).copied().flatten() != Some(now_above);
            if let Some(a) = sh.above.get_mut(r) {
                *a = Some(now_above);
            }
            let all: Vec<u16>;
            let which: &[u16] = match pages {
                Some(p) if !above_changed => p,
                _ => {
                    all = (0..512).collect();
                    &all
                }
            };
            for &p in which {
                let p = usize::from(p);
                let (Some(old), Some(mapped)) = (shadow.get_mut(p), access.get_mut(p)) else {
                    continue;
                };
                let gpa = region_base + (p as u64) * PAGE_SIZE_4K;
                let accessible = sept
                    .mapping(Gpa(gpa))
                    .is_ok_and(|m| m.state == SeptEntryState::Mapped);
                if accessible != *mapped {
                    *mapped = accessible;
                    if accessible {
                        grant.push(p);
                    } else {
                        revoke.push(p);
                    }
                }
                let now = sept.content(Gpa(gpa)).unwrap_or(Content::NONE);
                if now.raw() == *old {
                    continue;
                }
                *old = now.raw();
                let by_guest = guest_wrote
                    .is_some_and(|(at, len)| (at..at.saturating_add(len)).contains(&gpa));
                if !by_guest {
                    changes.push((p, now));
                }
            }
            if changes.is_empty() && grant.is_empty() && revoke.is_empty() {
                continue;
            }
            if !self.gate_clear(r) {
                return Err(RunEnd::Timeout);
            }
            self.set_access(region_base, &revoke, false)?;
            let uniform = changes.len() == 512 && changes.iter().all(|c| c.1 == changes[0].1);
            if uniform {
                self.write_content(region_base, PAGE_SIZE_2M, changes[0].1);
            } else {
                for (p, c) in changes {
                    self.write_content(region_base + (p as u64) * PAGE_SIZE_4K, PAGE_SIZE_4K, c);
                }
            }
            self.set_access(region_base, &grant, true)?;
        }
        Ok(())
    }

    /// Sets the guest's view of an access's pages to what the model decided for its vCPU (see
    /// [`ViewFix`]), once no other access holds the region, then opens the region's gate.
    fn fix_view(&self, sh: &mut Shared, fix: ViewFix) -> Result<(), RunEnd> {
        let Some(r) = self.region_of(Gpa(fix.start)) else {
            return Ok(());
        };
        let region_base = self.base + (r as u64) * PAGE_SIZE_2M;
        let first = ((fix.start - region_base) / PAGE_SIZE_4K) as usize;
        let end = (first + fix.pages as usize).min(512);
        let fault = fix
            .fault
            .map(|f| ((f.saturating_sub(region_base)) / PAGE_SIZE_4K) as usize);
        let (mut grant, mut revoke) = (Vec::new(), Vec::new());
        for p in first..end {
            let want = match fault {
                Some(f) => p < f,
                None => true,
            };
            if fault.is_some_and(|f| p > f) {
                break;
            }
            let Some(mapped) = sh.access.get_mut(r * 512 + p) else {
                continue;
            };
            if *mapped != want {
                *mapped = want;
                if want {
                    grant.push(p);
                } else {
                    revoke.push(p);
                }
            }
        }
        let writing = self
            .gates
            .get(r)
            .is_some_and(|g| g.load(Ordering::SeqCst) & GATE_WRITE != 0);
        let changes = !grant.is_empty() || !revoke.is_empty();
        if (changes || fix.write || writing) && !self.gate_clear(r) {
            return Err(RunEnd::Timeout);
        }
        if changes {
            self.set_access(region_base, &revoke, false)?;
            self.set_access(region_base, &grant, true)?;
        }
        if fix.write {
            if let Some(g) = self.gates.get(r) {
                g.store(GATE_WRITE | 1, Ordering::SeqCst);
            }
        } else {
            self.open_gate(r);
        }
        Ok(())
    }

    /// Maps (or unmaps) `pages` of the region at `base` in the guest's view, a run of
    /// consecutive pages at a time.
    fn set_access(&self, base: u64, pages: &[usize], accessible: bool) -> Result<(), RunEnd> {
        let mut sorted = pages.to_vec();
        sorted.sort_unstable();
        let mut i = 0;
        while i < sorted.len() {
            let mut j = i + 1;
            while j < sorted.len() && sorted[j] == sorted[j - 1] + 1 {
                j += 1;
            }
            let gpa = base + (sorted[i] as u64) * PAGE_SIZE_4K;
            let len = ((j - i) as u64) * PAGE_SIZE_4K;
            self.mem
                .set_guest_access(gpa, len, accessible)
                .map_err(|e| RunEnd::Vmm(format!("guest view of [{gpa:#x}, +{len:#x}): {e}")))?;
            i = j;
        }
        Ok(())
    }

    fn write_content(&self, gpa: u64, len: u64, c: Content) {
        // The window is backed by construction (the VMM maps the whole window), so these cannot
        // fail; a failure would leave the bytes as they were and show as a disagreement.
        let _ = if c == Content::ZERO {
            self.mem.zero_pages(gpa, len)
        } else {
            self.mem.fill_words(gpa, len, content_word(c))
        };
    }

    /// What the run recorded: its end (if it ended), the metrics, the choices, the model's
    /// per-vCPU counts and the world as it was left.
    pub fn into_parts(self) -> (Option<RunEnd>, Metrics, Vec<Choice>, Vec<Report>, RunWorld) {
        let sh = self.shared.into_inner().unwrap_or_else(|e| e.into_inner());
        (sh.end, sh.metrics, sh.choices, sh.counts, sh.world)
    }
}

/// An actor thread that has not ended (see [`Service::actor`]).
pub struct ActorGuard<'s, 'm>(&'s Service<'m>);

impl Drop for ActorGuard<'_, '_> {
    fn drop(&mut self) {
        let mut sh = self.0.lock();
        sh.actors = sh.actors.saturating_sub(1);
        drop(sh);
        // One fewer thread can move the world: a waiter's next ask may now count.
        self.0.changed.notify_all();
    }
}

/// Whether a step left `world` (and the counters, but for the waits every asking adds) as
/// `before` held them: its change record names no region, 1G record or own field of either
/// model, and every other part is equal.
fn unchanged(
    world: &RunWorld,
    before: &RunWorld,
    metrics_before: &Metrics,
    metrics: &Metrics,
) -> bool {
    let dirty = world.changed_regions();
    metrics_before.without_waits() == metrics.without_waits()
        && dirty.regions().is_empty()
        && !dirty.is_all()
        && !dirty.gigs()
        && !dirty.fields()
        && world.small_eq(before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::memory::Area;
    use hugesept_core::world::VcpuState;

    /// A timer tick lands as the model's interrupt during a 2M ACCEPT between its phases, is
    /// recorded as the choice, and the ACCEPT returns without retiring; without a tick the same
    /// step is the vCPU's own.
    #[test]
    fn a_tick_lands_as_an_interrupt_in_a_2m_accept() {
        let sc =
            crate::scenario::parse(include_str!("../../../scenarios/seed-rfc-v1.toml")).unwrap();
        let mem = GuestMemory::new(vec![Area::new_shared(0x4000_0000, 4 << 20).unwrap()]).unwrap();
        let s = Service::new(sc.run_world().unwrap(), &mem, Limits::steps(10_000));
        let state = |s: &Service<'_>| s.with_world(|w| w.vcpus().next().map(|v| v.state()));
        // vCPU 0 (OVMF, 2M): exit, fault path, re-entry, and the ACCEPT that zeroes the page.
        for _ in 0..100 {
            if matches!(state(&s), Some(VcpuState::InTdcall { .. })) {
                break;
            }
            s.step(Choice::Vcpu(0), |_| Ok(()), |_, _| None).unwrap();
        }
        assert!(matches!(state(&s), Some(VcpuState::InTdcall { .. })));
        s.tick();
        let t = s.step(Choice::Vcpu(0), |_| Ok(()), |_, _| None).unwrap();
        assert_eq!(t.note.retired, None);
        assert!(
            matches!(t.vcpu, Some((VcpuState::InGuest { .. }, 0))),
            "{:?}",
            t.vcpu
        );
        // The tick was taken: the next step of vCPU 0 is its own again.
        let t = s.step(Choice::Vcpu(0), |_| Ok(()), |_, _| None).unwrap();
        assert!(
            matches!(t.vcpu, Some((VcpuState::InTdcall { .. }, 0))),
            "{:?}",
            t.vcpu
        );
        let (_, _, choices, _, _) = s.into_parts();
        let n = choices.len();
        assert_eq!(choices[n - 2], Choice::Interrupt(0));
        assert_eq!(choices[n - 1], Choice::Vcpu(0));
    }

    /// A host waiting for a stage asks again while nothing moves: while a vCPU thread is still
    /// going, its asking is no step of the run (no choice recorded, no livelock count); when
    /// it is the only actor left going, each ask is a step, as in `sim`.
    #[test]
    fn a_waiting_host_asking_again_is_no_step_while_a_vcpu_is_going() {
        let sc =
            crate::scenario::parse(include_str!("../../../scenarios/conversion-4k-in-2m.toml"))
                .unwrap();
        let mem = GuestMemory::new(vec![Area::new_shared(0x4000_0000, 4 << 20).unwrap()]).unwrap();
        let s = Service::new(sc.run_world().unwrap(), &mem, Limits::steps(10_000));
        let host = s.actor();
        let step = || s.step(Choice::Host(0), |_| Ok(()), |_, _| None).unwrap();
        // The await action begins (a move), then the host waits for stage 1.
        assert!(matches!(step().stepped, Stepped::Moved { .. }));
        assert_eq!(step().stepped, Stepped::Blocked);
        let recorded = |s: &Service<'_>| s.lock().choices.len();
        let idle = |s: &Service<'_>| s.lock().idle;
        let waits = |s: &Service<'_>| s.lock().metrics.host_waits;
        let (n, i, w) = (recorded(&s), idle(&s), waits(&s));
        {
            let _vcpu = s.actor();
            for _ in 0..50 {
                assert_eq!(step().stepped, Stepped::Blocked);
            }
            // Nor are they waits of the run.
            assert_eq!((recorded(&s), idle(&s), waits(&s)), (n, i, w));
        }
        for _ in 0..50 {
            assert_eq!(step().stepped, Stepped::Blocked);
        }
        assert_eq!(
            (recorded(&s), idle(&s), waits(&s)),
            (n + 50, i + 50, w + 50)
        );
        drop(host);
    }

    /// A write holds its region alone: an access that begins while it is in flight waits for
    /// its end; a read's gate is shared.
    #[test]
    fn a_write_in_flight_holds_its_region_alone() {
        let sc =
            crate::scenario::parse(include_str!("../../../scenarios/seed-rfc-v1.toml")).unwrap();
        let mem = GuestMemory::new(vec![Area::new_shared(0x4000_0000, 4 << 20).unwrap()]).unwrap();
        let s = Service::new(sc.run_world().unwrap(), &mem, Limits::steps(10_000));
        let fix = |write| ViewFix {
            start: 0x4020_0000,
            pages: 1,
            fault: None,
            write,
        };
        let view = |s: &Service<'_>, write| {
            let mut sh = s.lock();
            s.fix_view(&mut sh, fix(write))
        };
        // Two reads share region 1.
        view(&s, false).unwrap();
        view(&s, false).unwrap();
        assert_eq!(s.gates[1].load(Ordering::SeqCst), 2);
        s.close_gate(1);
        s.close_gate(1);
        // An access (`write` or not) that begins while region 1 is held returns only once the
        // holder closes its gate.
        let waits_for_the_holder = |write: bool, what: &str| {
            let done = AtomicBool::new(false);
            std::thread::scope(|t| {
                let h = t.spawn(|| {
                    view(&s, write).unwrap();
                    done.store(true, Ordering::SeqCst);
                });
                for _ in 0..1000 {
                    std::thread::yield_now();
                    assert!(!done.load(Ordering::SeqCst), "{what}");
                }
                s.close_gate(1);
                h.join().unwrap();
            });
            assert!(done.load(Ordering::SeqCst));
        };
        // A write takes it alone; a read that begins meanwhile returns only after its end.
        view(&s, true).unwrap();
        assert_eq!(s.gates[1].load(Ordering::SeqCst), GATE_WRITE | 1);
        waits_for_the_holder(false, "a read began inside a write");
        assert_eq!(s.gates[1].load(Ordering::SeqCst), 1);
        // And a write waits for the read.
        waits_for_the_holder(true, "a write began inside a read");
        assert_eq!(s.gates[1].load(Ordering::SeqCst), GATE_WRITE | 1);
        s.close_gate(1);
        assert_eq!(s.gates[1].load(Ordering::SeqCst), 0);
    }
}
