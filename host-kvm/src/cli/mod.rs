//! Argument parsing and dispatch for the `hugesept` command line.

mod accept_matrix;
mod explore;
mod matrix;
mod replay;
mod sim;

use std::fmt;

use clap::{Parser, Subcommand};
use hugesept_core::sept::{ModuleProfile, UnknownProfile};

/// hugesept: at which level should KVM map a TDX guest's private memory, and what breaks.
#[derive(Debug, Parser)]
#[command(
    name = "hugesept",
    version,
    about = "At which level should KVM map a TDX guest's private memory, and what breaks: the TDX module, KVM and real guests' accept strategies as executable models"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print what TDG.MEM.PAGE.ACCEPT does for every requested level and every S-EPT state
    /// along the GPA's path, computed by the TDX module model, per module profile.
    AcceptMatrix(accept_matrix::Args),
    /// Run a scenario file under many seeded schedules and count the verdicts.
    Sim(sim::Args),
    /// Every design × every guest strategy on the standard worlds: verdicts and costs.
    Matrix(matrix::Args),
    /// Explore every interleaving of a scenario exhaustively: violations, reachable verdicts,
    /// liveness.
    Explore(explore::Args),
    /// Replay a trace step by step.
    Replay(replay::Args),
}

/// A failure the command line reports and exits non-zero for.
#[derive(Debug)]
pub enum CliError {
    /// A module profile name that names nothing.
    Profile(String),
    /// The model refused its input.
    Model(hugesept_core::sept::SeptError),
    /// Writing the output failed.
    Io(std::io::Error),
    /// A scenario file could not be read or used.
    Scenario(String, crate::scenario::ScenarioError),
    /// A run ended in a verdict the scenario does not expect.
    Unexpected(String),
    /// An argument that names nothing or does not fit.
    Usage(String),
    /// A trace that cannot be replayed.
    Trace(crate::trace::TraceError),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Profile(name) => write!(f, "'{name}': {UnknownProfile}"),
            CliError::Model(e) => write!(f, "model error: {e}"),
            CliError::Io(e) => write!(f, "output: {e}"),
            CliError::Scenario(path, e) => write!(f, "{path}: {e}"),
            CliError::Unexpected(m) | CliError::Usage(m) => f.write_str(m),
            CliError::Trace(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<hugesept_core::sept::SeptError> for CliError {
    fn from(e: hugesept_core::sept::SeptError) -> Self {
        CliError::Model(e)
    }
}

/// Parses a module profile name for clap.
pub(crate) fn parse_profile(s: &str) -> Result<ModuleProfile, CliError> {
    ModuleProfile::parse(s).map_err(|_| CliError::Profile(s.to_owned()))
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::AcceptMatrix(args) => accept_matrix::run(&args, &mut std::io::stdout().lock()),
        Command::Sim(args) => sim::run(&args, &mut std::io::stdout().lock()),
        Command::Matrix(args) => matrix::run(&args, &mut std::io::stdout().lock()),
        Command::Explore(args) => explore::run(&args, &mut std::io::stdout().lock()),
        Command::Replay(args) => replay::run(&args, &mut std::io::stdout().lock()),
    }
}

/// A progress bar on stderr for `len` units, hidden when stderr is not a terminal.
pub(crate) fn progress(len: u64, unit: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{eta}} left)"
    )) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A spinner with a count on stderr, for work of unknown length.
pub(crate) fn progress_spinner(unit: &str) -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{{elapsed_precise}} {{spinner}} {{pos}} {unit}, {{msg}}"
    )) {
        bar.set_style(style);
    }
    bar
}
