//! One vCPU thread: KVM_RUN, the exits decoded, every TDCALL the payload issues served by the
//! core, on this thread, as the TDX module and KVM would serve it.
//!
//! A TDCALL reaches the VMM two ways: on these hosts as KVM_EXIT_INTERNAL_ERROR (emulation
//! failure) at the instruction `66 0F 01 CC`, which the VMM completes itself (outputs set,
//! RIP += 4); or forwarded through [`TDCALL_PORT`] by a payload that took #UD (the block's
//! registers in, the outputs written back). Either way the leaf is served here:
//!
//! - TDG.MEM.PAGE.ACCEPT: the guest's operation in the world, stepped on this thread —
//!   the module's walk and zeroing, and after an EPT-violation exit KVM's fault path with the
//!   policy — until it retires with a status (RAX) or the fault path resumes the guest without
//!   retiring it (RIP unchanged: the guest re-executes the TDCALL, as with the module);
//! - TDG.VP.INFO and TDG.MEM.PAGE.ATTR.RD: answered from the model's configuration and S-EPT;
//! - TDG.VP.VEINFO.GET: the #VE this thread delivered last, once (then TDX_NO_VALID_VE_INFO);
//! - TDG.VP.VMCALL: GHCI's Instruction.IO (the console) and Instruction.HLT, and the hugesept
//!   calls through which the payload hands over its memory operations, lazy-accept claims and
//!   program ends ([`hugesept_core::payload::Call`]);
//! - any other leaf: TDX_OPERAND_INVALID (operand RAX), counted.
//!
//! With `ud_tdcall` the VMM plays a host that raises #UD for TDCALL: it injects #UD at the
//! instruction and the payload's handler forwards the call through the port.
//!
//! A guest memory operation is announced with a hugesept call (AccessBegin: the model steps
//! the operation), then done with real loads and stores. Window pages the model does not map as
//! accepted are not in the guest's view (src/vmm/service.rs), so where the model says the
//! access faults, the real access exits here as an MMIO access at that page: the VMM finishes
//! KVM's emulation of it without entering the guest, puts RIP back on the instruction, and
//! answers as the TDX module and KVM would — #VE injected (its information for VEINFO.GET), or
//! KVM's fault path run on this thread until it resumes the guest (the instruction runs again,
//! and the model steps the access again), or the TD killed. An access the model lets through
//! finds its pages mapped and never exits.
//!
//! Before the world steps a guest operation, the operation the payload issued is compared with
//! the one the model's copy of the same guest program issues next; a difference ends the run as
//! a disagreement. The run's order is whatever these threads produce; every step is a choice in
//! the trace.

use std::fmt::Write as _;
use std::time::Duration;

use hugesept_core::abi::{
    Gpa, Gpaw, OperandId, PAGE_SIZE_4K, PageLevel, StatusCode, TdcallLeaf, TdcallRax, TdxStatus,
};
use hugesept_core::guest::{GuestEvent, GuestOp, GuestStep};
use hugesept_core::payload::{
    AccessAnswer, AccessKind, AccessRequest, AccessResult, BootError, Call, EndCode,
    FAULT_NO_PROGRAM, FAULT_PANIC, FAULT_PROTOCOL, GHCI_HLT, GHCI_IO, PORT_TDCALL_SIZE,
    TDCALL_PORT, VMCALL_INVALID_OPERAND, VMCALL_VENDOR,
};
use hugesept_core::sept::Content;
use hugesept_core::world::{Choice, Stepped, VcpuState};
use kvm_bindings::kvm_regs;
use kvm_ioctls::{VcpuExit, VcpuFd};

use super::cpu::LOW_END;
use super::memory::GuestMemory;
use super::service::{RunEnd, Service, Taken, ViewFix};
use crate::scenario::RunWorld;

/// The TDCALL instruction.
const TDCALL_BYTES: [u8; 4] = [0x66, 0x0f, 0x01, 0xcc];
/// KVM_INTERNAL_ERROR_EMULATION.
const KVM_INTERNAL_ERROR_EMULATION: u32 = 1;
/// COM1's data register.
const COM1: u16 = 0x3f8;
/// The isa-debug-exit style port.
const DEBUG_EXIT: u16 = 0xf4;
/// How long a waiting step sleeps at most before it looks again.
const WAIT: Duration = Duration::from_millis(1);
/// Console bytes kept per vCPU at most (a guest printing forever cannot fill the VMM's memory).
const CONSOLE_LIMIT: usize = 64 << 10;

/// What one vCPU did, seen from the VMM.
#[derive(Debug, Clone, Default)]
pub struct VcpuStats {
    /// KVM_RUN exits in all.
    pub exits: u64,
    /// Exits that were TDCALLs (emulation failures at TDCALL, or forwarded by port).
    pub tdcall_exits: u64,
    /// TDCALLs by leaf: ACCEPT, VP.INFO, ATTR.RD, VMCALL, others.
    pub tdcalls: [u64; 5],
    /// ACCEPT exits the guest re-executes (not retired: the fault path resumed it).
    pub accept_reexecuted: u64,
    /// Loads and stores on window pages the guest's view did not map (MMIO exits).
    pub window_exits: u64,
    /// #VEs injected.
    pub ves: u64,
    /// TDG.VP.VEINFO.GET calls.
    pub veinfo_gets: u64,
    /// #UDs injected at TDCALLs (`ud_tdcall`).
    pub uds: u64,
    /// hugesept calls.
    pub hugesept_calls: u64,
    /// Port writes and reads to ports the VMM does not serve.
    pub stray_ports: u64,
    /// Nanoseconds inside KVM_RUN (the guest running, and KVM's own exit and entry).
    pub run_ns: u64,
    /// Nanoseconds the VMM spent serving exits (from KVM_RUN's return to the next call).
    pub serve_ns: u64,
    /// Of those, serving ACCEPT TDCALLs (the core's steps, locks, memory mirroring).
    pub accept_serve_ns: u64,
    /// The console's text.
    pub console: String,
    /// How the thread ended.
    pub end: VcpuEnd,
}

/// How a vCPU thread ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VcpuEnd {
    /// Still running (never seen after a run).
    #[default]
    Running,
    /// The guest halted (GHCI HLT or `hlt`).
    Halted,
    /// The run ended under it.
    Stopped,
    /// It wrote the exit port.
    Exited(u8),
    /// It broke the contract (the run's end says how).
    Fault,
}

