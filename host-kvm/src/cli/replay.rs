//! `hugesept replay TRACE`: a trace step by step — the actor, what it did (the TDCALL and its
//! decoded status, the exit, the fault path's phase and RET_PF value, the host operation's
//! phase and SEAMCALL counts, TDH.MR.FINALIZE and its status), the lock state, and the S-EPT
//! and mirror of the 2M range the step touched with the lpage_info of it and of its 1G range.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use hugesept_core::abi::{Gpa, PageLevel};
use hugesept_core::guest::GuestOp;
use hugesept_core::kvm::LpageInfo;
use hugesept_core::world::{
    Choice, HostAction, HostActivity, MAX_CHOICES, MAX_HOSTS, Metrics, StepNote, Stepped,
    VcpuState, Verdict,
};

use crate::scenario::ScenarioWorld;
use crate::trace::{Claim, Trace, TraceError};

use super::CliError;

/// Options of `replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The trace file (written by `hugesept sim` or `hugesept explore`).
    trace: PathBuf,
    /// Print only the last N steps in full (the earlier ones are replayed silently).
    #[arg(long)]
    last: Option<usize>,
    /// One line per step, without the S-EPT and mirror of the range.
    #[arg(long)]
    brief: bool,
    /// States the explorer may visit from where a livelock trace stops, to decide whether an
    /// end is reachable from there.
    #[arg(long, default_value_t = 1_000_000)]
    confirm_states: usize,
}

fn vcpu_state(s: VcpuState) -> String {
    match s {
        VcpuState::InGuest { kicked: true, .. } => "in the guest, kicked".into(),
        VcpuState::InGuest { .. } => "in the guest".into(),
        VcpuState::InTdcall { op, .. } => {
            format!("inside ACCEPT {} {} (entry locked)", op.gpa(), op.level())
        }
        VcpuState::InHost(p) => match p.exit() {
            Some(e) => format!("exited to KVM: {e}"),
            None => format!("in KVM's fault path for {}: {}", p.gfn(), p.phase_name()),
        },
        VcpuState::Finished(e) => format!("finished: {e}"),
        VcpuState::Stopped(e) => format!("stopped: {e}"),
    }
}

fn host_state(a: HostActivity) -> String {
    match a {
        HostActivity::Idle => "idle".into(),
        HostActivity::Operation(op) => {
            let (s, e) = op.range();
            format!("{:?} [{s}, {e}): {}", op.kind(), op.phase_name())
        }
        HostActivity::Fault(p) => format!("fault path for {}: {}", p.gfn(), p.phase_name()),
        HostActivity::Await(n) => format!("waiting for the vCPUs to finish {n} stage(s)"),
    }
}

/// What a host step that starts `action` did when the state after it does not show it:
/// KVM_TDX_FINALIZE_VM runs TDH.MR.FINALIZE and returns within the step (`before` is the
/// world the step started from).
fn started_action_text(action: HostAction, before: &ScenarioWorld) -> Option<String> {
    match action {
        HostAction::Finalize => {
            // The module's answer, from the S-EPT the step found.
            let status = before.sept().clone().finalize();
            Some(format!("KVM_TDX_FINALIZE_VM: TDH.MR.FINALIZE → {status}"))
        }
        HostAction::Operation { .. }
        | HostAction::Prefetch(_)
        | HostAction::InitMemRegion { .. }
        | HostAction::AwaitStage(_) => None,
    }
}

/// An lpage_info word: its refcount and flags.
fn lpage_text(l: LpageInfo) -> String {
    format!(
        "count {}{}{}",
        l.count(),
        if l.mixed() { ", MIXED" } else { "" },
        if l.guest_inhibit() {
            ", GUEST_INHIBIT"
        } else {
            ""
        }
    )
}

