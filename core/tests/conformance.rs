//! Conformance of the S-EPT model to the TDX module, as data.
//!
//! Each row of `tests/conformance/*.toml` sets up entry states, runs a sequence of guest and
//! host operations with the status (or exit) each must produce, and states the entries
//! afterwards. Rows cite their source. The harness also checks that the rows cover every
//! ACCEPT outcome (A–G of shared/reference/tdx-module.md) and every SEAMCALL precondition.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::{BTreeMap, BTreeSet};

use hugesept_core::abi::{
    AcceptOperand, ExtendedExitQualification, Gpa, OperandId, PageLevel, SeptEntryState,
    StatusCode, TdxStatus,
};
use hugesept_core::sept::{
    AcceptOp, AcceptOutcome, AcceptStart, AccessOutcome, ArrayStorage, Content, EpochTicket,
    HostCall, HostOp, HostStart, ModuleProfile, OpState, Sept, SeptConfig,
};
use serde::Deserialize;

/// The test TD's window: the whole second GiB of guest memory.
const BASE: u64 = 0x4000_0000;
/// The GPA rows act on by default: region 1, page 1.
const TARGET: u64 = 0x4020_1000;

type TestSept = Sept<ArrayStorage<1, 512, 8>>;

#[derive(Deserialize)]
struct File {
    row: Vec<Row>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    id: String,
    source: String,
    #[serde(default)]
    covers: Vec<String>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    op_state: Option<String>,
    /// The TD has #VE enabled for pending pages (SEPT_VE_DISABLE clear).
    #[serde(default)]
    ve_enabled: bool,
    #[serde(default)]
    initial: BTreeMap<String, String>,
    #[serde(default)]
    others_2m: Option<String>,
    #[serde(default)]
    others_4k: Option<String>,
    steps: Vec<Step>,
    #[serde(default, rename = "final")]
    final_states: BTreeMap<String, String>,
    #[serde(default)]
    final_all_4k: Option<String>,
    #[serde(default)]
    final_content: Option<String>,
    #[serde(default)]
    final_counter: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    op: String,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    gpa: Option<String>,
    #[serde(default)]
    rcx: Option<String>,
    expect: String,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    exit_level: Option<String>,
    #[serde(default)]
    exit_state: Option<String>,
    #[serde(default)]
    exit_leaf: Option<bool>,
    #[serde(default)]
    interrupt_after: Option<u32>,
    #[serde(default)]
    interrupted: bool,
    #[serde(default)]
    content: Option<u16>,
}

fn level(s: &str) -> PageLevel {
    match s {
        "4K" => PageLevel::Size4K,
        "2M" => PageLevel::Size2M,
        "1G" => PageLevel::Size1G,
        other => panic!("unknown level {other}"),
    }
}

fn state(s: &str) -> SeptEntryState {
    SeptEntryState::ALL
        .into_iter()
        .find(|st| st.name() == s)
        .unwrap_or_else(|| panic!("unknown state {s}"))
}

fn content(s: &str) -> Content {
    match s {
        "none" => Content::NONE,
        "zero" => Content::ZERO,
        other => Content::data(
            other
                .strip_prefix("data:")
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("unknown content {other}")),
        ),
    }
}

fn parse_u64(s: &str) -> u64 {
    let t = s.replace('_', "");
    match t.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap(),
        None => t.parse().unwrap(),
    }
}

fn target(l: PageLevel) -> Gpa {
    Gpa(TARGET).align_down(l)
}

/// The status a step expects, from a name in the module's headers and a detail.
fn expected_status(step: &Step) -> TdxStatus {
    let code = StatusCode::KNOWN
        .into_iter()
        .find(|c| c.name() == step.expect)
        .unwrap_or_else(|| panic!("unknown expectation {}", step.expect));
    let detail = match step.detail.as_deref() {
        None => 0,
        Some("4K") => 0,
        Some("2M") => 1,
        Some("1G") => 2,
        Some("RCX") => OperandId::RCX.0,
        Some("SEPT_TREE") => OperandId::SEPT_TREE.0,
        Some(other) => panic!("unknown detail {other}"),
    };
    TdxStatus::new(code, detail)
}

struct Runner {
    sept: TestSept,
    accepts: Vec<AcceptOp>,
    hosts: Vec<HostOp>,
    tickets: Vec<EpochTicket>,
}