/// A guest request that steps the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Accept(u64),
    Access(AccessRequest),
    Unit { release: bool, unit: Gpa },
    End(EndCode, u64),
}

/// The answer to a request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// The operation retired with this event.
    Retired(GuestEvent),
    /// The fault path resumed the guest: the instruction runs again.
    Retry,
    /// The access exited to the host (the fault path has not run yet).
    Exited,
    /// The next stage starts.
    NextStage,
    /// The program is over.
    Finished,
    /// The run is over.
    Stop,
}

/// What the thread does after an exit.
enum Flow {
    Continue,
    Halt,
    Stop,
}

/// The registers a TDCALL reads and writes.
#[derive(Debug, Clone, Copy, Default)]
struct TdRegs {
    rax: u64,
    rcx: u64,
    rdx: u64,
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
}

impl TdRegs {
    fn of(r: &kvm_regs) -> TdRegs {
        TdRegs {
            rax: r.rax,
            rcx: r.rcx,
            rdx: r.rdx,
            r8: r.r8,
            r9: r.r9,
            r10: r.r10,
            r11: r.r11,
            r12: r.r12,
            r13: r.r13,
            r14: r.r14,
            r15: r.r15,
        }
    }

    fn store(&self, r: &mut kvm_regs) {
        r.rax = self.rax;
        r.rcx = self.rcx;
        r.rdx = self.rdx;
        r.r8 = self.r8;
        r.r9 = self.r9;
        r.r10 = self.r10;
        r.r11 = self.r11;
        r.r12 = self.r12;
        r.r13 = self.r13;
        r.r14 = self.r14;
        r.r15 = self.r15;
    }

    fn words(&self) -> [u64; 11] {
        [
            self.rax, self.rcx, self.rdx, self.r8, self.r9, self.r10, self.r11, self.r12, self.r13,
            self.r14, self.r15,
        ]
    }

    fn from_words(w: [u64; 11]) -> TdRegs {
        let [rax, rcx, rdx, r8, r9, r10, r11, r12, r13, r14, r15] = w;
        TdRegs {
            rax,
            rcx,
            rdx,
            r8,
            r9,
            r10,
            r11,
            r12,
            r13,
            r14,
            r15,
        }
    }
}

/// Where the model says an access faults, and what the VMM does when the real access gets there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// #VE at this page (a PENDING page, #VE enabled).
    Ve(u64),
    /// An exit at this page: KVM's fault path runs (it maps the page, or kills the TD).
    Exit(u64),
}

/// An access between its begin and end calls.
#[derive(Debug, Clone, Copy)]
struct Open {
    req: AccessRequest,
    /// The model's event, once it retired.
    ev: Option<GuestEvent>,
    /// The region whose gate it holds.
    region: Option<usize>,
    /// Where the real access is to exit next.
    fault: Option<Fault>,
    /// The page whose access took #VE.
    ve_page: Option<u64>,
}

/// What TDG.VP.VEINFO.GET reports for the #VE this thread delivered (tdg_vp_veinfo_get.c: RCX
/// exit reason, RDX exit qualification, R8 GLA, R9 GPA).
#[derive(Debug, Clone, Copy)]
struct VeInfo {
    qualification: u64,
    address: u64,
}

/// One vCPU thread's state.
pub struct VcpuThread<'s, 'm> {
    index: u8,
    vcpus: u8,
    service: &'s Service<'m>,
    mem: &'m GuestMemory,
    gpaw: Gpaw,
    ve_disable: bool,
    /// Raise #UD for TDCALL (the payload forwards it by port).
    ud_tdcall: bool,
    /// An access between its begin and end calls.
    open: Option<Open>,
    /// The #VE information not yet read with TDG.VP.VEINFO.GET.
    ve_info: Option<VeInfo>,
    /// The console line being written.
    line: String,
    /// The statistics.
    pub stats: VcpuStats,
}

impl<'s, 'm> VcpuThread<'s, 'm> {
    /// vCPU `index` of `vcpus` over `service`; with `ud_tdcall`, TDCALL raises #UD.
    pub fn new(
        index: u8,
        vcpus: u8,
        service: &'s Service<'m>,
        mem: &'m GuestMemory,
        ud_tdcall: bool,
    ) -> Self {
        let (gpaw, ve_disable) = service.with_world(|w| {
            let c = w.sept().config();
            (c.gpaw, c.pending_ve_disable)
        });
        VcpuThread {
            index,
            vcpus,
            service,
            mem,
            gpaw,
            ve_disable,
            ud_tdcall,
            open: None,
            ve_info: None,
            line: String::new(),
            stats: VcpuStats::default(),
        }
    }

    fn fault(&mut self, what: String) -> Flow {
        self.stats.end = VcpuEnd::Fault;
        self.service.finish(RunEnd::GuestFault {
            vcpu: self.index,
            what,
        });
        Flow::Stop
    }

    fn disagree(&self, what: String) -> RunEnd {
        RunEnd::Disagreement {
            vcpu: self.index,
            what,
        }
    }

    /// Runs the vCPU until the guest halts or the run ends.
    pub fn run(&mut self, vcpu: &mut VcpuFd) {
        loop {
            if self.service.stopped() {
                self.stats.end = match self.stats.end {
                    VcpuEnd::Running => VcpuEnd::Stopped,
                    e => e,
                };
                break;
            }
            let flow = self.one_exit(vcpu);
            match flow {
                Flow::Continue => {}
                Flow::Halt => {
                    if self.stats.end == VcpuEnd::Running {
                        self.stats.end = VcpuEnd::Halted;
                    }
                    break;
                }
                Flow::Stop => break,
            }
        }
        if !self.line.is_empty() {
            let l = std::mem::take(&mut self.line);
            self.push_console(&l);
        }
        // An access left open by a stopped guest must not hold a region's gate.
        self.close_open();
    }

    /// Ends the open access's hold on its region's gate (the access stays open).
    fn close_gate(&mut self) {
        if let Some(o) = self.open.as_mut()
            && let Some(r) = o.region.take()
        {
            self.service.close_gate(r);
        }
    }

    /// Forgets the open access, releasing its gate.
    fn close_open(&mut self) -> Option<Open> {
        self.close_gate();
        self.open.take()
    }