/// The 2M range a step touched.
fn touched(before: &ScenarioWorld, after: &ScenarioWorld, c: Choice, n: &StepNote) -> Option<Gpa> {
    if let Some((op, _)) = n.retired {
        return match op {
            GuestOp::Accept(a) => Some(a.gpa),
            GuestOp::Read(g) | GuestOp::ClaimUnit(g) | GuestOp::ReleaseUnit(g) => Some(g),
            GuestOp::Write { gpa, .. } | GuestOp::Verify { gpa, .. } => Some(gpa),
            GuestOp::AcceptRaw(_) => None,
        };
    }
    let vcpu = |w: &ScenarioWorld, i: u8| w.vcpus().nth(usize::from(i)).map(|v| v.state());
    let host = |w: &ScenarioWorld, i: u8| w.hosts().nth(usize::from(i)).map(|h| h.activity());
    let of_vcpu = |s: Option<VcpuState>| match s {
        Some(VcpuState::InTdcall { op, .. }) => Some(op.gpa()),
        Some(VcpuState::InHost(p)) => p.gfn().gpa().ok(),
        _ => None,
    };
    let of_host = |a: Option<HostActivity>| match a {
        Some(HostActivity::Operation(op)) => op.range().0.gpa().ok(),
        Some(HostActivity::Fault(p)) => p.gfn().gpa().ok(),
        _ => None,
    };
    match c {
        Choice::Vcpu(i) | Choice::Interrupt(i) => {
            of_vcpu(vcpu(after, i)).or_else(|| of_vcpu(vcpu(before, i)))
        }
        Choice::Host(i) => of_host(host(after, i)).or_else(|| of_host(host(before, i))),
    }
}

/// The S-EPT and the mirror of the 2M range at `gpa`.
fn range_text(w: &ScenarioWorld, gpa: Gpa) -> String {
    let base = gpa.align_down(PageLevel::Size2M);
    let sept = w.sept();
    let mut s = String::new();
    let two_m = sept.entry_state(base, PageLevel::Size2M).ok().flatten();
    let _ = write!(s, "    S-EPT  {base} 2M: ");
    match two_m {
        Some(st) if st.is_table() => {
            let mut counts: Vec<(String, u32)> = Vec::new();
            if let Ok(Some(t)) = sept.table_4k(base) {
                for e in t {
                    let name = e.state.to_string();
                    match counts.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, k)) => *k += 1,
                        None => counts.push((name, 1)),
                    }
                }
            }
            let _ = write!(
                s,
                "{st}; 4K: {}",
                counts
                    .iter()
                    .map(|(n, k)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Some(st) => {
            let _ = write!(s, "{st}");
        }
        None => {
            let _ = write!(s, "(no 2M entry: the 1G entry above is not a table)");
        }
    }
    let _ = write!(
        s,
        "; content at {}: {}",
        gpa.align_down(PageLevel::Size4K),
        sept.content(gpa).unwrap_or_default()
    );
    let kvm = w.kvm();
    let _ = write!(s, "\n    mirror {base} 2M: ");
    match kvm.mirror(base.gfn(), PageLevel::Size2M) {
        Some(sp) if sp.is_table() => {
            let leaves = (0..512u64)
                .filter(|p| {
                    kvm.mirror(
                        hugesept_core::abi::Gfn(base.gfn().raw() + p),
                        PageLevel::Size4K,
                    )
                    .is_some_and(|e| e.is_leaf())
                })
                .count();
            let _ = write!(s, "table, {leaves} 4K leaves");
        }
        Some(sp) if sp.is_leaf() => {
            let _ = write!(
                s,
                "2M leaf{}",
                if sp.is_frozen() { " (frozen)" } else { "" }
            );
        }
        Some(sp) if sp.is_frozen() => {
            let _ = write!(s, "frozen (SEAMCALL in flight)");
        }
        _ => {
            let _ = write!(s, "not present");
        }
    }
    if let Some(l) = kvm.lpage(base.gfn(), PageLevel::Size2M) {
        let _ = write!(s, "; lpage_info 2M: {}", lpage_text(l));
    }
    let gig = gpa.align_down(PageLevel::Size1G);
    if let Some(l) = kvm.lpage(gig.gfn(), PageLevel::Size1G) {
        let _ = write!(s, "; lpage_info 1G {gig}: {}", lpage_text(l));
    }
    s
}

fn actor_name(w: &ScenarioWorld, c: Choice) -> String {
    match c {
        Choice::Vcpu(i) | Choice::Interrupt(i) => {
            let g = w
                .vcpus()
                .nth(usize::from(i))
                .map(|v| format!(" ({}, stage {})", v.guest().kind(), v.stage()))
                .unwrap_or_default();
            let what = if matches!(c, Choice::Interrupt(_)) {
                "interrupt on vCPU"
            } else {
                "vCPU"
            };
            format!("{what} {i}{g}")
        }
        Choice::Host(i) => format!("host {i}"),
    }
}