impl Runner {
    fn new(row: &Row) -> Runner {
        let mut config = SeptConfig::new(Gpa(BASE), 512);
        if let Some(p) = &row.profile {
            config.profile = ModuleProfile::parse(p).unwrap();
        }
        config.pending_ve_disable = !row.ve_enabled;
        let mut sept = Sept::new(config, ArrayStorage::new()).unwrap();
        sept.arrange_op_state(match row.op_state.as_deref() {
            None | Some("runnable") => OpState::Runnable,
            Some("build-time") => OpState::BuildTime,
            Some(other) => panic!("unknown op state {other}"),
        });
        // Top-down, so that parents are tables before children are set.
        for l in [PageLevel::Size1G, PageLevel::Size2M, PageLevel::Size4K] {
            if let Some(s) = row.initial.get(l.name()) {
                if l == PageLevel::Size2M
                    && let Some(o) = &row.others_2m
                {
                    for r in 0..512u64 {
                        let g = Gpa(BASE + r * PageLevel::Size2M.bytes());
                        if g != target(PageLevel::Size2M) {
                            sept.arrange(g, l, state(o)).unwrap();
                        }
                    }
                }
                if l == PageLevel::Size4K
                    && let Some(o) = &row.others_4k
                {
                    let base = target(PageLevel::Size2M).raw();
                    for p in 0..512u64 {
                        sept.arrange(Gpa(base + p * 4096), l, state(o)).unwrap();
                    }
                }
                sept.arrange(target(l), l, state(s))
                    .unwrap_or_else(|e| panic!("{}: arrange {l} {s}: {e}", row.id));
            }
        }
        Runner {
            sept,
            accepts: Vec::new(),
            hosts: Vec::new(),
            tickets: Vec::new(),
        }
    }

    fn step_gpa(step: &Step, l: PageLevel) -> Gpa {
        step.gpa
            .as_deref()
            .map(|g| Gpa(parse_u64(g)))
            .unwrap_or(target(l))
    }

    fn host_call(op: &str, step: &Step) -> Option<HostCall> {
        let l = step
            .level
            .as_deref()
            .map(level)
            .unwrap_or(PageLevel::Size4K);
        let gpa = Self::step_gpa(step, l);
        Some(match op {
            "add" => HostCall::add(gpa, l, Content::data(step.content.unwrap_or(0))),
            "sept_add" => HostCall::sept_add(gpa, l),
            "aug" => HostCall::aug(gpa, l),
            "block" => HostCall::block(gpa, l),
            "unblock" => HostCall::unblock(gpa, l),
            "demote" => HostCall::demote(gpa, l),
            "promote" => HostCall::promote(gpa, l),
            "remove" => HostCall::remove(gpa, l),
            "sept_remove" => HostCall::sept_remove(gpa, l),
            _ => return None,
        })
    }

    fn check_accept(
        &self,
        id: &str,
        i: usize,
        step: &Step,
        out: AcceptOutcome,
        gpa: Gpa,
        l: PageLevel,
    ) {
        let ctx = format!("{id} step {i} ({})", step.op);
        match step.expect.as_str() {
            "exit" => {
                let AcceptOutcome::Exit(exit) = out else {
                    panic!("{ctx}: expected an exit, got {out}");
                };
                assert_eq!(exit.gpa, gpa, "{ctx}: exit GPA");
                let ExtendedExitQualification::Accept(info) = exit.eeq else {
                    panic!("{ctx}: expected an ACCEPT EEQ, got {:?}", exit.eeq);
                };
                assert_eq!(info.requested, l, "{ctx}: requested level");
                if let Some(el) = &step.exit_level {
                    assert_eq!(info.error_level, level(el), "{ctx}: error level");
                }
                if let Some(es) = &step.exit_state {
                    assert_eq!(info.error_state, state(es), "{ctx}: error state");
                }
                if let Some(leaf) = step.exit_leaf {
                    assert_eq!(info.error_is_leaf, leaf, "{ctx}: is-leaf");
                }
                // The EEQ must survive the ABI's encode/decode.
                assert_eq!(
                    ExtendedExitQualification::decode(exit.eeq.encode()),
                    Ok(exit.eeq)
                );
            }
            "interrupted" => assert_eq!(out, AcceptOutcome::Interrupted, "{ctx}"),
            _ => {
                let want = expected_status(step);
                assert_eq!(
                    out,
                    AcceptOutcome::Completed(want),
                    "{ctx}: expected {want}, got {out}"
                );
            }
        }
    }