    fn one_exit(&mut self, vcpu: &mut VcpuFd) -> Flow {
        let entered = std::time::Instant::now();
        let accepts = self.stats.tdcalls[0];
        let mut returned = entered;
        let flow = self.exit_of(vcpu, &mut returned);
        let done = std::time::Instant::now();
        self.stats.run_ns += returned.duration_since(entered).as_nanos() as u64;
        let served = done.duration_since(returned).as_nanos() as u64;
        self.stats.serve_ns += served;
        if self.stats.tdcalls[0] != accepts {
            self.stats.accept_serve_ns += served;
        }
        flow
    }

    fn exit_of(&mut self, vcpu: &mut VcpuFd, returned: &mut std::time::Instant) -> Flow {
        enum Exit {
            Internal,
            Out(u16, [u8; 4], usize),
            In,
            Hlt,
            Window(u64, bool),
            Other(String),
        }
        let exit = match vcpu.run() {
            Ok(VcpuExit::InternalError) => Exit::Internal,
            Ok(VcpuExit::IoOut(port, data)) => {
                let mut b = [0u8; 4];
                let n = data.len().min(4);
                b[..n].copy_from_slice(&data[..n]);
                Exit::Out(port, b, data.len())
            }
            Ok(VcpuExit::IoIn(_, data)) => {
                data.fill(0xff);
                Exit::In
            }
            Ok(VcpuExit::Hlt) => Exit::Hlt,
            Ok(VcpuExit::Shutdown) => Exit::Other("triple fault (shutdown)".into()),
            Ok(VcpuExit::MmioRead(a, _)) => Exit::Window(a, false),
            Ok(VcpuExit::MmioWrite(a, _)) => Exit::Window(a, true),
            Ok(other) => Exit::Other(format!("unexpected exit {other:?}")),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                return Flow::Continue;
            }
            Err(e) => {
                self.service.finish(RunEnd::Vmm(format!("KVM_RUN: {e}")));
                return Flow::Stop;
            }
        };
        *returned = std::time::Instant::now();
        self.stats.exits += 1;
        match exit {
            Exit::Internal => self.internal_error(vcpu),
            Exit::Out(port, b, len) => self.port_out(port, b, len),
            Exit::In => {
                self.stats.stray_ports += 1;
                Flow::Continue
            }
            Exit::Hlt => self.halted(),
            Exit::Window(addr, write) => self.window_access(vcpu, addr, write),
            Exit::Other(what) => self.fault(what),
        }
    }

    /// Finishes KVM's emulation of the load the guest's instruction made (a KVM_RUN with
    /// immediate_exit completes it without entering the guest; a string instruction's next
    /// element can ask for another, answered the same way) and puts every register back as
    /// `regs` held them at the exit: as far as the guest can tell, the instruction has not
    /// happened. (KVM reports a load before its emulation writes anything back.)
    fn cancel_access(&self, vcpu: &mut VcpuFd, regs: &kvm_regs) -> Result<(), String> {
        /// More than a string instruction's elements in a page.
        const MAX_COMPLETIONS: u32 = 1024;
        vcpu.set_kvm_immediate_exit(1);
        let mut done = Err("KVM_RUN (immediate exit) kept asking for MMIO".to_string());
        for _ in 0..MAX_COMPLETIONS {
            match vcpu.run() {
                Ok(VcpuExit::MmioRead(..) | VcpuExit::MmioWrite(..)) => continue,
                Ok(other) => {
                    done = Err(format!("KVM_RUN (immediate exit) returned {other:?}"));
                    break;
                }
                Err(e) if e.errno() == libc::EINTR => {
                    done = Ok(());
                    break;
                }
                Err(e) => {
                    done = Err(format!("KVM_RUN (immediate exit): {e}"));
                    break;
                }
            }
        }
        vcpu.set_kvm_immediate_exit(0);
        done?;
        vcpu.set_regs(regs)
            .map_err(|e| format!("KVM_SET_REGS: {e}"))
    }

    /// Injects exception `vector` (no error code) at the next entry.
    fn inject(&self, vcpu: &VcpuFd, vector: u8) -> Result<(), String> {
        let mut ev = vcpu
            .get_vcpu_events()
            .map_err(|e| format!("KVM_GET_VCPU_EVENTS: {e}"))?;
        ev.exception.injected = 1;
        ev.exception.nr = vector;
        ev.exception.has_error_code = 0;
        ev.exception.pending = 0;
        ev.exception.error_code = 0;
        ev.flags = 0;
        vcpu.set_vcpu_events(&ev)
            .map_err(|e| format!("KVM_SET_VCPU_EVENTS: {e}"))
    }

    /// A load or store on a window page the guest's view does not map: the access the model
    /// said faults there reaching the VMM for real.
    fn window_access(&mut self, vcpu: &mut VcpuFd, addr: u64, write: bool) -> Flow {
        self.stats.window_exits += 1;
        let page = addr & !(PAGE_SIZE_4K - 1);
        let regs = match vcpu.get_regs() {
            Ok(r) => r,
            Err(e) => {
                self.service
                    .finish(RunEnd::Vmm(format!("KVM_GET_REGS: {e}")));
                return Flow::Stop;
            }
        };
        let rip = regs.rip;
        if write {
            // KVM reports a store to memory it cannot map after emulating the instruction
            // (its registers and RIP already moved on), so the VMM cannot give it the fault
            // semantics of an EPT violation or a #VE. The payload loads from each page before
            // it stores there (src/memory.rs in guest-td), which exits first.
            self.close_gate();
            let e = format!(
                "a store at {addr:#x} (RIP {rip:#x}) reached a window page the guest's view does                  not map ({}) without a load of that page first: this VMM can stop a load                  there, but KVM has already emulated the store past its instruction",
                self.service.page_state(page)
            );
            return self.fault(e);
        }
        let expected = self.open.as_ref().and_then(|o| o.fault);
        match expected {
            Some(Fault::Ve(p) | Fault::Exit(p)) if p == page => {}
            _ => {
                // Free the region first: a thread waiting for it holds the lock page_state takes.
                self.close_gate();
                let e = self.disagree(format!(
                    "a {} at {addr:#x} (RIP {rip:#x}) exited ({}), but the model {}",
                    if write { "store" } else { "load" },
                    self.service.page_state(page),
                    match expected {
                        Some(Fault::Ve(p)) => format!("delivers #VE at {p:#x}"),
                        Some(Fault::Exit(p)) => format!("exits at {p:#x}"),
                        None if self.open.is_some() => "lets the access through".into(),
                        None => "saw no access begin".into(),
                    }
                ));
                self.service.finish(e);
                return Flow::Stop;
            }
        }
        if let Err(e) = self.cancel_access(vcpu, &regs) {
            self.service.finish(RunEnd::Vmm(e));
            return Flow::Stop;
        }
        // The guest is out of the guest's memory until it re-enters: the region's gate opens.
        self.close_gate();
        match expected {
            Some(Fault::Ve(_)) => {
                if self.ve_info.is_some() {
                    return self.fault(
                        "#VE while the last #VE's information was never read with \
                         TDG.VP.VEINFO.GET (the TDX module injects #DF)"
                            .into(),
                    );
                }
                self.ve_info = Some(VeInfo {
                    qualification: if write { 2 } else { 1 },
                    address: addr,
                });
                if let Some(o) = self.open.as_mut() {
                    o.fault = None;
                    o.ve_page = Some(page);
                }
                self.stats.ves += 1;
                match self.inject(vcpu, 20) {
                    Ok(()) => Flow::Continue,
                    Err(e) => {
                        self.service.finish(RunEnd::Vmm(e));
                        Flow::Stop
                    }
                }
            }
            _ => {
                // KVM's fault path, on this thread, until it resumes the guest; then the model
                // steps the access again, as the re-executed instruction is.
                let Some(req) = self.open.as_ref().map(|o| o.req) else {
                    return Flow::Stop;
                };
                match self.serve(Request::Access(req)) {
                    Answer::Retry => {}
                    _ => {
                        self.stats.end = VcpuEnd::Stopped;
                        return Flow::Stop;
                    }
                }
                self.open = None;
                match self.begin_access(req) {
                    Some(o) => {
                        self.open = Some(o);
                        Flow::Continue
                    }
                    None => {
                        self.stats.end = VcpuEnd::Stopped;
                        Flow::Stop
                    }
                }
            }
        }
    }

    /// Steps the model's access `req` until it retires or exits; the open access it leaves
    /// (its gate held, and where the real access is to fault), or `None` when the run ended.
    fn begin_access(&mut self, req: AccessRequest) -> Option<Open> {
        let service = self.service;
        let mut region = None;
        let mut fault_page = None;
        let i = usize::from(self.index);
        let answer = self.serve_with(Request::Access(req), true, &mut |t, w, before| {
            // The step that decides the access: it retired, or it left the guest (exited).
            let retired = matches!(
                t.note.retired,
                Some((
                    GuestOp::Read(_) | GuestOp::Write { .. } | GuestOp::Verify { .. },
                    _
                ))
            );
            let exited = matches!(before, Some(VcpuState::InGuest { .. }))
                && w.vcpus()
                    .nth(i)
                    .is_some_and(|v| matches!(v.state(), VcpuState::InHost(_)));
            if !retired && !exited {
                return None;
            }
            let faults = exited
                || matches!(
                    t.note.retired,
                    Some((_, GuestEvent::VirtualizationException))
                );
            if faults {
                fault_page = first_inaccessible(w, req);
            }
            // The service sets the guest's view of these pages as the model decided for this
            // vCPU and opens the region's gate, under its lock: nothing changes the region's
            // memory or mapping until the access ends or exits.
            region = service.region_of(req.gpa);
            Some(ViewFix {
                start: req.gpa.raw(),
                pages: req.level.pages_4k(),
                fault: fault_page,
                write: req.kind == AccessKind::Write,
            })
        });
        let mut o = Open {
            req,
            ev: None,
            region,
            fault: None,
            ve_page: None,
        };
        match answer {
            Answer::Retired(GuestEvent::VirtualizationException) => {
                o.ev = Some(GuestEvent::VirtualizationException);
                o.fault = fault_page.map(Fault::Ve);
            }
            Answer::Retired(ev) => o.ev = Some(ev),
            Answer::Exited => o.fault = fault_page.map(Fault::Exit),
            _ => {
                if let Some(g) = o.region {
                    service.close_gate(g);
                }
                return None;
            }
        }
        let faults =
            o.ev == Some(GuestEvent::VirtualizationException) || matches!(answer, Answer::Exited);
        if faults && o.fault.is_none() {
            // The model faults, yet every page of the access is accepted: nothing the real
            // access could exit at.
            if let Some(g) = o.region {
                service.close_gate(g);
            }
            let e = self.disagree(format!(
                "the model's {req:?} faults, but no page of it is unmapped"
            ));
            service.finish(e);
            return None;
        }
        Some(o)
    }

    /// KVM_EXIT_INTERNAL_ERROR: an emulation failure at a TDCALL is served; anything else
    /// ends the VM.
    fn internal_error(&mut self, vcpu: &mut VcpuFd) -> Flow {
        // SAFETY: the exit reason was KVM_EXIT_INTERNAL_ERROR (kvm-ioctls decoded it so), for
        // which KVM fills the `internal` member of the kvm_run union; reading a plain u32 field
        // of it is valid for any bit pattern.
        let suberror = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
        let mut regs = match vcpu.get_regs() {
            Ok(r) => r,
            Err(e) => {
                self.service
                    .finish(RunEnd::Vmm(format!("KVM_GET_REGS: {e}")));
                return Flow::Stop;
            }
        };
        // The payload runs identity-mapped (the loader's page tables), so RIP is the GPA of the
        // instruction; a guest that remapped its code shows up as bytes that are not TDCALL.
        let mut insn = [0u8; 4];
        let readable = self.mem.read(regs.rip, &mut insn).is_ok();
        if suberror != KVM_INTERNAL_ERROR_EMULATION || !readable || insn != TDCALL_BYTES {
            return self.fault(format!(
                "KVM internal error (suberror {suberror}) at RIP {:#x}, bytes {insn:02x?}: not a \
                 TDCALL",
                regs.rip
            ));
        }
        if self.ud_tdcall {
            // A host that raises #UD for TDCALL: the payload's handler forwards it by port.
            self.stats.uds += 1;
            return match self.inject(vcpu, 6) {
                Ok(()) => Flow::Continue,
                Err(e) => {
                    self.service.finish(RunEnd::Vmm(e));
                    Flow::Stop
                }
            };
        }
        self.stats.tdcall_exits += 1;
        let mut td = TdRegs::of(&regs);
        let (flow, retire) = self.tdcall(&mut td);
        td.store(&mut regs);
        if retire {
            regs.rip = regs.rip.wrapping_add(4);
        }
        if let Err(e) = vcpu.set_regs(&regs) {
            self.service
                .finish(RunEnd::Vmm(format!("KVM_SET_REGS: {e}")));
            return Flow::Stop;
        }
        flow
    }

    fn port_out(&mut self, port: u16, b: [u8; 4], len: usize) -> Flow {
        match (port, len) {
            (COM1, 1) => {
                self.console_byte(b[0]);
                Flow::Continue
            }
            (DEBUG_EXIT, 1) => {
                self.stats.end = VcpuEnd::Exited(b[0]);
                Flow::Halt
            }
            (TDCALL_PORT, 4) => self.forwarded(u64::from(u32::from_le_bytes(b))),
            (TDCALL_PORT, _) => self.fault(format!(
                "a {len}-byte write to the TDCALL port (the protocol takes 4 bytes)"
            )),
            _ => {
                self.stats.stray_ports += 1;
                Flow::Continue
            }
        }
    }

    /// A TDCALL forwarded through the port: its register block at `gpa`.
    fn forwarded(&mut self, gpa: u64) -> Flow {
        let len = PORT_TDCALL_SIZE as u64;
        if !gpa.is_multiple_of(16) || gpa.checked_add(len).is_none_or(|e| e > LOW_END) {
            return self.fault(format!(
                "TDCALL port: block at {gpa:#x} is unaligned or outside build-time memory"
            ));
        }
        let mut raw = [0u8; PORT_TDCALL_SIZE];
        if self.mem.read(gpa, &mut raw).is_err() {
            return self.fault(format!("TDCALL port: block at {gpa:#x} is not backed"));
        }
        let mut w = [0u64; 11];
        for (slot, c) in w.iter_mut().zip(raw.chunks_exact(8)) {
            *slot = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
        }
        self.stats.tdcall_exits += 1;
        let mut td = TdRegs::from_words(w);
        let (flow, retire) = self.tdcall(&mut td);
        if !retire {
            // The forwarded call did not retire: the block stays as it was (completion word
            // 0), and the payload writes the port again, as the instruction would run again.
            return flow;
        }
        let mut out = [0u8; PORT_TDCALL_SIZE];
        for (chunk, v) in out
            .chunks_exact_mut(8)
            .zip(td.words().iter().chain([&1u64]))
        {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        if self.mem.write(gpa, &out).is_err() {
            return self.fault(format!("TDCALL port: block at {gpa:#x} is not backed"));
        }
        flow
    }

    fn halted(&mut self) -> Flow {
        let live = self.service.with_world(|w| {
            w.vcpus().nth(usize::from(self.index)).is_some_and(|v| {
                !matches!(v.state(), VcpuState::Finished(_) | VcpuState::Stopped(_))
            }) && w.ended().is_none()
        });
        if live && !self.service.stopped() {
            return self.fault("halted before its program ended".into());
        }
        Flow::Halt
    }

    fn push_console(&mut self, line: &str) {
        if self.stats.console.len() < CONSOLE_LIMIT {
            let _ = writeln!(self.stats.console, "{line}");
        }
    }

    fn console_byte(&mut self, b: u8) {
        if b == b'\n' {
            let l = std::mem::take(&mut self.line);
            self.push_console(&l);
        } else if self.line.len() < 4096 {
            self.line.push(char::from(b));
        }
    }

    /// Serves one TDCALL: what the thread does next, and whether the call retired (RIP moves
    /// past it; else the guest executes it again).
    fn tdcall(&mut self, r: &mut TdRegs) -> (Flow, bool) {
        let leaf = match TdcallRax::decode(r.rax) {
            Ok(l) => l.leaf,
            Err(_) => {
                self.stats.tdcalls[4] += 1;
                r.rax = TdxStatus::with_operand(StatusCode::OperandInvalid, OperandId::RAX).raw();
                return (Flow::Continue, true);
            }
        };
        match leaf {
            TdcallLeaf::MemPageAccept => {
                self.stats.tdcalls[0] += 1;
                match self.serve(Request::Accept(r.rcx)) {
                    Answer::Retired(GuestEvent::Status(s)) => {
                        r.rax = s.raw();
                        (Flow::Continue, true)
                    }
                    Answer::Retry => {
                        self.stats.accept_reexecuted += 1;
                        (Flow::Continue, false)
                    }
                    Answer::Stop => {
                        self.stats.end = VcpuEnd::Stopped;
                        (Flow::Stop, false)
                    }
                    other => {
                        let e = self.disagree(format!("an ACCEPT ended as {other:?}"));
                        self.service.finish(e);
                        (Flow::Stop, false)
                    }
                }
            }
            TdcallLeaf::VpInfo => {
                self.stats.tdcalls[1] += 1;
                self.vp_info(r);
                (Flow::Continue, true)
            }
            TdcallLeaf::MemPageAttrRd => {
                self.stats.tdcalls[2] += 1;
                self.attr_rd(r);
                (Flow::Continue, true)
            }
            TdcallLeaf::VpVmcall => {
                self.stats.tdcalls[3] += 1;
                let flow = self.vmcall(r);
                (flow, true)
            }
            TdcallLeaf::VpVeinfoGet => {
                self.stats.veinfo_gets += 1;
                veinfo_get(self.ve_info.take(), r);
                (Flow::Continue, true)
            }
            _ => {
                self.stats.tdcalls[4] += 1;
                r.rax = TdxStatus::with_operand(StatusCode::OperandInvalid, OperandId::RAX).raw();
                (Flow::Continue, true)
            }
        }
    }

    fn vp_info(&self, r: &mut TdRegs) {
        vp_info(self.gpaw, self.ve_disable, self.vcpus, self.index, r);
    }

    fn attr_rd(&self, r: &mut TdRegs) {
        self.service.with_world(|w| attr_rd(w, r));
    }

    /// TDG.VP.VMCALL: RAX 0 (the TDCALL completed); R10 the GHCI status.
    fn vmcall(&mut self, r: &mut TdRegs) -> Flow {
        r.rax = 0;
        let ok = |r: &mut TdRegs| r.r10 = 0;
        match r.r10 {
            0 => match r.r11 {
                GHCI_HLT => {
                    ok(r);
                    return self.halted();
                }
                GHCI_IO => {
                    let (size, write, port, data) = (r.r12, r.r13, r.r14, r.r15);
                    ok(r);
                    if write == 1 && size == 1 && port == u64::from(COM1) {
                        self.console_byte(data as u8);
                    } else if write == 1 && size == 1 && port == u64::from(DEBUG_EXIT) {
                        self.stats.end = VcpuEnd::Exited(data as u8);
                        return Flow::Halt;
                    } else {
                        self.stats.stray_ports += 1;
                        if write == 0 {
                            r.r11 = u64::MAX >> (64 - 8 * size.clamp(1, 8));
                        }
                    }
                }
                _ => r.r10 = VMCALL_INVALID_OPERAND,
            },
            VMCALL_VENDOR => {
                self.stats.hugesept_calls += 1;
                return self.hugesept(r);
            }
            _ => r.r10 = VMCALL_INVALID_OPERAND,
        }
        Flow::Continue
    }

    /// A hugesept call.
    fn hugesept(&mut self, r: &mut TdRegs) -> Flow {
        let Some(call) = Call::from_number(r.r11) else {
            r.r10 = VMCALL_INVALID_OPERAND;
            return Flow::Continue;
        };
        r.r10 = 0;
        let stop = |r: &mut TdRegs| {
            r.r11 = AccessAnswer::Stop.code();
            Flow::Stop
        };
        match call {
            Call::AccessBegin => {
                let Some(req) = AccessRequest::decode(r.r12, r.r13) else {
                    r.r10 = VMCALL_INVALID_OPERAND;
                    return Flow::Continue;
                };
                if self.open.is_some() {
                    return self.fault("an access began inside another".into());
                }
                match self.begin_access(req) {
                    Some(o) => {
                        self.open = Some(o);
                        r.r11 = AccessAnswer::Go.code();
                    }
                    None => return stop(r),
                }
            }
            Call::AccessEnd => {
                let Some(res) = AccessResult::decode(r.r12, r.r13) else {
                    r.r10 = VMCALL_INVALID_OPERAND;
                    return Flow::Continue;
                };
                let Some(o) = self.close_open() else {
                    return self.fault("an access ended that had not begun".into());
                };
                let what = match (o.fault, o.ev) {
                    (Some(f), _) => Some(format!(
                        "the model's {:?} faults at {:#x} ({}), but the payload's access ended \
                         without reaching that page",
                        o.req,
                        match f {
                            Fault::Ve(p) | Fault::Exit(p) => p,
                        },
                        match f {
                            Fault::Ve(_) => "#VE",
                            Fault::Exit(_) => "an exit",
                        }
                    )),
                    (None, Some(ev)) => compare(o.req, ev, res, o.ve_page),
                    (None, None) => Some(format!("{:?} never retired in the model", o.req)),
                };
                if let Some(what) = what {
                    let page = if res.page == Gpa(0) {
                        o.req.gpa
                    } else {
                        res.page
                    };
                    let now = describe_page(self.mem, page.raw());
                    self.service
                        .finish(self.disagree(format!("{what} (the page holds {now} now)")));
                    return stop(r);
                }
                r.r11 = 0;
            }
            Call::Unit => {
                let release = match r.r12 {
                    0 => false,
                    1 => true,
                    _ => {
                        r.r10 = VMCALL_INVALID_OPERAND;
                        return Flow::Continue;
                    }
                };
                match self.serve(Request::Unit {
                    release,
                    unit: Gpa(r.r13),
                }) {
                    Answer::Retired(GuestEvent::UnitClaimed) => r.r11 = 0,
                    Answer::Retired(GuestEvent::UnitAccepted) => r.r11 = 1,
                    Answer::Retired(GuestEvent::UnitReleased) => r.r11 = 2,
                    _ => return stop(r),
                }
            }
            Call::ProgramEnd => {
                let Some(code) = EndCode::from_code(r.r12) else {
                    r.r10 = VMCALL_INVALID_OPERAND;
                    return Flow::Continue;
                };
                match self.serve(Request::End(code, r.r13)) {
                    Answer::NextStage => r.r11 = 0,
                    Answer::Finished => r.r11 = 1,
                    _ => return stop(r),
                }
            }
            Call::Fault => {
                return self.fault(fault_text(r.r12));
            }
        }
        Flow::Continue
    }

    /// Steps this vCPU's actor until the request retires, the fault path resumes the guest,
    /// or the run ends.
    fn serve(&mut self, req: Request) -> Answer {
        self.serve_with(req, false, &mut |_, _, _| None)
    }

    /// [`Self::serve`]; with `stop_at_exit`, also returns [`Answer::Exited`] when the request
    /// (an access) exits to the host, before the fault path runs. `on_step` runs under the
    /// service's lock after each step, shown the step, the world after it and this vCPU's state
    /// before it; the [`ViewFix`] it returns goes to the service.
    fn serve_with(&mut self, req: Request, stop_at_exit: bool, on_step: &mut OnStep<'_>) -> Answer {
        let i = self.index;
        let mut first = true;
        loop {
            let before = std::cell::Cell::new((None, 0));
            let check = first;
            let service = self.service;
            let taken = service.step(
                Choice::Vcpu(i),
                |w| {
                    let v = w.vcpus().nth(usize::from(i));
                    before.set((v.map(|v| v.state()), v.map_or(0, |v| v.stage())));
                    if check { expect(w, i, req) } else { Ok(()) }
                },
                |t, w| on_step(t, w, before.get().0),
            );
            let (state_before, stage_before) = before.get();
            let Some(t) = taken else {
                return Answer::Stop;
            };
            match state_before {
                // A kick bounced: the request is still to come.
                Some(VcpuState::InGuest { kicked: true, .. }) => continue,
                Some(VcpuState::Finished(_) | VcpuState::Stopped(_)) | None => return Answer::Stop,
                _ => {}
            }
            first = false;
            if let Some((_, ev)) = t.note.retired {
                return Answer::Retired(ev);
            }
            let (now, stage) = match t.vcpu {
                Some((s, k)) => (Some(s), k),
                None => (None, 0),
            };
            match (t.stepped, state_before, now) {
                (Stepped::Blocked, _, _) => {
                    // Waiting for another actor (a lock, a claim, the finalize, a stage): the
                    // first step is checked again when it is retried.
                    first = matches!(state_before, Some(VcpuState::InGuest { .. }));
                    self.service.wait_change(t.generation, WAIT);
                }
                (Stepped::Invalid, _, _) => return Answer::Stop,
                (_, Some(VcpuState::InGuest { .. }), Some(VcpuState::InHost(_)))
                    if stop_at_exit =>
                {
                    return Answer::Exited;
                }
                (_, Some(VcpuState::InHost(_)), Some(VcpuState::InGuest { .. })) => {
                    return Answer::Retry;
                }
                // An interrupt landed during a 2M ACCEPT: it returns without retiring, and the
                // guest executes it again after the interrupt.
                (_, Some(VcpuState::InTdcall { .. }), Some(VcpuState::InGuest { .. })) => {
                    return Answer::Retry;
                }
                (_, _, Some(VcpuState::Finished(_))) if matches!(req, Request::End(..)) => {
                    return Answer::Finished;
                }
                _ if matches!(req, Request::End(..)) && stage != stage_before => {
                    return Answer::NextStage;
                }
                (_, _, Some(VcpuState::Stopped(_)) | Some(VcpuState::Finished(_))) => {
                    return Answer::Stop;
                }
                _ => {}
            }
        }
    }
}

