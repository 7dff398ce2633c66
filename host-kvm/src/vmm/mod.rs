//! The /dev/kvm VMM behind `hugesept run`: it loads the guest-td payload, writes its boot
//! block from a scenario, runs one OS thread per vCPU on real KVM vCPUs and one per host actor,
//! and serves every TDCALL the payload issues with the core (the S-EPT model, KVM's fault path
//! and the scenario's design), recording each step as a choice so that `replay` reproduces the
//! run exactly.
//!
//! Files: [`memory`] (guest memory by GPA, the window's guest view), [`elf`] (the payload's
//! segments and symbols), [`cpu`] (layout, long mode, CPUID, the firmware tables), [`service`]
//! (the world behind its lock, mirrored into memory), [`vcpu`] (KVM_RUN, the TDCALL service,
//! window accesses and #VE), [`log`] (the payload's defmt ring).
//!
//! Only the boot vCPU starts at the payload's entry; the VMM plays the firmware side of the
//! ACPI multiprocessor-wakeup mailbox for the others: a thread watches the mailbox the MADT
//! names, and when the payload writes the wakeup command it starts the named vCPU at the
//! wakeup vector (in long mode, on the VMM's identity map) and clears the command, the
//! acknowledgement the payload waits for.
//!
//! What is not the TDX module here: the payload's build-time memory (image, stacks, page tables,
//! boot block, reports: low memory) counts as PAGE.ADDed and measured before the TD runs and is
//! outside the model; the model's window is the scenario's. On a real TDX host the TDCALLs go
//! to the TDX module and KVM's own fault path runs; this VMM stands in for both with the core.

pub mod cpu;
pub mod elf;
pub mod log;
pub mod memory;
pub mod service;
pub mod vcpu;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant};

use hugesept_core::abi::PAGE_SIZE_2M;
use hugesept_core::guest::GuestEnd;
use hugesept_core::payload::acpi::{
    MAILBOX_APIC_ID, MAILBOX_COMMAND, MAILBOX_NOOP, MAILBOX_WAKEUP, MAILBOX_WAKEUP_VECTOR,
};
use hugesept_core::payload::hob::{self, E820_MEMORY, E820_UNACCEPTED};
use hugesept_core::payload::{
    BOOT_MAX_SIZE, BootInfo, ENTRY_MAGIC, EndCode, MAX_BOOT_VCPUS, REPORT_SIZE, Report, VcpuProgram,
};
use hugesept_core::world::{Choice, Limits, Metrics, Stepped, VcpuState};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::Kvm;

use crate::scenario::{RunWorld, Scenario};
use memory::{Area, GuestMemory};
use service::{RunEnd, Service};
use vcpu::{VcpuStats, VcpuThread};

/// How the boot vCPU enters the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Entry {
    /// The hugesept VMM's convention: RDI = 0, RSI = the boot block, RDX = `ENTRY_MAGIC`.
    #[default]
    Hugesept,
    /// td-shim's ELF-payload convention: RDI = the HOB list (PHIT, an E820 table marking the
    /// window unaccepted, the MADT as an ACPI table HOB, the boot block as hugesept's GUID
    /// HOB), RSI = the payload's load address.
    TdShim,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The payload's ELF.
    pub payload: Vec<u8>,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Raise #UD for TDCALL, as KVM does for a VM that is not a TD: the payload's #UD handler
    /// forwards every call through the port protocol.
    pub tdcall_by_port: bool,
    /// How the boot vCPU enters.
    pub entry: Entry,
    /// Print the payload's log lines as they arrive.
    pub log: bool,
    /// Bytes to write as the boot block instead of the scenario's (to check that the payload
    /// refuses a bad block); `None` in every real run.
    pub boot_block: Option<Vec<u8>>,
}

