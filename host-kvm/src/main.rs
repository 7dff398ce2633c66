//! `hugesept`: the command line of the host side.
//!
//! Subcommands are thin frontends over hugesept-core: they build the model's inputs, run it,
//! and print what it computed.

use std::process::ExitCode;

use clap::Parser;
use hugesept_host_kvm::cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hugesept: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