/// What a vCPU thread runs after each step it takes, under the service's lock: shown the
/// step, the world after it and the vCPU's state before it; a [`ViewFix`] it returns goes to
/// the service.
type OnStep<'a> = dyn FnMut(&Taken, &RunWorld, Option<VcpuState>) -> Option<ViewFix> + 'a;

/// The first page of `req`'s range the S-EPT model does not map as an accepted leaf: where
/// the real access stops.
fn first_inaccessible(w: &RunWorld, req: AccessRequest) -> Option<u64> {
    use hugesept_core::abi::SeptEntryState;
    (0..u64::from(req.level.pages_4k()))
        .map(|k| req.gpa.raw() + k * PAGE_SIZE_4K)
        .find(|&p| {
            !w.sept()
                .mapping(Gpa(p))
                .is_ok_and(|m| m.state == SeptEntryState::Mapped)
        })
}

/// TDG.VP.VEINFO.GET (tdg_vp_veinfo_get.c): for the #VE delivered last, RCX the exit reason
/// (48, an EPT violation), RDX the exit qualification (bit 0 a read, bit 1 a write), R8 the
/// guest linear address and R9 the guest physical address (the payload runs identity-mapped:
/// both the address the access exited at), R10 0 (instruction length and information are not
/// defined for an EPT violation); then the information is gone: TDX_NO_VALID_VE_INFO, outputs
/// zeroed.
fn veinfo_get(info: Option<VeInfo>, r: &mut TdRegs) {
    r.rcx = 0;
    r.rdx = 0;
    r.r8 = 0;
    r.r9 = 0;
    r.r10 = 0;
    match info {
        Some(v) => {
            r.rax = 0;
            r.rcx = hugesept_core::payload::VE_EXIT_REASON_EPT_VIOLATION;
            r.rdx = v.qualification;
            r.r8 = v.address;
            r.r9 = v.address;
        }
        None => r.rax = TdxStatus::new(StatusCode::NoValidVeInfo, 0).raw(),
    }
}