/// Why the VMM could not run at all.
#[derive(Debug)]
pub enum VmmError {
    /// /dev/kvm cannot be opened.
    NoKvm(String),
    /// A KVM ioctl failed.
    Kvm(&'static str, kvm_ioctls::Error),
    /// The payload is not a loadable ELF.
    Elf(elf::ElfError),
    /// The scenario does not fit the VMM (window placement, vCPUs).
    Layout(String),
    /// Memory could not be mapped.
    Memory(std::io::Error),
    /// The scenario's world.
    Scenario(String),
}

impl fmt::Display for VmmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmmError::NoKvm(e) => write!(f, "/dev/kvm is not usable here: {e}"),
            VmmError::Kvm(what, e) => write!(f, "{what}: {e}"),
            VmmError::Elf(e) => write!(f, "the payload: {e}"),
            VmmError::Layout(e) => write!(f, "the scenario does not fit the VMM: {e}"),
            VmmError::Memory(e) => write!(f, "guest memory: {e}"),
            VmmError::Scenario(e) => write!(f, "the scenario: {e}"),
        }
    }
}

impl std::error::Error for VmmError {}

/// What a run did.
#[derive(Debug)]
pub struct RunResult {
    /// How it ended.
    pub end: RunEnd,
    /// The model's metrics (the same counters `sim` reports).
    pub metrics: Metrics,
    /// Every step, in the order the threads took them.
    pub choices: Vec<Choice>,
    /// The world as the run left it.
    pub world: RunWorld,
    /// Per vCPU: exits, TDCALLs, console.
    pub vcpus: Vec<VcpuStats>,
    /// Per vCPU: the payload's report, or why there is none.
    pub reports: Vec<Result<Report, String>>,
    /// Per vCPU: the model's side of the report.
    pub model_reports: Vec<Report>,
    /// Wall time from the first vCPU entering to the last thread ending.
    pub wall: Duration,
    /// Steps each host thread took.
    pub host_steps: Vec<u64>,
    /// The payload's log, decoded.
    pub log: Vec<log::LogLine>,
    /// vCPUs the payload woke through the mailbox.
    pub woken: u8,
}

/// Whether /dev/kvm can be used here (and why not).
pub fn kvm_available() -> Result<(), String> {
    Kvm::new().map(|_| ()).map_err(|e| e.to_string())
}

/// The signal that kicks a vCPU thread out of KVM_RUN.
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // A no-op handler installed without SA_RESTART: the signal makes KVM_RUN return EINTR.
        let _ = vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick);
    });
}

/// The boot block for `sc`'s programs.
pub fn boot_info(sc: &Scenario) -> Result<BootInfo, VmmError> {
    let progs = sc.programs();
    if progs.is_empty() || progs.len() > MAX_BOOT_VCPUS {
        return Err(VmmError::Layout(format!("{} vCPUs", progs.len())));
    }
    let mut programs = [VcpuProgram::default(); MAX_BOOT_VCPUS];
    for (p, stages) in programs.iter_mut().zip(progs) {
        for (slot, s) in p.stages.iter_mut().zip(stages) {
            *slot = Some(*s);
        }
    }
    let base = sc.config.base;
    let end = base.raw() + u64::from(sc.config.regions) * PAGE_SIZE_2M;
    Ok(BootInfo {
        flags: 0,
        window: (base, hugesept_core::abi::Gpa(end)),
        report: hugesept_core::abi::Gpa(cpu::REPORTS),
        vcpus: progs.len() as u8,
        acpi: hugesept_core::abi::Gpa(cpu::ACPI_TABLES),
        programs,
    })
}

/// The end fields the model expects in a vCPU's report: how its program ended (or "stopped",
/// while it runs) with the detail word, and the stages it finished (the current one too once
/// its program ended well).
fn model_end(state: VcpuState, stage: u8, guest: Option<GuestEnd>) -> (u32, u32, u64) {
    let (code, detail) = match state {
        VcpuState::Finished(end) => EndCode::of(end),
        _ => (EndCode::Stopped, 0),
    };
    let done = u32::from(stage) + u32::from(guest == Some(GuestEnd::Done));
    (code.code() as u32, done, detail)
}