    fn run(&mut self, row: &Row) {
        for (i, step) in row.steps.iter().enumerate() {
            let ctx = format!("{} step {i} ({})", row.id, step.op);
            let l = step
                .level
                .as_deref()
                .map(level)
                .unwrap_or(PageLevel::Size4K);
            let gpa = Self::step_gpa(step, l);
            let rcx = step
                .rcx
                .as_deref()
                .map(parse_u64)
                .unwrap_or(AcceptOperand { gpa, level: l }.encode());
            match step.op.as_str() {
                "accept" => {
                    let out = self.sept.accept(rcx).unwrap();
                    self.check_accept(&row.id, i, step, out, gpa, l);
                }
                "accept_begin" => match self.sept.accept_begin(rcx).unwrap() {
                    AcceptStart::Zeroing(op) => {
                        assert_eq!(step.expect, "zeroing", "{ctx}");
                        self.accepts.push(op);
                    }
                    AcceptStart::Checking(op) => {
                        assert_eq!(step.expect, "checking", "{ctx}");
                        self.accepts.push(op);
                    }
                    AcceptStart::Done(out) => self.check_accept(&row.id, i, step, out, gpa, l),
                },
                "accept_finish" => {
                    let op = self
                        .accepts
                        .pop()
                        .unwrap_or_else(|| panic!("{ctx}: no accept"));
                    let out = self.sept.accept_finish(op, step.interrupt_after).unwrap();
                    self.check_accept(&row.id, i, step, out, op.gpa(), op.level());
                }
                "track" => {
                    let s = self.sept.track().unwrap();
                    assert_eq!(s, expected_status(step), "{ctx}: got {s}");
                }
                "enter" => self.tickets.push(self.sept.vcpu_enter().unwrap()),
                "exit_guest" => {
                    let t = self.tickets.remove(0);
                    self.sept.vcpu_exit(t).unwrap();
                }
                "finalize" => {
                    let s = self.sept.finalize();
                    assert_eq!(s, expected_status(step), "{ctx}: got {s}");
                }
                "write" | "read" => {
                    let out = if step.op == "write" {
                        self.sept
                            .guest_write(gpa, l, Content::data(step.content.unwrap_or(0)))
                            .unwrap()
                    } else {
                        self.sept.guest_read(gpa).unwrap()
                    };
                    let ok = match (step.expect.as_str(), out) {
                        ("accessible", AccessOutcome::Accessible(_)) => true,
                        ("ve", AccessOutcome::VirtualizationException) => true,
                        ("exit-pending", AccessOutcome::Exit(e)) => {
                            e.eeq == ExtendedExitQualification::PendingEptViolation
                        }
                        ("exit-plain", AccessOutcome::Exit(e)) => {
                            e.eeq == ExtendedExitQualification::None
                        }
                        _ => false,
                    };
                    assert!(ok, "{ctx}: expected {}, got {out:?}", step.expect);
                }
                "host_end" => {
                    let op = self
                        .hosts
                        .pop()
                        .unwrap_or_else(|| panic!("{ctx}: no host op"));
                    let s = self.sept.host_end(op, step.interrupted).unwrap();
                    assert_eq!(s, expected_status(step), "{ctx}: got {s}");
                }
                op => {
                    if let Some(base) = op.strip_suffix("_begin") {
                        let call = Self::host_call(base, step)
                            .unwrap_or_else(|| panic!("{ctx}: unknown op"));
                        match self.sept.host_begin(call).unwrap() {
                            HostStart::Started(h) => {
                                assert_eq!(step.expect, "started", "{ctx}");
                                self.hosts.push(h);
                            }
                            HostStart::Done(s) => {
                                assert_eq!(s, expected_status(step), "{ctx}: got {s}")
                            }
                        }
                    } else {
                        let call = Self::host_call(op, step)
                            .unwrap_or_else(|| panic!("{ctx}: unknown op"));
                        let s = self.sept.seamcall(call).unwrap();
                        assert_eq!(s, expected_status(step), "{ctx}: got {s}");
                    }
                }
            }
        }
        for (l, s) in &row.final_states {
            let l = level(l);
            let got = self.sept.entry_state(target(l), l).unwrap();
            let want = if s == "absent" { None } else { Some(state(s)) };
            assert_eq!(got, want, "{}: final {l} state", row.id);
        }
        if let Some(s) = &row.final_all_4k {
            let base = target(PageLevel::Size2M).raw();
            for p in 0..512u64 {
                let got = self
                    .sept
                    .entry_state(Gpa(base + p * 4096), PageLevel::Size4K)
                    .unwrap();
                assert_eq!(got, Some(state(s)), "{}: final 4K child {p}", row.id);
            }
        }
        if let Some(c) = &row.final_content {
            assert_eq!(
                self.sept.content(Gpa(TARGET)).unwrap(),
                content(c),
                "{}: final content",
                row.id
            );
        }
        if let Some(n) = row.final_counter {
            let e = self
                .sept
                .entry(target(PageLevel::Size2M), PageLevel::Size2M)
                .unwrap()
                .unwrap();
            assert_eq!(e.accept_counter, n, "{}: final accept counter", row.id);
        }
    }
}