/// TDG.VP.INFO (TDX module ABI): RCX GPAW (bits 5:0), RDX the TD attributes (bit 28
/// SEPT_VE_DISABLE), R8 vCPUs now (31:0) and at most (63:32), R9 this vCPU's index, R10 and
/// R11 0.
fn vp_info(gpaw: Gpaw, ve_disable: bool, vcpus: u8, index: u8, r: &mut TdRegs) {
    r.rax = 0;
    r.rcx = u64::from(gpaw.bits());
    r.rdx = if ve_disable { 1 << 28 } else { 0 };
    r.r8 = u64::from(vcpus) | (u64::from(vcpus) << 32);
    r.r9 = u64::from(index);
    r.r10 = 0;
    r.r11 = 0;
}

/// TDG.MEM.PAGE.ATTR.RD (shared/reference/tdx-module.md, tdg_mem_page_attr_rd.c): for a
/// mapped or pending leaf, RCX = the aligned GPA | the level (bits 2:0) | PENDING (bit 62).
/// The module first takes an EPT violation on a missing or blocked entry; that path is not
/// modelled here and answers TDX_OPERAND_INVALID (operand RCX).
fn attr_rd(w: &RunWorld, r: &mut TdRegs) {
    use hugesept_core::abi::SeptEntryState as S;
    let gpa = Gpa(r.rcx & 0x000f_ffff_ffff_f000);
    match w.sept().mapping(gpa).ok() {
        Some(m) if matches!(m.state, S::Mapped | S::Pending) => {
            let pending = if m.state == S::Pending { 1 << 62 } else { 0 };
            r.rax = 0;
            r.rcx = gpa.align_down(m.level).raw() | u64::from(m.level.tdx().raw()) | pending;
        }
        _ => {
            r.rax = TdxStatus::with_operand(StatusCode::OperandInvalid, OperandId::RCX).raw();
        }
    }
}