/// Runs `sc` on real vCPUs.
pub fn run(sc: &Scenario, opts: &RunOptions) -> Result<RunResult, VmmError> {
    let kvm = Kvm::new().map_err(|e| VmmError::NoKvm(e.to_string()))?;
    let image = elf::parse(&opts.payload, cpu::IMAGE_LOW, cpu::LOW_END).map_err(VmmError::Elf)?;
    let info = boot_info(sc)?;
    let (ws, we) = (info.window.0.raw(), info.window.1.raw());
    if ws < cpu::LOW_END {
        return Err(VmmError::Layout(format!(
            "the window starts at {ws:#x}, inside the payload's build-time memory [0, {:#x})",
            cpu::LOW_END
        )));
    }
    let gibs = we.div_ceil(1 << 30);
    if gibs > cpu::MAX_MAPPED_GIBS {
        return Err(VmmError::Layout(format!(
            "the window ends at {we:#x}; the identity map reaches {} GiB",
            cpu::MAX_MAPPED_GIBS
        )));
    }
    let mem = GuestMemory::new(vec![
        Area::new(0, cpu::LOW_END).map_err(VmmError::Memory)?,
        Area::new_shared(ws, we - ws).map_err(VmmError::Memory)?,
    ])
    .map_err(|e| VmmError::Layout(e.to_string()))?;
    let bad = |e: memory::OutOfRange| VmmError::Layout(e.to_string());
    for s in &image.segments {
        mem.write(s.paddr, &s.data).map_err(bad)?;
    }
    cpu::write_tables(&mem, gibs).map_err(bad)?;
    let mut block = vec![0u8; BOOT_MAX_SIZE];
    let n = info
        .encode(&mut block)
        .map_err(|e| VmmError::Layout(e.to_string()))?;
    let block: &[u8] = match &opts.boot_block {
        Some(b) => &b[..b.len().min(BOOT_MAX_SIZE)],
        None => &block[..n],
    };
    let madt = cpu::write_acpi(&mem, info.vcpus).map_err(VmmError::Layout)?;
    let boot_regs = match opts.entry {
        Entry::Hugesept => {
            mem.write(cpu::BOOT_BLOCK, block).map_err(bad)?;
            cpu::EntryRegs {
                rip: image.entry,
                rdi: 0,
                rsi: cpu::BOOT_BLOCK,
                rdx: ENTRY_MAGIC,
            }
        }
        Entry::TdShim => {
            let mut hob_bytes = vec![0u8; cpu::HOB_MAX];
            let mut b = hob::Builder::new(&mut hob_bytes, cpu::HOB_LIST);
            b.e820(&[
                (0, cpu::LOW_END, E820_MEMORY),
                (ws, we - ws, E820_UNACCEPTED),
            ])
            .guid(&hob::ACPI_TABLE_GUID, &madt)
            .guid(&hob::BOOT_BLOCK_GUID, block);
            let len = b
                .finish()
                .map_err(|e| VmmError::Layout(format!("the HOB list: {e}")))?;
            mem.write(cpu::HOB_LIST, &hob_bytes[..len]).map_err(bad)?;
            cpu::EntryRegs {
                rip: image.entry,
                rdi: cpu::HOB_LIST,
                rsi: image.span().0,
                rdx: 0,
            }
        }
    };
    let mut log_reader = log::LogReader::new(&opts.payload).map_err(VmmError::Layout)?;
    let mut log_lines = Vec::new();

    let vm = kvm
        .create_vm()
        .map_err(|e| VmmError::Kvm("KVM_CREATE_VM", e))?;
    for (slot, a) in mem.areas().iter().enumerate() {
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: a.gpa(),
            memory_size: a.len(),
            userspace_addr: a.host_address(),
        };
        // SAFETY: the region describes a live anonymous mapping owned by `mem`, which outlives
        // the VM (`vm` and its vCPUs are dropped at the end of this function, before `mem`).
        unsafe { vm.set_user_memory_region(region) }
            .map_err(|e| VmmError::Kvm("KVM_SET_USER_MEMORY_REGION", e))?;
    }
    let world = sc
        .run_world()
        .map_err(|e| VmmError::Scenario(e.to_string()))?;
    let vcpus = info.vcpus;
    let mut fds = Vec::new();
    for i in 0..vcpus {
        let fd = vm
            .create_vcpu(u64::from(i))
            .map_err(|e| VmmError::Kvm("KVM_CREATE_VCPU", e))?;
        // The others start at the wakeup vector the payload hands the mailbox.
        let regs = if i == 0 {
            boot_regs
        } else {
            cpu::EntryRegs::default()
        };
        cpu::enter_long_mode(&kvm, &fd, i, regs).map_err(|e| VmmError::Kvm("vCPU setup", e))?;
        fds.push(fd);
    }
    install_kick_handler();
    let limits = Limits {
        bound: sc.steps,
        patience: sc.patience,
    };
    let service = Service::new(world, &mem, limits);
    let hosts = sc.host_count();
    let threads: Vec<AtomicU64> = (0..vcpus).map(|_| AtomicU64::new(0)).collect();
    let running = Arc::new(AtomicU64::new(u64::from(vcpus) + hosts as u64));
    let wakeups = Wakeups::new(vcpus);
    let image_span = image.span();
    let start = Instant::now();
    let (stats, host_steps) = std::thread::scope(|s| {
        let mut vh = Vec::new();
        for (i, mut fd) in fds.into_iter().enumerate() {
            let (service, mem, threads, running, wakeups) =
                (&service, &mem, &threads, running.clone(), &wakeups);
            let ud = opts.tdcall_by_port;
            vh.push(s.spawn(move || {
                // SAFETY: pthread_self has no preconditions.
                let me = unsafe { libc::pthread_self() };
                threads[i].store(me as u64, Ordering::SeqCst);
                let mut t = VcpuThread::new(i as u8, vcpus, service, mem, ud);
                let woken = i == 0 || wakeups.wait(i, service, &fd).is_some();
                if woken {
                    let _actor = service.actor();
                    t.run(&mut fd);
                } else {
                    t.stats.end = vcpu::VcpuEnd::Stopped;
                }
                if std::env::var_os("HUGESEPT_DEBUG_TIMES").is_some() {
                    eprintln!("vCPU {i} thread ends after {:?}", start.elapsed());
                }
                threads[i].store(0, Ordering::SeqCst);
                running.fetch_sub(1, Ordering::SeqCst);
                t.stats
            }));
        }
        let mut hh = Vec::new();
        for h in 0..hosts {
            let (service, running) = (&service, running.clone());
            hh.push(s.spawn(move || {
                let steps = {
                    let _actor = service.actor();
                    host_thread(service, h as u8)
                };
                if std::env::var_os("HUGESEPT_DEBUG_TIMES").is_some() {
                    eprintln!("host {h} thread ends after {:?}", start.elapsed());
                }
                running.fetch_sub(1, Ordering::SeqCst);
                steps
            }));
        }
        if vcpus > 1 {
            let (service, mem, wakeups) = (&service, &mem, &wakeups);
            s.spawn(move || mailbox(service, mem, wakeups, vcpus, image_span));
        }
        let mut poll = || {
            if let Some(r) = log_reader.as_mut() {
                for l in r.poll(&mem) {
                    if opts.log {
                        eprintln!("[vCPU {}] {}", l.vcpu, l.text);
                    }
                    log_lines.push(l);
                }
            }
        };
        watchdog(
            &service,
            &running,
            &threads,
            start + opts.timeout,
            &mut poll,
        );
        poll();
        let stats: Vec<VcpuStats> = vh
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        let host_steps: Vec<u64> = hh.into_iter().map(|h| h.join().unwrap_or(0)).collect();
        (stats, host_steps)
    });
    let wall = start.elapsed();
    drop(vm);
    let (end, metrics, choices, model_reports, world) = service.into_parts();
    let mut end = end.unwrap_or(RunEnd::Timeout);
    let reports: Vec<Result<Report, String>> = (0..usize::from(vcpus))
        .map(|i| {
            let mut b = [0u8; REPORT_SIZE];
            mem.read(cpu::REPORTS + (i * REPORT_SIZE) as u64, &mut b)
                .map_err(|e| e.to_string())?;
            Report::decode(&b).map_err(|e| e.to_string())
        })
        .collect();
    let mut model_reports = model_reports;
    for (i, (m, v)) in model_reports.iter_mut().zip(world.vcpus()).enumerate() {
        // A finished vCPU's guest has ended; a live one's current program may have ended too
        // (waiting at the stage barrier); a stopped one's did not.
        let guest = match v.state() {
            VcpuState::Finished(end) => Some(end),
            VcpuState::Stopped(_) => None,
            _ => v.guest().ended(),
        };
        let (code, stages, detail) = model_end(v.state(), v.stage(), guest);
        m.end = code;
        m.stages_done = stages;
        m.detail = detail;
        m.vcpu = i as u32;
    }
    // The payload's own count must agree with the model's, for every vCPU that ended cleanly.
    if matches!(end, RunEnd::Verdict(_) | RunEnd::BudgetExhausted) {
        for (i, (r, m)) in reports.iter().zip(&model_reports).enumerate() {
            let what = match r {
                Ok(r) => {
                    let d: Vec<&str> = r.differences(m).collect();
                    if d.is_empty() {
                        continue;
                    }
                    format!(
                        "its report differs from the model's count in {}",
                        d.join(", ")
                    )
                }
                Err(e) => format!("no usable report: {e}"),
            };
            end = RunEnd::Disagreement {
                vcpu: i as u8,
                what,
            };
            break;
        }
    }
    Ok(RunResult {
        end,
        metrics,
        choices,
        world,
        vcpus: stats,
        reports,
        model_reports,
        wall,
        host_steps,
        log: log_lines,
        woken: wakeups.woken(),
    })
}