fn delta(before: &Metrics, after: &Metrics) -> String {
    let mut parts = Vec::new();
    let d = |a: u32, b: u32| b.saturating_sub(a);
    let seam = d(
        before.fault.seamcalls + before.host_seamcalls,
        after.fault.seamcalls + after.host_seamcalls,
    );
    if seam > 0 {
        parts.push(format!("{seam} SEAMCALL(s)"));
    }
    if d(before.fault.seamcall_busy, after.fault.seamcall_busy) > 0 {
        parts.push("TDX_OPERAND_BUSY".into());
    }
    if d(before.fault.write_locks, after.fault.write_locks) > 0 {
        parts.push("mmu_lock taken for write".into());
    }
    let dem = d(
        before.fault.demotions + before.host_demotions,
        after.fault.demotions + after.host_demotions,
    );
    if dem > 0 {
        parts.push(format!("{dem} demotion(s)"));
    }
    if d(before.kicks, after.kicks) > 0 {
        parts.push("kick bounce".into());
    }
    if d(
        before.exits_accept + before.exits_other,
        after.exits_accept + after.exits_other,
    ) > 0
    {
        parts.push("TD exit".into());
    }
    parts.join(", ")
}

/// How much of a trace `replay` prints, and how hard it checks a livelock claim.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Print only the last N steps in full.
    pub last: Option<usize>,
    /// One line per step.
    pub brief: bool,
    /// States the explorer may visit from where a livelock trace stops.
    pub confirm_states: usize,
}

