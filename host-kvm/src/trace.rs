//! Traces: the choice sequence that reproduces a run, with the scenario it ran on, as a TOML
//! file `hugesept replay` reads. A trace names the format and the build that wrote it; a trace
//! that no longer reproduces (another build's model, an edited file) is refused with the step
//! where it diverges.

use std::fmt;

use hugesept_core::world::{Choice, Limits, Metrics, ScheduleError, Verdict};
use serde::{Deserialize, Serialize};

use crate::scenario::{self, Scenario, ScenarioError, ScenarioWorld, VIOLATION};

/// The trace format this build writes and reads.
pub const FORMAT: u32 = 1;

/// A trace file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    /// The file format ([`FORMAT`]).
    pub format: u32,
    /// The hugesept version that wrote it.
    pub hugesept: String,
    /// The verdict the run ended in.
    pub verdict: String,
    /// How the schedule was chosen (informational).
    pub schedule: String,
    /// The choices, space-separated: `v0` a step of vCPU 0, `i0` an interrupt landing on
    /// vCPU 0's 2M accept, `h0` a step of host actor 0.
    pub choices: String,
    /// The scenario file's text.
    pub scenario: String,
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
                "trace format {n}; this build ({}) reads format {FORMAT}",
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
            scenario: text.into(),
        }
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
            Some(FORMAT) => {}
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

    /// The verdict the trace claims; None for a run that broke an invariant.
    pub fn claimed_verdict(&self) -> Result<Option<Verdict>, TraceError> {
        if self.verdict == VIOLATION {
            return Ok(None);
        }
        scenario::parse_verdict(&self.verdict)
            .map(Some)
            .ok_or_else(|| TraceError::Syntax(format!("verdict '{}' names nothing", self.verdict)))
    }

    pub(crate) fn diverged(&self, step: usize, what: String) -> TraceError {
        TraceError::Diverged {
            step,
            what,
            written_by: self.hugesept.clone(),
        }
    }
}

/// Reruns schedule `seed` of `sc` (whose file text is `text`) from `start` and records it as a
/// trace: its verdict, or [`VIOLATION`] when it broke a safety invariant.
pub fn record(
    sc: &Scenario,
    text: &str,
    seed: u64,
    start: &ScenarioWorld,
) -> Result<Trace, ScenarioError> {
    let mut choices = Vec::new();
    let mut m = Metrics::default();
    let mut steps = 0;
    let limits: Limits = sc.limits();
    let mut sched = sc.scheduler(seed);
    let r = start.run_schedule(&mut sched, limits, &mut m, &mut steps, |c, _| {
        choices.push(c)
    });
    let schedule = format!("{} seed {seed}", sc.scheduler.name());
    match r {
        Ok(v) => Ok(Trace::new(text, schedule, &choices, v)),
        Err(ScheduleError::Invariant { .. }) => {
            let mut t = Trace::new(text, schedule, &choices, Verdict::Ok);
            t.verdict = VIOLATION.into();
            Ok(t)
        }
        Err(ScheduleError::Model(e)) => Err(ScenarioError::Model(e.to_string())),
    }
}