fn load(name: &str, text: &str) -> Vec<Row> {
    let file: File = toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    file.row
}

fn all_rows() -> Vec<Row> {
    let mut rows = load("accept.toml", include_str!("conformance/accept.toml"));
    rows.extend(load(
        "seamcall.toml",
        include_str!("conformance/seamcall.toml"),
    ));
    rows
}

#[test]
fn every_row_holds() {
    let rows = all_rows();
    let mut ids = BTreeSet::new();
    for row in &rows {
        assert!(ids.insert(row.id.clone()), "duplicate row id {}", row.id);
        assert!(!row.source.trim().is_empty(), "{}: no source", row.id);
        Runner::new(row).run(row);
    }
}

/// The rows cover every ACCEPT outcome and every SEAMCALL precondition the model implements.
#[test]
fn rows_cover_every_outcome_and_precondition() {
    let covered: BTreeSet<String> = all_rows().into_iter().flat_map(|r| r.covers).collect();
    let required = [
        // ACCEPT outcomes, shared/reference/tdx-module.md.
        "accept:A",
        "accept:B",
        "accept:C",
        "accept:D",
        "accept:E",
        "accept:F",
        "accept:G",
        "accept:operand",
        "accept:1g",
        "accept:interrupt",
        "accept:host-priority",
        "accept:counter-reset",
        // Guest accesses.
        "access:mapped",
        "access:pending-ve",
        "access:pending-exit",
        "access:free",
        // SEAMCALLs: success and every precondition.
        "add:ok",
        "add:op-state",
        "add:operand",
        "add:walk",
        "add:state",
        "sept_add:ok",
        "sept_add:operand",
        "sept_add:walk",
        "sept_add:state",
        "sept_add:tree",
        "aug:ok",
        "aug:operand",
        "aug:walk",
        "aug:state",
        "aug:busy",
        "block:ok",
        "block:already",
        "block:state",
        "block:walk",
        "block:tree",
        "track:ok",
        "track:busy",
        "unblock:ok",
        "unblock:state",
        "unblock:tracking",
        "demote:ok",
        "demote:pending",
        "demote:operand",
        "demote:state",
        "demote:not-blocked",
        "demote:tracking",
        "demote:build-time",
        "demote:interrupted",
        "demote:non-blocking",
        "promote:ok",
        "promote:mixed",
        "promote:not-blocked",
        "promote:busy",
        "promote:interrupted",
        "remove:ok",
        "remove:state",
        "remove:not-blocked",
        "remove:tracking",
        "remove:build-time",
        "remove:busy",
        "sept_remove:ok",
        "sept_remove:not-free",
        "sept_remove:not-blocked",
        "finalize:ok",
        "finalize:op-state",
        // Content.
        "content:accept-zeroes",
        "content:add-copies",
        "content:demote-keeps",
        "content:promote-keeps",
        "content:remove-loses",
    ];
    let missing: Vec<_> = required.iter().filter(|r| !covered.contains(**r)).collect();
    assert!(missing.is_empty(), "no conformance row covers {missing:?}");
}
