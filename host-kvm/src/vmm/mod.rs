//! The /dev/kvm VMM behind `hugesept run`: it loads the guest-td payload, writes its boot
//! block from a scenario, runs one OS thread per vCPU on real KVM vCPUs and one per host actor,
//! and serves every TDCALL the payload issues with the core (the S-EPT model, KVM's fault path
//! and the scenario's design), recording each step as a choice so that `replay` reproduces the
//! run exactly.
//!
//! Files: [`memory`] (guest memory by GPA), [`elf`] (the payload's segments), [`cpu`]
//! (layout, long mode, CPUID), [`service`] (the world behind its lock, mirrored into memory),
//! [`vcpu`] (KVM_RUN and the TDCALL service).
//!
//! What is not the TDX module here: the payload's build-time memory (image, stacks, page tables,
//! boot block, reports: low memory) counts as PAGE.ADDed and measured before the TD runs and is
//! outside the model; the model's window is the scenario's. On a real TDX host the TDCALLs go
//! to the TDX module and KVM's own fault path runs; this VMM stands in for both with the core.

pub mod cpu;
pub mod elf;
pub mod memory;
pub mod service;
pub mod vcpu;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use hugesept_core::abi::PAGE_SIZE_2M;
use hugesept_core::guest::GuestEnd;
use hugesept_core::payload::{
    BOOT_FLAG_TDCALL_BY_PORT, BOOT_MAX_SIZE, BootInfo, EndCode, MAX_BOOT_VCPUS, REPORT_SIZE,
    Report, VcpuProgram,
};
use hugesept_core::world::{Choice, Limits, Metrics, Stepped, VcpuState};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::Kvm;

use crate::scenario::{Scenario, ScenarioWorld};
use memory::{Area, GuestMemory};
use service::{RunEnd, Service};
use vcpu::{VcpuStats, VcpuThread};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The payload's ELF.
    pub payload: Vec<u8>,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// The payload forwards its TDCALLs through the port protocol instead of executing them.
    pub tdcall_by_port: bool,
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
    pub world: ScenarioWorld,
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
pub fn boot_info(sc: &Scenario, by_port: bool) -> Result<BootInfo, VmmError> {
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
        flags: if by_port { BOOT_FLAG_TDCALL_BY_PORT } else { 0 },
        window: (base, hugesept_core::abi::Gpa(end)),
        report: hugesept_core::abi::Gpa(cpu::REPORTS),
        vcpus: progs.len() as u8,
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
    let info = boot_info(sc, opts.tdcall_by_port)?;
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
        Area::new(ws, we - ws).map_err(VmmError::Memory)?,
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
    match &opts.boot_block {
        Some(b) => mem.write(cpu::BOOT_BLOCK, &b[..b.len().min(BOOT_MAX_SIZE)]),
        None => mem.write(cpu::BOOT_BLOCK, &block[..n]),
    }
    .map_err(bad)?;

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
    let world = sc.world().map_err(|e| VmmError::Scenario(e.to_string()))?;
    let vcpus = info.vcpus;
    let mut fds = Vec::new();
    for i in 0..vcpus {
        let fd = vm
            .create_vcpu(u64::from(i))
            .map_err(|e| VmmError::Kvm("KVM_CREATE_VCPU", e))?;
        cpu::enter_long_mode(&kvm, &fd, i, image.entry)
            .map_err(|e| VmmError::Kvm("vCPU setup", e))?;
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
    let start = Instant::now();
    let (stats, host_steps) = std::thread::scope(|s| {
        let mut vh = Vec::new();
        for (i, mut fd) in fds.into_iter().enumerate() {
            let (service, mem, threads, running) = (&service, &mem, &threads, running.clone());
            vh.push(s.spawn(move || {
                // SAFETY: pthread_self has no preconditions.
                let me = unsafe { libc::pthread_self() };
                threads[i].store(me as u64, Ordering::SeqCst);
                let mut t = VcpuThread::new(i as u8, vcpus, service, mem);
                t.run(&mut fd);
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
                let steps = host_thread(service, h as u8);
                if std::env::var_os("HUGESEPT_DEBUG_TIMES").is_some() {
                    eprintln!("host {h} thread ends after {:?}", start.elapsed());
                }
                running.fetch_sub(1, Ordering::SeqCst);
                steps
            }));
        }
        watchdog(&service, &running, &threads, start + opts.timeout);
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
    })
}

/// A host actor's thread: its script's steps, racing the vCPUs; it waits while blocked.
fn host_thread(service: &Service<'_>, h: u8) -> u64 {
    let mut steps = 0u64;
    loop {
        if service.stopped() || service.ended() {
            return steps;
        }
        let Some(t) = service.step(Choice::Host(h), |_| Ok(()), |_| {}) else {
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
fn watchdog(service: &Service<'_>, running: &AtomicU64, threads: &[AtomicU64], deadline: Instant) {
    const GRACE: Duration = Duration::from_secs(2);
    let mut ended_at: Option<Instant> = None;
    let kicking = AtomicBool::new(false);
    while running.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(2));
        // The host's timer: a tick on every vCPU every 2 ms (an interrupt where one can land).
        service.tick();
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