/// Checks that the payload's request is what the model's guest does next (vCPU `i`, in the
/// guest, not kicked); other states pass (the request continues an operation in flight).
fn expect(w: &RunWorld, i: u8, req: Request) -> Result<(), RunEnd> {
    let Some(v) = w.vcpus().nth(usize::from(i)) else {
        return Ok(());
    };
    if !matches!(v.state(), VcpuState::InGuest { kicked: false, .. }) {
        return Ok(());
    }
    let mut g = *v.guest();
    let next = g.next_op();
    let agrees = match (next, req) {
        (GuestStep::Op(GuestOp::Accept(a)), Request::Accept(rcx)) => a.encode() == rcx,
        (GuestStep::Op(GuestOp::AcceptRaw(x)), Request::Accept(rcx)) => x == rcx,
        (GuestStep::Op(GuestOp::Read(gpa)), Request::Access(r)) => {
            r.kind == AccessKind::Read && r.gpa == gpa && r.level == PageLevel::Size4K
        }
        (
            GuestStep::Op(GuestOp::Write {
                gpa,
                level,
                content,
            }),
            Request::Access(r),
        ) => r.kind == AccessKind::Write && (r.gpa, r.level, r.content) == (gpa, level, content),
        (
            GuestStep::Op(GuestOp::Verify {
                gpa,
                level,
                content,
            }),
            Request::Access(r),
        ) => r.kind == AccessKind::Verify && (r.gpa, r.level, r.content) == (gpa, level, content),
        (GuestStep::Op(GuestOp::ClaimUnit(u)), Request::Unit { release, unit }) => {
            !release && u == unit
        }
        (GuestStep::Op(GuestOp::ReleaseUnit(u)), Request::Unit { release, unit }) => {
            release && u == unit
        }
        (GuestStep::End(end), Request::End(code, detail)) => EndCode::of(end) == (code, detail),
        _ => false,
    };
    if agrees {
        Ok(())
    } else {
        Err(RunEnd::Disagreement {
            vcpu: i,
            what: format!("the payload asked for {req:?}; the model's guest does {next:?} next"),
        })
    }
}

