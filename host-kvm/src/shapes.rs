//! The field's shapes, reproduced: the worlds behind the measurements the list argues with,
//! run per design and priced with the cost model ([`crate::costs`]).
//!
//! - The boot storm (Dstack-TEE/dstack pull request 1220): before the zone watermarks are set
//!   Linux accepts a 4 MiB block on every allocation, on the boot CPU; at 248 vCPUs that was
//!   about 13 GiB. The world is that boot CPU running linux-early over the storm's blocks,
//!   taken here as growing with the vCPU count (13 GiB × n / 248: the allocations are SMP
//!   bring-up's), in a TD of n vCPUs whose other vCPUs sit idle (they enter the estimate
//!   through the profile's per-exit cost, as they did in the field).
//! - Parallel accept (asterinas pull request 3640): n vCPUs each accept a contiguous share of
//!   the memory the firmware left unaccepted.
//!
//! Each point is one seeded schedule of its scenario (the worlds are deterministic up to the
//! order of independent vCPUs); the scenario text of any point is in the report, to rerun with
//! `hugesept sim`.

use std::fmt::Write as _;

use hugesept_core::policy::PolicyId;
use hugesept_core::world::Metrics;
use serde::Serialize;

use crate::costs::{CostProfile, Duration, Estimate};
use crate::scenario::{self, ScenarioError};

/// The storm's size at 248 vCPUs, in MiB (Dstack: "about 13 GiB").
pub const STORM_MIB_AT_248: u64 = 13 << 10;
/// A MAX_PAGE_ORDER block, in MiB.
const BLOCK_MIB: u64 = 4;
/// Where the worlds' windows start (1 GiB).
const BASE: u64 = 0x4000_0000;

/// Which world a point is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Study {
    /// The boot CPU's accept storm before the watermarks.
    Storm,
    /// Parallel accept in contiguous shares.
    Parallel,
}

impl Study {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Study::Storm => "storm",
            Study::Parallel => "parallel",
        }
    }
}

/// One point: a design, a vCPU count and a memory size, what its run counted and what the
/// profile makes of it.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// The world.
    pub study: Study,
    /// The design.
    pub policy: String,
    /// The TD's vCPUs.
    pub vcpus: u32,
    /// The memory accepted, MiB.
    pub mib: u64,
    /// The run's outcome.
    pub outcome: String,
    /// TD exits, all vCPUs.
    pub exits: u64,
    /// ACCEPT TDCALLs, all vCPUs.
    pub tdcalls: u64,
    /// The most exits on one vCPU.
    pub busiest_exits: u32,
    /// Waits for mmu_lock, for the guests during a split, ACCEPT BUSY, and all vCPUs' waits.
    pub lock_waits: u32,
    /// ACCEPTs refused BUSY.
    pub accept_busy: u32,
    /// All vCPUs' waiting steps.
    pub vcpu_waits: u64,
    /// The estimate.
    pub estimate: Estimate,
    /// Estimated wall time, µs.
    pub wall_us: f64,
}

/// What to compute.
#[derive(Debug, Clone)]
pub struct ShapeSpec {
    /// Designs.
    pub policies: Vec<PolicyId>,
    /// vCPU counts of the storm.
    pub storm_vcpus: Vec<u32>,
    /// The storm's size at 248 vCPUs, MiB (scaled linearly to each count).
    pub storm_mib_at_248: u64,
    /// vCPU counts of parallel accept.
    pub parallel_vcpus: Vec<u32>,
    /// Memory parallel accept accepts at each vCPU count, MiB.
    pub parallel_mib: u64,
    /// Memory sizes of the parallel accept's memory axis, MiB.
    pub memory_mib: Vec<u64>,
    /// The vCPU count of the memory axis.
    pub memory_vcpus: u32,
    /// What prices the runs.
    pub profile: CostProfile,
}

impl ShapeSpec {
    /// The default study: the storm at 1 to 248 vCPUs, parallel accept of 2 GiB on 1 to 64,
    /// and 512 MiB to 4 GiB on 8, under upstream-4k, guest-inhibit and rfc-v1.
    pub fn standard() -> ShapeSpec {
        ShapeSpec {
            policies: vec![
                PolicyId::Upstream4K,
                PolicyId::GuestInhibit,
                PolicyId::RfcV1,
            ],
            storm_vcpus: vec![1, 8, 32, 64, 128, 248],
            storm_mib_at_248: STORM_MIB_AT_248,
            parallel_vcpus: vec![1, 2, 4, 8, 16, 32, 64],
            parallel_mib: 2048,
            memory_mib: vec![512, 1024, 2048, 4096],
            memory_vcpus: 8,
            profile: CostProfile::field(),
        }
    }

