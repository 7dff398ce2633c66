//! Traces: the choice sequence that reproduces a run, with the scenario it ran on, as a TOML
//! file `hugesept replay` reads. A trace names the format and the build that wrote it; a trace
//! that no longer reproduces (another build's model, an edited file) is refused with the step
//! where it diverges. A livelock trace marks the cycle it ends in (the choices from `cycle` on
//! lead from a state back to it), so replay can check the claim.

use std::fmt;

use hugesept_core::world::{Choice, Verdict};
use serde::{Deserialize, Serialize};

use crate::scenario::{self, BUDGET_EXHAUSTED, RecordedRun, Scenario, ScenarioError, VIOLATION};

/// The trace format this build writes (2: with `cycle`).
pub const FORMAT: u32 = 2;

/// The trace formats this build reads: 1 is 2 without `cycle`.
pub const READS: [u32; 2] = [1, 2];

/// A trace file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    /// The file format ([`FORMAT`]).
    pub format: u32,
    /// The hugesept version that wrote it.
    pub hugesept: String,
    /// The outcome the run ended in: a verdict, `invariant-violation` or `budget-exhausted`.
    pub verdict: String,
    /// How the schedule was chosen (informational).
    pub schedule: String,
    /// The choices, space-separated: `v0` a step of vCPU 0, `i0` an interrupt landing on
    /// vCPU 0's 2M accept, `h0` a step of host actor 0.
    pub choices: String,
    /// For a livelock: the choice the cycle starts at (from 0): the state after the first
    /// `cycle` choices is the state after all of them, and no step between makes progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle: Option<usize>,
    /// The scenario file's text.
    pub scenario: String,
}

/// What a trace claims its run ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// A verdict.
    Verdict(Verdict),
    /// A broken safety invariant (its last step breaks it).
    Violation,
    /// The step budget, with the world still making progress: no verdict.
    BudgetExhausted,
}

impl Claim {
    /// The name traces and summaries use.
    pub fn name(self) -> &'static str {
        match self {
            Claim::Verdict(v) => v.name(),
            Claim::Violation => VIOLATION,
            Claim::BudgetExhausted => BUDGET_EXHAUSTED,
        }
    }
}

/// Why a trace cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceError {
    /// Not a trace file.
    Syntax(String),
    /// A format this build does not read.
    Format(u32),
    /// The embedded scenario is broken.
    Scenario(ScenarioError),
    /// A choice that is not `v<n>`, `i<n>` or `h<n>`.
    Choice(usize, String),
    /// The trace does not reproduce on this build.
    Diverged {
        /// The step (from 0).
        step: usize,
        /// What happened.
        what: String,
        /// The build that wrote the trace.
        written_by: String,
    },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Syntax(m) => write!(f, "not a hugesept trace: {m}"),
            TraceError::Format(n) => write!(
                f,
                "trace format {n}; this build ({}) reads formats 1 and {FORMAT}",
                env!("CARGO_PKG_VERSION")
            ),
            TraceError::Scenario(e) => write!(f, "the trace's scenario: {e}"),
            TraceError::Choice(i, c) => {
                write!(f, "choice {i} '{c}' is not v<n>, i<n> or h<n>")
            }
            TraceError::Diverged {
                step,
                what,
                written_by,
            } => write!(
                f,
                "the trace does not reproduce on this build ({}; it was written by hugesept \
                 {written_by}): at step {step}, {what}",
                env!("CARGO_PKG_VERSION")
            ),
        }
    }
}

impl std::error::Error for TraceError {}

/// A choice as a trace writes it.
pub fn choice_text(c: Choice) -> String {
    c.to_string()
}

fn parse_choice(i: usize, s: &str) -> Result<Choice, TraceError> {
    let bad = || TraceError::Choice(i, s.to_owned());
    let (kind, n) = s.split_at_checked(1).ok_or_else(bad)?;
    let n: u8 = n.parse().map_err(|_| bad())?;
    match kind {
        "v" => Ok(Choice::Vcpu(n)),
        "i" => Ok(Choice::Interrupt(n)),
        "h" => Ok(Choice::Host(n)),
        _ => Err(bad()),
    }
}

impl Trace {
    /// A trace of `choices` on the scenario `text`, ending in `verdict`.
    pub fn new(text: &str, schedule: String, choices: &[Choice], verdict: Verdict) -> Trace {
        Trace {
            format: FORMAT,
            hugesept: env!("CARGO_PKG_VERSION").into(),
            verdict: verdict.name().into(),
            schedule,
            choices: choices
                .iter()
                .map(|c| choice_text(*c))
                .collect::<Vec<_>>()
                .join(" "),
            cycle: None,
            scenario: text.into(),
        }
    }

    /// The trace of a run `sim` recorded, on the scenario `text`.
    pub fn of_run(text: &str, scheduler: &str, run: &RecordedRun) -> Trace {
        let mut t = Trace::new(
            text,
            format!("{scheduler} seed {}", run.seed),
            &run.choices,
            Verdict::Ok,
        );
        t.verdict = run.outcome.into();
        t.cycle = run.cycle;
        t
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!("# hugesept trace: replay with `hugesept replay FILE`\n{body}")
    }

    /// Reads a trace file's text.
    pub fn parse(text: &str) -> Result<Trace, TraceError> {
        #[derive(Deserialize)]
        struct Version {
            format: Option<u32>,
        }
        // The format first, so that a future layout gets the format error, not a field error.
        let v: Version =
            toml::from_str(text).map_err(|e| TraceError::Syntax(e.message().to_owned()))?;
        match v.format {
            Some(n) if READS.contains(&n) => {}
            Some(n) => return Err(TraceError::Format(n)),
            None => return Err(TraceError::Syntax("no `format` field".into())),
        }
        toml::from_str(text).map_err(|e| TraceError::Syntax(e.to_string()))
    }

    /// The choices.
    pub fn choice_list(&self) -> Result<Vec<Choice>, TraceError> {
        self.choices
            .split_whitespace()
            .enumerate()
            .map(|(i, c)| parse_choice(i, c))
            .collect()
    }

    /// The scenario.
    pub fn scenario(&self) -> Result<Scenario, TraceError> {
        scenario::parse(&self.scenario).map_err(TraceError::Scenario)
    }

    /// What the trace claims its run ended in.
    pub fn claim(&self) -> Result<Claim, TraceError> {
        match self.verdict.as_str() {
            VIOLATION => Ok(Claim::Violation),
            BUDGET_EXHAUSTED => Ok(Claim::BudgetExhausted),
            v => scenario::parse_verdict(v)
                .map(Claim::Verdict)
                .ok_or_else(|| {
                    TraceError::Syntax(format!("verdict '{}' names nothing", self.verdict))
                }),
        }
    }

    pub(crate) fn diverged(&self, step: usize, what: String) -> TraceError {
        TraceError::Diverged {
            step,
            what,
            written_by: self.hugesept.clone(),
        }
    }
}