/// What the 4K page at `gpa` holds, as runs of equal words (for a disagreement's message).
fn describe_page(mem: &GuestMemory, gpa: u64) -> String {
    let mut b = vec![0u8; PAGE_SIZE_4K as usize];
    if let Err(e) = mem.read(gpa & !(PAGE_SIZE_4K - 1), &mut b) {
        return e.to_string();
    }
    let words: Vec<u64> = b
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    let mut runs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let mut j = i + 1;
        while j < words.len() && words[j] == w {
            j += 1;
        }
        let what = match hugesept_core::payload::page_content([w]) {
            Some(c) => c.to_string(),
            None => format!("{w:#x}"),
        };
        runs.push(format!("words {i}..{j}: {what}"));
        i = j;
        if runs.len() == 8 && i < words.len() {
            runs.push("…".into());
            break;
        }
    }
    runs.join(", ")
}

/// What the payload's loads and stores saw against what the model's step retired with (and
/// the page at which this VMM delivered #VE, if it did); a difference, in words.
fn compare(
    req: AccessRequest,
    model: GuestEvent,
    real: AccessResult,
    ve_page: Option<u64>,
) -> Option<String> {
    if real.kind != req.kind {
        return Some(format!(
            "an access of kind {:?} ended as {:?}",
            req.kind, real.kind
        ));
    }
    match (model, ve_page, real.ve) {
        (GuestEvent::VirtualizationException, Some(p), true) if real.page.raw() == p => {
            return None;
        }
        (GuestEvent::VirtualizationException, _, _) | (_, _, true) => {
            return Some(format!(
                "the payload's {:?} reported {} at {}; the model's ended as {model:?} (#VE \
                 delivered at {ve_page:x?})",
                req.kind,
                if real.ve { "#VE" } else { "no #VE" },
                real.page
            ));
        }
        _ => {}
    }
    let show = |c: Option<Content>| {
        c.map_or("unreadable (torn or foreign) data".into(), |c| {
            c.to_string()
        })
    };
    match (req.kind, model) {
        (AccessKind::Read, GuestEvent::Read(c)) if real.found == Some(c) => None,
        (AccessKind::Read, GuestEvent::Read(c)) => Some(format!(
            "the read of {} returned {} in memory, {c} in the model",
            req.gpa,
            show(real.found)
        )),
        (AccessKind::Write, GuestEvent::Wrote) if real.found == Some(req.content) => None,
        (AccessKind::Write, _) => Some(format!("the payload could not write {}", req.gpa)),
        (AccessKind::Verify, GuestEvent::Verified)
            if real.found == Some(req.content) && real.page == Gpa(0) =>
        {
            None
        }
        (AccessKind::Verify, GuestEvent::Mismatch { gpa, found })
            if real.page == gpa && real.found == Some(found) =>
        {
            None
        }
        (AccessKind::Verify, m) => Some(format!(
            "the verify of {} found {} at {} in memory; the model says {m:?}",
            req.gpa,
            show(real.found),
            real.page
        )),
        (_, m) => Some(format!("the access retired as {m:?} in the model")),
    }
}

