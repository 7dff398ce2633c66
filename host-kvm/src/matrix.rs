//! The policy × guest matrix: every host design against every guest strategy on a standard set
//! of worlds, each under seeded random schedules, with the verdicts and the cost metrics; and
//! the Linux-boot-like world per design (the shape of Yan Zhao's measurement,
//! shared/reference/kvm-fault-path.md). The worlds are scenario files generated from templates
//! ([`StandardWorld::scenario_text`]), so any cell can be rerun with `hugesept sim`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use hugesept_core::guest::GuestKind;
use hugesept_core::policy::PolicyId;
use hugesept_core::world::{Metrics, Verdict, retries_busy_without_limit, supports};
use serde::Serialize;

use crate::costs::CostProfile;
use crate::scenario::{self, ScenarioError};

/// The worlds every policy × guest cell runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StandardWorld {
    /// One vCPU accepts a 6 MiB window from a 16K-misaligned start: a 4K head, then two 2M
    /// pages.
    Solo,
    /// Two vCPUs of the same strategy with adjacent ranges that meet in the middle of a 2M
    /// page, over 8 MiB.
    Pair,
    /// One vCPU accepts and marks 4 MiB; then, while it reads its data back, the host converts
    /// the last 4K page to shared, back to private and to shared again.
    Churn,
    /// The host prefetches (KVM_PRE_FAULT_MEMORY) the first page of the 2M page one vCPU
    /// accepts, racing it. While the prefetch's SEAMCALL holds the page's entry lock the
    /// module answers the guest's ACCEPT BUSY, which no design can prevent: a design claims
    /// here only guests that retry BUSY without limit
    /// ([`hugesept_core::world::retries_busy_without_limit`]).
    Prefetch,
}

impl StandardWorld {
    /// Every standard world.
    pub const ALL: [StandardWorld; 4] = [
        StandardWorld::Solo,
        StandardWorld::Pair,
        StandardWorld::Churn,
        StandardWorld::Prefetch,
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            StandardWorld::Solo => "solo",
            StandardWorld::Pair => "pair",
            StandardWorld::Churn => "churn",
            StandardWorld::Prefetch => "prefetch",
        }
    }

    /// The scenario file for `policy` and `guest` in this world. #VE is enabled only for the
    /// touch-first guest (Linux requires SEPT_VE_DISABLE; touch-first is the #VE guest).
    pub fn scenario_text(self, policy: PolicyId, guest: GuestKind) -> String {
        let g = guest.name();
        let ve = guest == GuestKind::TouchFirst;
        let head = format!(
            "name = \"{} world, {g}, {policy}\"\npolicy = \"{policy}\"\n{}ve = {ve}\n",
            self.name(),
            module_line(policy)
        );
        match self {
            StandardWorld::Solo => format!(
                "{head}regions = 3\n\n[[vcpu]]\nguest = \"{g}\"\nstart = \"0x40004000\"\n\
                 end = \"0x40600000\"\ninterrupts = 1\n"
            ),
            StandardWorld::Pair => format!(
                "{head}regions = 4\n\n[[vcpu]]\nguest = \"{g}\"\nstart = \"0x40000000\"\n\
                 end = \"0x40300000\"\ninterrupts = 1\n\n[[vcpu]]\nguest = \"{g}\"\n\
                 start = \"0x40300000\"\nend = \"0x40800000\"\ninterrupts = 1\n"
            ),
            StandardWorld::Churn => format!(
                "{head}regions = 2\n\n[[vcpu]]\ninterrupts = 1\n[[vcpu.stage]]\nguest = \"{g}\"\n\
                 start = \"0x40000000\"\nend = \"0x40400000\"\n[[vcpu.stage]]\nguest = \"{g}\"\n\
                 start = \"0x40000000\"\nend = \"0x403ff000\"\nverify_only = true\n\n[[host]]\n\
                 actions = [\n  {{ op = \"await-stage\", stage = 1 }},\n  \
                 {{ op = \"convert-to-shared\", start = \"0x403ff000\", end = \"0x40400000\" }},\n  \
                 {{ op = \"convert-to-private\", start = \"0x403ff000\", end = \"0x40400000\" }},\n  \
                 {{ op = \"convert-to-shared\", start = \"0x403ff000\", end = \"0x40400000\" }},\n]\n"
            ),
            StandardWorld::Prefetch => format!(
                "{head}regions = 2\n\n[[vcpu]]\nguest = \"{g}\"\nstart = \"0x40200000\"\n\
                 end = \"0x40400000\"\ninterrupts = 1\n\n[[host]]\n\
                 actions = [{{ op = \"prefetch\", gpa = \"0x40200000\" }}]\n"
            ),
        }
    }
}

