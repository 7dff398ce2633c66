//! Argument parsing and dispatch for the `hugesept` command line.

mod accept_matrix;
mod costs;
mod explore;
pub mod interrupt;
mod matrix;
pub mod replay;
#[cfg(target_os = "linux")]
pub mod run;
mod sim;

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

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
    /// The field's shapes per design, priced with the cost model: the boot storm against
    /// vCPUs, parallel accept against vCPUs and memory (tables and a chart).
    Costs(costs::Args),
    /// Explore every interleaving of a scenario exhaustively (partial-order reduced unless
    /// --full): violations, reachable verdicts, liveness.
    Explore(explore::Args),
    /// Replay a trace step by step.
    Replay(replay::Args),
    /// Run a scenario on real vCPUs: the guest-td payload in the /dev/kvm VMM, every TDCALL
    /// served by the core; prints the outcome and metrics and saves a replayable trace.
    #[cfg(target_os = "linux")]
    Run(run::Args),
}

/// A failure the command line reports and exits non-zero for.
#[derive(Debug)]
pub enum CliError {
    /// A module profile name that names nothing.
    Profile(String),
    /// The model refused its input.
    Model(hugesept_core::sept::SeptError),
    /// Writing to standard output failed.
    Io(io::Error),
    /// An input file could not be read, or is not what it may be.
    Input(PathBuf, InputError),
    /// An output file could not be written.
    Output(PathBuf, io::Error),
    /// Ctrl-C's handler could not be installed.
    Signal(ctrlc::Error),
    /// Ctrl-C stopped the command (after it printed what it had).
    Interrupted,
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
            CliError::Input(path, e) => write!(f, "{}: {e}", path.display()),
            CliError::Output(path, e) => write!(f, "{}: {e}", path.display()),
            CliError::Signal(e) => write!(f, "cannot handle Ctrl-C: {e}"),
            CliError::Interrupted => f.write_str("interrupted"),
            CliError::Scenario(path, e) => write!(f, "{path}: {e}"),
            CliError::Unexpected(m) | CliError::Usage(m) => f.write_str(m),
            CliError::Trace(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CliError {}

impl CliError {
    /// The exit code the command line ends with: 130 after Ctrl-C (128 + SIGINT, as shells
    /// report a process SIGINT ended), else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Interrupted => 130,
            _ => 1,
        }
    }
}

/// Why an input file was refused.
#[derive(Debug)]
pub enum InputError {
    /// Opening or reading it failed.
    Read(io::Error),
    /// It is a directory.
    Directory(&'static str),
    /// It holds more than the cap for its kind of file (what it is, the cap in bytes).
    TooLarge(&'static str, u64),
    /// It is not UTF-8 text.
    NotUtf8(std::str::Utf8Error),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Read(e) => write!(f, "{e}"),
            InputError::Directory(what) => write!(f, "is a directory, not a {what} file"),
            InputError::TooLarge(what, cap) => write!(
                f,
                "larger than the {} a {what} file may be",
                human_bytes(*cap)
            ),
            InputError::NotUtf8(e) => write!(f, "not UTF-8 text: {e}"),
        }
    }
}

