//! Scenario files: a world described in TOML (module profile, policy, window, memslots with
//! folio orders, build time or runnable, vCPUs with their guest programs in stages, host
//! scripts, the scheduler, an expected verdict), parsed with line and field errors (every
//! number range-checked, so a world never outgrows what the models hold) and warnings, and run
//! under seeded schedules. The format and its limits are documented in scenarios/README.md.

pub mod random;
mod run;
mod storage;

use std::fmt;

use hugesept_core::abi::{Gfn, Gpa, PAGE_SIZE_2M, PageLevel};
use hugesept_core::guest::{Guest, GuestKind, MAILBOX_CHUNK_SHIFT};
use hugesept_core::kvm::{HostOpKind, Kvm, KvmError, MAX_MEMSLOTS, Memslot};
use hugesept_core::payload::{MAX_BOOT_VCPUS, ProgramSpec, StrideSpec};
use hugesept_core::policy::PolicyId;
use hugesept_core::sept::{Content, MAX_IN_FLIGHT, MAX_SLOTS, ModuleProfile, Sept, SeptConfig};
use hugesept_core::world::{
    Choice, HostAction, LAZY_WORDS, Limits, MAX_HOSTS, MAX_LAZY_UNITS, MAX_SCRIPT, MAX_STAGES,
    MAX_VCPUS, MAX_WORLD_VCPUS, PctScheduler, PriorityScheduler, RandomScheduler, Scheduler,
    Stepped, UnitBitmap, Verdict, World, WorldError, first_host_actor,
};
use serde::Deserialize;

pub use run::{
    BUDGET_EXHAUSTED, METRIC_ROWS, MetricRow, RecordedRun, RunStats, Summary, coverage_2m,
    outcome_name, run, run_with,
};
pub use storage::{BoxedKvm, BoxedSept, GrowingTables, boxed_kvm, boxed_sept};

/// A world over host-owned storage, with room for `V` vCPUs and `F` in-flight slots: by
/// default four, the worlds every command takes ([`WideWorld`] for more).
pub type ScenarioWorld<
    const V: usize = MAX_VCPUS,
    const F: usize = MAX_IN_FLIGHT,
    const L: usize = LAZY_WORDS,
> = World<BoxedSept, BoxedKvm, V, F, L>;

/// A world with room for the most vCPUs a scenario may have ([`MAX_WORLD_VCPUS`]) and a
/// lazy-accept bitmap over the largest window ([`MAX_REGIONS`] units): what `sim` runs a
/// scenario in that a default world cannot hold ([`Scenario::is_wide`]).
pub type WideWorld = ScenarioWorld<MAX_WORLD_VCPUS, MAX_SLOTS, WIDE_LAZY_WORDS>;

/// The world the VMM runs every scenario in: as many vCPUs as the payload's boot block holds
/// ([`MAX_BOOT_VCPUS`]), a slot for each actor, the default lazy-accept bitmap. Its steps cost
/// KVM exits, beside which the size is free; a [`WideWorld`] would be too large for the stacks
/// of the threads that build it.
pub type RunWorld = ScenarioWorld<MAX_BOOT_VCPUS, { MAX_BOOT_VCPUS + MAX_HOSTS }, LAZY_WORDS>;

/// A world of up to four vCPUs with a [`WideWorld`]'s lazy-accept bitmap: what `sim` runs a
/// scenario in that lazily accepts more memory than a default world tracks.
pub type LargeMemoryWorld = ScenarioWorld<MAX_VCPUS, MAX_IN_FLIGHT, WIDE_LAZY_WORDS>;

/// Words of a [`WideWorld`]'s lazy-accept bitmap.
pub const WIDE_LAZY_WORDS: usize = MAX_REGIONS as usize / 64;

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

/// 2 MiB regions a scenario's window holds at most (64 GiB). The storage of a world grows with its regions and with the 4K
/// tables it takes (storage.rs): region records are about 1.3 MB at this limit, and each
/// table taken adds 4 KiB (S-EPT) and 4 KiB (mirror).
pub const MAX_REGIONS: u64 = 32768;
/// The largest window, in bytes (also the largest stride chunk).
pub const MAX_WINDOW: u64 = MAX_REGIONS * PAGE_SIZE_2M;
/// Seeded schedules a scenario may ask for (each keeps its numbers in the [`Summary`]).
pub const MAX_SCHEDULES: u64 = 1_000_000;
/// Steps one schedule may take at most, and the most `patience` (a trace records a choice per
/// step: at this limit about 150 MB of text).
pub const MAX_STEPS: u64 = 50_000_000;
/// The guest_memfd folio orders a memslot may give: those of a 4K, 2M and 1G page, the levels
/// [`Kvm::folio_level`] maps folios to (shared/reference/kvm-fault-path.md, fault-in).
pub const FOLIO_ORDERS: [u8; 3] = [0, 9, 18];

