//! Scenario files: a world described in TOML (module profile, policy, window, memslots with
//! folio orders, build time or runnable, vCPUs with their guest programs in stages, host
//! scripts, the scheduler, an expected verdict), parsed with line and field errors, and run
//! under seeded schedules. The format is documented in scenarios/README.md.

mod run;
mod storage;

use std::fmt;

use hugesept_core::abi::{Gfn, Gpa, PAGE_SIZE_2M, PageLevel};
use hugesept_core::guest::{Guest, GuestKind, MAILBOX_CHUNK_SHIFT};
use hugesept_core::kvm::{HostOpKind, Kvm, KvmError, Memslot};
use hugesept_core::policy::PolicyId;
use hugesept_core::sept::{ModuleProfile, Sept, SeptConfig};
use hugesept_core::world::{
    Choice, HostAction, Limits, MAX_HOSTS, MAX_LAZY_UNITS, MAX_SCRIPT, MAX_STAGES, MAX_VCPUS,
    PctScheduler, PriorityScheduler, RandomScheduler, Scheduler, Stepped, Verdict, World,
    WorldError,
};
use serde::Deserialize;

pub use run::{
    BUDGET_EXHAUSTED, RecordedRun, RunStats, Summary, coverage_2m, outcome_name, run, run_with,
};
pub use storage::{BoxedKvm, BoxedSept, boxed_kvm, boxed_sept};

/// A world over host-owned storage.
pub type ScenarioWorld = World<BoxedSept, BoxedKvm>;

