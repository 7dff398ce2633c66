//! `hugesept matrix`: every design × every guest strategy on the standard worlds, as a Markdown
//! table, JSON, or an SVG chart of the cost metrics.

use std::io::Write;
use std::path::PathBuf;

use hugesept_core::guest::GuestKind;
use hugesept_core::policy::PolicyId;

use crate::matrix::{self, Cell, Matrix, MatrixSpec, StandardWorld};

use super::CliError;

/// Options of `matrix`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seeded schedules per cell.
    #[arg(long, default_value_t = 8)]
    seeds: u32,
    /// Only these designs (comma-separated).
    #[arg(long, value_delimiter = ',')]
    policy: Vec<String>,
    /// Only these guest strategies (comma-separated).
    #[arg(long, value_delimiter = ',')]
    guest: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    format: Format,
    /// Also write the JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write the SVG chart to this file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one standard world's scenario file for a design and a guest, and stop
    /// (e.g. `--show churn:guest-inhibit:linux`, or `--show boot:rfc-v1`).
    #[arg(long)]
    show: Option<String>,
    /// Also print each cell's estimated wall time (the cost model, docs/costs.md).
    #[arg(long)]
    costs: bool,
    /// The cost profile: a TOML file of per-event costs in µs (default: the field profile,
    /// `hugesept costs --show-profile` prints it).
    #[arg(long)]
    cost_profile: Option<PathBuf>,
}

/// The most schedules per cell (the full matrix runs about a hundred cells).
const MAX_SEEDS: u32 = 100_000;
/// The most worker threads.
const MAX_THREADS: usize = 256;

/// Output formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Tables a person reads.
    Markdown,
    /// Every cell with its verdict counts and mean costs.
    Json,
    /// A chart of the boot world's cost metrics per design.
    Svg,
}

/// The designs `names` name (every design when none), or a usage error naming the unknown one.
pub(super) fn policies(names: &[String]) -> Result<Vec<PolicyId>, CliError> {
    if names.is_empty() {
        return Ok(PolicyId::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            PolicyId::parse(n).ok_or_else(|| {
                CliError::Usage(format!(
                    "'{n}' names no policy (known: {})",
                    PolicyId::ALL.map(|p| p.to_string()).join(", ")
                ))
            })
        })
        .collect()
}

fn guests(names: &[String]) -> Result<Vec<GuestKind>, CliError> {
    if names.is_empty() {
        return Ok(GuestKind::STRATEGIES.to_vec());
    }
    names
        .iter()
        .map(|n| {
            GuestKind::parse(n).ok_or_else(|| {
                CliError::Usage(format!(
                    "'{n}' names no guest (known: {})",
                    GuestKind::ALL.map(|g| g.name()).join(", ")
                ))
            })
        })
        .collect()
}

fn show(spec: &str) -> Result<String, CliError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let usage = || CliError::Usage(format!("--show {spec}: expected WORLD:POLICY[:GUEST]"));
    match parts.as_slice() {
        ["boot", p] => Ok(matrix::boot_scenario_text(
            *policies(&[p.to_string()])?.first().ok_or_else(usage)?,
        )),
        [w, p, g] => {
            let world = StandardWorld::ALL
                .into_iter()
                .find(|s| s.name() == *w)
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "'{w}' names no world (known: solo, pair, churn, prefetch, boot)"
                    ))
                })?;
            let p = *policies(&[p.to_string()])?.first().ok_or_else(usage)?;
            let g = *guests(&[g.to_string()])?.first().ok_or_else(usage)?;
            Ok(world.scenario_text(p, g))
        }
        _ => Err(usage()),
    }
}

