//! Scenario files: a world described in TOML (module profile, policy, window, vCPUs with their
//! guest programs, host scripts, an expected verdict), parsed with line and field errors, and
//! run under seeded schedules. The format is documented in scenarios/README.md.

mod storage;

use std::collections::BTreeMap;
use std::fmt;

use hugesept_core::abi::{Gfn, Gpa, PAGE_SIZE_2M, PageLevel};
use hugesept_core::guest::{Guest, GuestKind};
use hugesept_core::kvm::{HostOpKind, Kvm, KvmError, Memslot};
use hugesept_core::policy::PolicyId;
use hugesept_core::sept::{ModuleProfile, Sept, SeptConfig};
use hugesept_core::world::{HostAction, MAX_HOSTS, MAX_SCRIPT, MAX_VCPUS, Metrics, Verdict, World};
use serde::Deserialize;

pub use storage::{BoxedKvm, BoxedSept, boxed_kvm, boxed_sept};

/// A world over host-owned storage.
pub type ScenarioWorld = World<BoxedSept, BoxedKvm>;

/// Why a scenario file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScenarioError {
    /// Not valid TOML for the format (the message names the line, column and field).
    Syntax(String),
    /// A field holds a value that names nothing or does not fit.
    Field {
        /// The field, e.g. `vcpu[1].guest`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The model refused the world.
    Model(String),
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScenarioError::Syntax(m) => write!(f, "{m}"),
            ScenarioError::Field { field, message } => write!(f, "field `{field}`: {message}"),
            ScenarioError::Model(m) => write!(f, "model: {m}"),
        }
    }
}

impl std::error::Error for ScenarioError {}

/// A number written as an integer or as a string (decimal or `0x` hex, `_` allowed).
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
enum Num {
    Int(u64),
    Str(String),
}

impl Num {
    fn value(&self, field: &str) -> Result<u64, ScenarioError> {
        match self {
            Num::Int(v) => Ok(*v),
            Num::Str(s) => {
                let t = s.replace('_', "");
                let r = match t.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16),
                    None => t.parse(),
                };
                r.map_err(|_| field_err(field, format!("'{s}' is not a number")))
            }
        }
    }
}

