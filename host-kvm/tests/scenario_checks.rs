//! The scenario parser refuses sizes beyond what the models hold and host scripts that do
//! nothing or wait for nothing, with the field and the limit in the message; it warns about
//! vCPUs whose markers overwrite each other's.

use hugesept_host_kvm::scenario::{self, ScenarioError};

mod common;

use common::scenario_files;

/// One vCPU accepting a 2M page under rfc-v1, in a window of two regions (like
/// scenarios/prefetch-then-4k.toml).
const BASE: &str = "policy = \"rfc-v1\"\nregions = 2\n\n[[vcpu]]\nguest = \"linux\"\n\
                    start = \"0x40200000\"\nend = \"0x40400000\"\n";

/// [`BASE`] with `head` before it (top-level fields) and `tail` after it (tables).
fn text(head: &str, tail: &str) -> String {
    format!("{head}\n{BASE}{tail}")
}

/// The field error `text` gets: its field and message.
fn refused(text: &str) -> (String, String) {
    match scenario::parse(text) {
        Err(ScenarioError::Field { field, message }) => (field, message),
        other => panic!("expected a field error for\n{text}\ngot {other:?}"),
    }
}

/// Asserts `text` is refused at `field` with a message holding every one of `words`.
fn assert_refused(text: &str, field: &str, words: &[&str]) {
    let (f, m) = refused(text);
    assert_eq!(f, field, "{m}");
    for w in words {
        assert!(m.contains(w), "field `{f}`: {m:?} does not name {w:?}");
    }
}

#[test]
fn the_base_text_is_accepted() {
    let sc = scenario::parse(BASE).unwrap();
    sc.world().unwrap();
}

// ----- 1. sizes -----

#[test]
fn tables_beyond_one_per_region_are_refused() {
    // A 4 TB and a 4.6 GB pool: refused at parse time, before anything is allocated.
    assert_refused(&text("tables = 1000000000", ""), "tables", &["0..=2"]);
    assert_refused(&text("tables = 1000000", ""), "tables", &["0..=2"]);
    assert_refused(&text("tables = 3", ""), "tables", &["0..=2", "region"]);
    for t in 0..=2 {
        let sc = scenario::parse(&text(&format!("tables = {t}"), "")).unwrap();
        assert_eq!(sc.tables, t);
        sc.world().unwrap();
    }
}

#[test]
fn regions_are_bounded_by_the_largest_window() {
    assert_refused(
        &BASE.replace("regions = 2", "regions = 0"),
        "regions",
        &["32768"],
    );
    assert_refused(
        &BASE.replace("regions = 2", "regions = 32769"),
        "regions",
        &["32768"],
    );
    // Beyond u32: still the field and its limit, not a type error.
    assert_refused(
        &BASE.replace("regions = 2", "regions = 5000000000"),
        "regions",
        &["32768"],
    );
}

#[test]
fn the_largest_world_stays_well_under_a_gigabyte() {
    use hugesept_core::kvm::{KvmGig, KvmRegion, MirrorTable};
    use hugesept_core::sept::{HugeEntry, Region, Table4K};
    let sc = scenario::parse(
        "policy = \"rfc-v1\"\nregions = 32768\ntables = 32768\n[[vcpu]]\nguest = \"linux\"\n\
         start = \"0x40000000\"\nend = \"0x40200000\"\n",
    )
    .unwrap();
    let gigs = sc.config.gigs_needed().unwrap();
    let bytes = gigs * (size_of::<HugeEntry>() + size_of::<KvmGig>())
        + 32768 * (size_of::<Region>() + size_of::<KvmRegion>())
        + sc.tables * (size_of::<Table4K>() + size_of::<MirrorTable>());
    assert!(bytes < 1 << 30, "{bytes} bytes");
    sc.world().unwrap();
}