/// `value` of `field` as a `T`, if it lies in `lo..=hi`; else an error naming the range and
/// where the limit comes from (`why`).
fn bounded<T: TryFrom<u64>>(
    field: &str,
    value: u64,
    lo: u64,
    hi: u64,
    why: &str,
) -> Result<T, ScenarioError> {
    if (lo..=hi).contains(&value)
        && let Ok(v) = T::try_from(value)
    {
        return Ok(v);
    }
    Err(field_err(
        field,
        format!("{value} is outside {lo}..={hi} ({why})"),
    ))
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
    regions: u64,
    tables: Option<u64>,
    #[serde(default = "yes")]
    runnable: bool,
    schedules: Option<u64>,
    steps: Option<u64>,
    patience: Option<u64>,
    scheduler: Option<String>,
    order: Option<Vec<u64>>,
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
    folio_order: Option<u64>,
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
    tag: Option<u64>,
    stride: Option<FileStride>,
    #[serde(default)]
    stage: Vec<FileStage>,
    #[serde(default)]
    interrupts: u64,
    /// This table stands for `count` vCPUs, numbered one after another.
    count: Option<u64>,
    /// How those vCPUs share each stage's range ([`Share`]).
    share: Option<String>,
}

/// How the `count` vCPUs of one [[vcpu]] table share each stage's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Share {
    /// Each runs the whole range.
    Whole,
    /// Each takes one contiguous share of the range's 2 MiB units, by its number among them:
    /// `units / count` units each, the remainder one unit each to the lowest numbers
    /// (asterinas ostd/src/mm/frame/unaccepted.rs, pull request 3640: every CPU accepts its
    /// share of the unaccepted bitmap, the APs early in their entry path, the BSP after it
    /// booted them).
    Contiguous,
    /// Each takes every `count`-th 32 MiB chunk (OVMF's and td-shim's mailbox,
    /// shared/reference/guests.md): `stride` with the vCPU's number as its index.
    Strided,
}

impl Share {
    /// The share named in a table.
    fn parse(at: &str, name: &str) -> Result<Share, ScenarioError> {
        match name {
            "whole" => Ok(Share::Whole),
            "contiguous" => Ok(Share::Contiguous),
            "strided" => Ok(Share::Strided),
            other => Err(field_err(
                &format!("{at}.share"),
                format!("'{other}' is not whole, contiguous or strided"),
            )),
        }
    }

    /// How a guest of `kind` shares its range when it runs on several vCPUs: asterinas in
    /// contiguous shares, OVMF and td-shim by their mailbox's stride, any other whole.
    fn default_for(kind: GuestKind) -> Share {
        match kind {
            GuestKind::Asterinas => Share::Contiguous,
            GuestKind::Ovmf | GuestKind::TdShim => Share::Strided,
            _ => Share::Whole,
        }
    }
}