/// The trace file a command writes when `--trace` names none: `<scenario stem><suffix>` in
/// the current directory.
pub(crate) fn trace_path(given: Option<&Path>, scenario: &Path, suffix: &str) -> PathBuf {
    given.map(Path::to_path_buf).unwrap_or_else(|| {
        let stem = scenario
            .file_stem()
            .map_or("scenario".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from(format!("{stem}{suffix}"))
    })
}

/// A byte count in the largest binary unit that divides it (`1 MiB`, `64 MiB`, `1536 KiB`).
pub(crate) fn human_bytes(n: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

/// The most a scenario file may hold: the largest in `scenarios/` is a few KiB, so 1 MiB
/// leaves room for any hand-written or generated world while refusing, early and with a clear
/// message, a path to something that never ends (`/dev/zero`) or was not meant.
pub const SCENARIO_CAP: u64 = 1 << 20;

/// The most a trace file may hold: a trace is its scenario and one short token per step, so
/// 64 MiB is millions of steps, beyond any run the tools save, while a wrong path still fails
/// before it fills memory.
pub const TRACE_CAP: u64 = 64 << 20;

/// Reads the `what` file (`"scenario"`, `"trace"`) at `path` as text: refuses a directory,
/// reads at most `cap` + 1 bytes, and fails naming the path when there were more or they are
/// not UTF-8.
pub fn read_input(
    path: impl AsRef<Path>,
    what: &'static str,
    cap: u64,
) -> Result<String, CliError> {
    let path = path.as_ref();
    let fail = |e| CliError::Input(path.to_owned(), e);
    let file = std::fs::File::open(path).map_err(|e| fail(InputError::Read(e)))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(fail(InputError::Directory(what)));
    }
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| fail(InputError::Read(e)))?;
    if bytes.len() as u64 > cap {
        return Err(fail(InputError::TooLarge(what, cap)));
    }
    String::from_utf8(bytes).map_err(|e| fail(InputError::NotUtf8(e.utf8_error())))
}

/// Writes `contents` to the file at `path` (created or truncated); a failure names the path.
pub fn write_output(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Result<(), CliError> {
    let path = path.as_ref();
    std::fs::write(path, contents).map_err(|e| CliError::Output(path.to_owned(), e))
}

/// Opens the file at `path` for writing, creating it when missing and changing nothing in
/// it, so that a command refuses an output it cannot write before it computes what goes
/// there; [`write_output`] writes it afterwards.
pub(crate) fn create_output(path: &Path) -> Result<(), CliError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map(drop)
        .map_err(|e| CliError::Output(path.to_owned(), e))
}

/// Refuses, before a long computation, an output path that cannot be written: a directory,
/// a file it may not write, one in a directory that does not exist. Creates and changes
/// nothing; writing may still fail later (a full disk), and then [`write_output`] names the
/// path.
pub(crate) fn check_output_path(path: &Path) -> Result<(), CliError> {
    let refuse = |e| CliError::Output(path.to_owned(), e);
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => {
                std::fs::read_dir(dir).map(|_| ()).map_err(refuse)
            }
            _ => Ok(()),
        },
        Err(e) => Err(refuse(e)),
    }
}

impl From<hugesept_core::sept::SeptError> for CliError {
    fn from(e: hugesept_core::sept::SeptError) -> Self {
        CliError::Model(e)
    }
}

/// Parses a module profile name for clap.
pub(crate) fn parse_profile(s: &str) -> Result<ModuleProfile, CliError> {
    ModuleProfile::parse(s).map_err(|_| CliError::Profile(s.to_owned()))
}

/// Runs one parsed command line. Standard output closed by its reader (`hugesept matrix |
/// head -1`) ends the command quietly: what it printed was all that was wanted.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let out = &mut io::stdout().lock();
    let result = match cli.command {
        Command::AcceptMatrix(args) => accept_matrix::run(&args, out),
        Command::Sim(args) => sim::run(&args, out),
        Command::Matrix(args) => matrix::run(&args, out),
        Command::Costs(args) => costs::run(&args, out),
        Command::Explore(args) => explore::run(&args, out),
        Command::Replay(args) => replay::run(&args, out),
        #[cfg(target_os = "linux")]
        Command::Run(args) => run::run(&args, out),
    }
    .and_then(|()| out.flush().map_err(CliError::Io));
    match result {
        Err(CliError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
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

/// A progress bar towards `len` `unit`s on stderr, with the rate and the time left to reach
/// `len` at that rate (hidden when stderr is not a terminal).
pub(crate) fn progress_to_bound(len: u64, unit: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{{elapsed_precise}} [{{bar:24}}] {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} to the bound), {{msg}}"
    )) {
        bar.set_style(style);
    }
    bar
}