#[test]
fn schedules_steps_and_patience_are_bounded() {
    assert_refused(&text("schedules = 0", ""), "schedules", &["1..=1000000"]);
    assert_refused(
        &text("schedules = 4000000000", ""),
        "schedules",
        &["1..=1000000"],
    );
    assert_refused(&text("steps = 100000000", ""), "steps", &["1..=50000000"]);
    assert_refused(
        &text("patience = 100000000", ""),
        "patience",
        &["1..=50000000"],
    );
    let sc = scenario::parse(&text(
        "schedules = 1000000\nsteps = 50000000\npatience = 1",
        "",
    ))
    .unwrap();
    assert_eq!(
        (sc.schedules, sc.steps, sc.patience),
        (1_000_000, 50_000_000, 1)
    );
}

#[test]
fn actor_stage_and_script_counts_are_bounded() {
    // These limits were checked before: vCPUs, host actors, stages, script length.
    let vcpu = "[[vcpu]]\nguest = \"linux\"\nstart = \"0x40000000\"\nend = \"0x40001000\"\n";
    // Five vCPUs parse (`sim` runs them); the commands that hold four refuse the world, by
    // its size.
    let five = scenario::parse(&text("", &vcpu.repeat(4))).unwrap();
    match five.world() {
        Err(ScenarioError::Model(m)) => assert!(
            m.contains("5 vCPUs") && m.contains("at most 4 vCPUs"),
            "{m}"
        ),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // More than a world can hold, however the tables add up.
    let many = "[[vcpu]]\nguest = \"linux\"\nstart = \"0x40000000\"\nend = \"0x40001000\"\n\
                count = 200\n";
    assert_refused(
        &text("", &many.repeat(2)),
        "vcpu",
        &["401 vCPUs", "1 to 254"],
    );
    let host = "[[host]]\nactions = []\n";
    assert_refused(&text("", &host.repeat(3)), "host", &["at most 2"]);
    let punch = "{ op = \"punch-hole\", start = \"0x40000000\", end = \"0x40001000\" }, ";
    assert_refused(
        &text("", &format!("[[host]]\nactions = [{}]\n", punch.repeat(9))),
        "host[0].actions",
        &["at most 8"],
    );
    let stage = "[[vcpu.stage]]\nguest = \"linux\"\nstart = \"0x40000000\"\nend = \"0x40001000\"\n";
    assert_refused(
        &format!(
            "policy = \"rfc-v1\"\nregions = 2\n[[vcpu]]\n{}",
            stage.repeat(4)
        ),
        "vcpu[0].stage",
        &["at most 3"],
    );
}

#[test]
fn memslots_are_bounded_and_do_not_overlap() {
    let slot = |s: u64, e: u64| format!("[[memslot]]\nstart = \"{s:#x}\"\nend = \"{e:#x}\"\n");
    let nine: String = (0..9u64)
        .map(|i| slot(0x4000_0000 + i * 0x1000, 0x4000_1000 + i * 0x1000))
        .collect();
    assert_refused(&text("", &nine), "memslot", &["at most 8"]);
    let eight: String = (0..8u64)
        .map(|i| slot(0x4000_0000 + i * 0x8_0000, 0x4008_0000 + i * 0x8_0000))
        .collect();
    scenario::parse(&text("", &eight)).unwrap().world().unwrap();
    let overlapping = slot(0x4000_0000, 0x4030_0000) + &slot(0x4020_0000, 0x4040_0000);
    assert_refused(
        &text("", &overlapping),
        "memslot[1]",
        &["overlaps memslot[0]"],
    );
}

#[test]
fn strides_name_vcpus_the_scenario_has_and_chunks_a_window() {
    // Two vCPUs: a stride over three leaves a third of the range to no one.
    let strided = |index: u8, count: u8, chunk: &str| {
        format!(
            "policy = \"rfc-v1\"\nregions = 8\n[[vcpu]]\nguest = \"ovmf\"\nstart = \"0x40000000\"\n\
             end = \"0x40800000\"\nstride = {{ index = {index}, count = {count}, chunk = \"{chunk}\" }}\n\
             [[vcpu]]\nguest = \"ovmf\"\nstart = \"0x40000000\"\nend = \"0x40800000\"\n\
             stride = {{ index = 1, count = 2, chunk = \"0x200000\" }}\n"
        )
    };
    scenario::parse(&strided(0, 2, "0x200000")).unwrap();
    assert_refused(
        &strided(0, 3, "0x200000"),
        "vcpu[0].stride.count",
        &["1..=2"],
    );
    assert_refused(
        &strided(0, 200, "0x200000"),
        "vcpu[0].stride.count",
        &["1..=2"],
    );
    assert_refused(
        &strided(0, 2, "0x2000000000"),
        "vcpu[0].stride.chunk",
        &["64 GiB"],
    );
    assert_refused(
        &strided(0, 2, "0x8000000000000000"),
        "vcpu[0].stride.chunk",
        &["64 GiB"],
    );
}

#[test]
fn tags_interrupts_and_orders_are_range_checked() {
    // Tags above Content::MAX_TAG fold onto it; tag 0 is the image's content.
    assert_refused(&text("", "tag = 65535\n"), "vcpu[0].tag", &["1..=65533"]);
    assert_refused(&text("", "tag = 0\n"), "vcpu[0].tag", &["1..=65533"]);
    scenario::parse(&text("", "tag = 65533\n")).unwrap();
    assert_refused(
        &text("", "interrupts = 300\n"),
        "vcpu[0].interrupts",
        &["0..=255"],
    );
    scenario::parse(&text("", "interrupts = 255\n")).unwrap();
    // The priority order names actors the scenario has, each once.
    assert_refused(
        &text("scheduler = \"priority\"\norder = [1]", ""),
        "order",
        &["vCPU 1"],
    );
    assert_refused(
        &text("scheduler = \"priority\"\norder = [4]", ""),
        "order",
        &["host actor 0"],
    );
    assert_refused(
        &text("scheduler = \"priority\"\norder = [0, 0]", ""),
        "order",
        &["twice"],
    );
    assert_refused(&text("order = [300]", ""), "order", &["300"]);
    scenario::parse(&text(
        "scheduler = \"priority\"\norder = [4, 0]",
        "[[host]]\nactions = [{ op = \"prefetch\", gpa = \"0x40200000\" }]\n",
    ))
    .unwrap();
}

// ----- 2. await-stage -----

/// [`BASE`] as two stages (the 2M page, then reading its markers back) and a host script.
fn staged(actions: &str) -> String {
    format!(
        "policy = \"guest-inhibit\"\nregions = 2\n\n[[vcpu]]\n[[vcpu.stage]]\nguest = \"ovmf\"\n\
         start = \"0x40200000\"\nend = \"0x40400000\"\n[[vcpu.stage]]\nguest = \"ovmf\"\n\
         start = \"0x40200000\"\nend = \"0x40400000\"\nverify_only = true\n\n\
         [[vcpu]]\nguest = \"linux\"\nstart = \"0x40000000\"\nend = \"0x40200000\"\n\n\
         [[host]]\nactions = [{actions}]\n"
    )
}

#[test]
fn await_stage_names_a_stage_the_programs_have() {
    for n in [1, 2] {
        scenario::parse(&staged(&format!("{{ op = \"await-stage\", stage = {n} }}"))).unwrap();
    }
    assert_refused(
        &staged("{ op = \"await-stage\", stage = 3 }"),
        "host[0].actions[0].stage",
        &["1..=2"],
    );
    assert_refused(
        &staged("{ op = \"await-stage\", stage = 0 }"),
        "host[0].actions[0].stage",
        &["1..=2"],
    );
    assert_refused(
        &staged("{ op = \"await-stage\", stage = 300 }"),
        "host[0].actions[0].stage",
        &["1..=2"],
    );
}

// ----- 3. and 4. finalize and init-mem-region -----

/// [`BASE`] at build time with this host script.
fn build_time(actions: &str) -> String {
    text(
        "runnable = false",
        &format!("[[host]]\nactions = [{actions}]\n"),
    )
}

const INIT: &str = "{ op = \"init-mem-region\", start = \"0x40000000\", end = \"0x40002000\" }";
const FINALIZE: &str = "{ op = \"finalize\" }";

#[test]
fn finalize_needs_a_td_at_build_time() {
    scenario::parse(&build_time(&format!("{INIT}, {FINALIZE}"))).unwrap();
    assert_refused(
        &text("", &format!("[[host]]\nactions = [{FINALIZE}]\n")),
        "host[0].actions[0].op",
        &["runnable"],
    );
}

#[test]
fn init_mem_region_after_finalize_is_refused() {
    assert_refused(
        &build_time(&format!("{FINALIZE}, {INIT}")),
        "host[0].actions[1].op",
        &["after", "finalize", "host[0].actions[0]"],
    );
    // On a TD that starts runnable the ioctl is refused just the same.
    assert_refused(
        &text("", &format!("[[host]]\nactions = [{INIT}]\n")),
        "host[0].actions[0].op",
        &["runnable"],
    );
}

// ----- 5. folio orders -----

#[test]
fn folio_orders_are_those_of_the_model() {
    let slot = |order: u8| {
        text(
            "",
            &format!(
                "[[memslot]]\nstart = \"0x40000000\"\nend = \"0x40400000\"\nfolio_order = {order}\n"
            ),
        )
    };
    for order in [0, 9, 18] {
        scenario::parse(&slot(order)).unwrap().world().unwrap();
    }
    for order in [1, 5, 10, 17, 19, 30] {
        assert_refused(
            &slot(order),
            "memslot[0].folio_order",
            &["0 (4K)", "9 (2M)", "18 (1G)"],
        );
    }
}

// ----- 6. steps and patience -----

#[test]
fn zero_steps_or_patience_are_refused() {
    assert_refused(&text("steps = 0", ""), "steps", &["1..="]);
    assert_refused(&text("patience = 0", ""), "patience", &["1..="]);
}

// ----- 7. markers that vCPUs write over each other's: warnings -----

/// Two vCPUs, each with the tables given (after `[[vcpu]]`), in a window of eight regions.
fn pair(first: &str, second: &str) -> String {
    format!("policy = \"guest-inhibit\"\nregions = 8\n\n[[vcpu]]\n{first}\n[[vcpu]]\n{second}")
}

fn warnings(text: &str) -> Vec<String> {
    scenario::parse(text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .warnings
}

const LOW_2M: &str = "guest = \"ovmf\"\nstart = \"0x40200000\"\nend = \"0x40400000\"\n";

#[test]
fn overlapping_markers_in_the_same_stage_are_a_warning() {
    // OVMF over a 2M page and OVMF over one 4K page in it (ALREADY_ACCEPTED is skipped, so
    // both get to their markers).
    let inside = "guest = \"ovmf\"\nstart = \"0x40201000\"\nend = \"0x40202000\"\n";
    let t = pair(LOW_2M, inside);
    let w = warnings(&t);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("vcpu[0] and vcpu[1]"), "{}", w[0]);
    assert!(w[0].contains("[0x40201000, 0x40202000)"), "{}", w[0]);
    assert!(w[0].contains("data-loss"), "{}", w[0]);
    let sum = scenario::run(&scenario::parse(&t).unwrap(), 1, 32).unwrap();
    assert!(sum.verdicts.contains_key("data-loss"), "{:?}", sum.verdicts);
    // Markers off on either side, the same tag, or disjoint ranges: nothing is overwritten.
    let quiet = [
        pair(&format!("{LOW_2M}markers = false\n"), inside),
        pair(LOW_2M, &format!("{inside}markers = false\n")),
        pair(&format!("{LOW_2M}tag = 9\n"), &format!("{inside}tag = 9\n")),
        pair(LOW_2M, &inside.replace("0x4020", "0x4040")),
        pair(LOW_2M, &inside.replace("ovmf", "single-accept")),
        pair(LOW_2M, &inside.replace("ovmf", "adversarial")),
    ];
    for t in &quiet {
        assert_eq!(warnings(t), Vec::<String>::new(), "{t}");
    }
}

#[test]
fn strided_vcpus_overlap_only_in_the_chunks_they_share() {
    let strided = |index: u8| {
        format!(
            "guest = \"ovmf\"\nstart = \"0x40000000\"\nend = \"0x40800000\"\n\
             stride = {{ index = {index}, count = 2, chunk = \"0x200000\" }}\n"
        )
    };
    assert!(warnings(&pair(&strided(0), &strided(1))).is_empty());
    let w = warnings(&pair(&strided(1), &strided(1)));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("[0x40200000, 0x40400000)"), "{}", w[0]);
    // vCPU 1 over the whole range meets vCPU 0's first chunk.
    let w = warnings(&pair(
        &strided(0),
        &LOW_2M.replace("0x40200000", "0x40000000"),
    ));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("[0x40000000, 0x40200000)"), "{}", w[0]);
}

