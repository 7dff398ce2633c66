//! Prints a `sept_ops` input (a crash artifact, a corpus file) as the module profile and the
//! operations it decodes to, one a line, then runs it on both models and prints each
//! operation run with what it returned; a disagreement panics with what each model said and
//! the operations up to it.
//!
//! `cargo run --example show_ops -- INPUT`; `cargo xtask fuzz` runs it on every crash of the
//! target and keeps its output beside the artifact.

use std::process::ExitCode;

use hugesept_fuzz::sept_ops::{Ops, PROFILES, run};

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: show_ops INPUT");
        return ExitCode::FAILURE;
    };
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ops = Ops::decode(&data);
    println!(
        "module {}, {}, {}",
        PROFILES[usize::from(ops.profile) % PROFILES.len()],
        if ops.ve_disable {
            "SEPT_VE_DISABLE"
        } else {
            "#VE for pending pages"
        },
        if ops.runnable {
            "finalized at the start"
        } else {
            "at build time"
        }
    );
    for (i, op) in ops.ops.iter().enumerate() {
        println!("{i:4} {op}");
    }
    println!("run (operations a guest cannot issue yet are skipped):");
    for line in run(&ops) {
        println!("     {line}");
    }
    println!("the core and the reference agree");
    ExitCode::SUCCESS
}