    /// The same shapes at a sixteenth of the memory (a quick check of the machinery).
    pub fn quick() -> ShapeSpec {
        let mut s = ShapeSpec::standard();
        s.storm_mib_at_248 /= 16;
        s.parallel_mib /= 16;
        s.memory_mib = vec![32, 64, 128, 256];
        s
    }

    /// Every point's scenario, in order.
    pub fn scenarios(&self) -> Vec<(Study, PolicyId, u32, u64, String)> {
        let mut out = Vec::new();
        for &p in &self.policies {
            for &n in &self.storm_vcpus {
                let mib = storm_mib(self.storm_mib_at_248, n);
                out.push((Study::Storm, p, n, mib, storm_text(p, n, mib)));
            }
            for &n in &self.parallel_vcpus {
                let mib = self.parallel_mib;
                out.push((Study::Parallel, p, n, mib, parallel_text(p, n, mib)));
            }
            for &mib in &self.memory_mib {
                let n = self.memory_vcpus;
                if self.parallel_vcpus.contains(&n) && mib == self.parallel_mib {
                    continue;
                }
                out.push((Study::Parallel, p, n, mib, parallel_text(p, n, mib)));
            }
        }
        out
    }
}

/// The storm at `vcpus` vCPUs: `at_248` × vcpus / 248, in whole 4 MiB blocks (one at least).
pub fn storm_mib(at_248: u64, vcpus: u32) -> u64 {
    let mib = at_248.saturating_mul(u64::from(vcpus)) / 248;
    (mib / BLOCK_MIB).max(1) * BLOCK_MIB
}

/// A window of `mib` MiB from 1 GiB: its regions and end.
fn window(mib: u64) -> (u64, u64) {
    let regions = mib.div_ceil(2).max(1);
    (regions, BASE + (mib << 20))
}

/// The storm's scenario: the boot CPU accepting `mib` MiB in 4 MiB blocks before the
/// watermarks, in a TD of `vcpus` vCPUs (the others idle, outside the world).
pub fn storm_text(policy: PolicyId, vcpus: u32, mib: u64) -> String {
    let (regions, end) = window(mib);
    format!(
        "# The boot CPU's accept storm in a TD of {vcpus} vCPUs (Dstack-TEE/dstack pull \
         request 1220):\n# {mib} MiB accepted a 4 MiB block per allocation before the zone \
         watermarks are set.\nname = \"storm, {vcpus} vCPUs, {mib} MiB, {policy}\"\n\
         policy = \"{policy}\"\nregions = {regions}\nschedules = 1\nsteps = 50000000\n\
         patience = 100000\nexpect = \"ok\"\n\n[[vcpu]]\nguest = \"linux-early\"\n\
         start = \"{BASE:#x}\"\nend = \"{end:#x}\"\nmarkers = false\n"
    )
}

/// Parallel accept: `vcpus` vCPUs each accepting a contiguous share of `mib` MiB.
pub fn parallel_text(policy: PolicyId, vcpus: u32, mib: u64) -> String {
    let (regions, end) = window(mib);
    format!(
        "# asterinas' parallel accept (pull request 3640): {vcpus} vCPUs, each a contiguous \
         share of {mib} MiB.\nname = \"parallel accept, {vcpus} vCPUs, {mib} MiB, {policy}\"\n\
         policy = \"{policy}\"\nregions = {regions}\nschedules = 1\nsteps = 50000000\n\
         patience = 100000\nexpect = \"ok\"\n\n[[vcpu]]\nguest = \"asterinas\"\n\
         start = \"{BASE:#x}\"\nend = \"{end:#x}\"\ncount = {vcpus}\nmarkers = false\n"
    )
}

/// Runs one point.
pub fn run_point(
    study: Study,
    policy: PolicyId,
    vcpus: u32,
    mib: u64,
    text: &str,
    profile: &CostProfile,
) -> Result<Point, ScenarioError> {
    let sc = scenario::parse(text)?;
    let sum = scenario::run(&sc, 1, 1)?;
    let run = sum
        .runs
        .first()
        .ok_or_else(|| ScenarioError::Model("the schedule did not run".into()))?;
    // One schedule: the summary's counters are its run's.
    let m: &Metrics = &sum.metrics;
    let estimate = profile.estimate(m, vcpus);
    Ok(Point {
        study,
        policy: policy.to_string(),
        vcpus,
        mib,
        outcome: run.outcome.to_owned(),
        exits: u64::from(m.exits_accept) + u64::from(m.exits_other),
        tdcalls: u64::from(m.tdcalls),
        busiest_exits: m.most_exits_on_one_vcpu(),
        lock_waits: m
            .fault
            .mmu_lock_waits
            .saturating_add(m.fault.split_waits)
            .saturating_add(m.accept_busy),
        accept_busy: m.accept_busy,
        vcpu_waits: m.vcpu_waits.iter().map(|&w| u64::from(w)).sum(),
        wall_us: estimate.wall_us(),
        estimate,
    })
}