/// The Linux-boot-like world (scenarios/linux-boot-*.toml) for `policy`.
pub fn boot_scenario_text(policy: PolicyId) -> String {
    format!(
        "name = \"Linux-boot-like world, {policy}\"\npolicy = \"{policy}\"\n{}regions = 8\n\
         runnable = false\nunaccepted = {{ start = \"0x40800000\", end = \"0x41000000\" }}\n{}",
        module_line(policy),
        boot_body()
    )
}

/// The Linux-boot-like world's vCPUs and host script: stage 0 OVMF on three vCPUs (2 MiB
/// mailbox chunks over the low 8 MiB), stage 1 linux-lazy (vCPUs 0 and 1 above 8 MiB, sharing
/// the unit at 12 MiB; vCPU 2 next to the churned page), the host adding the image, finalizing,
/// and converting one 4K page private/shared twice during stage 1.
fn boot_body() -> String {
    let lazy = [
        ("0x40800000", "0x40c80000"),
        ("0x40c80000", "0x41000000"),
        ("0x40202000", "0x40400000"),
    ];
    let mut s = String::new();
    for (i, (start, end)) in lazy.iter().enumerate() {
        s += &format!(
            "\n[[vcpu]]\n[[vcpu.stage]]\nguest = \"ovmf\"\nstart = \"0x40000000\"\n\
             end = \"0x40800000\"\nstride = {{ index = {i}, count = 3, chunk = \"0x200000\" }}\n\
             [[vcpu.stage]]\nguest = \"linux-lazy\"\nstart = \"{start}\"\nend = \"{end}\"\n"
        );
    }
    let churn = "start = \"0x40201000\", end = \"0x40202000\" }";
    s += &format!(
        "\n[[host]]\nactions = [\n  \
         {{ op = \"init-mem-region\", start = \"0x40000000\", end = \"0x40010000\" }},\n  \
         {{ op = \"finalize\" }},\n  {{ op = \"await-stage\", stage = 1 }},\n  \
         {{ op = \"convert-to-shared\", {churn},\n  {{ op = \"convert-to-private\", {churn},\n  \
         {{ op = \"convert-to-shared\", {churn},\n  {{ op = \"convert-to-private\", {churn},\n]\n"
    );
    s
}

/// Mean cost of one run in a cell, over the runs that ended.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Cost {
    /// TD exits (with and without accept information).
    pub exits: f64,
    /// SEAMCALLs (fault paths and host operations).
    pub seamcalls: f64,
    /// Demotions.
    pub demotions: f64,
    /// mmu_lock write acquisitions by the fault path.
    pub write_locks: f64,
    /// TD entries after an exit that exited again without retiring (zero-step risk).
    pub entries_without_progress: f64,
    /// ACCEPT TDCALLs.
    pub tdcalls: f64,
    /// Of the private memory mapped at the end, the share mapped at 2M (0..1,
    /// [`scenario::coverage_2m`]).
    pub coverage_2m: f64,
    /// World steps.
    pub steps: f64,
    /// Estimated wall time in µs ([`crate::costs`], the spec's cost profile).
    pub wall_us: f64,
}