#[test]
fn markers_overwritten_before_a_later_stage_reads_them_are_a_warning() {
    // vCPU 0 marks the 2M page in stage 0 and reads it back in stage 2; vCPU 1 writes its own
    // markers into it in stage 1.
    let stage = |guest: &str, start: &str, end: &str, extra: &str| {
        format!(
            "[[vcpu.stage]]\nguest = \"{guest}\"\nstart = \"{start}\"\nend = \"{end}\"\n{extra}"
        )
    };
    let idle = stage("linux", "0x40600000", "0x40601000", "");
    let first = stage("ovmf", "0x40200000", "0x40400000", "")
        + &idle.replace("0x4060", "0x4070")
        + &stage("ovmf", "0x40200000", "0x40400000", "verify_only = true\n");
    let second = idle.clone() + &stage("ovmf", "0x40300000", "0x40301000", "") + &idle;
    let t = pair(&first, &second);
    let w = warnings(&t);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("vcpu[1].stage[1] writes markers over [0x40300000, 0x40301000)")
            && w[0].contains("vcpu[0].stage[0]")
            && w[0].contains("vcpu[0].stage[2] reads back"),
        "{}",
        w[0]
    );
    let sum = scenario::run(&scenario::parse(&t).unwrap(), 1, 8).unwrap();
    assert_eq!(
        sum.verdicts.get("data-loss"),
        Some(&8),
        "{:?}",
        sum.verdicts
    );
    // Without the later read, or with the read ending below the overwritten page, nothing
    // reads what vCPU 1 overwrote (the Linux-boot-like scenarios do this).
    let unread = first.replace(
        "verify_only = true\n",
        "markers = false\nverify_only = true\n",
    );
    assert!(warnings(&pair(&unread, &second)).is_empty());
    let below = first.replacen("0x40400000\"\nverify_only", "0x40300000\"\nverify_only", 1);
    assert!(warnings(&pair(&below, &second)).is_empty(), "{below}");
    // A write in a stage after the read harms nothing.
    let early_read = stage("ovmf", "0x40200000", "0x40400000", "")
        + &stage("ovmf", "0x40200000", "0x40400000", "verify_only = true\n")
        + &idle;
    let late_write = idle.clone()
        + &idle.replace("0x4060", "0x4070")
        + &stage("linux", "0x40300000", "0x40301000", "");
    assert!(warnings(&pair(&early_read, &late_write)).is_empty());
}