/// The measured points the shapes are set against.
pub mod field {
    /// Dstack pull request 1220: vCPUs, seconds to init (low, high), on a 4K-only host.
    pub const DSTACK_TO_INIT: [(u32, f64, f64); 2] = [(64, 50.0, 50.0), (248, 575.0, 680.0)];
    /// asterinas pull request 3640: vCPUs, seconds to boot an 8 GiB TD.
    pub const ASTERINAS_8G: [(u32, f64); 3] = [(1, 25.0), (4, 12.0), (8, 9.0)];
}

/// The report in Markdown: per study, a table of the points with their counts, waits and
/// estimates, and the field's figures beside them.
pub fn markdown(points: &[Point], profile: &CostProfile) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Cost profile `{}`: an exit {} µs up to {} vCPUs, {} µs more per vCPU past that; a \
         TDCALL {} µs; a 4K page initialised {} µs; a further SEAMCALL or a wait step {} µs \
         (docs/costs.md).\n",
        profile.name,
        profile.exit_us,
        profile.exit_flat_vcpus,
        profile.exit_us_per_vcpu,
        profile.tdcall_us,
        profile.page_init_us,
        profile.seamcall_us
    );
    let _ = writeln!(
        s,
        "The boot storm (the boot CPU accepting a 4 MiB block per allocation before the \
         watermarks, 13 GiB × n / 248; Dstack measured 50 s to init at 64 vCPUs and 575-680 s \
         at 248 on a 4K-only host):\n"
    );
    s += "| design | vCPUs | storm | outcome | TD exits | ACCEPT TDCALLs | lock waits | \
          exit cost | estimated |\n|---|---|---|---|---|---|---|---|---|\n";
    for p in points.iter().filter(|p| p.study == Study::Storm) {
        let _ = writeln!(
            s,
            "| {} | {} | {} MiB | {} | {} | {} | {} | {:.0} µs | {} |",
            p.policy,
            p.vcpus,
            p.mib,
            p.outcome,
            p.exits,
            p.tdcalls,
            p.lock_waits,
            p.estimate.exit_cost,
            Duration(p.wall_us)
        );
    }
    let _ = writeln!(
        s,
        "\nParallel accept (contiguous shares, asterinas; measured on an 8 GiB TD: 25 s on 1 \
         vCPU, 12 s on 4, 9 s on 8):\n"
    );
    s += "| design | vCPUs | memory | outcome | TD exits | most on one vCPU | lock waits | \
          estimated | speed-up |\n|---|---|---|---|---|---|---|---|---|\n";
    for p in points.iter().filter(|p| p.study == Study::Parallel) {
        let one = points.iter().find(|q| {
            q.study == Study::Parallel && q.policy == p.policy && q.mib == p.mib && q.vcpus == 1
        });
        let speedup = one.map_or(String::from("-"), |o| {
            format!("{:.2}×", o.wall_us / p.wall_us.max(1e-9))
        });
        let _ = writeln!(
            s,
            "| {} | {} | {} MiB | {} | {} | {} | {} | {} | {speedup} |",
            p.policy,
            p.vcpus,
            p.mib,
            p.outcome,
            p.exits,
            p.busiest_exits,
            p.lock_waits,
            Duration(p.wall_us)
        );
    }
    s
}

