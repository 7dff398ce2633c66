//! `hugesept accept-matrix`: the ACCEPT outcome matrix, requested level × S-EPT path states,
//! computed by the core's TDX module model for each module profile.

use std::io::Write;

use hugesept_core::abi::{ExtendedExitQualification, PageLevel, StatusCode, StatusDetail};
use hugesept_core::sept::outcomes::{OutcomeClass, PATHS, PathStates, accept_outcome};
use hugesept_core::sept::{AcceptOutcome, ModuleProfile};

use super::{CliError, parse_profile};

/// Options of `accept-matrix`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the full matrix for these profiles (tdx-1.5, explicit-demotion,
    /// non-blocking-resize, accept-1g, no-demote-interruptibility, or several joined with '+').
    /// Without it: the full tdx-1.5 matrix, then each proposal's differences from it.
    #[arg(long = "profile", value_parser = parse_profile)]
    profiles: Vec<ModuleProfile>,
    /// Write Markdown tables instead of aligned text.
    #[arg(long)]
    markdown: bool,
}

/// One cell: the outcome class letter and a short outcome.
fn cell(outcome: &AcceptOutcome, requested: PageLevel) -> String {
    let letter = OutcomeClass::of(outcome, requested).map_or("?", OutcomeClass::letter);
    let text = match outcome {
        AcceptOutcome::Completed(s) if s.code() == StatusCode::Success => "SUCCESS".to_owned(),
        AcceptOutcome::Completed(s) => {
            let name = s.code().name().trim_start_matches("TDX_").to_owned();
            match s.detail() {
                StatusDetail::Level(l) => format!("{name}|{l}"),
                StatusDetail::Operand(op) => {
                    format!("{name}|{}", op.name().unwrap_or("?"))
                }
                _ => name,
            }
        }
        AcceptOutcome::Exit(e) => match e.eeq {
            ExtendedExitQualification::Accept(a) => format!(
                "exit: {} {}{}",
                a.error_level,
                a.error_state,
                if a.error_is_leaf { " leaf" } else { "" }
            ),
            other => format!("exit: {other:?}"),
        },
        AcceptOutcome::Interrupted => "interrupted".to_owned(),
    };
    format!("{letter} {text}")
}

/// The matrix of one profile: a row per path, a column per requested level.
fn compute(profile: ModuleProfile) -> Result<Vec<(PathStates, [String; 3])>, CliError> {
    PATHS
        .iter()
        .map(|&path| {
            let mut row: [String; 3] = Default::default();
            for (slot, level) in row.iter_mut().zip(PageLevel::ALL) {
                *slot = cell(&accept_outcome(profile, path, level)?, level);
            }
            Ok((path, row))
        })
        .collect()
}

fn print_table(
    out: &mut impl Write,
    profile: ModuleProfile,
    rows: &[(PathStates, [String; 3])],
    markdown: bool,
) -> std::io::Result<()> {
    let head = [
        "S-EPT along the GPA's path",
        "ACCEPT 4K",
        "ACCEPT 2M",
        "ACCEPT 1G",
    ];
    writeln!(out, "Module profile: {profile}")?;
    if markdown {
        writeln!(out)?;
        writeln!(out, "| {} |", head.join(" | "))?;
        writeln!(out, "|{}", "---|".repeat(head.len()))?;
        for (path, cells) in rows {
            writeln!(out, "| {path} | {} |", cells.join(" | "))?;
        }
        return writeln!(out);
    }
    let mut widths = head.map(str::len);
    for (path, cells) in rows {
        widths[0] = widths[0].max(path.to_string().len());
        for (w, c) in widths[1..].iter_mut().zip(cells) {
            *w = (*w).max(c.len());
        }
    }
    let line = |out: &mut dyn Write, cols: [&str; 4]| -> std::io::Result<()> {
        let parts: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "  {}", parts.join("  ").trim_end())
    };
    line(out, head)?;
    line(
        out,
        widths.map(|w| "-".repeat(w)).each_ref().map(String::as_str),
    )?;
    for (path, cells) in rows {
        let p = path.to_string();
        line(out, [&p, &cells[0], &cells[1], &cells[2]])?;
    }
    writeln!(out)
}

/// Runs `accept-matrix`, writing to `out`.
pub fn run(args: &Args, out: &mut impl Write) -> Result<(), CliError> {
    let io = CliError::Io;
    writeln!(
        out,
        "TDG.MEM.PAGE.ACCEPT outcomes, computed by the hugesept TDX module model on a runnable TD.\n\
         Rows: the S-EPT entry states along the accepted GPA's path; columns: the requested level.\n\
         Letters: A ALREADY_ACCEPTED from a larger leaf, B exit (or explicit SIZE_MISMATCH) from above\n\
         the requested level, D SIZE_MISMATCH (mapped smaller), E already accepted at that level,\n\
         F exit at the requested level, G accepted, - operand rejected. 'exit: L STATE' is the\n\
         EPT-violation TD exit the VMM sees, naming the level and state where the walk stopped.\n"
    )
    .map_err(io)?;
    if !args.profiles.is_empty() {
        for &p in &args.profiles {
            print_table(out, p, &compute(p)?, args.markdown).map_err(io)?;
        }
        return Ok(());
    }
    let base = compute(ModuleProfile::TDX_1_5)?;
    print_table(out, ModuleProfile::TDX_1_5, &base, args.markdown).map_err(io)?;
    for (name, p) in ModuleProfile::NAMED.iter().skip(1) {
        let rows = compute(*p)?;
        let mut diffs = Vec::new();
        for ((path, cells), (_, base_cells)) in rows.iter().zip(&base) {
            for ((c, b), level) in cells.iter().zip(base_cells).zip(PageLevel::ALL) {
                if c != b {
                    diffs.push(format!("  {path}, ACCEPT {level}: {b}  ->  {c}"));
                }
            }
        }
        let note = if diffs.is_empty() {
            " (it changes host SEAMCALLs, not ACCEPT)"
        } else {
            ""
        };
        writeln!(
            out,
            "Profile {name}: {} cell(s) differ from tdx-1.5{note}",
            diffs.len()
        )
        .map_err(io)?;
        for d in diffs {
            writeln!(out, "{d}").map_err(io)?;
        }
        writeln!(out).map_err(io)?;
    }
    Ok(())
}