/// Runs `matrix`.
pub fn run(args: &Args, out: &mut impl Write) -> Result<(), CliError> {
    let io = CliError::Io;
    if let Some(s) = &args.show {
        write!(out, "{}", show(s)?).map_err(io)?;
        return Ok(());
    }
    if args.seeds == 0 || args.seeds > MAX_SEEDS {
        return Err(CliError::Usage(format!(
            "--seeds {}: a cell runs 1 to {MAX_SEEDS} schedules",
            args.seeds
        )));
    }
    let mut spec = MatrixSpec {
        policies: policies(&args.policy)?,
        guests: guests(&args.guest)?,
        seeds: args.seeds,
        ..MatrixSpec::default()
    };
    if let Some(p) = &args.cost_profile {
        spec.profile = super::costs::read_profile(p)?;
    }
    if let Some(t) = args.threads {
        if t == 0 || t > MAX_THREADS {
            return Err(CliError::Usage(format!(
                "--threads {t}: 1 to {MAX_THREADS} workers"
            )));
        }
        spec.threads = t;
    }
    // The output files are opened before the matrix is computed: a path that cannot be
    // written fails now, not after the run.
    for p in args.json.iter().chain(&args.svg) {
        super::create_output(p)?;
    }
    let bar = super::progress(matrix::cell_count(&spec) as u64, "cells");
    let m =
        matrix::run(&spec, &|| bar.inc(1)).map_err(|e| CliError::Scenario("matrix".into(), e))?;
    bar.finish_and_clear();
    if let Some(p) = &args.json {
        super::write_output(p, json(&m)?)?;
    }
    if let Some(p) = &args.svg {
        super::write_output(p, svg(&m))?;
    }
    match args.format {
        Format::Markdown => {
            write!(out, "{}", markdown(&m)).map_err(io)?;
            if args.costs {
                write!(out, "\n{}", costs_markdown(&m, &spec.profile.name)).map_err(io)?;
            }
        }
        Format::Json => writeln!(out, "{}", json(&m)?).map_err(io)?,
        Format::Svg => write!(out, "{}", svg(&m)).map_err(io)?,
    }
    let broken: Vec<&Cell> = m.cells.iter().filter(|c| !c.keeps_declaration()).collect();
    if !broken.is_empty() {
        return Err(CliError::Unexpected(format!(
            "{} cells break their design's declaration: {}",
            broken.len(),
            broken
                .iter()
                .map(|c| format!(
                    "{} × {} in {} ({})",
                    c.policy,
                    c.guest,
                    c.world,
                    c.verdict_text()
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(())
}

/// The JSON document.
pub fn json(m: &Matrix) -> Result<String, CliError> {
    serde_json::to_string_pretty(m).map_err(|e| CliError::Usage(e.to_string()))
}

/// The Markdown tables: verdicts per design × guest (the worst world named), then per design
/// the cost on the boot world, then the mean cost per design over the standard worlds.
pub fn markdown(m: &Matrix) -> String {
    let mut policies: Vec<&str> = Vec::new();
    let mut guests: Vec<&str> = Vec::new();
    for c in &m.cells {
        if !policies.contains(&c.policy.as_str()) {
            policies.push(&c.policy);
        }
        if c.guest != "boot" && !guests.contains(&c.guest.as_str()) {
            guests.push(&c.guest);
        }
    }
    let mut s = String::new();
    if !guests.is_empty() {
        s += &format!(
            "Verdicts, {} seeded schedules per world (solo, pair, churn, prefetch); \"ok\" when \
             every world and schedule ended ok, else the worlds that did not. `*` marks a guest \
             the design does not claim to support (in the prefetch world, a guest that gives up \
             on BUSY).\n\n",
            m.seeds
        );
        s += &format!("| design | {} |\n", guests.join(" | "));
        s += &format!("|---|{}\n", "---|".repeat(guests.len()));
        for p in &policies {
            s += &format!("| {p} |");
            for g in &guests {
                let cells: Vec<&Cell> = m
                    .cells
                    .iter()
                    .filter(|c| c.policy == *p && c.guest == *g)
                    .collect();
                // Each world that did not end ok, starred where the design does not claim the
                // guest there.
                let bad: Vec<String> = cells
                    .iter()
                    .filter(|c| !c.all(hugesept_core::world::Verdict::Ok))
                    .map(|c| {
                        let star = if c.supported { "" } else { "*" };
                        format!("{}: {}{star}", c.world, c.verdict_text())
                    })
                    .collect();
                let mark = if cells.first().is_some_and(|c| !c.supported) {
                    "*"
                } else {
                    ""
                };
                let texts: Vec<String> = cells.iter().map(|c| c.verdict_text()).collect();
                if bad.is_empty() {
                    s += &format!(" ok{mark} |");
                } else if bad.len() == cells.len() && texts.iter().all(|t| *t == texts[0]) {
                    // The same outcome in every world.
                    s += &format!(" {}{mark} |", texts[0]);
                } else {
                    s += &format!(" {} |", bad.join("; "));
                }
            }
            s += "\n";
        }
        s += "\n";
        s += "Legend: `ok` — every world and schedule ended ok. A verdict name alone (`livelock`, \
              `guest-panic`, `data-loss`, `vm-bugged`, `vm-killed`) — every world ended so. \
              `world: outcome n, …` — the worlds that did not end ok, with their schedules per \
              outcome; `budget-exhausted` counts a run that used its whole step budget (no \
              verdict; it is left out of the costs). `*` — the design does not claim this guest \
              (`world::supports`), or not in that world: in the prefetch world the host's \
              SEAMCALL holds the page's entry lock while the guest accepts it, the module answers \
              BUSY and no design can prevent that, so only guests that retry BUSY without limit \
              are claimed there (`world::retries_busy_without_limit`). `ok*` is ok without a \
              promise, and a failure there is not a bug of the design. `adversarial` — a guest issuing arbitrary ACCEPTs and touches \
              in and around its range: no design claims it ends ok; a design keeps its \
              declaration there when the VM is never bugged and no data is lost.\n\n";
    }
    let boot: Vec<&Cell> = m.cells.iter().filter(|c| c.guest == "boot").collect();
    if !boot.is_empty() {
        s += "Linux-boot-like world (OVMF on 3 vCPUs, then linux-lazy, private/shared churn), \
              mean per run:\n\n";
        s += "| design | verdict | TD exits | SEAMCALLs | demotions | write locks | \
              entries without progress | 2M coverage |\n|---|---|---|---|---|---|---|---|\n";
        for c in boot {
            s += &format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0}% |\n",
                c.policy,
                c.verdict_text(),
                c.cost.exits,
                c.cost.seamcalls,
                c.cost.demotions,
                c.cost.write_locks,
                c.cost.entries_without_progress,
                c.cost.coverage_2m * 100.0
            );
        }
        s += "\n";
    }
    if !guests.is_empty() {
        s += "Mean cost per run over the standard worlds and guests:\n\n";
        s += "| design | TD exits | SEAMCALLs | demotions | write locks | entries without \
              progress | 2M coverage |\n|---|---|---|---|---|---|---|\n";
        for p in &policies {
            let cells: Vec<&Cell> = m
                .cells
                .iter()
                .filter(|c| c.policy == *p && c.guest != "boot")
                .collect();
            let n = cells.len().max(1) as f64;
            let sum = |f: fn(&Cell) -> f64| cells.iter().map(|c| f(c)).sum::<f64>() / n;
            s += &format!(
                "| {p} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0}% |\n",
                sum(|c| c.cost.exits),
                sum(|c| c.cost.seamcalls),
                sum(|c| c.cost.demotions),
                sum(|c| c.cost.write_locks),
                sum(|c| c.cost.entries_without_progress),
                sum(|c| c.cost.coverage_2m) * 100.0
            );
        }
    }
    s
}

/// The estimated wall time per run (mean over each cell's runs that ended), per design and
/// guest, the worst of the standard worlds, and on the boot world.
pub fn costs_markdown(m: &Matrix, profile: &str) -> String {
    use crate::costs::Duration;
    let mut policies: Vec<&str> = Vec::new();
    let mut guests: Vec<&str> = Vec::new();
    for c in &m.cells {
        if !policies.contains(&c.policy.as_str()) {
            policies.push(&c.policy);
        }
        if !guests.contains(&c.guest.as_str()) {
            guests.push(&c.guest);
        }
    }
    let mut s = format!(
        "Estimated wall time per run (cost profile `{profile}`, docs/costs.md): the mean over a \
         cell's runs, the longest of the standard worlds; `boot` is the Linux-boot-like world.\n\n"
    );
    s += &format!("| design | {} |\n", guests.join(" | "));
    s += &format!("|---|{}\n", "---|".repeat(guests.len()));
    for p in &policies {
        s += &format!("| {p} |");
        for g in &guests {
            let worst = m
                .cells
                .iter()
                .filter(|c| c.policy == *p && c.guest == *g)
                .map(|c| c.cost.wall_us)
                .fold(0.0f64, f64::max);
            s += &format!(" {} |", Duration(worst));
        }
        s += "\n";
    }
    s
}

/// A chart series: its name, how to read it off a cell, its colour.
type Series = (&'static str, fn(&Cell) -> f64, &'static str);

/// An SVG chart: per design, bars for the boot world's write locks, demotions, TD exits and
/// entries without progress (log scale), and its 2M coverage.
pub fn svg(m: &Matrix) -> String {
    let boot: Vec<&Cell> = m.cells.iter().filter(|c| c.guest == "boot").collect();
    let metrics: [Series; 4] = [
        ("write locks", |c| c.cost.write_locks, "#d62728"),
        ("demotions", |c| c.cost.demotions, "#ff7f0e"),
        ("TD exits", |c| c.cost.exits, "#1f77b4"),
        (
            "entries without progress",
            |c| c.cost.entries_without_progress,
            "#9467bd",
        ),
    ];
    let row_h = 70.0;
    let left = 190.0;
    let width = 820.0;
    let plot_w = 480.0;
    let height = 90.0 + row_h * boot.len() as f64;
    let max = boot
        .iter()
        .flat_map(|c| metrics.iter().map(move |(_, f, _)| f(c)))
        .fold(1.0f64, f64::max);
    let scale = |v: f64| (v + 1.0).log10() / (max + 1.0).log10() * plot_w;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" \
         fill=\"white\"/>\n<text x=\"10\" y=\"20\" font-size=\"15\">Linux-boot-like world: cost \
         per run by design (log scale) and 2M coverage</text>\n"
    );
    for (k, (name, _, colour)) in metrics.iter().enumerate() {
        let x = 10.0 + 190.0 * k as f64;
        s += &format!(
            "<rect x=\"{x}\" y=\"32\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"43\">{name}</text>\n",
            x + 16.0
        );
    }
    for (i, c) in boot.iter().enumerate() {
        let y0 = 60.0 + row_h * i as f64;
        s += &format!(
            "<text x=\"10\" y=\"{}\">{}</text><text x=\"10\" y=\"{}\" fill=\"#555\">{}</text>\n",
            y0 + 25.0,
            c.policy,
            y0 + 41.0,
            c.verdict_text()
        );
        for (k, (_, f, colour)) in metrics.iter().enumerate() {
            let v = f(c);
            let y = y0 + 4.0 + 14.0 * k as f64;
            s += &format!(
                "<rect x=\"{left}\" y=\"{y}\" width=\"{:.1}\" height=\"11\" fill=\"{colour}\"/>\
                 <text x=\"{:.1}\" y=\"{}\" font-size=\"10\">{v:.0}</text>\n",
                scale(v),
                left + scale(v) + 4.0,
                y + 10.0
            );
        }
        s += &format!(
            "<text x=\"{}\" y=\"{}\">2M: {:.0}%</text>\n",
            left + plot_w + 60.0,
            y0 + 30.0,
            c.cost.coverage_2m * 100.0
        );
    }
    s += "</svg>\n";
    s
}