fn field_err(field: &str, message: String) -> ScenarioError {
    ScenarioError::Field {
        field: field.to_owned(),
        message,
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    module: Option<String>,
    policy: String,
    #[serde(default)]
    ve: bool,
    base: Option<Num>,
    regions: u32,
    tables: Option<u32>,
    schedules: Option<u32>,
    steps: Option<u32>,
    expect: Option<String>,
    #[serde(default)]
    vcpu: Vec<FileVcpu>,
    #[serde(default)]
    host: Vec<FileHost>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileVcpu {
    guest: String,
    start: Num,
    end: Num,
    #[serde(default = "yes")]
    markers: bool,
    #[serde(default)]
    interrupts: u8,
    tag: Option<u16>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileHost {
    actions: Vec<FileAction>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileAction {
    op: String,
    start: Option<Num>,
    end: Option<Num>,
    gpa: Option<Num>,
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// The module profile.
    pub profile: ModuleProfile,
    /// The host design.
    pub policy: PolicyId,
    /// The S-EPT window and TD attributes.
    pub config: SeptConfig,
    /// 4K tables in each model's pool.
    pub tables: usize,
    /// Seeded schedules to run.
    pub schedules: u32,
    /// Steps a schedule may take before it counts as livelock.
    pub steps: u32,
    /// The verdict every schedule must end in, if stated.
    pub expect: Option<Verdict>,
    guests: Vec<Guest>,
    interrupts: u8,
    scripts: Vec<Vec<HostAction>>,
}

const VERDICTS: [Verdict; 6] = [
    Verdict::Ok,
    Verdict::GuestPanic,
    Verdict::DataLoss,
    Verdict::VmBugged,
    Verdict::VmKilled,
    Verdict::Livelock,
];

/// Parses and validates a scenario file's text.
pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    let f: File = toml::from_str(text).map_err(|e| ScenarioError::Syntax(e.to_string()))?;
    let profile = match &f.module {
        Some(m) => ModuleProfile::parse(m).map_err(|e| field_err("module", e.to_string()))?,
        None => ModuleProfile::TDX_1_5,
    };
    let policy = PolicyId::parse(&f.policy).ok_or_else(|| {
        field_err(
            "policy",
            format!(
                "'{}' names no policy (known: {})",
                f.policy,
                PolicyId::ALL.map(|p| p.to_string()).join(", ")
            ),
        )
    })?;
    let base = match &f.base {
        Some(b) => b.value("base")?,
        None => 0x4000_0000,
    };
    if !base.is_multiple_of(PAGE_SIZE_2M) {
        return Err(field_err("base", "must be 2 MiB aligned".into()));
    }
    if f.regions == 0 || f.regions > 4096 {
        return Err(field_err("regions", "must be 1..=4096".into()));
    }
    let mut config = SeptConfig::new(Gpa(base), f.regions);
    config.profile = profile;
    config.pending_ve_disable = !f.ve;
    config
        .gigs_needed()
        .map_err(|e| field_err("base", e.to_string()))?;
    let window_end = base + u64::from(f.regions) * PAGE_SIZE_2M;
    let in_window = |field: &str, v: u64| {
        if (base..=window_end).contains(&v) && v.is_multiple_of(4096) {
            Ok(v)
        } else {
            Err(field_err(
                field,
                format!(
                    "{v:#x} is not a 4K-aligned GPA in the window [{base:#x}, {window_end:#x}]"
                ),
            ))
        }
    };
    if f.vcpu.is_empty() || f.vcpu.len() > MAX_VCPUS {
        return Err(field_err("vcpu", format!("1 to {MAX_VCPUS} vCPUs")));
    }
    let mut guests = Vec::new();
    let mut interrupts = 0u8;
    for (i, v) in f.vcpu.iter().enumerate() {
        let kind = GuestKind::parse(&v.guest).ok_or_else(|| {
            field_err(
                &format!("vcpu[{i}].guest"),
                format!(
                    "'{}' names no guest (known: {})",
                    v.guest,
                    GuestKind::ALL.map(|g| g.name()).join(", ")
                ),
            )
        })?;
        let start = in_window(
            &format!("vcpu[{i}].start"),
            v.start.value(&format!("vcpu[{i}].start"))?,
        )?;
        let end = in_window(
            &format!("vcpu[{i}].end"),
            v.end.value(&format!("vcpu[{i}].end"))?,
        )?;
        if end <= start {
            return Err(field_err(
                &format!("vcpu[{i}].end"),
                "must be above start".into(),
            ));
        }
        let tag = v.tag.unwrap_or(i as u16 + 1);
        let g = Guest::new(kind, Gpa(start), Gpa(end), tag);
        guests.push(if v.markers { g } else { g.without_markers() });
        interrupts = interrupts.max(v.interrupts);
    }
    if f.host.len() > MAX_HOSTS {
        return Err(field_err(
            "host",
            format!("at most {MAX_HOSTS} host actors"),
        ));
    }
    let mut scripts = Vec::new();
    for (h, host) in f.host.iter().enumerate() {
        if host.actions.len() > MAX_SCRIPT {
            return Err(field_err(
                &format!("host[{h}].actions"),
                format!("at most {MAX_SCRIPT}"),
            ));
        }
        let mut script = Vec::new();
        for (a, act) in host.actions.iter().enumerate() {
            let at = format!("host[{h}].actions[{a}]");
            let range = |act: &FileAction| -> Result<(Gfn, Gfn), ScenarioError> {
                let s = act
                    .start
                    .as_ref()
                    .ok_or_else(|| field_err(&format!("{at}.start"), "missing".into()))?;
                let e = act
                    .end
                    .as_ref()
                    .ok_or_else(|| field_err(&format!("{at}.end"), "missing".into()))?;
                let s = in_window(&format!("{at}.start"), s.value(&format!("{at}.start"))?)?;
                let e = in_window(&format!("{at}.end"), e.value(&format!("{at}.end"))?)?;
                if e <= s {
                    return Err(field_err(
                        &format!("{at}.end"),
                        "must be above start".into(),
                    ));
                }
                Ok((Gpa(s).gfn(), Gpa(e).gfn()))
            };
            let kind = match act.op.as_str() {
                "convert-to-shared" => Some(HostOpKind::ConvertToShared),
                "convert-to-private" => Some(HostOpKind::ConvertToPrivate),
                "punch-hole" => Some(HostOpKind::PunchHole),
                "split" => Some(HostOpKind::SplitBoundaries),
                "prefetch" => None,
                other => {
                    return Err(field_err(
                        &format!("{at}.op"),
                        format!(
                            "'{other}' (known: convert-to-shared, convert-to-private, punch-hole, split, prefetch)"
                        ),
                    ));
                }
            };
            script.push(match kind {
                Some(kind) => {
                    let (start, end) = range(act)?;
                    HostAction::Operation { kind, start, end }
                }
                None => {
                    let g = act
                        .gpa
                        .as_ref()
                        .ok_or_else(|| field_err(&format!("{at}.gpa"), "missing".into()))?;
                    let g = in_window(&format!("{at}.gpa"), g.value(&format!("{at}.gpa"))?)?;
                    HostAction::Prefetch(Gpa(g).align_down(PageLevel::Size4K).gfn())
                }
            });
        }
        scripts.push(script);
    }
    let expect = match &f.expect {
        None => None,
        Some(e) => Some(
            VERDICTS
                .into_iter()
                .find(|v| v.name() == e)
                .ok_or_else(|| {
                    field_err(
                        "expect",
                        format!(
                            "'{e}' names no verdict (known: {})",
                            VERDICTS.map(|v| v.name()).join(", ")
                        ),
                    )
                })?,
        ),
    };
    Ok(Scenario {
        name: f.name.unwrap_or_else(|| "unnamed".into()),
        profile,
        policy,
        config,
        tables: f.tables.map_or(2 * f.regions as usize + 2, |t| t as usize),
        schedules: f.schedules.unwrap_or(32),
        steps: f.steps.unwrap_or(50_000),
        expect,
        guests,
        interrupts,
        scripts,
    })
}

impl Scenario {
    /// The world at its start: a finalized TD, one guest_memfd memslot over the window.
    pub fn world(&self) -> Result<ScenarioWorld, ScenarioError> {
        let model = |e: KvmError| ScenarioError::Model(e.to_string());
        let gigs = self
            .config
            .gigs_needed()
            .map_err(|e| ScenarioError::Model(e.to_string()))?;
        let regions = self.config.regions as usize;
        let mut sept = Sept::new(self.config, boxed_sept(gigs, regions, self.tables))
            .map_err(|e| ScenarioError::Model(e.to_string()))?;
        sept.finalize();
        let mut kvm =
            Kvm::new(&self.config, boxed_kvm(gigs, regions, self.tables)).map_err(model)?;
        kvm.add_memslot(Memslot {
            base: self.config.base.gfn(),
            pages: u64::from(self.config.regions) * 512,
            guest_memfd: true,
        })
        .map_err(model)?;
        let scripts: Vec<&[HostAction]> = self.scripts.iter().map(Vec::as_slice).collect();
        World::new(
            sept,
            kvm,
            self.policy,
            &self.guests,
            &scripts,
            self.interrupts,
        )
        .map_err(model)
    }
}

/// What running a scenario under seeded schedules gave.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Schedules per verdict.
    pub verdicts: BTreeMap<&'static str, u32>,
    /// The first seed whose verdict differs from the expected one.
    pub first_unexpected: Option<(u64, &'static str)>,
    /// Counters summed over all schedules.
    pub metrics: Metrics,
    /// Steps taken in all.
    pub steps: u64,
}

/// Runs `scenario` under `schedules` seeds from `first_seed`.
pub fn run(scenario: &Scenario, first_seed: u64, schedules: u32) -> Result<Summary, ScenarioError> {
    let start = scenario.world()?;
    let mut sum = Summary::default();
    for seed in first_seed..first_seed + u64::from(schedules) {
        let v = start
            .run_seeded(seed, scenario.steps, &mut sum.metrics, &mut sum.steps)
            .map_err(|e| ScenarioError::Model(format!("seed {seed}: {e:?}")))?;
        *sum.verdicts.entry(v.name()).or_default() += 1;
        if sum.first_unexpected.is_none() && scenario.expect.is_some_and(|e| e != v) {
            sum.first_unexpected = Some((seed, v.name()));
        }
    }
    Ok(sum)
}