/// A short summary for the README: per design, the storm's estimate at 64 and 248 vCPUs (or
/// the largest counts run) beside Dstack's measured time to init, and parallel accept's
/// speed-up from 1 vCPU at 4, 8 and the most vCPUs run, beside asterinas'.
pub fn summary_markdown(points: &[Point], spec: &ShapeSpec) -> String {
    let storm = |p: &str, n: u32| {
        points
            .iter()
            .find(|q| q.study == Study::Storm && q.policy == p && q.vcpus == n)
            .map_or("-".to_owned(), |q| Duration(q.wall_us).to_string())
    };
    let speedup = |p: &str, n: u32| {
        let at = |k: u32| {
            points.iter().find(|q| {
                q.study == Study::Parallel
                    && q.policy == p
                    && q.vcpus == k
                    && q.mib == spec.parallel_mib
            })
        };
        match (at(1), at(n)) {
            (Some(a), Some(b)) if b.wall_us > 0.0 => format!("{:.1}×", a.wall_us / b.wall_us),
            _ => "-".to_owned(),
        }
    };
    let most = spec.parallel_vcpus.iter().copied().max().unwrap_or(1);
    let mut s = format!(
        "| design | boot storm, 64 vCPUs | boot storm, 248 vCPUs | parallel accept speed-up \
         on 4 / 8 / {most} vCPUs |\n|---|---|---|---|\n| measured (Dstack; asterinas) | 50 s \
         | 575-680 s | 2.1× / 2.8× / - |\n"
    );
    for p in &spec.policies {
        let p = p.to_string();
        let _ = writeln!(
            s,
            "| {p} | {} | {} | {} / {} / {} |",
            storm(&p, 64),
            storm(&p, 248),
            speedup(&p, 4),
            speedup(&p, 8),
            speedup(&p, most)
        );
    }
    s
}

/// Replaces what lies between `<!-- costs:begin -->` and `<!-- costs:end -->` in `text` with
/// `summary`; `None` when the markers are missing.
pub fn replace_summary(text: &str, summary: &str) -> Option<String> {
    const BEGIN: &str = "<!-- costs:begin -->";
    const END: &str = "<!-- costs:end -->";
    let b = text.find(BEGIN)? + BEGIN.len();
    let e = b + text.get(b..)?.find(END)?;
    Some(format!("{}\n{summary}{}", text.get(..b)?, text.get(e..)?))
}

/// One chart panel's series: a design's (x, seconds) points.
type Series = (String, Vec<(f64, f64)>);

/// One chart panel: its title, its x axis, a series per design, the measured points.
type Panel<'a> = (&'a str, &'a str, Vec<Series>, Vec<(f64, f64)>);

/// The chart: estimated time against vCPUs for the storm and for parallel accept, and against
/// memory for parallel accept, per design (log scales), with the field's measurements marked.
pub fn svg(points: &[Point], spec: &ShapeSpec) -> String {
    let colours = [
        "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    ];
    let series = |study: Study, by_memory: bool| -> Vec<Series> {
        spec.policies
            .iter()
            .map(|p| {
                let name = p.to_string();
                let pts = points
                    .iter()
                    .filter(|q| q.study == study && q.policy == name)
                    .filter(|q| {
                        !by_memory && (study == Study::Storm || q.mib == spec.parallel_mib)
                            || by_memory && q.vcpus == spec.memory_vcpus
                    })
                    .map(|q| {
                        let x = if by_memory {
                            q.mib as f64
                        } else {
                            f64::from(q.vcpus)
                        };
                        (x, q.wall_us / 1e6)
                    })
                    .collect();
                (name, pts)
            })
            .collect()
    };
    let panels: [Panel<'_>; 3] = [
        (
            "Boot storm: estimated seconds against vCPUs",
            "vCPUs",
            series(Study::Storm, false),
            field::DSTACK_TO_INIT
                .iter()
                .flat_map(|&(n, lo, hi)| [(f64::from(n), lo), (f64::from(n), hi)])
                .collect(),
        ),
        (
            "Parallel accept: estimated seconds against vCPUs",
            "vCPUs",
            series(Study::Parallel, false),
            Vec::new(),
        ),
        (
            "Parallel accept: estimated seconds against MiB",
            "MiB",
            series(Study::Parallel, true),
            Vec::new(),
        ),
    ];
    let (pw, ph, gap, top) = (300.0, 240.0, 60.0, 70.0);
    let width = 3.0 * (pw + gap) + gap;
    let height = top + ph + 70.0 + 18.0 * spec.policies.len() as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" \
         fill=\"white\"/>\n<text x=\"{gap}\" y=\"24\" font-size=\"15\">Estimated time by design \
         (cost profile {}; log scales; black: Dstack's measured time to init)</text>\n",
        spec.profile.name
    );
    for (k, (title, xlabel, lines, measured)) in panels.iter().enumerate() {
        let x0 = gap + k as f64 * (pw + gap);
        let all: Vec<(f64, f64)> = lines
            .iter()
            .flat_map(|(_, p)| p.iter().copied())
            .chain(measured.iter().copied())
            .filter(|&(x, y)| x > 0.0 && y > 0.0)
            .collect();
        if all.is_empty() {
            continue;
        }
        let (xmin, xmax) = bounds(all.iter().map(|p| p.0));
        let (ymin, ymax) = bounds(all.iter().map(|p| p.1));
        let px = |x: f64| x0 + log_pos(x, xmin, xmax) * pw;
        let py = |y: f64| top + ph - log_pos(y, ymin, ymax) * ph;
        let _ = writeln!(
            s,
            "<text x=\"{x0}\" y=\"{}\" font-size=\"12\">{title}</text>\n<rect x=\"{x0}\" \
             y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>",
            top - 10.0
        );
        for t in decades(ymin, ymax) {
            let y = py(t);
            let _ = writeln!(
                s,
                "<line x1=\"{x0}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                x0 + pw,
                x0 - 4.0,
                y + 4.0,
                seconds_label(t)
            );
        }
        let mut xs: Vec<f64> = all.iter().map(|p| p.0).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        for x in xs {
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{x}</text>",
                px(x),
                top + ph + 14.0
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{xlabel}</text>",
            x0 + pw / 2.0,
            top + ph + 30.0
        );
        for (i, (_, pts)) in lines.iter().enumerate() {
            let colour = colours.get(i % colours.len()).copied().unwrap_or("#000");
            let path: Vec<String> = pts
                .iter()
                .filter(|&&(x, y)| x > 0.0 && y > 0.0)
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
                path.join(" ")
            );
            for p in &path {
                let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(
                    s,
                    "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"{colour}\"/>"
                );
            }
        }
        for &(x, y) in measured {
            let _ = writeln!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"7\" height=\"7\" fill=\"black\"/>",
                px(x) - 3.5,
                py(y) - 3.5
            );
        }
    }
    for (i, p) in spec.policies.iter().enumerate() {
        let colour = colours.get(i % colours.len()).copied().unwrap_or("#000");
        let y = top + ph + 50.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{gap}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"{y}\">{}</text>",
            y - 10.0,
            gap + 18.0,
            p
        );
    }
    s += "</svg>\n";
    s
}