/// Replays `t`, writing the steps to `out`; what it reproduces. A livelock is reproduced only
/// with evidence: no actor can move, the trace's cycle returns to its start without progress,
/// or the explorer proves no end reachable within `opts.confirm_states`.
pub fn replay(t: &Trace, opts: Options, out: &mut impl Write) -> Result<Claim, CliError> {
    let Options { last, brief, .. } = opts;
    let io = CliError::Io;
    let choices = t.choice_list().map_err(CliError::Trace)?;
    let claimed = t.claim().map_err(CliError::Trace)?;
    if let Some(k) = t.cycle
        && (k >= choices.len() || claimed != Claim::Verdict(Verdict::Livelock))
    {
        return Err(CliError::Trace(
            t.diverged(
                k,
                "the trace marks a cycle from a step it does not have, or on a run that is not a \
             livelock"
                    .into(),
            ),
        ));
    }
    let sc = t.scenario().map_err(CliError::Trace)?;
    let mut w = sc
        .world()
        .map_err(|e| CliError::Trace(TraceError::Scenario(e)))?;
    writeln!(
        out,
        "{} — {} on {}; {} steps ({}), written by hugesept {}, claims: {}",
        sc.name,
        sc.policy,
        sc.profile,
        choices.len(),
        t.schedule,
        t.hugesept,
        t.verdict
    )
    .map_err(io)?;
    let first_shown = last.map_or(0, |n| choices.len().saturating_sub(n));
    // Per host actor, the script actions it has started: a step from idle starts the next.
    let mut started = [0usize; MAX_HOSTS];
    let mut m = Metrics::default();
    let mut violation = None;
    // The state the marked cycle starts from, and whether a step since made progress.
    let mut cycle_start: Option<(ScenarioWorld, bool)> = None;
    for (k, &c) in choices.iter().enumerate() {
        if t.cycle == Some(k) {
            cycle_start = Some((w.clone(), false));
            writeln!(
                out,
                "── the cycle: steps {k}..{} lead back to the state before step {k} ──",
                choices.len().saturating_sub(1)
            )
            .map_err(io)?;
        }
        if w.ended().is_some() {
            return Err(CliError::Trace(t.diverged(
                k,
                "the world has already ended but the trace goes on".into(),
            )));
        }
        if !w.is_enabled(c) {
            return Err(CliError::Trace(t.diverged(
                k,
                format!("choice {} is not enabled", crate::trace::choice_text(c)),
            )));
        }
        let before = w.clone();
        let mb = m;
        let stepped = w
            .step(c, &mut m)
            .map_err(|e| CliError::Trace(t.diverged(k, format!("the model failed: {e}"))))?;
        if matches!(stepped, Stepped::Moved { progress: true })
            && let Some((_, progress)) = &mut cycle_start
        {
            *progress = true;
        }
        let check = w
            .check()
            .and_then(|()| ScenarioWorld::check_transition(&before, &w));
        let mut action = None;
        if let Choice::Host(i) = c
            && let Some(next) = started.get_mut(usize::from(i))
            && before
                .hosts()
                .nth(usize::from(i))
                .is_some_and(|h| h.activity() == HostActivity::Idle)
        {
            action = sc.script(usize::from(i)).get(*next).copied();
            *next += 1;
        }
        if k >= first_shown {
            let mut what = m.note.to_string();
            if let Some(d) = m.note.decision {
                let d = format!("{}: {d}", sc.policy);
                what = if what.is_empty() {
                    d
                } else {
                    format!("{d}; {what}")
                };
            }
            if let Some(a) = action.and_then(|a| started_action_text(a, &before)) {
                what = if what.is_empty() {
                    a
                } else {
                    format!("{a}; {what}")
                };
            }
            let state = match c {
                Choice::Vcpu(i) | Choice::Interrupt(i) => w
                    .vcpus()
                    .nth(usize::from(i))
                    .map(|v| vcpu_state(v.state()))
                    .unwrap_or_default(),
                Choice::Host(i) => w
                    .hosts()
                    .nth(usize::from(i))
                    .map(|h| host_state(h.activity()))
                    .unwrap_or_default(),
            };
            let mut line = format!("#{k:<5} {:<28} ", actor_name(&before, c));
            if stepped == Stepped::Blocked {
                line += "waits; ";
            }
            if !what.is_empty() {
                line += &format!("{what}; ");
            }
            line += &format!("now {state}");
            let d = delta(&mb, &m);
            if !d.is_empty() {
                line += &format!(" [{d}]");
            }
            writeln!(out, "{line}").map_err(io)?;
            if !brief {
                let lock = w.kvm().mmu_lock;
                let (tree_shared, tree_excl) = w.sept().tree_lock();
                if lock != before.kvm().mmu_lock
                    || w.sept().tree_lock() != before.sept().tree_lock()
                {
                    writeln!(
                        out,
                        "    mmu_lock: {} reader(s){}{}; S-EPT tree lock: {tree_shared} shared{}",
                        lock.readers(),
                        if lock.write_held() {
                            ", held for write"
                        } else {
                            ""
                        },
                        if lock.writers_waiting() > 0 {
                            format!(", {} writer(s) waiting", lock.writers_waiting())
                        } else {
                            String::new()
                        },
                        if tree_excl { ", exclusive" } else { "" }
                    )
                    .map_err(io)?;
                }
                if let Some(g) = touched(&before, &w, c, &m.note)
                    && w.sept().contains(g)
                {
                    writeln!(out, "{}", range_text(&w, g)).map_err(io)?;
                }
            }
        }
        if let Err(v) = check {
            writeln!(out, "safety invariant broken after step {k}: {v}").map_err(io)?;
            violation = Some(v);
            break;
        }
    }
    let not_ended = |what: &str| {
        CliError::Trace(t.diverged(
            choices.len(),
            format!(
                "after the last choice the world has not ended{what}, where the trace claims {}",
                t.verdict
            ),
        ))
    };
    let (reproduced, ending) = match (violation, w.ended()) {
        (Some(_), _) => (Claim::Violation, "a safety invariant broke".to_owned()),
        (None, Some(v)) => (Claim::Verdict(v), v.name().to_owned()),
        (None, None) => match claimed {
            Claim::BudgetExhausted if choices.len() == sc.steps as usize => (
                Claim::BudgetExhausted,
                format!(
                    "budget exhausted: {} steps without an end (no verdict)",
                    choices.len()
                ),
            ),
            Claim::BudgetExhausted => {
                return Err(not_ended(&format!(
                    " after {} of its {} steps",
                    choices.len(),
                    sc.steps
                )));
            }
            Claim::Verdict(Verdict::Livelock) => {
                let evidence = livelock_evidence(
                    &w,
                    choices.len(),
                    t.cycle,
                    cycle_start.as_ref(),
                    opts.confirm_states,
                )?;
                (
                    Claim::Verdict(Verdict::Livelock),
                    format!("livelock: {evidence}"),
                )
            }
            Claim::Verdict(_) | Claim::Violation => return Err(not_ended("")),
        },
    };
    if reproduced != claimed {
        return Err(CliError::Trace(t.diverged(
            choices.len(),
            format!(
                "it ends in {} where the trace claims {}",
                reproduced.name(),
                t.verdict
            ),
        )));
    }
    writeln!(out, "reproduced: {ending}").map_err(io)?;
    Ok(reproduced)
}