/// The verdict name of a run that broke a safety invariant: the name summaries count it under,
/// traces carry and the explorer reports, beside the core's [`Verdict`] names.
pub const VIOLATION: &str = "invariant-violation";

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
    #[serde(default = "yes")]
    runnable: bool,
    schedules: Option<u32>,
    steps: Option<u32>,
    patience: Option<u32>,
    scheduler: Option<String>,
    order: Option<Vec<u8>>,
    expect: Option<String>,
    unaccepted: Option<FileRange>,
    #[serde(default)]
    memslot: Vec<FileMemslot>,
    #[serde(default)]
    vcpu: Vec<FileVcpu>,
    #[serde(default)]
    host: Vec<FileHost>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileRange {
    start: Num,
    end: Num,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileMemslot {
    start: Num,
    end: Num,
    #[serde(default = "yes")]
    guest_memfd: bool,
    folio_order: Option<u8>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileVcpu {
    guest: Option<String>,
    start: Option<Num>,
    end: Option<Num>,
    markers: Option<bool>,
    #[serde(default)]
    verify_only: bool,
    tag: Option<u16>,
    stride: Option<FileStride>,
    #[serde(default)]
    stage: Vec<FileStage>,
    #[serde(default)]
    interrupts: u8,
}

impl FileVcpu {
    /// The guest given directly in the [[vcpu]] table, as a one-stage program.
    fn single(&self, at: &str) -> Result<Option<FileStage>, ScenarioError> {
        let Some(guest) = &self.guest else {
            return Ok(None);
        };
        let missing = |f: &str| field_err(&format!("{at}.{f}"), "missing".into());
        Ok(Some(FileStage {
            guest: guest.clone(),
            start: self.start.clone().ok_or_else(|| missing("start"))?,
            end: self.end.clone().ok_or_else(|| missing("end"))?,
            markers: self.markers.unwrap_or(true),
            verify_only: self.verify_only,
            tag: self.tag,
            stride: self.stride.clone(),
        }))
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileStage {
    guest: String,
    start: Num,
    end: Num,
    #[serde(default = "yes")]
    markers: bool,
    #[serde(default)]
    verify_only: bool,
    tag: Option<u16>,
    stride: Option<FileStride>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct FileStride {
    index: u8,
    count: u8,
    chunk: Option<Num>,
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
    stage: Option<u8>,
}

/// How a scenario's schedules pick the next choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// Uniform among the enabled choices.
    Random,
    /// PCT with this bug depth.
    Pct(u8),
    /// A fixed priority order of actors (deterministic: one schedule).
    Priority,
}

impl SchedulerKind {
    /// The name scenario files and the command line use.
    pub fn name(self) -> String {
        match self {
            SchedulerKind::Random => "random".into(),
            SchedulerKind::Pct(d) => format!("pct (depth {d})"),
            SchedulerKind::Priority => "priority".into(),
        }
    }
}

/// A memslot of a scenario.
#[derive(Debug, Clone, Copy)]
pub struct ScenarioMemslot {
    /// First GPA (2 MiB aligned unless it is meant to leave misaligned edges).
    pub start: Gpa,
    /// One past the last.
    pub end: Gpa,
    /// Backed by guest_memfd.
    pub guest_memfd: bool,
    /// The guest_memfd folio order (0: 4K, 9: 2M, 18: 1G).
    pub folio_order: u8,
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
    /// Whether the TD starts finalized (else a host script finalizes it).
    pub runnable: bool,
    /// Seeded schedules to run.
    pub schedules: u32,
    /// Steps a schedule may take in all before it counts as livelock.
    pub steps: u32,
    /// Steps in a row without progress after which a schedule counts as livelock.
    pub patience: u32,
    /// How schedules pick choices.
    pub scheduler: SchedulerKind,
    /// The actor order of the priority scheduler.
    pub order: Vec<u8>,
    /// The verdict every schedule must end in, if stated.
    pub expect: Option<Verdict>,
    /// The memslots.
    pub memslots: Vec<ScenarioMemslot>,
    /// The lazy-accept bitmap's unaccepted range.
    pub unaccepted: Option<(Gpa, Gpa)>,
    programs: Vec<Vec<Guest>>,
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

/// The verdict with this name.
pub fn parse_verdict(name: &str) -> Option<Verdict> {
    VERDICTS.into_iter().find(|v| v.name() == name)
}

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
    let in_window = |field: &str, v: &Num| -> Result<u64, ScenarioError> {
        let v = v.value(field)?;
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
    let range = |at: &str, s: &Num, e: &Num| -> Result<(u64, u64), ScenarioError> {
        let s = in_window(&format!("{at}.start"), s)?;
        let e = in_window(&format!("{at}.end"), e)?;
        if e <= s {
            return Err(field_err(
                &format!("{at}.end"),
                "must be above start".into(),
            ));
        }
        Ok((s, e))
    };
    if f.vcpu.is_empty() || f.vcpu.len() > MAX_VCPUS {
        return Err(field_err("vcpu", format!("1 to {MAX_VCPUS} vCPUs")));
    }
    let mut programs = Vec::new();
    let mut interrupts = 0u8;
    for (i, v) in f.vcpu.iter().enumerate() {
        let single = v.single(&format!("vcpu[{i}]"))?;
        let stages: Vec<(String, &FileStage)> = match (&single, v.stage.is_empty()) {
            (Some(s), true) => vec![(format!("vcpu[{i}]"), s)],
            (None, false) => v
                .stage
                .iter()
                .enumerate()
                .map(|(k, s)| (format!("vcpu[{i}].stage[{k}]"), s))
                .collect(),
            (Some(_), false) => {
                return Err(field_err(
                    &format!("vcpu[{i}]"),
                    "either guest/start/end or [[vcpu.stage]] tables, not both".into(),
                ));
            }
            (None, true) => {
                return Err(field_err(
                    &format!("vcpu[{i}].guest"),
                    "missing (or give [[vcpu.stage]] tables)".into(),
                ));
            }
        };
        if stages.len() > MAX_STAGES {
            return Err(field_err(
                &format!("vcpu[{i}].stage"),
                format!("at most {MAX_STAGES} stages"),
            ));
        }
        let mut program = Vec::new();
        for (at, st) in stages {
            let kind = GuestKind::parse(&st.guest).ok_or_else(|| {
                field_err(
                    &format!("{at}.guest"),
                    format!(
                        "'{}' names no guest (known: {})",
                        st.guest,
                        GuestKind::ALL.map(|g| g.name()).join(", ")
                    ),
                )
            })?;
            let (start, end) = range(&at, &st.start, &st.end)?;
            let tag = st.tag.unwrap_or(i as u16 + 1);
            let mut g = Guest::new(kind, Gpa(start), Gpa(end), tag);
            if let Some(sd) = &st.stride {
                let chunk = match &sd.chunk {
                    Some(c) => c.value(&format!("{at}.stride.chunk"))?,
                    None => 1 << MAILBOX_CHUNK_SHIFT,
                };
                if !chunk.is_power_of_two() || chunk < PAGE_SIZE_2M {
                    return Err(field_err(
                        &format!("{at}.stride.chunk"),
                        "must be a power of two of at least 2 MiB".into(),
                    ));
                }
                if sd.count == 0 || sd.index >= sd.count {
                    return Err(field_err(
                        &format!("{at}.stride.index"),
                        "must be below count (count at least 1)".into(),
                    ));
                }
                g = g.strided(sd.index, sd.count, chunk.trailing_zeros() as u8);
            }
            if st.verify_only {
                g = g.verify_only();
            }
            program.push(if st.markers { g } else { g.without_markers() });
        }
        programs.push(program);
        interrupts = interrupts.max(v.interrupts);
    }
    let mut memslots = Vec::new();
    for (i, m) in f.memslot.iter().enumerate() {
        let (start, end) = range(&format!("memslot[{i}]"), &m.start, &m.end)?;
        let folio_order = m.folio_order.unwrap_or(9);
        if folio_order > 18 {
            return Err(field_err(
                &format!("memslot[{i}].folio_order"),
                "must be 0..=18".into(),
            ));
        }
        memslots.push(ScenarioMemslot {
            start: Gpa(start),
            end: Gpa(end),
            guest_memfd: m.guest_memfd,
            folio_order,
        });
    }
    if memslots.is_empty() {
        memslots.push(ScenarioMemslot {
            start: Gpa(base),
            end: Gpa(window_end),
            guest_memfd: true,
            folio_order: 9,
        });
    }
    let unaccepted = match &f.unaccepted {
        Some(r) => {
            let (s, e) = range("unaccepted", &r.start, &r.end)?;
            if !s.is_multiple_of(PAGE_SIZE_2M) || !e.is_multiple_of(PAGE_SIZE_2M) {
                return Err(field_err(
                    "unaccepted",
                    "the bitmap holds 2 MiB units: start and end must be 2 MiB aligned".into(),
                ));
            }
            if (e - s) / PAGE_SIZE_2M + (s - base) / PAGE_SIZE_2M > MAX_LAZY_UNITS as u64 {
                return Err(field_err(
                    "unaccepted",
                    format!("the bitmap holds the window's first {MAX_LAZY_UNITS} units"),
                ));
            }
            Some((Gpa(s), Gpa(e)))
        }
        None => None,
    };
    if f.host.len() > MAX_HOSTS {
        return Err(field_err(
            "host",
            format!("at most {MAX_HOSTS} host actors"),
        ));
    }
    let mut scripts = Vec::new();
    let mut finalizes = false;
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
            let gfns = |act: &FileAction| -> Result<(Gfn, Gfn), ScenarioError> {
                let s = act
                    .start
                    .as_ref()
                    .ok_or_else(|| field_err(&format!("{at}.start"), "missing".into()))?;
                let e = act
                    .end
                    .as_ref()
                    .ok_or_else(|| field_err(&format!("{at}.end"), "missing".into()))?;
                let (s, e) = range(&at, s, e)?;
                Ok((Gpa(s).gfn(), Gpa(e).gfn()))
            };
            let op = |kind| -> Result<HostAction, ScenarioError> {
                let (start, end) = gfns(act)?;
                Ok(HostAction::Operation { kind, start, end })
            };
            script.push(match act.op.as_str() {
                "convert-to-shared" => op(HostOpKind::ConvertToShared)?,
                "convert-to-private" => op(HostOpKind::ConvertToPrivate)?,
                "punch-hole" => op(HostOpKind::PunchHole)?,
                "split" => op(HostOpKind::SplitBoundaries)?,
                "init-mem-region" => {
                    let (start, end) = gfns(act)?;
                    HostAction::InitMemRegion { start, end }
                }
                "finalize" => {
                    finalizes = true;
                    HostAction::Finalize
                }
                "await-stage" => HostAction::AwaitStage(
                    act.stage
                        .ok_or_else(|| field_err(&format!("{at}.stage"), "missing".into()))?,
                ),
                "prefetch" => {
                    let g = act
                        .gpa
                        .as_ref()
                        .ok_or_else(|| field_err(&format!("{at}.gpa"), "missing".into()))?;
                    let g = in_window(&format!("{at}.gpa"), g)?;
                    HostAction::Prefetch(Gpa(g).align_down(PageLevel::Size4K).gfn())
                }
                other => {
                    return Err(field_err(
                        &format!("{at}.op"),
                        format!(
                            "'{other}' (known: convert-to-shared, convert-to-private, punch-hole, \
                             split, prefetch, init-mem-region, finalize, await-stage)"
                        ),
                    ));
                }
            });
        }
        scripts.push(script);
    }
    if !f.runnable && !finalizes {
        return Err(field_err(
            "runnable",
            "a TD that starts at build time needs a host action `finalize`".into(),
        ));
    }
    let expect = match &f.expect {
        None => None,
        Some(e) => Some(parse_verdict(e).ok_or_else(|| {
            field_err(
                "expect",
                format!(
                    "'{e}' names no verdict (known: {})",
                    VERDICTS.map(|v| v.name()).join(", ")
                ),
            )
        })?),
    };
    let scheduler = match f.scheduler.as_deref() {
        None | Some("random") => SchedulerKind::Random,
        Some("pct") => SchedulerKind::Pct(3),
        Some("priority") => SchedulerKind::Priority,
        Some(other) => {
            return Err(field_err(
                "scheduler",
                format!("'{other}' (known: random, pct, priority)"),
            ));
        }
    };
    let order = f.order.unwrap_or_default();
    if let Some(bad) = order
        .iter()
        .find(|&&a| usize::from(a) >= MAX_VCPUS + MAX_HOSTS)
    {
        return Err(field_err(
            "order",
            format!(
                "{bad} names no actor (vCPUs 0..{MAX_VCPUS}, host actors {MAX_VCPUS}..{})",
                MAX_VCPUS + MAX_HOSTS
            ),
        ));
    }
    Ok(Scenario {
        name: f.name.unwrap_or_else(|| "unnamed".into()),
        profile,
        policy,
        config,
        tables: f.tables.map_or(f.regions as usize, |t| t as usize),
        runnable: f.runnable,
        schedules: if scheduler == SchedulerKind::Priority {
            1
        } else {
            f.schedules.unwrap_or(32)
        },
        steps: f.steps.unwrap_or(5_000_000),
        patience: f.patience.unwrap_or(20_000).max(1),
        scheduler,
        order,
        expect,
        memslots,
        unaccepted,
        programs,
        interrupts,
        scripts,
    })
}

impl Scenario {
    /// The world at its start: the TD finalized (unless it starts at build time), the
    /// memslots with their folio orders, the lazy-accept bitmap set.
    pub fn world(&self) -> Result<ScenarioWorld, ScenarioError> {
        let model = |e: KvmError| ScenarioError::Model(e.to_string());
        let world_error = |e: WorldError| ScenarioError::Model(e.to_string());
        let gigs = self
            .config
            .gigs_needed()
            .map_err(|e| ScenarioError::Model(e.to_string()))?;
        let regions = self.config.regions as usize;
        let mut sept = Sept::new(self.config, boxed_sept(gigs, regions, self.tables))
            .map_err(|e| ScenarioError::Model(e.to_string()))?;
        if self.runnable {
            sept.finalize();
        }
        let mut kvm =
            Kvm::new(&self.config, boxed_kvm(gigs, regions, self.tables)).map_err(model)?;
        for m in &self.memslots {
            kvm.add_memslot(Memslot {
                base: m.start.gfn(),
                pages: (m.end.raw() - m.start.raw()) >> 12,
                guest_memfd: m.guest_memfd,
            })
            .map_err(model)?;
            let folio = Kvm::<BoxedKvm>::folio_level(m.folio_order);
            let mut g = m.start.align_down(PageLevel::Size2M);
            while g < m.end {
                kvm.set_folio(g.gfn(), folio).map_err(model)?;
                g = Gpa(g.raw() + PAGE_SIZE_2M);
            }
        }
        let scripts: Vec<&[HostAction]> = self.scripts.iter().map(Vec::as_slice).collect();
        let programs: Vec<&[Guest]> = self.programs.iter().map(Vec::as_slice).collect();
        let mut w =
            World::with_programs(sept, kvm, self.policy, &programs, &scripts, self.interrupts)
                .map_err(world_error)?;
        let lazy = self
            .programs
            .iter()
            .flatten()
            .any(|g| g.kind() == GuestKind::LinuxLazy);
        match self.unaccepted {
            Some((s, e)) => w.set_unaccepted(s, e).map_err(world_error)?,
            None if lazy => {
                let end = Gpa(self.config.base.raw()
                    + (self.config.regions.min(MAX_LAZY_UNITS as u32) as u64) * PAGE_SIZE_2M);
                w.set_unaccepted(self.config.base, end)
                    .map_err(world_error)?
            }
            None => {}
        }
        Ok(w)
    }

    /// A scheduler of this scenario's kind for `seed`.
    pub fn scheduler(&self, seed: u64) -> AnyScheduler {
        match self.scheduler {
            SchedulerKind::Random => AnyScheduler::Random(RandomScheduler::new(seed)),
            SchedulerKind::Pct(d) => {
                AnyScheduler::Pct(PctScheduler::new(seed, d, self.steps.min(2_000)))
            }
            SchedulerKind::Priority => AnyScheduler::Priority(PriorityScheduler::new(&self.order)),
        }
    }

    /// The script of host actor `host` (empty for an actor the scenario does not have).
    pub fn script(&self, host: usize) -> &[HostAction] {
        self.scripts.get(host).map_or(&[], Vec::as_slice)
    }

    /// The limits of one schedule.
    pub fn limits(&self) -> Limits {
        Limits {
            bound: self.steps,
            patience: self.patience,
        }
    }
}

/// One of the core's schedulers.
#[derive(Debug, Clone, Copy)]
pub enum AnyScheduler {
    /// Uniform.
    Random(RandomScheduler),
    /// PCT.
    Pct(PctScheduler),
    /// Fixed order.
    Priority(PriorityScheduler),
}

impl Scheduler for AnyScheduler {
    fn pick(&mut self, step: u32, choices: &[Choice]) -> usize {
        match self {
            AnyScheduler::Random(s) => s.pick(step, choices),
            AnyScheduler::Pct(s) => s.pick(step, choices),
            AnyScheduler::Priority(s) => s.pick(step, choices),
        }
    }

    fn feedback(&mut self, choice: Choice, stepped: Stepped) {
        match self {
            AnyScheduler::Random(s) => s.feedback(choice, stepped),
            AnyScheduler::Pct(s) => s.feedback(choice, stepped),
            AnyScheduler::Priority(s) => s.feedback(choice, stepped),
        }
    }
}