/// Copy `index` of `count`'s contiguous share of the 2 MiB units of [start, end) (both 2 MiB
/// aligned): [`Share::Contiguous`].
fn contiguous_share(start: u64, end: u64, index: u64, count: u64) -> (u64, u64) {
    let units = (end - start) / PAGE_SIZE_2M;
    let (each, extra) = (units / count, units % count);
    let first = index * each + index.min(extra);
    let len = each + u64::from(index < extra);
    (
        start + first * PAGE_SIZE_2M,
        start + (first + len) * PAGE_SIZE_2M,
    )
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
    tag: Option<u64>,
    stride: Option<FileStride>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct FileStride {
    index: u64,
    count: u64,
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
    stage: Option<u64>,
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
    /// The most 4K tables each model's pool may take (pools grow up to it).
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
    /// What the file asks for that the model runs but that is likely not meant (markers that
    /// vCPUs write over each other's, a second `finalize`): one sentence each, naming the
    /// fields.
    pub warnings: Vec<String>,
    programs: Vec<Vec<ProgramSpec>>,
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

/// The S-EPT window a scenario's GPAs must lie in.
#[derive(Clone, Copy)]
struct Window {
    base: u64,
    end: u64,
}

impl Window {
    /// The 4K-aligned GPA `v` of `field`, inside the window (its end included).
    fn gpa(self, field: &str, v: &Num) -> Result<u64, ScenarioError> {
        let v = v.value(field)?;
        if (self.base..=self.end).contains(&v) && v.is_multiple_of(4096) {
            Ok(v)
        } else {
            Err(field_err(
                field,
                format!(
                    "{v:#x} is not a 4K-aligned GPA in the window [{:#x}, {:#x}]",
                    self.base, self.end
                ),
            ))
        }
    }

    /// The range from `at`.start to `at`.end (exclusive) in the window, not empty.
    fn range(self, at: &str, s: &Num, e: &Num) -> Result<(u64, u64), ScenarioError> {
        let s = self.gpa(&format!("{at}.start"), s)?;
        let e = self.gpa(&format!("{at}.end"), e)?;
        if e <= s {
            return Err(field_err(
                &format!("{at}.end"),
                "must be above start".into(),
            ));
        }
        Ok((s, e))
    }
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
    let regions: u32 = bounded(
        "regions",
        f.regions,
        1,
        MAX_REGIONS,
        "the window holds at most 64 GiB of 2 MiB regions",
    )?;
    // A 2 MiB region holds at most one 4K table in either model (sept::Region::table,
    // kvm::KvmRegion::table): a pool larger than the window's regions is never used.
    let tables: usize = match f.tables {
        Some(t) => bounded(
            "tables",
            t,
            0,
            u64::from(regions),
            &format!("each of the window's {regions} regions holds at most one 4K table"),
        )?,
        None => regions as usize,
    };
    let mut config = SeptConfig::new(Gpa(base), regions);
    config.profile = profile;
    config.pending_ve_disable = !f.ve;
    config
        .gigs_needed()
        .map_err(|e| field_err("base", e.to_string()))?;
    let window = Window {
        base,
        end: base + u64::from(regions) * PAGE_SIZE_2M,
    };
    let Vcpus {
        programs,
        interrupts,
        marks,
    } = parse_vcpus(&f.vcpu, window)?;
    let memslots = parse_memslots(&f.memslot, window)?;
    let unaccepted = match &f.unaccepted {
        Some(r) => {
            let (s, e) = window.range("unaccepted", &r.start, &r.end)?;
            if !s.is_multiple_of(PAGE_SIZE_2M) || !e.is_multiple_of(PAGE_SIZE_2M) {
                return Err(field_err(
                    "unaccepted",
                    "the bitmap holds 2 MiB units: start and end must be 2 MiB aligned".into(),
                ));
            }
            // Any range of the window fits: past the default world's bitmap
            // ([`MAX_LAZY_UNITS`] units) the scenario runs in a [`WideWorld`].
            Some((Gpa(s), Gpa(e)))
        }
        None => None,
    };
    let most_stages = programs.iter().map(Vec::len).max().unwrap_or(1);
    let (scripts, mut warnings) = parse_hosts(&f.host, window, f.runnable, most_stages)?;
    warnings.extend(marker_warnings(&marks));
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
    let order = parse_order(
        f.order.as_deref().unwrap_or_default(),
        programs.len(),
        scripts.len(),
    )?;
    let schedules = match f.schedules {
        Some(n) => bounded("schedules", n, 1, MAX_SCHEDULES, "seeded schedules to run")?,
        None => 32,
    };
    let steps = match f.steps {
        Some(n) => bounded("steps", n, 1, MAX_STEPS, "steps a schedule may take in all")?,
        None => 5_000_000,
    };
    let patience = match f.patience {
        Some(n) => bounded(
            "patience",
            n,
            1,
            MAX_STEPS,
            "steps in a row without progress that make a livelock",
        )?,
        None => 20_000,
    };
    if patience > steps && expect == Some(Verdict::Livelock) {
        warnings.push(format!(
            "`patience` {patience} exceeds `steps` {steps}: no run can go {patience} steps \
             without progress, so none ends in the livelock this file expects (a run that uses \
             its budget has no verdict)"
        ));
    }
    Ok(Scenario {
        name: f.name.unwrap_or_else(|| "unnamed".into()),
        profile,
        policy,
        config,
        tables,
        runnable: f.runnable,
        schedules: if scheduler == SchedulerKind::Priority {
            1
        } else {
            schedules
        },
        steps,
        patience,
        scheduler,
        order,
        expect,
        memslots,
        unaccepted,
        warnings,
        programs,
        interrupts,
        scripts,
    })
}

/// What one stage of a vCPU's program does with markers, for [`marker_warnings`].
struct Marking {
    /// The vCPU.
    vcpu: usize,
    /// The stage.
    stage: usize,
    /// Its field, e.g. `vcpu[1].stage[0]`.
    at: String,
    /// Its marker's tag.
    tag: u16,
    /// It writes markers over its spans (and reads them back at its end).
    writes: bool,
    /// It only reads back the markers an earlier stage of its vCPU wrote (`verify_only`).
    reads_back: bool,
    /// Its range, or its chunks of it when strided: ascending, disjoint.
    spans: Vec<(u64, u64)>,
}

/// What the [[vcpu]] tables give.
struct Vcpus {
    /// Each vCPU's program.
    programs: Vec<Vec<ProgramSpec>>,
    /// The interrupts a vCPU may take.
    interrupts: u8,
    /// What each stage does with markers.
    marks: Vec<Marking>,
}

/// The [[vcpu]] tables.
fn parse_vcpus(tables: &[FileVcpu], window: Window) -> Result<Vcpus, ScenarioError> {
    // Each table's vCPUs: (table, its number among the table's, the table's count, share).
    let mut vcpus = Vec::new();
    for (t, v) in tables.iter().enumerate() {
        let at = format!("vcpu[{t}]");
        let count = match v.count {
            Some(c) => bounded::<u64>(
                &format!("{at}.count"),
                c,
                1,
                MAX_WORLD_VCPUS as u64,
                "vCPUs a world holds",
            )?,
            None => 1,
        };
        // The table's share when it names one; else each stage's guest decides (below).
        let share = v
            .share
            .as_deref()
            .map(|name| Share::parse(&at, name))
            .transpose()?;
        for copy in 0..count {
            vcpus.push((t, copy, count, share, v));
        }
    }
    if vcpus.is_empty() || vcpus.len() > MAX_WORLD_VCPUS {
        return Err(field_err(
            "vcpu",
            format!(
                "{} vCPUs; a scenario has 1 to {MAX_WORLD_VCPUS} (exhaustive search: up to \
                 {MAX_VCPUS})",
                vcpus.len()
            ),
        ));
    }
    let total = vcpus.len();
    let mut programs = Vec::new();
    let mut interrupts = 0u8;
    let mut marks = Vec::new();
    for (i, &(t, copy, count, share, v)) in vcpus.iter().enumerate() {
        let name = if count > 1 {
            format!("vcpu[{t}]#{copy}")
        } else {
            format!("vcpu[{t}]")
        };
        let single = v.single(&name)?;
        let stages: Vec<(String, &FileStage)> = match (&single, v.stage.is_empty()) {
            (Some(s), true) => vec![(name.clone(), s)],
            (None, false) => v
                .stage
                .iter()
                .enumerate()
                .map(|(k, s)| (format!("{name}.stage[{k}]"), s))
                .collect(),
            (Some(_), false) => {
                return Err(field_err(
                    &name,
                    "either guest/start/end or [[vcpu.stage]] tables, not both".into(),
                ));
            }
            (None, true) => {
                return Err(field_err(
                    &format!("{name}.guest"),
                    "missing (or give [[vcpu.stage]] tables)".into(),
                ));
            }
        };
        if stages.len() > MAX_STAGES {
            return Err(field_err(
                &format!("{name}.stage"),
                format!("at most {MAX_STAGES} stages"),
            ));
        }
        let mut program = Vec::new();
        for (k, (at, st)) in stages.into_iter().enumerate() {
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
            let (mut start, mut end) = window.range(&at, &st.start, &st.end)?;
            // The stage's share: the table's, else its guest's own when the table stands for
            // several vCPUs and the stage gives no stride of its own.
            let share = match share {
                Some(_) if st.stride.is_some() => {
                    return Err(field_err(
                        &format!("{at}.stride"),
                        "give either the table's share or a stride, not both".into(),
                    ));
                }
                Some(s) => s,
                None if count > 1 && st.stride.is_none() => Share::default_for(kind),
                None => Share::Whole,
            };
            if (share == Share::Strided || st.stride.is_some()) && kind.accepts_by_unit() {
                return Err(field_err(
                    &format!("{at}.guest"),
                    format!(
                        "{kind} claims whole 2 MiB units through the unaccepted bitmap: it \
                         shares a range that way, not by a mailbox stride"
                    ),
                ));
            }
            if share == Share::Contiguous {
                if start % PAGE_SIZE_2M != 0 || end % PAGE_SIZE_2M != 0 {
                    return Err(field_err(
                        &at,
                        format!(
                            "[{start:#x}, {end:#x}) is shared in 2 MiB units (share = \
                             \"contiguous\"): both ends must be 2 MiB aligned"
                        ),
                    ));
                }
                (start, end) = contiguous_share(start, end, copy, count);
            }
            // Tags above Content::MAX_TAG fold onto it, and tag 0 is what
            // KVM_TDX_INIT_MEM_REGION adds (kvm/fault.rs, the PAGE.ADD source content).
            let tag = match st.tag {
                Some(t) => bounded(
                    &format!("{at}.tag"),
                    t,
                    1,
                    u64::from(Content::MAX_TAG),
                    "0 is the initial image's content; larger tags are not kept distinct",
                )?,
                None => u16::try_from(i + 1).unwrap_or(Content::MAX_TAG),
            };
            let mut spec = ProgramSpec {
                kind,
                start: Gpa(start),
                end: Gpa(end),
                tag,
                markers: st.markers,
                verify_only: st.verify_only,
                stride: None,
            };
            let mut spans = vec![(start, end)];
            let shared_stride = (share == Share::Strided).then_some(FileStride {
                index: copy,
                count,
                chunk: None,
            });
            if let Some(sd) = shared_stride.as_ref().or(st.stride.as_ref()) {
                let (index, count, chunk_shift) = parse_stride(&at, sd, total)?;
                spans = stride_spans(start, end, index, count, 1 << chunk_shift);
                spec.stride = Some(StrideSpec {
                    index,
                    count,
                    chunk_shift,
                });
            }
            // single-accept writes no markers; adversarial writes none either (guest::GuestKind).
            let marking = st.markers && kind != GuestKind::SingleAccept;
            marks.push(Marking {
                vcpu: i,
                stage: k,
                at: at.clone(),
                tag,
                writes: marking && !st.verify_only && kind != GuestKind::Adversarial,
                reads_back: marking && st.verify_only,
                spans,
            });
            program.push(spec);
        }
        programs.push(program);
        let at = format!("{name}.interrupts");
        interrupts = interrupts.max(bounded(
            &at,
            v.interrupts,
            0,
            u64::from(u8::MAX),
            "interrupts a vCPU may take during 2M accepts",
        )?);
    }
    Ok(Vcpus {
        programs,
        interrupts,
        marks,
    })
}

/// A stage's `stride`: its index, count and chunk shift. The vCPUs that share a range through
/// OVMF's or td-shim's mailbox are among the scenario's `vcpus` (shared/reference/guests.md).
fn parse_stride(at: &str, sd: &FileStride, vcpus: usize) -> Result<(u8, u8, u8), ScenarioError> {
    if sd.count == 0 || sd.index >= sd.count {
        return Err(field_err(
            &format!("{at}.stride.index"),
            format!(
                "{} must be below count, {} (count at least 1)",
                sd.index, sd.count
            ),
        ));
    }
    let chunk = match &sd.chunk {
        Some(c) => c.value(&format!("{at}.stride.chunk"))?,
        None => 1 << MAILBOX_CHUNK_SHIFT,
    };
    if !chunk.is_power_of_two() || !(PAGE_SIZE_2M..=MAX_WINDOW).contains(&chunk) {
        return Err(field_err(
            &format!("{at}.stride.chunk"),
            format!("{chunk:#x} is not a power of two from 2 MiB to 64 GiB (the largest window)"),
        ));
    }
    let count: u8 = bounded(
        &format!("{at}.stride.count"),
        sd.count,
        1,
        vcpus as u64,
        &format!("the vCPUs sharing the range; the scenario has {vcpus}"),
    )?;
    let index = u8::try_from(sd.index)
        .map_err(|_| field_err(&format!("{at}.stride.index"), "too large".into()))?;
    let shift = u8::try_from(chunk.trailing_zeros())
        .map_err(|_| field_err(&format!("{at}.stride.chunk"), "too large".into()))?;
    Ok((index, count, shift))
}

/// The chunks of [start, end) a strided program owns: chunk k of `chunk` bytes from `start`
/// when k mod `count` = `index` (guest::Guest::strided).
fn stride_spans(start: u64, end: u64, index: u8, count: u8, chunk: u64) -> Vec<(u64, u64)> {
    let mut spans = Vec::new();
    let mut s = start;
    let mut k = 0u64;
    while s < end {
        let e = s.saturating_add(chunk).min(end);
        if k % u64::from(count) == u64::from(index) {
            spans.push((s, e));
        }
        s = e;
        k += 1;
    }
    spans
}

/// The [[memslot]] tables (default: one guest_memfd memslot over the window).
fn parse_memslots(
    slots: &[FileMemslot],
    window: Window,
) -> Result<Vec<ScenarioMemslot>, ScenarioError> {
    if slots.len() > MAX_MEMSLOTS {
        return Err(field_err(
            "memslot",
            format!(
                "{} memslots; the model's VM holds at most {MAX_MEMSLOTS}",
                slots.len()
            ),
        ));
    }
    let mut memslots: Vec<ScenarioMemslot> = Vec::new();
    for (i, m) in slots.iter().enumerate() {
        let (start, end) = window.range(&format!("memslot[{i}]"), &m.start, &m.end)?;
        if let Some((j, o)) = memslots
            .iter()
            .enumerate()
            .find(|(_, o)| o.start.raw() < end && start < o.end.raw())
        {
            return Err(field_err(
                &format!("memslot[{i}]"),
                format!(
                    "[{start:#x}, {end:#x}) overlaps memslot[{j}] [{:#x}, {:#x}) (KVM refuses \
                     overlapping memslots)",
                    o.start.raw(),
                    o.end.raw()
                ),
            ));
        }
        let folio_order = match m.folio_order {
            None => 9,
            Some(o) => FOLIO_ORDERS
                .into_iter()
                .find(|&f| u64::from(f) == o)
                .ok_or_else(|| {
                    field_err(
                        &format!("memslot[{i}].folio_order"),
                        format!("{o} is not a folio order of the model: 0 (4K), 9 (2M) or 18 (1G)"),
                    )
                })?,
        };
        memslots.push(ScenarioMemslot {
            start: Gpa(start),
            end: Gpa(end),
            guest_memfd: m.guest_memfd,
            folio_order,
        });
    }
    if memslots.is_empty() {
        memslots.push(ScenarioMemslot {
            start: Gpa(window.base),
            end: Gpa(window.end),
            guest_memfd: true,
            folio_order: 9,
        });
    }
    Ok(memslots)
}

/// The [[host]] tables: each host actor's script, and the warnings they give. `runnable`: the
/// TD starts finalized; `most_stages`: the most stages a vCPU's program has.
fn parse_hosts(
    hosts: &[FileHost],
    window: Window,
    runnable: bool,
    most_stages: usize,
) -> Result<(Vec<Vec<HostAction>>, Vec<String>), ScenarioError> {
    if hosts.len() > MAX_HOSTS {
        return Err(field_err(
            "host",
            format!("at most {MAX_HOSTS} host actors"),
        ));
    }
    let mut scripts = Vec::new();
    let mut warnings = Vec::new();
    // The first `finalize` in any script.
    let mut first_finalize: Option<String> = None;
    for (h, host) in hosts.iter().enumerate() {
        if host.actions.len() > MAX_SCRIPT {
            return Err(field_err(
                &format!("host[{h}].actions"),
                format!("at most {MAX_SCRIPT}"),
            ));
        }
        let mut script = Vec::new();
        // The first `finalize` in this script.
        let mut finalized_here: Option<String> = None;
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
                let (s, e) = window.range(&at, s, e)?;
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
                    // KVM_TDX_INIT_MEM_REGION works only before finalization (PAGE.ADD is
                    // build time only, shared/reference/tdx-module.md; kvm::FaultPath::
                    // init_mem_region): after it the action would do nothing.
                    let refused = "KVM_TDX_INIT_MEM_REGION is refused once the TD is finalized \
                                   (PAGE.ADD is build time only), so it would add nothing";
                    if runnable {
                        return Err(field_err(
                            &format!("{at}.op"),
                            format!(
                                "init-mem-region on a TD that starts runnable (runnable = \
                                 true): {refused}"
                            ),
                        ));
                    }
                    if let Some(fin) = &finalized_here {
                        return Err(field_err(
                            &format!("{at}.op"),
                            format!("init-mem-region after the finalize at {fin}: {refused}"),
                        ));
                    }
                    let (start, end) = gfns(act)?;
                    HostAction::InitMemRegion { start, end }
                }
                "finalize" => {
                    // TDH.MR.FINALIZE on a runnable TD returns TDX_OP_STATE_INCORRECT
                    // (sept::Sept::finalize): the action does nothing.
                    if runnable {
                        return Err(field_err(
                            &format!("{at}.op"),
                            "finalize on a TD that starts runnable (runnable = true): \
                             TDH.MR.FINALIZE refuses it with TDX_OP_STATE_INCORRECT; a TD at \
                             build time needs runnable = false"
                                .into(),
                        ));
                    }
                    match &first_finalize {
                        Some(first) => warnings.push(format!(
                            "{at}: a second finalize (the first is {first}): TDH.MR.FINALIZE \
                             refuses it with TDX_OP_STATE_INCORRECT and it does nothing"
                        )),
                        None => first_finalize = Some(at.clone()),
                    }
                    finalized_here.get_or_insert_with(|| at.clone());
                    HostAction::Finalize
                }
                "await-stage" => {
                    let n = act
                        .stage
                        .ok_or_else(|| field_err(&format!("{at}.stage"), "missing".into()))?;
                    HostAction::AwaitStage(bounded(
                        &format!("{at}.stage"),
                        n,
                        1,
                        most_stages as u64,
                        &format!(
                            "await-stage n waits until every vCPU has finished its first n \
                             stages; the programs have at most {most_stages}"
                        ),
                    )?)
                }
                "prefetch" => {
                    let g = act
                        .gpa
                        .as_ref()
                        .ok_or_else(|| field_err(&format!("{at}.gpa"), "missing".into()))?;
                    let g = window.gpa(&format!("{at}.gpa"), g)?;
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
    if !runnable && first_finalize.is_none() {
        return Err(field_err(
            "runnable",
            "a TD that starts at build time needs a host action `finalize`".into(),
        ));
    }
    Ok((scripts, warnings))
}

/// The priority order: actors the scenario has (vCPUs by number, host actor i as
/// [`first_host_actor`]`(vcpus) + i`: `MAX_VCPUS + i` for up to four vCPUs), each once.
fn parse_order(order: &[u64], vcpus: usize, hosts: usize) -> Result<Vec<u8>, ScenarioError> {
    let first_host = first_host_actor(vcpus);
    let actors = first_host + MAX_HOSTS;
    let mut out: Vec<u8> = Vec::new();
    for &a in order {
        let (id, name, present) = match u8::try_from(a) {
            Ok(id) if usize::from(id) < first_host => {
                (id, format!("vCPU {id}"), usize::from(id) < vcpus)
            }
            Ok(id) if usize::from(id) < actors => {
                let h = usize::from(id) - first_host;
                (id, format!("host actor {h}"), h < hosts)
            }
            _ => {
                return Err(field_err(
                    "order",
                    format!(
                        "{a} names no actor (vCPUs 0..{first_host}, host actors \
                         {first_host}..{actors})"
                    ),
                ));
            }
        };
        if !present {
            let hosts = match hosts {
                0 => "no host actors".to_owned(),
                n => format!("host actors {first_host}..{}", first_host + n),
            };
            return Err(field_err(
                "order",
                format!(
                    "{a} names {name}, which the scenario does not have (it has vCPUs \
                     0..{vcpus} and {hosts})"
                ),
            ));
        }
        if out.contains(&id) {
            return Err(field_err("order", format!("{a} names {name} twice")));
        }
        out.push(id);
    }
    Ok(out)
}

/// The first span two ascending lists of disjoint spans share.
fn first_overlap(a: &[(u64, u64)], b: &[(u64, u64)]) -> Option<(u64, u64)> {
    overlaps(a, b).into_iter().next()
}

/// Every span two ascending lists of disjoint spans share, ascending.
fn overlaps(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while let (Some(&(s1, e1)), Some(&(s2, e2))) = (a.get(i), b.get(j)) {
        let (s, e) = (s1.max(s2), e1.min(e2));
        if s < e {
            out.push((s, e));
        }
        if e1 <= e2 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Markers one vCPU writes over markers another reads back, at a time the other may still
/// read them: in the same stage (stage k+1 starts on any vCPU only once every vCPU finished
/// stage k, world::World::with_programs, so stages of one number run together), or between
/// a stage that writes them and a later `verify_only` stage of its vCPU. A guest that finds
/// another tag where its marker was ends in data-loss (guest module, markers).
fn marker_warnings(marks: &[Marking]) -> Vec<String> {
    let mut warnings = Vec::new();
    for w in marks.iter().filter(|m| m.writes) {
        for x in marks
            .iter()
            .filter(|x| x.writes && x.vcpu != w.vcpu && x.tag != w.tag)
        {
            if x.stage == w.stage {
                // Reported once per pair.
                if w.vcpu < x.vcpu
                    && let Some((s, e)) = first_overlap(&w.spans, &x.spans)
                {
                    warnings.push(format!(
                        "{} and {} write markers over [{s:#x}, {e:#x}) in the same stage: a \
                         schedule where one overwrites the other's markers before they are read \
                         back ends in data-loss",
                        w.at, x.at
                    ));
                }
                continue;
            }
            let later_read = marks.iter().find_map(|v| {
                let read = v.vcpu == w.vcpu
                    && v.reads_back
                    && v.tag == w.tag
                    && (w.stage..=v.stage).contains(&x.stage);
                if !read {
                    return None;
                }
                first_overlap(&overlaps(&w.spans, &v.spans), &x.spans).map(|span| (v, span))
            });
            if let Some((v, (s, e))) = later_read {
                warnings.push(format!(
                    "{} writes markers over [{s:#x}, {e:#x}), where {} wrote markers that {} \
                     reads back: it finds the other tag and the run ends in data-loss",
                    x.at, w.at, v.at
                ));
            }
        }
    }
    warnings
}

impl Scenario {
    /// Each vCPU's program, stage by stage (what [`Scenario::world`] builds its guests from and
    /// what `hugesept run` writes into the payload's boot block).
    pub fn programs(&self) -> &[Vec<ProgramSpec>] {
        &self.programs
    }

    /// How many host actors run.
    pub fn host_count(&self) -> usize {
        self.scripts.len()
    }

    /// Interrupts each vCPU may take during 2M accepts.
    pub fn interrupts(&self) -> u8 {
        self.interrupts
    }

    /// The world at its start: the TD finalized (unless it starts at build time), the
    /// memslots with their folio orders, the lazy-accept bitmap set.
    pub fn world(&self) -> Result<ScenarioWorld, ScenarioError> {
        if self.is_wide() {
            return Err(ScenarioError::Model(format!(
                "{} vCPUs and {} MiB of lazily accepted memory: this command holds worlds of at \
                 most {MAX_VCPUS} vCPUs and {} MiB (`hugesept sim` runs larger ones)",
                self.programs.len(),
                self.lazy_units() * 2,
                MAX_LAZY_UNITS * 2
            )));
        }
        self.world_sized()
    }

    /// The scenario's world in the size the VMM runs ([`RunWorld`]): up to
    /// [`MAX_BOOT_VCPUS`] vCPUs, whatever the scenario needs, with the default lazy-accept
    /// bitmap (512 MiB, the most the VMM's guest memory makes sense for here).
    pub fn run_world(&self) -> Result<RunWorld, ScenarioError> {
        if self.lazy_units() > MAX_LAZY_UNITS as u64 {
            return Err(ScenarioError::Model(format!(
                "{} MiB of lazily accepted memory: a run holds {} MiB",
                self.lazy_units() * 2,
                MAX_LAZY_UNITS * 2
            )));
        }
        self.world_sized()
    }

    /// Whether a default world cannot hold the scenario: more vCPUs than it has
    /// ([`WideWorld`]), or lazily accepted memory past its bitmap ([`LargeMemoryWorld`]).
    pub fn is_wide(&self) -> bool {
        self.has_many_vcpus() || self.lazy_units() > MAX_LAZY_UNITS as u64
    }

    /// Whether the scenario has more vCPUs than a default world holds ([`WideWorld`]).
    pub fn has_many_vcpus(&self) -> bool {
        self.programs.len() > MAX_VCPUS
    }

    /// The 2 MiB units from the window's base the lazy-accept bitmap must cover: the end of
    /// `unaccepted`, or with linux-lazy or linux-early and no `unaccepted`, the window.
    fn lazy_units(&self) -> u64 {
        match self.unaccepted {
            Some((_, e)) => (e.raw() - self.config.base.raw()) / PAGE_SIZE_2M,
            None if self.accepts_by_unit() => u64::from(self.config.regions),
            None => 0,
        }
    }

    fn accepts_by_unit(&self) -> bool {
        self.programs
            .iter()
            .flatten()
            .any(|g| g.kind.accepts_by_unit())
    }

    /// [`Scenario::world`] with room for `V` vCPUs, `F` in-flight slots and `64 * L` units of
    /// lazily accepted memory.
    pub fn world_sized<const V: usize, const F: usize, const L: usize>(
        &self,
    ) -> Result<ScenarioWorld<V, F, L>, ScenarioError> {
        let model = |e: KvmError| ScenarioError::Model(e.to_string());
        let world_error = |e: WorldError| ScenarioError::Model(e.to_string());
        let gigs = self
            .config
            .gigs_needed()
            .map_err(|e| ScenarioError::Model(e.to_string()))?;
        let regions = self.config.regions as usize;
        let mut sept =
            Sept::<_, F>::with_slots(self.config, boxed_sept(gigs, regions, self.tables))
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
        let guests: Vec<Vec<Guest>> = self
            .programs
            .iter()
            .map(|p| p.iter().map(ProgramSpec::guest).collect())
            .collect();
        let programs: Vec<&[Guest]> = guests.iter().map(Vec::as_slice).collect();
        let mut w = ScenarioWorld::<V, F, L>::with_capacity(
            sept,
            kvm,
            self.policy,
            &programs,
            &scripts,
            self.interrupts,
        )
        .map_err(world_error)?;
        match self.unaccepted {
            Some((s, e)) => w.set_unaccepted(s, e).map_err(world_error)?,
            None if self.accepts_by_unit() => {
                let units = u64::from(self.config.regions).min(UnitBitmap::<L>::UNITS as u64);
                let end = Gpa(self.config.base.raw() + units * PAGE_SIZE_2M);
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
                let vcpus = self.programs.len();
                AnyScheduler::Pct(PctScheduler::for_vcpus(
                    seed,
                    d,
                    self.steps.min(2_000),
                    vcpus,
                ))
            }
            SchedulerKind::Priority => AnyScheduler::Priority(PriorityScheduler::for_vcpus(
                &self.order,
                self.programs.len(),
            )),
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

/// One of the core's schedulers (PCT keeps a priority for each actor the widest world can
/// have, about 1 KiB; a run makes one per schedule, so it stays inline).
#[derive(Debug, Clone, Copy)]
#[allow(clippy::large_enum_variant)]
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