#[test]
fn a_second_finalize_is_a_warning() {
    // KVM_TDX_FINALIZE_VM a second time is refused by the module and does nothing; the trace
    // of such a run shows the refusal (tests/cli.rs), so it stays a file the model runs.
    let w = warnings(&build_time(&format!("{INIT}, {FINALIZE}, {FINALIZE}")));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("host[0].actions[2]")
            && w[0].contains("second finalize")
            && w[0].contains("host[0].actions[1]"),
        "{}",
        w[0]
    );
    let two_hosts = text(
        "runnable = false",
        &format!("[[host]]\nactions = [{FINALIZE}]\n[[host]]\nactions = [{FINALIZE}]\n"),
    );
    let w = warnings(&two_hosts);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("host[1].actions[0]"), "{}", w[0]);
}

#[test]
fn the_shipped_scenarios_and_standard_worlds_give_no_warnings() {
    use hugesept_core::guest::GuestKind;
    use hugesept_core::policy::PolicyId;
    use hugesept_host_kvm::matrix::{StandardWorld, boot_scenario_text};
    let mut files = 0;
    for path in scenario_files("") {
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(warnings(&text), Vec::<String>::new(), "{}", path.display());
        files += 1;
    }
    assert!(files >= 15, "{files}");
    for p in PolicyId::ALL {
        assert!(warnings(&boot_scenario_text(p)).is_empty(), "{p}");
        for world in StandardWorld::ALL {
            for g in GuestKind::ALL {
                let t = world.scenario_text(p, g);
                assert!(warnings(&t).is_empty(), "{t}");
            }
        }
    }
}

