//! `hugesept run`: a scenario on real vCPUs — the guest-td payload in the /dev/kvm VMM, one
//! thread per vCPU and per host actor, every TDCALL served by the core — printing the outcome,
//! the same metrics as `sim`, wall time, exits and TDCALLs per vCPU, whether the payload's
//! report agrees with the model's count, and saving the trace `replay` reproduces.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hugesept_core::policy::Policy;
use hugesept_core::world::{RandomScheduler, Verdict};

use crate::cycle::{self, Followed};
use crate::trace::Trace;
use crate::vmm::{self, RunOptions, service::RunEnd};

use super::CliError;

/// Options of `run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The scenario file.
    scenario: PathBuf,
    /// The design to run under (default: the scenario's `policy`).
    #[arg(long)]
    policy: Option<String>,
    /// Where to save the run's trace (default: `<scenario>.run.trace.toml`).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Seconds the run may take before it is stopped (no verdict).
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// The payload ELF (default: guest-td's release build, found from the current directory
    /// or the executable's; or $HUGESEPT_PAYLOAD).
    #[arg(long)]
    payload: Option<PathBuf>,
    /// Raise #UD for every TDCALL (as KVM does outside a TD): the payload's #UD handler
    /// forwards each call through the port protocol.
    #[arg(long)]
    tdcall_by_port: bool,
    /// How the boot vCPU enters the payload: `hugesept` (RDI = 0, RSI = the boot block) or
    /// `td-shim` (RDI = a td-shim HOB list carrying the memory map, the MADT and the boot
    /// block).
    #[arg(long, default_value = "hugesept", value_parser = ["hugesept", "td-shim"])]
    entry: String,
    /// Print the payload's defmt log as it arrives (decoded from the ELF's .defmt section).
    #[arg(long)]
    log: bool,
    /// One line: design, outcome, TDCALLs, exits, wall time, bytes mapped at 2M (with
    /// `--brief-header` first for a table).
    #[arg(long)]
    brief: bool,
    /// With `--brief`: the table's header line first.
    #[arg(long)]
    brief_header: bool,
}

/// The columns of `--brief`.
const BRIEF_HEADER: &str = "| world | design | outcome | ACCEPT TDCALLs | TD exits (all) | wall | \
                            at 2M | at 4K |\n|---|---|---|---:|---:|---:|---:|---:|";

/// Where guest-td's release build sits inside the repository.
const PAYLOAD_IN_REPO: &str = "guest-td/target/x86_64-unknown-none/release/hugesept-guest-td";

/// The payload: the option, $HUGESEPT_PAYLOAD, or guest-td's build found from the current
/// directory or from the executable (`target/PROFILE/hugesept` → the repository).
pub fn find_payload(given: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("HUGESEPT_PAYLOAD") {
        return Ok(PathBuf::from(p));
    }
    let mut candidates = vec![PathBuf::from(PAYLOAD_IN_REPO)];
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            candidates.push(dir.join(PAYLOAD_IN_REPO));
        }
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        CliError::Usage(format!(
            "no payload: build it with `cargo xtask guest` (it lands in {PAYLOAD_IN_REPO}) or \
             pass --payload"
        ))
    })
}

