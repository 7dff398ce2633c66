//! Every scenario in scenarios/ that states an expected verdict gets it under all its seeded
//! schedules; broken scenario files get clear errors.

use std::path::Path;

use hugesept_core::world::{
    Choice, Limits, Metrics, Observer, RandomScheduler, ScheduleError, Stepped,
};

use hugesept_host_kvm::scenario::{self, ScenarioError};

mod common;

use common::scenario_files;

#[test]
fn every_scenario_ends_as_it_expects() {
    let mut ran = 0;
    // The benchmark worlds too (their expectations are the explorer's; seeded schedules must
    // not contradict them).
    for path in scenario_files("")
        .into_iter()
        .chain(scenario_files("bench"))
    {
        let text = std::fs::read_to_string(&path).unwrap();
        let sc = scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let Some(expect) = sc.expect else {
            continue;
        };
        let sum = scenario::run(&sc, 1, sc.schedules)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            sum.first_unexpected,
            None,
            "{}: expected {} in every schedule, got {:?}",
            path.display(),
            expect.name(),
            sum.verdicts
        );
        ran += 1;
    }
    assert!(ran >= 19, "only {ran} scenarios ran");
}

#[test]
fn broken_files_get_clear_errors() {
    let base = "policy = \"rfc-v1\"\nregions = 2\n[[vcpu]]\nguest = \"linux\"\nstart = \"0x40200000\"\nend = \"0x40400000\"\n";
    assert!(scenario::parse(base).is_ok());
    // TOML syntax: the message names the line.
    match scenario::parse("policy = \"rfc-v1\"\nregions = = 2\n") {
        Err(ScenarioError::Syntax(m)) => assert!(m.contains("line 2"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Unknown field.
    match scenario::parse(&format!("{base}colour = 3\n")) {
        Err(ScenarioError::Syntax(m)) => assert!(m.contains("colour"), "{m}"),
        other => panic!("{other:?}"),
    }
    let field = |text: &str| match scenario::parse(text) {
        Err(ScenarioError::Field { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(&base.replace("rfc-v1", "rfc-v9")), "policy");
    assert_eq!(
        field(&base.replace("\"linux\"", "\"windows\"")),
        "vcpu[0].guest"
    );
    assert_eq!(
        field(&base.replace("0x40400000", "0x90000000")),
        "vcpu[0].end"
    );
    assert_eq!(field(&base.replace("0x40400000", "lots")), "vcpu[0].end");
    assert_eq!(field(&format!("expect = \"fine\"\n{base}")), "expect");
    assert_eq!(field(&format!("module = \"tdx-9\"\n{base}")), "module");
    assert_eq!(
        field(&format!(
            "{base}[[host]]\nactions = [{{ op = \"melt\" }}]\n"
        )),
        "host[0].actions[0].op"
    );
    // The newer fields: stages, strides, memslots, build time, the bitmap, schedulers.
    let staged = "policy = \"rfc-v1\"\nregions = 2\n[[vcpu]]\n[[vcpu.stage]]\nguest = \"ovmf\"\n\
                  start = \"0x40000000\"\nend = \"0x40200000\"\n";
    assert!(scenario::parse(staged).is_ok());
    assert_eq!(
        field(&format!(
            "{staged}[[vcpu.stage]]\nguest = \"dos\"\nstart = \"0x40000000\"\nend = \"0x40001000\"\n"
        )),
        "vcpu[0].stage[1].guest"
    );
    assert_eq!(
        field(&base.replace("guest = \"linux\"\n", "")),
        "vcpu[0].guest"
    );
    assert_eq!(
        field(&base.replace("end = \"0x40400000\"", "end = \"0x40400000\"\n[[vcpu.stage]]\nguest = \"linux\"\nstart = \"0x40000000\"\nend = \"0x40001000\"")),
        "vcpu[0]"
    );
    assert_eq!(
        field(&format!("{base}stride = {{ index = 3, count = 3 }}\n")),
        "vcpu[0].stride.index"
    );
    assert_eq!(
        field(&format!(
            "{base}stride = {{ index = 0, count = 2, chunk = \"0x3000\" }}\n"
        )),
        "vcpu[0].stride.chunk"
    );
    assert_eq!(field(&format!("runnable = false\n{base}")), "runnable");
    assert_eq!(
        field(&format!(
            "unaccepted = {{ start = \"0x40001000\", end = \"0x40200000\" }}\n{base}"
        )),
        "unaccepted"
    );
    assert_eq!(field(&format!("scheduler = \"fifo\"\n{base}")), "scheduler");
    assert_eq!(field(&format!("order = [9]\n{base}")), "order");
    assert_eq!(
        field(&format!(
            "{base}[[memslot]]\nstart = \"0x40000000\"\nend = \"0x40200000\"\nfolio_order = 30\n"
        )),
        "memslot[0].folio_order"
    );
    assert_eq!(
        field(&format!(
            "{base}[[host]]\nactions = [{{ op = \"await-stage\" }}]\n"
        )),
        "host[0].actions[0].stage"
    );
    // A policy the module cannot run is the model's refusal.
    let ed = base.replace("rfc-v1", "explicit-demotion");
    let sc = scenario::parse(&ed).unwrap();
    assert!(matches!(sc.world(), Err(ScenarioError::Model(_))));
}

/// The shadow of a schedule: at every step the per-step checks give the full checks' answer,
/// and the copy synced by the change record equals the world.
struct Shadow<'a> {
    path: &'a Path,
    compared: &'a mut u64,
}

impl Observer<scenario::ScenarioWorld> for Shadow<'_> {
    fn stepped(
        &mut self,
        step: u32,
        _choice: Choice,
        _stepped: Stepped,
        before: &scenario::ScenarioWorld,
        w: &scenario::ScenarioWorld,
    ) {
        let full = w
            .check()
            .and_then(|()| scenario::ScenarioWorld::check_transition(before, w));
        assert_eq!(
            w.check_step(before),
            full,
            "{} step {step}",
            self.path.display()
        );
        *self.compared += 1;
    }

    fn synced(&mut self, copy: &scenario::ScenarioWorld, w: &scenario::ScenarioWorld) {
        assert!(copy == w, "{}: sync_from", self.path.display());
    }
}

#[test]
fn the_per_step_checks_agree_with_the_full_checks() {
    // World::check_step looks only at the regions a step changed; World::check and
    // check_transition look at everything. Over every scenario's first schedules they must
    // give the same answer at every step.
    let mut compared = 0u64;
    for path in scenario_files("") {
        let sc = scenario::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let start = sc.world().unwrap();
        for seed in 1..=2 {
            let shadow = Shadow {
                path: &path,
                compared: &mut compared,
            };
            let limits = Limits {
                bound: 4000,
                patience: u32::MAX,
            };
            let r = start.run_schedule(
                &mut RandomScheduler::new(seed),
                limits,
                &mut Metrics::default(),
                &mut 0,
                shadow,
            );
            // A broken invariant ends the schedule (the checks agreed on it); a model error is
            // a bug.
            assert!(
                !matches!(r, Err(ScheduleError::Model(_))),
                "{}: {r:?}",
                path.display()
            );
        }
    }
    assert!(compared > 10_000, "{compared}");
}

/// The large scenarios (scenarios/large: too large for the exhaustive checks, run through
/// `hugesept run` by `cargo xtask test`) parse without warnings and end as they expect under a
/// seeded schedule.
#[test]
fn the_large_scenarios_end_as_they_expect() {
    let mut ran = 0;
    for path in scenario_files("large") {
        let text = std::fs::read_to_string(&path).unwrap();
        let sc = scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            sc.warnings.is_empty(),
            "{}: {:?}",
            path.display(),
            sc.warnings
        );
        let sum = scenario::run(&sc, 1, 1).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(sum.first_unexpected, None, "{}", path.display());
        ran += 1;
    }
    assert!(ran >= 2, "{ran}");
}

#[test]
fn one_vcpu_table_can_stand_for_many_vcpus_sharing_its_range() {
    let table = |count: &str, share: &str, end: &str| {
        format!(
            "policy = \"upstream-4k\"\nregions = 8\n[[vcpu]]\nguest = \"tdx-guest\"\n\
             start = \"0x40000000\"\nend = \"{end}\"\ncount = {count}\n{share}"
        )
    };
    // Five 2 MiB units over three vCPUs: two, two and one, one after another (asterinas'
    // contiguous shares, the remainder to the lowest numbers).
    let sc = scenario::parse(&table("3", "share = \"contiguous\"\n", "0x40a00000")).unwrap();
    let ranges: Vec<(u64, u64)> = sc
        .programs()
        .iter()
        .map(|p| (p[0].start.raw(), p[0].end.raw()))
        .collect();
    assert_eq!(
        ranges,
        [
            (0x4000_0000, 0x4040_0000),
            (0x4040_0000, 0x4080_0000),
            (0x4080_0000, 0x40a0_0000)
        ]
    );
    // Each vCPU its own tag.
    let tags: Vec<u16> = sc.programs().iter().map(|p| p[0].tag).collect();
    assert_eq!(tags, [1, 2, 3]);
    // Strided: the mailbox's chunks, the vCPU's number as its index.
    let sc = scenario::parse(&table("2", "share = \"strided\"\n", "0x40a00000")).unwrap();
    let strides: Vec<(u8, u8, u8)> = sc
        .programs()
        .iter()
        .map(|p| {
            let s = p[0].stride.unwrap();
            (s.index, s.count, s.chunk_shift)
        })
        .collect();
    assert_eq!(strides, [(0, 2, 25), (1, 2, 25)]);
    // Without a share each runs the whole range.
    let sc = scenario::parse(&table("2", "", "0x40a00000")).unwrap();
    assert!(
        sc.programs()
            .iter()
            .all(|p| p[0].start.raw() == 0x4000_0000 && p[0].end.raw() == 0x40a0_0000)
    );
    let field = |text: &str| match scenario::parse(text) {
        Err(ScenarioError::Field { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(&table("0", "", "0x40a00000")), "vcpu[0].count");
    assert_eq!(field(&table("255", "", "0x40a00000")), "vcpu[0].count");
    assert_eq!(
        field(&table("2", "share = \"halves\"\n", "0x40a00000")),
        "vcpu[0].share"
    );
    assert_eq!(
        field(&table("2", "share = \"contiguous\"\n", "0x40a01000")),
        "vcpu[0]#0"
    );
    assert_eq!(
        field(&table(
            "2",
            "share = \"strided\"\nstride = { index = 0, count = 2 }\n",
            "0x40a00000"
        )),
        "vcpu[0]#0.stride"
    );
}

#[test]
fn worlds_of_more_than_four_vcpus_run_in_sim_and_refuse_the_fixed_size_commands() {
    // Eight vCPUs in contiguous shares of 16 MiB, and a host actor named after them in the
    // priority order (host actor 0 is actor 8 in a world of eight vCPUs).
    let text = "policy = \"upstream-4k\"\nregions = 8\nscheduler = \"priority\"\norder = [8, 7]\n\
                expect = \"ok\"\n[[vcpu]]\nguest = \"linux\"\nstart = \"0x40000000\"\n\
                end = \"0x41000000\"\ncount = 8\nshare = \"contiguous\"\n\
                [[host]]\nactions = [{ op = \"prefetch\", gpa = \"0x40e00000\" }]\n";
    let sc = scenario::parse(text).unwrap();
    assert!(sc.is_wide());
    let sum = scenario::run(&sc, 1, 1).unwrap();
    assert_eq!(sum.first_unexpected, None, "{:?}", sum.verdicts);
    // Every one of the eight accepted its 2 MiB at 4K (upstream-4k): 512 exits each, but for
    // the page the host prefetched into vCPU 7's share (its host actor runs first).
    let m = &sum.metrics;
    assert_eq!(
        &m.vcpu_exits[..9],
        &[512, 512, 512, 512, 512, 512, 512, 511, 0]
    );
    // The commands whose worlds hold four vCPUs say so.
    match sc.world() {
        Err(ScenarioError::Model(m)) => assert!(m.contains("8 vCPUs"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // The order's actor numbers follow the vCPU count.
    let bad = text.replace("order = [8, 7]", "order = [9]");
    match scenario::parse(&bad) {
        Err(ScenarioError::Field { field, message }) => {
            assert_eq!(field, "order");
            assert!(message.contains("host actor 1"), "{message}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn the_wide_scenarios_end_as_they_expect_in_sim() {
    // Beyond a default world (more vCPUs, or a larger lazy-accept bitmap): seeded schedules
    // only.
    let files = scenario_files("wide");
    assert!(files.len() >= 2, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let sc = scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(sc.is_wide(), "{}", path.display());
        let sum = scenario::run(&sc, 1, sc.schedules)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            sum.first_unexpected,
            None,
            "{}: {:?}",
            path.display(),
            sum.verdicts
        );
    }
}

#[test]
fn each_stage_shares_its_range_by_its_own_guest() {
    // Two vCPUs from one table: OVMF strided by its mailbox, then linux-lazy whole (it claims
    // units through the bitmap; both use the same pages, so neither writes markers there),
    // then asterinas in contiguous shares.
    let text = "policy = \"guest-inhibit\"\nregions = 8\n[[vcpu]]\ncount = 2\n\
                [[vcpu.stage]]\nguest = \"ovmf\"\nstart = \"0x40000000\"\nend = \"0x40400000\"\n\
                [[vcpu.stage]]\nguest = \"linux-lazy\"\nstart = \"0x40400000\"\nend = \"0x40800000\"\n\
                markers = false\n\
                [[vcpu.stage]]\nguest = \"asterinas\"\nstart = \"0x40800000\"\nend = \"0x41000000\"\n";
    let sc = scenario::parse(text).unwrap();
    for (copy, program) in sc.programs().iter().enumerate() {
        assert_eq!(
            program[0].stride.map(|s| (s.index, s.count)),
            Some((copy as u8, 2))
        );
        assert_eq!(program[1].stride, None);
        assert_eq!(
            (program[1].start.raw(), program[1].end.raw()),
            (0x4040_0000, 0x4080_0000)
        );
        let share = 0x4080_0000 + copy as u64 * 0x40_0000;
        assert_eq!(program[2].stride, None);
        assert_eq!(
            (program[2].start.raw(), program[2].end.raw()),
            (share, share + 0x40_0000)
        );
    }
    let sum = scenario::run(&sc, 1, 8).unwrap();
    assert_eq!(sum.verdicts.get("ok"), Some(&8), "{:?}", sum.verdicts);
    // A stride (the table's share or its own) on a guest that claims bitmap units is refused.
    let field = |text: &str| match scenario::parse(text) {
        Err(ScenarioError::Field { field, .. }) => field,
        other => panic!("{:?}", other.map(|_| ())),
    };
    let lazy = "policy = \"guest-inhibit\"\nregions = 8\n[[vcpu]]\ncount = 2\n\
                guest = \"linux-lazy\"\nstart = \"0x40000000\"\nend = \"0x40800000\"\n";
    assert_eq!(
        field(&format!("{lazy}share = \"strided\"\n")),
        "vcpu[0]#0.guest"
    );
    assert_eq!(
        field(&lazy.replace("count = 2\n", "").replace(
            "end = \"0x40800000\"\n",
            "end = \"0x40800000\"\nstride = { index = 0, count = 1 }\n"
        )),
        "vcpu[0].guest"
    );
    // A table's share and a stage's own stride together are refused.
    assert_eq!(
        field(
            "policy = \"guest-inhibit\"\nregions = 8\n[[vcpu]]\ncount = 2\nshare = \"strided\"\n\
             [[vcpu.stage]]\nguest = \"ovmf\"\nstart = \"0x40000000\"\nend = \"0x40400000\"\n\
             stride = { index = 0, count = 2 }\n"
        ),
        "vcpu[0]#0.stage[0].stride"
    );
}
