//! `hugesept costs`: the field's shapes (the boot storm against vCPUs, parallel accept against
//! vCPUs and memory) per design, priced with the cost model, as Markdown tables and an SVG
//! chart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::costs::{CostProfile, FIELD_SOURCES};
use crate::shapes::{self, Point, ShapeSpec};

use super::CliError;

/// Options of `costs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The same shapes at a sixteenth of the memory (seconds instead of minutes).
    #[arg(long)]
    quick: bool,
    /// Only these designs (comma-separated; default upstream-4k, guest-inhibit, rfc-v1).
    #[arg(long, value_delimiter = ',')]
    policy: Vec<String>,
    /// The cost profile: a TOML file of per-event costs in µs (default: the field profile).
    #[arg(long)]
    cost_profile: Option<PathBuf>,
    /// Print the cost profile in use, with the sources of the field profile's numbers, and
    /// stop.
    #[arg(long)]
    show_profile: bool,
    /// Also write the tables to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Also write the chart to this file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Also write every point as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Rewrite the summary table between `<!-- costs:begin -->` and `<!-- costs:end -->` in
    /// this file (the README).
    #[arg(long)]
    readme: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// The largest cost profile file.
const PROFILE_CAP: u64 = 64 << 10;

/// Reads a cost profile file.
pub(crate) fn read_profile(path: &Path) -> Result<CostProfile, CliError> {
    let text = super::read_input(path, "cost profile", PROFILE_CAP)?;
    CostProfile::parse(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

/// Runs `costs`.
pub fn run(args: &Args, out: &mut impl Write) -> Result<(), CliError> {
    let io = CliError::Io;
    let mut spec = if args.quick {
        ShapeSpec::quick()
    } else {
        ShapeSpec::standard()
    };
    if let Some(p) = &args.cost_profile {
        spec.profile = read_profile(p)?;
    }
    if args.show_profile {
        let text = toml::to_string(&spec.profile).map_err(|e| CliError::Usage(e.to_string()))?;
        write!(out, "{text}").map_err(io)?;
        if args.cost_profile.is_none() {
            for (what, source) in FIELD_SOURCES {
                writeln!(out, "# {what}: {source}").map_err(io)?;
            }
        }
        return Ok(());
    }
    if !args.policy.is_empty() {
        spec.policies = super::matrix::policies(&args.policy)?;
    }
    let threads = match args.threads {
        Some(t) if t == 0 || t > 256 => {
            return Err(CliError::Usage(format!("--threads {t}: 1 to 256 workers")));
        }
        Some(t) => t,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    for p in args.markdown.iter().chain(&args.svg).chain(&args.json) {
        super::create_output(p)?;
    }
    let jobs = spec.scenarios();
    let bar = super::progress(jobs.len() as u64, "points");
    // The largest first, so the last worker does not start the longest alone.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs.get(i).map_or(0, |j| u64::from(j.2) * j.3)));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Point, CliError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    let Some((study, policy, vcpus, mib, text)) = jobs.get(i) else {
                        break;
                    };
                    let r = shapes::run_point(*study, *policy, *vcpus, *mib, text, &spec.profile)
                        .map_err(|e| {
                            CliError::Scenario(format!("{} point {}", study.name(), i), e)
                        });
                    if let Ok(mut all) = results.lock()
                        && let Some(slot) = all.get_mut(i)
                    {
                        *slot = Some(r);
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut points = Vec::new();
    for r in results.into_inner().unwrap_or_default() {
        points.push(r.ok_or_else(|| CliError::Unexpected("a worker stopped".into()))??);
    }
    let md = shapes::markdown(&points, &spec.profile);
    if let Some(p) = &args.markdown {
        super::write_output(p, &md)?;
    }
    if let Some(p) = &args.svg {
        super::write_output(p, shapes::svg(&points, &spec))?;
    }
    if let Some(p) = &args.readme {
        let text = super::read_input(p, "README", 1 << 20)?;
        let summary = shapes::summary_markdown(&points, &spec);
        let new = shapes::replace_summary(&text, &summary).ok_or_else(|| {
            CliError::Usage(format!(
                "{}: no <!-- costs:begin --> ... <!-- costs:end --> block to rewrite",
                p.display()
            ))
        })?;
        super::write_output(p, new)?;
    }
    if let Some(p) = &args.json {
        let j =
            serde_json::to_string_pretty(&points).map_err(|e| CliError::Usage(e.to_string()))?;
        super::write_output(p, j)?;
    }
    write!(out, "{md}").map_err(io)?;
    let bad: Vec<String> = points
        .iter()
        .filter(|p| p.outcome != "ok")
        .map(|p| {
            format!(
                "{} {} at {} vCPUs: {}",
                p.study.name(),
                p.policy,
                p.vcpus,
                p.outcome
            )
        })
        .collect();
    if !bad.is_empty() {
        return Err(CliError::Unexpected(format!(
            "points that did not end ok: {}",
            bad.join("; ")
        )));
    }
    Ok(())
}