/// Runs the command.
pub fn run(args: &Args, out: &mut impl Write) -> Result<(), CliError> {
    let path = args.scenario.display().to_string();
    let (text, mut sc) = super::sim::load(&args.scenario)?;
    // A name that ends with the file's own design ("…, guest-inhibit") drops it in the table.
    let world = sc
        .name
        .strip_suffix(&format!(", {}", sc.policy.name()))
        .unwrap_or(&sc.name)
        .to_owned();
    if let Some(p) = &args.policy {
        sc.policy = hugesept_core::policy::PolicyId::parse(p).ok_or_else(|| {
            CliError::Usage(format!(
                "--policy {p}: no such design (known: {})",
                hugesept_core::policy::PolicyId::ALL
                    .map(|d| d.name())
                    .join(", ")
            ))
        })?;
    }
    if !(args.timeout > 0.0 && args.timeout <= 86_400.0) {
        return Err(CliError::Usage(format!(
            "--timeout {}: 0 to 86400 seconds",
            args.timeout
        )));
    }
    let payload_path = find_payload(args.payload.as_deref())?;
    let payload = std::fs::read(&payload_path)
        .map_err(|e| CliError::Input(payload_path.clone(), super::InputError::Read(e)))?;
    let opts = RunOptions {
        payload,
        timeout: Duration::from_secs_f64(args.timeout),
        tdcall_by_port: args.tdcall_by_port,
        entry: if args.entry == "td-shim" {
            vmm::Entry::TdShim
        } else {
            vmm::Entry::Hugesept
        },
        log: args.log,
        boot_block: None,
    };
    let r = vmm::run(&sc, &opts).map_err(|e| CliError::Unexpected(format!("{path}: {e}")))?;
    let io = CliError::Io;
    let full = &mut if args.brief {
        Vec::new()
    } else {
        Vec::with_capacity(4096)
    };

    let vcpus = r.vcpus.len();
    writeln!(
        full,
        "{path}: {} — {} on {}; {vcpus} vCPU thread(s) ({} woken through the ACPI mailbox) and \
         {} host thread(s) on /dev/kvm, entered {}, TDCALLs {}",
        sc.name,
        sc.policy,
        sc.profile,
        r.woken,
        r.host_steps.len(),
        if args.entry == "td-shim" {
            "as td-shim enters a payload"
        } else {
            "by the hugesept VMM's convention"
        },
        if args.tdcall_by_port {
            "raising #UD, forwarded by the payload's handler"
        } else {
            "as emulation-failure exits"
        }
    )
    .map_err(io)?;
    writeln!(full, "outcome: {}", r.end).map_err(io)?;
    let secs = r.wall.as_secs_f64();
    writeln!(
        full,
        "  {} world steps in {:.1} ms of wall time ({:.0} steps/s)",
        r.choices.len(),
        secs * 1e3,
        r.choices.len() as f64 / secs.max(1e-9)
    )
    .map_err(io)?;
    writeln!(full, "metrics (as sim counts them):").map_err(io)?;
    for (name, f) in crate::scenario::METRIC_ROWS {
        writeln!(full, "  {name:<24} {:>8}", f(&r.metrics)).map_err(io)?;
    }
    let (two_m, four_k) = r.world.mapping_histogram();
    writeln!(
        full,
        "  {:<24} {:>8} at 2M, {} at 4K ({:.1}% at 2M)",
        "private memory mapped",
        super::human_bytes(two_m),
        super::human_bytes(four_k),
        crate::scenario::coverage_2m(&r.world) * 100.0
    )
    .map_err(io)?;
    writeln!(
        full,
        "per vCPU:  exits  TDCALL exits  ACCEPT  re-executed  VP.INFO  VMCALL  other  \
         hugesept calls  window exits  #VE  #UD  ends"
    )
    .map_err(io)?;
    for (i, v) in r.vcpus.iter().enumerate() {
        writeln!(
            full,
            "  {i:<3} {:>9} {:>13} {:>7} {:>12} {:>8} {:>7} {:>6} {:>15} {:>13} {:>4} {:>4}  {:?}",
            v.exits,
            v.tdcall_exits,
            v.tdcalls[0],
            v.accept_reexecuted,
            v.tdcalls[1],
            v.tdcalls[3],
            v.tdcalls[2] + v.tdcalls[4] + v.veinfo_gets,
            v.hugesept_calls,
            v.window_exits,
            v.ves,
            v.uds,
            v.end
        )
        .map_err(io)?;
    }
    let exits: u64 = r.vcpus.iter().map(|v| v.exits).sum();
    let tdcalls: u64 = r.vcpus.iter().map(|v| v.tdcall_exits).sum();
    let accepts: u64 = r.vcpus.iter().map(|v| v.tdcalls[0]).sum();
    let sum = |f: fn(&vmm::vcpu::VcpuStats) -> u64| r.vcpus.iter().map(f).sum::<u64>() as f64;
    writeln!(
        full,
        "  all {exits:>9} {tdcalls:>13} {accepts:>7}   per exit: {:.1} µs in KVM_RUN (the guest and \
         KVM), {:.1} µs in the VMM; per ACCEPT exit {:.1} µs in the VMM",
        sum(|v| v.run_ns) / 1e3 / exits.max(1) as f64,
        sum(|v| v.serve_ns) / 1e3 / exits.max(1) as f64,
        sum(|v| v.accept_serve_ns) / 1e3 / accepts.max(1) as f64,
    )
    .map_err(io)?;
    let agree = r
        .reports
        .iter()
        .zip(&r.model_reports)
        .all(|(a, m)| a.as_ref().is_ok_and(|a| a.differences(m).next().is_none()));
    writeln!(
        full,
        "payload reports: {}",
        if agree {
            "every vCPU's count of statuses, levels and markers agrees with the model's"
        } else {
            "see the outcome"
        }
    )
    .map_err(io)?;
    for v in &r.vcpus {
        for line in v.console.lines() {
            writeln!(full, "  | {line}").map_err(io)?;
        }
    }
    if !r.log.is_empty() && !args.log {
        writeln!(
            full,
            "payload log: {} line(s) (--log prints them as they arrive)",
            r.log.len()
        )
        .map_err(io)?;
    }
    if !args.brief {
        out.write_all(full).map_err(io)?;
    }
    // The trace: the threads' choices; a livelock is followed on, in-process, round its cycle.
    let mut choices = r.choices.clone();
    let mut cycle_at = None;
    if r.end == RunEnd::Verdict(Verdict::Livelock) {
        let limit = sc.patience.max(10_000);
        if let Ok(Followed::Cycle(c)) = cycle::follow(&r.world, &mut RandomScheduler::new(1), limit)
        {
            cycle_at = Some(choices.len() + c.start);
            choices.extend(c.tail);
        }
    }
    let traceable = matches!(
        r.end,
        RunEnd::Verdict(_) | RunEnd::Violation { .. } | RunEnd::BudgetExhausted | RunEnd::Timeout
    );
    if traceable {
        let mut t = Trace::new(
            &text,
            format!(
                "hugesept run: the order of {vcpus} vCPU thread(s) on /dev/kvm{}",
                if cycle_at.is_some() {
                    ", then followed in-process round its cycle"
                } else {
                    ""
                }
            ),
            &choices,
            Verdict::Ok,
        );
        t.verdict = r.end.name().into();
        t.cycle = cycle_at;
        // The design the run used is the trace's: a --policy override is written into it.
        if args.policy.is_some() {
            t.scenario = with_policy(&text, sc.policy.name());
        }
        let file = super::trace_path(args.trace.as_deref(), &args.scenario, ".run.trace.toml");
        super::write_output(&file, t.to_toml())?;
        if !args.brief {
            // replay holds worlds of the default size.
            let how = if sc.is_wide() {
                "a world larger than replay holds: the steps are the run's record".to_owned()
            } else {
                format!("hugesept replay {}", file.display())
            };
            writeln!(
                out,
                "trace: {} steps saved to {} ({how})",
                choices.len(),
                file.display(),
            )
            .map_err(io)?;
        }
    }
    if args.brief {
        if args.brief_header {
            writeln!(out, "{BRIEF_HEADER}").map_err(io)?;
        }
        let (two_m, four_k) = r.world.mapping_histogram();
        let exits: u64 = r.vcpus.iter().map(|v| v.exits).sum();
        writeln!(
            out,
            "| {world} | {} | {} | {} | {exits} | {:.2} s | {} | {} |",
            sc.policy,
            r.end.name(),
            r.metrics.tdcalls,
            r.wall.as_secs_f64(),
            super::human_bytes(two_m),
            super::human_bytes(four_k)
        )
        .map_err(io)?;
    }
    expected(&path, &r.end, sc.expect)
}

/// Ok when the run ended as the scenario expects (or in any verdict when it expects none).
fn expected(path: &str, end: &RunEnd, expect: Option<Verdict>) -> Result<(), CliError> {
    match (end, expect) {
        (RunEnd::Verdict(v), Some(e)) if *v == e => Ok(()),
        (RunEnd::Verdict(_), None) => Ok(()),
        (end, Some(e)) => Err(CliError::Unexpected(format!(
            "{path}: the run ended in {end}; the scenario expects {e}"
        ))),
        (end, None) => Err(CliError::Unexpected(format!(
            "{path}: the run ended in {end}"
        ))),
    }
}

/// The scenario text with its `policy` line replaced (or added) so a trace names the design
/// it ran under.
pub fn with_policy(text: &str, policy: &str) -> String {
    let mut out = String::new();
    let mut done = false;
    for line in text.lines() {
        if !done && line.trim_start().starts_with("policy") && line.contains('=') {
            out.push_str(&format!("policy = \"{policy}\"\n"));
            done = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !done {
        out = format!("policy = \"{policy}\"\n{out}");
    }
    out
}