/// A fault code in words.
fn fault_text(code: u64) -> String {
    match code {
        FAULT_PANIC => "the payload panicked".into(),
        FAULT_NO_PROGRAM => "the boot block has no program for this vCPU".into(),
        FAULT_PROTOCOL => "the payload could not use the VMM's answer".into(),
        c => match BootError::from_code(c) {
            Some(e) => format!("the payload refused its boot block: {e}"),
            None => format!("the payload reported fault {c:#x}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hugesept_core::world::Metrics;

    #[test]
    fn vp_info_reports_the_td() {
        let mut r = TdRegs::default();
        vp_info(Gpaw::Bits48, true, 3, 2, &mut r);
        assert_eq!((r.rax, r.rcx, r.rdx), (0, 48, 1 << 28));
        assert_eq!((r.r8, r.r9), (3 | (3 << 32), 2));
    }

    #[test]
    fn attr_rd_reads_the_leaf_level_and_pending_bit() {
        let text = include_str!("../../../scenarios/prefetch-then-4k.toml");
        let sc = crate::scenario::parse(text).unwrap();
        let mut w = sc.run_world().unwrap();
        let mut m = Metrics::default();
        // The host's prefetch alone: the 2M page is AUGed, pending.
        while w.is_enabled(Choice::Host(0)) {
            w.step(Choice::Host(0), &mut m).unwrap();
        }
        let mut r = TdRegs {
            rcx: 0x4020_1000,
            ..TdRegs::default()
        };
        attr_rd(&w, &mut r);
        assert_eq!(r.rax, 0);
        assert_eq!(r.rcx, 0x4020_0000 | 1 | (1 << 62), "{:#x}", r.rcx);
        // Nothing mapped at the first region: the EPT-violation path is not modelled.
        let mut r = TdRegs {
            rcx: 0x4000_0000,
            ..TdRegs::default()
        };
        attr_rd(&w, &mut r);
        assert_eq!(
            TdxStatus(r.rax).code(),
            StatusCode::OperandInvalid,
            "{:#x}",
            r.rax
        );
    }
}