// ----- the command line prints the warnings -----

fn hugesept(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hugesept"))
        .args(args)
        .output()
        .expect("run hugesept");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sim_explore_and_replay_print_the_warnings() {
    let dir = std::env::temp_dir().join(format!("hugesept-checks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("twice.toml");
    let text = format!(
        "scheduler = \"priority\"\norder = [4, 0]\nexpect = \"ok\"\n{}",
        build_time(&format!("{INIT}, {FINALIZE}, {FINALIZE}"))
    );
    std::fs::write(&file, text).unwrap();
    let f = file.to_str().unwrap();
    let trace = dir.join("twice.trace.toml");
    let t = trace.to_str().unwrap();
    let expected = format!("warning: {f}: host[0].actions[2]: a second finalize");
    let (ok, _, err) = hugesept(&["sim", f, "--trace", t]);
    assert!(ok, "{err}");
    assert!(err.contains(&expected), "{err}");
    let (ok, _, err) = hugesept(&["explore", f]);
    assert!(ok, "{err}");
    assert!(err.contains(&expected), "{err}");
    let (ok, out, err) = hugesept(&["replay", t]);
    assert!(ok, "{err}");
    assert!(out.contains("reproduced: ok"), "{out}");
    assert!(
        err.contains(&format!(
            "warning: {t}: host[0].actions[2]: a second finalize"
        )),
        "{err}"
    );
    // A file without warnings prints none.
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/seed-tdcalls.toml"
    );
    let (ok, _, err) = hugesept(&["sim", seed, "--runs", "1"]);
    assert!(ok, "{err}");
    assert!(!err.contains("warning"), "{err}");
}

/// A file that expects a livelock but whose `patience` exceeds its `steps` can never get one:
/// every run that does not end uses its budget first.
#[test]
fn a_livelock_expected_beyond_the_budget_is_a_warning() {
    let w = warnings(&text(
        "expect = \"livelock\"\nsteps = 100\npatience = 200",
        "",
    ));
    assert!(
        w.iter()
            .any(|w| w.contains("`patience` 200 exceeds `steps` 100")),
        "{w:?}"
    );
    assert!(
        warnings(&text(
            "expect = \"livelock\"\nsteps = 300\npatience = 200",
            ""
        ))
        .is_empty()
    );
}