/// The smallest and largest of `v`, a little apart when equal.
fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v.fold((f64::INFINITY, 0.0f64), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    if hi <= lo {
        (lo / 2.0, lo * 2.0)
    } else {
        (lo, hi)
    }
}

/// Where `x` lies between `lo` and `hi` on a log scale (0..1).
fn log_pos(x: f64, lo: f64, hi: f64) -> f64 {
    let (l, h) = (lo.log10(), hi.log10());
    if h > l {
        (x.log10() - l) / (h - l)
    } else {
        0.5
    }
}

/// The powers of ten between `lo` and `hi`.
fn decades(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut t = 10f64.powf(lo.log10().ceil());
    while t <= hi && out.len() < 20 {
        out.push(t);
        t *= 10.0;
    }
    out
}

/// Seconds as a short axis label.
fn seconds_label(t: f64) -> String {
    if t >= 1.0 {
        format!("{t} s")
    } else if t >= 1e-3 {
        format!("{} ms", t * 1e3)
    } else {
        format!("{} µs", t * 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_block_is_replaced_between_its_markers() {
        let text = "a\n<!-- costs:begin -->\nold\n<!-- costs:end -->\nb\n";
        assert_eq!(
            replace_summary(text, "new\n").as_deref(),
            Some("a\n<!-- costs:begin -->\nnew\n<!-- costs:end -->\nb\n")
        );
        assert_eq!(replace_summary("no markers", "x"), None);
    }

    #[test]
    fn the_storm_grows_with_the_vcpus_in_whole_blocks() {
        assert_eq!(storm_mib(STORM_MIB_AT_248, 248), 13 << 10);
        // 13 GiB × 64 / 248 = 3435 MiB, down to whole 4 MiB blocks.
        assert_eq!(storm_mib(STORM_MIB_AT_248, 64), 3432);
        assert_eq!(storm_mib(STORM_MIB_AT_248, 1), 52);
        assert_eq!(storm_mib(0, 1), 4);
    }

    #[test]
    fn every_point_s_scenario_parses() {
        for (study, _, n, _, text) in ShapeSpec::standard().scenarios() {
            let sc = scenario::parse(&text).unwrap_or_else(|e| panic!("{text}\n{e}"));
            // The storm's world is its boot CPU; parallel accept's has every vCPU.
            let vcpus = match study {
                Study::Storm => 1,
                Study::Parallel => n as usize,
            };
            assert_eq!(sc.programs().len(), vcpus, "{text}");
        }
    }
}