/// What backs a livelock claim for a run that stopped in `w` after `steps` choices without
/// ending: no actor can move there; or the trace's cycle (from choice `cycle`, whose start state and progress since are
/// `start`) comes back to the same state without progress — with what the explorer says of
/// other choices from there; or the explorer proves, within `max_states`, that no end is
/// reachable from `w`. Anything less is an error: the claim cannot be confirmed.
fn livelock_evidence(
    w: &ScenarioWorld,
    steps: usize,
    cycle: Option<usize>,
    start: Option<&(ScenarioWorld, bool)>,
    max_states: usize,
) -> Result<String, CliError> {
    let unconfirmed = |why: String| {
        CliError::Unexpected(format!(
            "the trace claims a livelock, but {why}: cannot confirm it"
        ))
    };
    let mut choices = [Choice::Vcpu(0); MAX_CHOICES];
    if w.enabled(&mut choices) == 0 {
        return Ok("no actor can move: every vCPU and host actor waits for good".into());
    }
    let ex = crate::explore::explore(
        w,
        crate::explore::Bounds {
            max_states: max_states.max(1),
            ..Default::default()
        },
        &mut |_, _| {},
    )
    .map_err(|e| CliError::Unexpected(format!("model error exploring from the end: {e}")))?;
    let proved = !ex.bounded && ex.ends.is_empty() && ex.violation.is_none();
    let reachable = || {
        ex.end_traces
            .iter()
            .min_by_key(|(_, p)| p.len())
            .map(|(v, p)| format!("{v} in {} steps", p.len()))
            .or_else(|| {
                ex.violation
                    .as_ref()
                    .map(|(v, p)| format!("a broken invariant ({v}) in {} steps", p.len()))
            })
    };
    let others = if proved {
        format!(
            "no end is reachable from it by any choices (the explorer, {} states)",
            ex.states
        )
    } else if let Some(r) = reachable() {
        format!("other choices from it still reach an end ({r})")
    } else {
        format!(
            "whether other choices from it reach an end is undecided within {} states",
            ex.states
        )
    };
    match (cycle, start) {
        (Some(k), Some((at, progress))) => {
            if *progress {
                return Err(unconfirmed(format!(
                    "a step of the cycle marked from step {k} makes progress"
                )));
            }
            if !crate::cycle::same_state(at, w) {
                return Err(unconfirmed(format!(
                    "the state after step {k} is not the state the trace ends in (no cycle)"
                )));
            }
            let fair = if proved {
                "a livelock under any scheduling"
            } else if reachable().is_some() {
                "a livelock of this schedule, which a fair scheduler leaves"
            } else {
                "a livelock of this schedule at least"
            };
            Ok(format!(
                "from step {k} the run goes round a cycle of {} steps without progress back \
                 to the same state; {others}: {fair}",
                steps.saturating_sub(k)
            ))
        }
        _ if proved => Ok(others),
        _ => Err(unconfirmed(match reachable() {
            Some(r) => format!(
                "the trace records no cycle, and from where it stops an end is reachable ({r})"
            ),
            None => format!(
                "the trace records no cycle, and the explorer could not decide within {} \
                 states whether an end is reachable from where it stops",
                ex.states
            ),
        })),
    }
}

/// Runs `replay`.
pub fn run(args: &Args, out: &mut impl Write) -> Result<(), CliError> {
    let text = super::read_input(&args.trace, "trace", super::TRACE_CAP)?;
    let t = Trace::parse(&text).map_err(CliError::Trace)?;
    if let Ok(sc) = t.scenario() {
        for w in &sc.warnings {
            eprintln!("warning: {}: {w}", args.trace.display());
        }
    }
    replay(
        &t,
        Options {
            last: args.last,
            brief: args.brief,
            confirm_states: args.confirm_states,
        },
        out,
    )?;
    Ok(())
}