/// One cell: a policy, a guest (None for the boot world), a world.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// The design.
    pub policy: String,
    /// The strategy ("boot" for the Linux-boot-like world).
    pub guest: String,
    /// The world.
    pub world: String,
    /// Whether the design declares it supports the guest.
    pub supported: bool,
    /// Schedules per outcome (a verdict, or `budget-exhausted` for a run that used its whole
    /// step budget while still making progress).
    pub verdicts: BTreeMap<&'static str, u32>,
    /// Runs that ended (every outcome but `budget-exhausted`): the costs are their mean.
    pub ended: u32,
    /// Mean cost per run that ended.
    pub cost: Cost,
}

impl Cell {
    /// The verdict when every schedule agrees, else a summary like "ok 6, livelock 2".
    pub fn verdict_text(&self) -> String {
        if self.verdicts.len() == 1
            && let Some(v) = self.verdicts.keys().next()
        {
            return (*v).to_owned();
        }
        self.verdicts
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether every schedule ended in `v`.
    pub fn all(&self, v: Verdict) -> bool {
        self.verdicts.len() == 1 && self.verdicts.contains_key(v.name())
    }

    /// Whether the cell keeps the design's declaration: ok everywhere for a supported guest;
    /// for the adversarial guest, never a bugged VM or lost data.
    pub fn keeps_declaration(&self) -> bool {
        if !self.supported {
            return true;
        }
        if self.guest == GuestKind::Adversarial.name() {
            return !self.verdicts.contains_key(Verdict::VmBugged.name())
                && !self.verdicts.contains_key(Verdict::DataLoss.name());
        }
        self.all(Verdict::Ok)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct MatrixSpec {
    /// Designs (rows).
    pub policies: Vec<PolicyId>,
    /// Strategies (columns).
    pub guests: Vec<GuestKind>,
    /// Standard worlds.
    pub worlds: Vec<StandardWorld>,
    /// Seeded schedules per cell.
    pub seeds: u32,
    /// Whether to add the Linux-boot-like world per design.
    pub boot: bool,
    /// Worker threads.
    pub threads: usize,
    /// What prices each cell's runs ([`Cost::wall_us`]).
    pub profile: CostProfile,
}

impl Default for MatrixSpec {
    fn default() -> Self {
        MatrixSpec {
            policies: PolicyId::ALL.to_vec(),
            guests: GuestKind::STRATEGIES.to_vec(),
            worlds: StandardWorld::ALL.to_vec(),
            seeds: 8,
            boot: true,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            profile: CostProfile::field(),
        }
    }
}

/// The matrix's result.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    /// Seeds per cell.
    pub seeds: u32,
    /// Every cell, policy-major.
    pub cells: Vec<Cell>,
}

/// A policy the module profile of the standard worlds cannot run gets the profile it needs.
fn module_line(policy: PolicyId) -> &'static str {
    match policy {
        PolicyId::ExplicitDemotion => "module = \"explicit-demotion\"\n",
        _ => "",
    }
}

/// Runs one cell from its scenario text, its time estimated with the field profile.
pub fn run_cell(
    text: &str,
    policy: PolicyId,
    guest: Option<GuestKind>,
    world: &str,
    seeds: u32,
) -> Result<Cell, ScenarioError> {
    run_cell_priced(text, policy, guest, world, seeds, &CostProfile::field())
}

/// [`run_cell`], its time estimated with `profile`.
pub fn run_cell_priced(
    text: &str,
    policy: PolicyId,
    guest: Option<GuestKind>,
    world: &str,
    seeds: u32,
    profile: &CostProfile,
) -> Result<Cell, ScenarioError> {
    let sc = scenario::parse(text)?;
    let vcpus = u32::try_from(sc.programs().len()).unwrap_or(u32::MAX);
    let start = sc.world()?;
    let mut verdicts = BTreeMap::new();
    let mut cost = Cost::default();
    // Costs are the mean over the runs that ended; a run that exhausted its step budget is
    // counted under its outcome only.
    let mut ended = 0u32;
    for seed in 1..=u64::from(seeds) {
        let mut w = start.clone();
        let mut m = Metrics::default();
        let mut steps = 0u64;
        let r = w.advance_schedule(
            &mut sc.scheduler(seed),
            sc.limits(),
            &mut m,
            &mut steps,
            |_, _| {},
        );
        let outcome = scenario::outcome_name(&r)
            .map_err(|e| ScenarioError::Model(format!("{world}, seed {seed}: {e}")))?;
        *verdicts.entry(outcome).or_insert(0) += 1;
        if outcome == scenario::BUDGET_EXHAUSTED {
            continue;
        }
        ended += 1;
        cost.exits += f64::from(m.exits_accept + m.exits_other);
        cost.seamcalls += f64::from(m.fault.seamcalls + m.host_seamcalls);
        cost.demotions += f64::from(m.fault.demotions + m.host_demotions);
        cost.write_locks += f64::from(m.fault.write_locks);
        cost.entries_without_progress += f64::from(m.entries_without_progress);
        cost.tdcalls += f64::from(m.tdcalls);
        cost.steps += steps as f64;
        cost.coverage_2m += scenario::coverage_2m(&w);
        cost.wall_us += profile.estimate(&m, vcpus).wall_us();
    }
    let n = f64::from(ended.max(1));
    for x in [
        &mut cost.exits,
        &mut cost.seamcalls,
        &mut cost.demotions,
        &mut cost.write_locks,
        &mut cost.entries_without_progress,
        &mut cost.tdcalls,
        &mut cost.coverage_2m,
        &mut cost.steps,
        &mut cost.wall_us,
    ] {
        *x /= n;
    }
    Ok(Cell {
        policy: policy.to_string(),
        guest: guest.map_or("boot".into(), |g| g.name().into()),
        world: world.into(),
        supported: guest.is_none_or(|g| {
            supports(policy, g).is_ok()
                && (world != StandardWorld::Prefetch.name() || retries_busy_without_limit(g))
        }),
        verdicts,
        ended,
        cost,
    })
}

/// Runs the matrix on `spec.threads` workers; `tick` is called after each cell.
pub fn run(spec: &MatrixSpec, tick: &(dyn Fn() + Sync)) -> Result<Matrix, ScenarioError> {
    struct Job {
        text: String,
        policy: PolicyId,
        guest: Option<GuestKind>,
        world: &'static str,
    }
    let mut jobs = Vec::new();
    for &policy in &spec.policies {
        for &guest in &spec.guests {
            for &world in &spec.worlds {
                jobs.push(Job {
                    text: world.scenario_text(policy, guest),
                    policy,
                    guest: Some(guest),
                    world: world.name(),
                });
            }
        }
        if spec.boot {
            jobs.push(Job {
                text: boot_scenario_text(policy),
                policy,
                guest: None,
                world: "boot",
            });
        }
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Cell, ScenarioError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..spec.threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let r = run_cell_priced(
                        &job.text,
                        job.policy,
                        job.guest,
                        job.world,
                        spec.seeds,
                        &spec.profile,
                    );
                    if let Ok(mut all) = results.lock()
                        && let Some(slot) = all.get_mut(i)
                    {
                        *slot = Some(r);
                    }
                    tick();
                }
            });
        }
    });
    let mut cells = Vec::new();
    for r in results.into_inner().unwrap_or_default() {
        match r {
            Some(r) => cells.push(r?),
            None => return Err(ScenarioError::Model("a matrix worker stopped".into())),
        }
    }
    Ok(Matrix {
        seeds: spec.seeds,
        cells,
    })
}

/// How many cells `spec` runs.
pub fn cell_count(spec: &MatrixSpec) -> usize {
    spec.policies.len() * (spec.guests.len() * spec.worlds.len() + usize::from(spec.boot))
}