/// The vCPUs the payload woke through the mailbox: each one's wakeup vector, once.
struct Wakeups {
    vectors: Mutex<Vec<Option<u64>>>,
    changed: Condvar,
}

impl Wakeups {
    fn new(vcpus: u8) -> Wakeups {
        Wakeups {
            vectors: Mutex::new(vec![None; usize::from(vcpus)]),
            changed: Condvar::new(),
        }
    }

    /// Whether vCPU `i` may be woken now (a vCPU above 0, not yet woken).
    fn may_wake(&self, i: usize) -> bool {
        let v = self.vectors.lock().unwrap_or_else(|e| e.into_inner());
        i != 0 && v.get(i).is_some_and(Option::is_none)
    }

    fn wake(&self, i: usize, vector: u64) {
        let mut v = self.vectors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = v.get_mut(i) {
            *slot = Some(vector);
        }
        self.changed.notify_all();
    }

    fn woken(&self) -> u8 {
        let v = self.vectors.lock().unwrap_or_else(|e| e.into_inner());
        v.iter().flatten().count() as u8
    }

    /// Waits until vCPU `i` is woken and puts RIP at its wakeup vector; `None` when the run
    /// stops first.
    fn wait(&self, i: usize, service: &Service<'_>, fd: &kvm_ioctls::VcpuFd) -> Option<u64> {
        let mut v = self.vectors.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(Some(vector)) = v.get(i) {
                let vector = *vector;
                drop(v);
                let mut regs = fd.get_regs().ok()?;
                regs.rip = vector;
                fd.set_regs(&regs).ok()?;
                return Some(vector);
            }
            if service.stopped() {
                return None;
            }
            v = self
                .changed
                .wait_timeout(v, Duration::from_millis(5))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The firmware side of the ACPI multiprocessor-wakeup mailbox (ACPI 6.5 Table 5.46): when the
/// payload writes the wakeup command, start the vCPU whose APIC ID (its index) it names at
/// the wakeup vector, and clear the command (the acknowledgement). A vector outside the
/// payload's image or an APIC ID that names no sleeping vCPU is a guest fault.
fn mailbox(
    service: &Service<'_>,
    mem: &GuestMemory,
    wakeups: &Wakeups,
    vcpus: u8,
    image: (u64, u64),
) {
    let mut waiting = usize::from(vcpus).saturating_sub(1);
    while waiting > 0 && !service.stopped() && !service.ended() {
        let mut command = [0u8; 2];
        if mem
            .read(cpu::MAILBOX + MAILBOX_COMMAND as u64, &mut command)
            .is_err()
        {
            return;
        }
        if u16::from_le_bytes(command) != MAILBOX_WAKEUP {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        let mut id = [0u8; 4];
        let mut vector = [0u8; 8];
        let read = mem
            .read(cpu::MAILBOX + MAILBOX_APIC_ID as u64, &mut id)
            .and_then(|()| mem.read(cpu::MAILBOX + MAILBOX_WAKEUP_VECTOR as u64, &mut vector));
        if read.is_err() {
            return;
        }
        let (id, vector) = (u32::from_le_bytes(id) as usize, u64::from_le_bytes(vector));
        let what = if !wakeups.may_wake(id) {
            Some(format!(
                "the wakeup mailbox names APIC ID {id}, no sleeping vCPU"
            ))
        } else if !(image.0..image.1).contains(&vector) {
            Some(format!(
                "the wakeup vector {vector:#x} for vCPU {id} is outside the payload's image"
            ))
        } else {
            None
        };
        if let Some(what) = what {
            service.finish(RunEnd::GuestFault { vcpu: 0, what });
            return;
        }
        wakeups.wake(id, vector);
        let _ = mem.write(
            cpu::MAILBOX + MAILBOX_COMMAND as u64,
            &MAILBOX_NOOP.to_le_bytes(),
        );
        waiting -= 1;
    }
}

/// A host actor's thread: its script's steps, racing the vCPUs; it waits while blocked.
fn host_thread(service: &Service<'_>, h: u8) -> u64 {
    let mut steps = 0u64;
    loop {
        if service.stopped() || service.ended() {
            return steps;
        }
        let Some(t) = service.step(Choice::Host(h), |_| Ok(()), |_, _| None) else {
            return steps;
        };
        match t.stepped {
            Stepped::Invalid => return steps,
            Stepped::Blocked => {
                steps += 1;
                service.wait_change(t.generation, Duration::from_millis(1));
            }
            Stepped::Moved { .. } => steps += 1,
        }
    }
}

/// Waits for every thread to end, ticking the host's timer on every vCPU as it goes; past the
/// deadline, ends the run with a timeout. Once the run
/// has ended, vCPUs get a grace period to write their reports and halt; then they are stopped.
/// A stopped vCPU thread in KVM_RUN is kicked out with a signal, again until it leaves.
fn watchdog(
    service: &Service<'_>,
    running: &AtomicU64,
    threads: &[AtomicU64],
    deadline: Instant,
    poll: &mut dyn FnMut(),
) {
    const GRACE: Duration = Duration::from_secs(2);
    let mut ended_at: Option<Instant> = None;
    let kicking = AtomicBool::new(false);
    while running.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(2));
        // The host's timer: a tick on every vCPU every 2 ms (an interrupt where one can land).
        service.tick();
        poll();
        let now = Instant::now();
        if ended_at.is_none() && service.ended() {
            ended_at = Some(now);
        }
        if !kicking.load(Ordering::SeqCst)
            && (now >= deadline || ended_at.is_some_and(|t| now >= t + GRACE))
        {
            if now >= deadline {
                service.finish(RunEnd::Timeout);
            }
            service.halt_all();
            kicking.store(true, Ordering::SeqCst);
        }
        if kicking.load(Ordering::SeqCst) {
            for t in threads {
                let id = t.load(Ordering::SeqCst);
                if id != 0 {
                    // SAFETY: `id` is the pthread_t of a vCPU thread that is still running (it
                    // clears its slot before it ends, and the scope joins it only after this
                    // loop); the signal has a no-op handler installed, so it only interrupts
                    // KVM_RUN.
                    unsafe { libc::pthread_kill(id as libc::pthread_t, kick_signal()) };
                }
            }
        }
    }
}
