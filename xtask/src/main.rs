//! `cargo xtask`: the project's automation. Every command installs what it needs first
//! (idempotently, and quickly when everything is there), so a fresh machine needs only cargo.
//!
//! - `setup`: toolchains, targets, components, cargo-fuzz, cbindgen, Debian packages (QEMU,
//!   OVMF, busybox, the kernel headers) and Debian's packaged kernel (unpacked, for QEMU).
//! - `demo`: setup, then the main job (the policy × guest matrix on the standard worlds).
//! - `test`: setup, then everything CI checks: fmt, clippy, tests, docs, the bare-metal builds,
//!   a shortened CLI soak, the fuzz targets and their corpus.
//! - `guest`: build the TD payload.
//! - `pvh`: build the TD payload and boot it in QEMU (`-machine microvm`) through its PVH note,
//!   outside a TD: it must say "not a TD" and exit through isa-debug-exit.
//! - `ffi [header [--write] | c-test | audit | kmod | uefi]`: the C ABI's checks ([`ffi`]): the
//!   generated header, the C test program, the bare-metal symbol audit, the kernel module
//!   booted in QEMU, the UEFI application under OVMF.
//! - `fuzz [--seconds N] [TARGET...]`: run fuzz targets, growing their corpus.
//! - `soak [--runs N] [--seed S] [--timeout SECS]`: the command line under random and extreme
//!   input ([`soak`]); CI runs a shortened soak.
//! - `explore-bench [--quick] [--threads N] [--full]`: the explorer on the benchmark worlds and the OVMF seed
//!   scenarios, a Markdown table for docs/benchmarks.md ([`explorebench`]).
//! - `costs [--quick]`: `hugesept costs`, the field's shapes per design priced with the cost
//!   model, into docs/costs-table.md, docs/boot-cost.svg and the README's summary.

mod explorebench;
mod ffi;
mod fuzzpower;
mod soak;

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

type Result<T = ()> = std::result::Result<T, String>;

/// The stable toolchain's extra target: core and the payload's target.
const BARE_METAL_TARGET: &str = "x86_64-unknown-none";
/// The UEFI application's target.
const UEFI_TARGET: &str = "x86_64-unknown-uefi";
/// Debian packages the build needs (libfuzzer-sys compiles libFuzzer with a C++ compiler).
const DEBIAN_PACKAGES: &[&str] = &["g++"];
/// cargo-fuzz version installed when missing.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup(),
        Some("demo") => setup().and_then(|()| demo()),
        Some("test") => setup().and_then(|()| test()),
        Some("guest") => setup().and_then(|()| build_guest()),
        Some("pvh") => setup()
            .and_then(|()| build_guest())
            .and_then(|()| pvh_smoke()),
        Some("fuzz") => setup().and_then(|()| fuzz(&args[1..])),
        Some("ffi") => setup().and_then(|()| ffi::ffi(&args[1..])),
        Some("soak") => soak::soak(&args[1..], &root()),
        Some("explore-bench") => explorebench::explore_bench(&args[1..]),
        Some("costs") => costs(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup | demo | test | guest | pvh | fuzz [--seconds N] [TARGET...] \
                 | ffi [header [--write] | c-test | audit | kmod | uefi] \
                 | soak [--runs N] [--seed S] [--timeout SECS] | explore-bench [--quick] [--threads N] [--full] | costs [--quick]>"
            );
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A command with the environment of the outer cargo removed, so nested cargo invocations pick
/// their own toolchain (guest-td's rust-toolchain.toml) and do not inherit a recursion count.
fn cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTUP_TOOLCHAIN_SOURCE",
        "RUST_RECURSION_COUNT",
        "CARGO",
    ] {
        c.env_remove(var);
    }
    c.current_dir(root());
    c
}

fn run(mut c: Command) -> Result {
    let shown = format!(
        "{} {}",
        c.get_program().to_string_lossy(),
        c.get_args()
            .map(OsStr::to_string_lossy)
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("$ {shown}");
    let status = c.status().map_err(|e| format!("{shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown}: {status}"))
    }
}

fn output(mut c: Command) -> Result<String> {
    let out = c
        .output()
        .map_err(|e| format!("{:?}: {e}", c.get_program()))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The toolchain guest-td pins, read from its rust-toolchain.toml.
fn guest_toolchain() -> Result<String> {
    let path = root().join("guest-td/rust-toolchain.toml");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("channel")?.trim_start().strip_prefix('=')?;
            Some(rest.trim().trim_matches('"').to_owned())
        })
        .ok_or_else(|| format!("{}: no channel", path.display()))
}

fn setup() -> Result {
    let start = Instant::now();
    // Stable: the bare-metal target for core, llvm-tools for fuzz coverage, clippy and rustfmt.
    let targets = output({
        let mut c = cmd("rustup");
        c.args(["target", "list", "--installed", "--toolchain", "stable"]);
        c
    })?;
    for target in [BARE_METAL_TARGET, UEFI_TARGET] {
        if !targets.lines().any(|l| l.trim() == target) {
            run({
                let mut c = cmd("rustup");
                c.args(["target", "add", target, "--toolchain", "stable"]);
                c
            })?;
        }
    }
    let components = output({
        let mut c = cmd("rustup");
        c.args(["component", "list", "--installed", "--toolchain", "stable"]);
        c
    })?;
    for comp in ["llvm-tools", "clippy", "rustfmt"] {
        if !components.lines().any(|l| l.starts_with(comp)) {
            run({
                let mut c = cmd("rustup");
                c.args(["component", "add", comp, "--toolchain", "stable"]);
                c
            })?;
        }
    }
    // The guest's pinned nightly with rust-src (it has no prebuilt std for the bare-metal
    // target; the guest builds core and alloc itself).
    let guest = guest_toolchain()?;
    let toolchains = output({
        let mut c = cmd("rustup");
        c.args(["toolchain", "list"]);
        c
    })?;
    let have_guest = toolchains.lines().any(|l| l.starts_with(&guest));
    let guest_components = if have_guest {
        output({
            let mut c = cmd("rustup");
            c.args(["component", "list", "--installed", "--toolchain", &guest]);
            c
        })?
    } else {
        String::new()
    };
    let needed = ["rust-src", "clippy"];
    if !have_guest
        || !needed
            .iter()
            .all(|n| guest_components.lines().any(|l| l.starts_with(n)))
    {
        run({
            let mut c = cmd("rustup");
            c.args(["toolchain", "install", &guest, "--profile", "minimal"]);
            for n in needed {
                c.args(["--component", n]);
            }
            c
        })?;
    }
    // cargo-fuzz.
    let have_fuzz = cmd("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_fuzz {
        run({
            let mut c = cmd("cargo");
            c.args([
                "install",
                "cargo-fuzz",
                "--locked",
                "--version",
                CARGO_FUZZ_VERSION,
            ]);
            c
        })?;
    }
    // cbindgen, pinned: the C header is generated by it.
    ffi::setup_cbindgen()?;
    // Debian packages.
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .chain(ffi::DEBIAN_PACKAGES)
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect();
    if !missing.is_empty() {
        run({
            let mut c = cmd("apt-get");
            c.arg("update");
            c
        })?;
        run({
            let mut c = cmd("apt-get");
            c.args(["install", "-y", "--no-install-recommends"])
                .args(&missing);
            c.env("DEBIAN_FRONTEND", "noninteractive");
            c
        })?;
    }
    // Debian's packaged kernel of the headers' release, unpacked for QEMU (not installed).
    ffi::setup_kernel_image()?;
    eprintln!("setup: ready in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

fn demo() -> Result {
    run({
        let mut c = cmd("cargo");
        c.args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "hugesept-host-kvm",
            "--",
            "matrix",
        ]);
        c
    })?;
    // Then the payload on real vCPUs: the Linux-boot-like world and a 1 GiB Linux accept under
    // GUEST_INHIBIT and upstream's 4K-only KVM, side by side.
    println!();
    if let Err(e) = fs::File::open("/dev/kvm") {
        println!(
            "hugesept run: skipped, /dev/kvm is not usable here ({e}); everything above ran \
             without it"
        );
        return Ok(());
    }
    build_guest()?;
    run({
        let mut c = cmd("cargo");
        c.args(["build", "--quiet", "--release", "-p", "hugesept-host-kvm"]);
        c
    })?;
    println!(
        "hugesept run: the guest-td payload on /dev/kvm vCPUs, every TDCALL served by the core \
         (traces in target/demo/; the 1 GiB accept at 4K takes a few minutes here: this \
         machine's KVM runs guest code in software)"
    );
    let out = root().join("target/demo");
    fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let runs = [
        (
            "scenarios/linux-boot-guest-inhibit.toml",
            "guest-inhibit",
            "linux-boot-guest-inhibit",
        ),
        (
            "scenarios/linux-boot-guest-inhibit.toml",
            "upstream-4k",
            "linux-boot-upstream-4k",
        ),
        (
            "scenarios/large/linux-1g-guest-inhibit.toml",
            "guest-inhibit",
            "linux-1g-guest-inhibit",
        ),
        (
            "scenarios/large/linux-1g-upstream-4k.toml",
            "upstream-4k",
            "linux-1g-upstream-4k",
        ),
    ];
    for (k, (file, policy, name)) in runs.iter().enumerate() {
        let mut c = Command::new(root().join("target/release/hugesept"));
        c.current_dir(root());
        let trace = out.join(format!("{name}.trace.toml"));
        c.args([
            "run",
            file,
            "--policy",
            policy,
            "--brief",
            "--timeout",
            "900",
            "--trace",
        ]);
        c.arg(&trace);
        if k == 0 {
            c.arg("--brief-header");
        }
        run(c)?;
    }
    Ok(())
}

/// Every scenario under scenarios/large through `hugesept run` (each must end as it expects).
fn run_large() -> Result {
    if fs::File::open("/dev/kvm").is_err() {
        eprintln!("no usable /dev/kvm: the large scenarios are not run");
        return Ok(());
    }
    build_cli()?;
    let trace = std::env::temp_dir().join("hugesept-large.trace.toml");
    for f in scenario_files("scenarios/large")? {
        let mut c = Command::new(root().join("target/release/hugesept"));
        c.arg("run")
            .arg(&f)
            .args(["--brief", "--timeout", "900", "--trace"]);
        c.arg(&trace);
        run(c)?;
    }
    Ok(())
}

/// `hugesept costs`: the field's shapes per design, written to docs/costs-table.md and
/// docs/boot-cost.svg with the README's summary rewritten; with `--quick`, at a sixteenth of
/// the memory into a temporary directory (every point must end ok: what `cargo xtask test`
/// runs).
fn costs(args: &[String]) -> Result {
    build_cli()?;
    let mut c = Command::new(root().join("target/release/hugesept"));
    c.current_dir(root()).arg("costs");
    if args.iter().any(|a| a == "--quick") {
        let dir = std::env::temp_dir().join("hugesept-costs");
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        c.arg("--quick")
            .arg("--markdown")
            .arg(dir.join("costs-table.md"))
            .arg("--svg")
            .arg(dir.join("boot-cost.svg"));
    } else {
        c.args([
            "--markdown",
            "docs/costs-table.md",
            "--svg",
            "docs/boot-cost.svg",
            "--readme",
            "README.md",
        ]);
    }
    run(c)
}

/// Builds the release `hugesept`.
fn build_cli() -> Result {
    let mut c = cmd("cargo");
    c.args([
        "build",
        "--quiet",
        "--release",
        "--locked",
        "-p",
        "hugesept-host-kvm",
    ]);
    run(c)
}

/// The scenario files directly under `dir` (relative to the root), sorted.
fn scenario_files(dir: &str) -> Result<Vec<PathBuf>> {
    let dir = root().join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// `hugesept explore --verify-reduction` on every scenario both searches explore completely
/// within the default bounds (the boot-like ones do not; the 32-page benchmark worlds need
/// more states than the default allows in full, and get them): the reduced search agrees with
/// the full one on each (the tests check the small ones, and random worlds, the same way).
fn verify_reductions() -> Result {
    build_cli()?;
    let mut files = scenario_files("scenarios")?;
    files.extend(scenario_files("scenarios/bench")?);
    for f in files
        .iter()
        .filter(|p| !p.to_string_lossy().contains("linux-boot-"))
    {
        let mut c = Command::new(root().join("target/release/hugesept"));
        c.arg("explore").arg(f).args([
            "--verify-reduction",
            "--max-states",
            "12000000",
            "--max-memory",
            "3G",
        ]);
        run(c)?;
    }
    Ok(())
}

fn build_guest() -> Result {
    let toolchain = format!("+{}", guest_toolchain()?);
    let mut c = cmd("cargo");
    c.current_dir(root().join("guest-td"));
    c.args([toolchain.as_str(), "build", "--release", "--locked"]);
    run(c)?;
    let elf = root().join("guest-td/target/x86_64-unknown-none/release/hugesept-guest-td");
    let bytes = fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    // An ELF64 little-endian x86-64 executable.
    if bytes.get(..4) != Some(b"\x7fELF".as_slice())
        || bytes.get(4) != Some(&2)
        || bytes.get(18..20) != Some([0x3e, 0].as_slice())
    {
        return Err(format!("{} is not an x86-64 ELF64 file", elf.display()));
    }
    eprintln!("guest: {} ({} bytes)", elf.display(), bytes.len());
    Ok(())
}

/// The payload's exit byte outside a TD (guest-td/src/main.rs, `EXIT_NOT_A_TD`): QEMU's
/// isa-debug-exit turns byte `v` into exit status `(v << 1) | 1`.
const PVH_EXIT_NOT_A_TD: i32 = (0x13 << 1) | 1;

/// Boots the payload's ELF in QEMU through its PVH note (Xen ELF note 18), on the microvm machine
/// with only a serial port and isa-debug-exit: outside a TD it must find no TDX CPUID leaf, say
/// so on the console and exit with its "not a TD" byte.
fn pvh_smoke() -> Result {
    let elf = root().join("guest-td/target/x86_64-unknown-none/release/hugesept-guest-td");
    let args: Vec<String> = [
        "-machine",
        "microvm",
        "-cpu",
        "qemu64",
        "-m",
        "64",
        "-nographic",
        "-no-reboot",
        "-nodefaults",
        "-serial",
        "stdio",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-kernel",
    ]
    .into_iter()
    .map(String::from)
    .chain([elf.display().to_string()])
    .collect();
    let (console, status) = ffi::qemu(
        "PVH boot of the payload",
        &args,
        "hugesept-guest-td",
        std::time::Duration::from_secs(20),
        std::time::Duration::from_secs(120),
    )?;
    for l in console.lines().filter(|l| l.contains("hugesept-guest-td")) {
        eprintln!("{}", l.trim_matches(|c: char| c.is_control()));
    }
    if !console.contains("hugesept-guest-td: PVH entry") || !console.contains("not a TD") {
        return Err(format!(
            "the payload booted through PVH did not report \"not a TD\"; its console:\n{console}"
        ));
    }
    match status.code() {
        Some(PVH_EXIT_NOT_A_TD) => Ok(()),
        other => Err(format!(
            "QEMU exited with {other:?}, not the payload's \"not a TD\" exit \
             ({PVH_EXIT_NOT_A_TD})"
        )),
    }
}

fn fuzz_targets() -> Result<Vec<String>> {
    let dir = root().join("fuzz/fuzz_targets");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    Ok(names)
}

/// The targets whose inputs are worlds, schedules and decision contexts rather than ABI
/// words. They are built without `-sanitizer-coverage-trace-compares`: their input bytes
/// reach the models only through small indices (`byte % count`), so comparison operands
/// give libFuzzer little to work with, while the instrumentation took two thirds of their
/// time (interleave 6,300 → 17,800 exec/s, policy_decisions 19,000 → 65,600; docs/fuzzing.md).
/// The ABI decoders compare against magic status and field values and keep it.
pub(crate) const WORLD_TARGETS: [&str; 4] = [
    "interleave",
    "policy_decisions",
    "sept_ops",
    "world_schedule",
];

/// `cargo fuzz run --sanitizer none` for `target` (stable, no sanitizer), with the build
/// flags of its kind; the world targets build in their own target directory, so the two
/// flag sets do not rebuild each other.
fn cargo_fuzz_run_cmd(target: &str) -> Command {
    let mut c = cmd("cargo");
    c.current_dir(root().join("fuzz"));
    c.args(["fuzz", "run", "--sanitizer", "none"]);
    if WORLD_TARGETS.contains(&target) {
        c.arg("--no-trace-compares");
        c.arg("--target-dir").arg(root().join("fuzz/target/worlds"));
    }
    c.arg(target);
    c
}

/// `cargo fuzz run` over the target's corpus.
fn cargo_fuzz_run(target: &str, libfuzzer_args: &[String]) -> Result {
    let corpus = root().join("fuzz/corpus").join(target);
    fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    let mut c = cargo_fuzz_run_cmd(target);
    c.arg(&corpus);
    c.arg("--");
    c.args(libfuzzer_args);
    run(c)
}

/// `cargo xtask fuzz [TARGET...] [--seconds N]`: each target for N seconds (default 60) on
/// its corpus, then a table of runs, exec/s, coverage and crashes (an `interleave` crash
/// also as a trace `hugesept replay` prints); `--check-power` instead times each broken
/// variant and each known problem from an empty corpus.
fn fuzz(args: &[String]) -> Result {
    let mut seconds = None;
    let mut chosen = Vec::new();
    let mut power = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--seconds" {
            seconds = Some(
                it.next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or("--seconds takes a whole number")?,
            );
        } else if a == "--check-power" {
            power = true;
        } else if a.starts_with('-') {
            return Err(format!(
                "fuzz: unknown option {a} (--seconds N, --check-power)"
            ));
        } else {
            chosen.push(a.clone());
        }
    }
    if power {
        return fuzzpower::check_power(seconds.unwrap_or(60));
    }
    let seconds = seconds.unwrap_or(60);
    let all = fuzz_targets()?;
    let targets = if chosen.is_empty() {
        all.clone()
    } else {
        chosen
    };
    for t in &targets {
        if !all.contains(t) {
            return Err(format!("fuzz: no target {t} (targets: {})", all.join(", ")));
        }
    }
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for t in &targets {
        let corpus = root().join("fuzz/corpus").join(t);
        fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        let artifacts = root().join("fuzz/artifacts").join(t);
        fs::create_dir_all(&artifacts).map_err(|e| format!("{}: {e}", artifacts.display()))?;
        let mut c = cargo_fuzz_run_cmd(t);
        c.arg(&corpus).arg("--");
        c.arg(format!("-max_total_time={seconds}"));
        c.arg("-print_final_stats=1");
        c.arg(format!("-artifact_prefix={}/", artifacts.display()));
        let out = fuzzpower::run_captured(c)?;
        let stats = fuzzpower::Stats::of(&out.text);
        let mut crash = stats.artifact.clone();
        if let (Some(a), "interleave") = (&crash, t.as_str()) {
            let trace = format!("{a}.trace.toml");
            let mut c = cmd("cargo");
            c.current_dir(root().join("fuzz"));
            c.args(["run", "--release", "--quiet", "--example", "to_trace", "--"]);
            c.arg(a).arg(&trace);
            if run(c).is_ok() {
                crash = Some(format!("{a} (trace: {trace})"));
            }
        }
        if let (Some(a), "sept_ops") = (&crash, t.as_str()) {
            // The operations, one a line, and where the models disagree.
            let listing = format!("{a}.ops.txt");
            let mut c = cmd("cargo");
            c.current_dir(root().join("fuzz"));
            c.args(["run", "--release", "--quiet", "--example", "show_ops", "--"]);
            c.arg(a);
            if let Ok(out) = c.output() {
                let mut text = out.stdout;
                text.extend_from_slice(&out.stderr);
                if fs::write(&listing, text).is_ok() {
                    crash = Some(format!("{a} (operations: {listing})"));
                }
            }
        }
        if !out.success {
            failed.push(t.clone());
        }
        rows.push((t.clone(), stats, crash));
    }
    eprintln!("\n| target | runs | exec/s | coverage | crash |\n|---|---:|---:|---:|---|");
    for (t, s, crash) in &rows {
        eprintln!(
            "| {t} | {} | {} | {} | {} |",
            s.runs.map_or("?".into(), |v| v.to_string()),
            s.exec_per_sec.map_or("?".into(), |v| v.to_string()),
            s.coverage.map_or("?".into(), |v| v.to_string()),
            crash.as_deref().unwrap_or("none")
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzz: crashes in {}", failed.join(", ")))
    }
}

/// A cargo command in one of the project's workspaces.
fn cargo_in(dir: &str, args: &[&str]) -> Command {
    let mut c = cmd("cargo");
    c.current_dir(root().join(dir));
    c.args(args);
    c
}

/// Runs every check CI runs, all of them even when one fails, and closes with a count.
fn test() -> Result {
    let guest = format!("+{}", guest_toolchain()?);
    let guest = guest.as_str();
    let lint = ["--", "-D", "warnings"];
    let mut checks: Vec<(String, Box<dyn Fn() -> Result>)> = Vec::new();
    let mut check = |name: &str, f: Box<dyn Fn() -> Result>| checks.push((name.to_owned(), f));
    let command = |dir: &'static str, args: Vec<&'static str>| -> Box<dyn Fn() -> Result> {
        Box::new(move || run(cargo_in(dir, &args)))
    };
    let with_lint = |mut v: Vec<&'static str>| {
        v.extend(lint);
        v
    };
    check("format", command(".", vec!["fmt", "--all", "--check"]));
    check(
        "clippy (workspace)",
        command(
            ".",
            with_lint(vec!["clippy", "--workspace", "--all-targets", "--locked"]),
        ),
    );
    // The VMM's tests run the payload: build it first. Where /dev/kvm exists they must run
    // (HUGESEPT_REQUIRE_KVM turns their "skipped" into a failure); where it does not, they
    // say so.
    check("guest-td build", Box::new(build_guest));
    check(
        "guest-td PVH boot in QEMU (microvm, outside a TD)",
        Box::new(pvh_smoke),
    );
    check(
        "tests (workspace; the VMM's on /dev/kvm)",
        Box::new(|| {
            let mut c = cargo_in(".", &["test", "--workspace", "--locked"]);
            if fs::File::open("/dev/kvm").is_ok() {
                c.env("HUGESEPT_REQUIRE_KVM", "1");
            } else {
                eprintln!("no usable /dev/kvm: the VMM's tests report SKIPPED");
            }
            run(c)
        }),
    );
    check(
        "hugesept run: the large scenarios (/dev/kvm)",
        Box::new(run_large),
    );
    check(
        "explore: the reduction verified on every scenario explored completely",
        Box::new(verify_reductions),
    );
    check(
        "costs: the field's shapes at a sixteenth of the memory, every point ok",
        Box::new(|| costs(&["--quick".to_owned()])),
    );
    check(
        "docs",
        Box::new(|| {
            let mut c = cargo_in(".", &["doc", "--workspace", "--no-deps", "--locked"]);
            c.env("RUSTDOCFLAGS", "-D warnings");
            run(c)
        }),
    );
    // core is no_std: it must pass its lints and build for the bare-metal target.
    check(
        "core for x86_64-unknown-none (clippy)",
        command(
            ".",
            with_lint(vec![
                "clippy",
                "-p",
                "hugesept-core",
                "--target",
                BARE_METAL_TARGET,
                "--locked",
            ]),
        ),
    );
    check(
        "core for x86_64-unknown-none (build)",
        command(
            ".",
            vec![
                "build",
                "-p",
                "hugesept-core",
                "--target",
                BARE_METAL_TARGET,
                "--release",
                "--locked",
            ],
        ),
    );
    // The command line under random and extreme input, shortened (`cargo xtask soak` runs
    // 10,000).
    check(
        "CLI soak (400 runs)",
        Box::new(|| {
            let args: Vec<String> = ["--runs", "400", "--timeout", "10"]
                .map(String::from)
                .to_vec();
            soak::soak(&args, &root())
        }),
    );
    // The TD payload, with its own toolchain.
    check(
        "guest-td format",
        command("guest-td", vec!["+stable", "fmt", "--check"]),
    );
    let g = guest.to_owned();
    check(
        "guest-td clippy",
        Box::new(move || {
            let mut args = vec![g.as_str(), "clippy", "--release", "--locked"];
            args.extend(lint);
            run(cargo_in("guest-td", &args))
        }),
    );
    // The fuzz workspace: its tests replay the corpus through the same checks; then cargo-fuzz
    // builds every target and runs it once over its corpus.
    check("fuzz format", command("fuzz", vec!["fmt", "--check"]));
    check(
        "fuzz clippy",
        command(
            "fuzz",
            with_lint(vec!["clippy", "--all-targets", "--locked"]),
        ),
    );
    check(
        "fuzz corpus replay (cargo test)",
        command("fuzz", vec!["test", "--locked"]),
    );
    check(
        "explore: the reduction under the models' broken variants",
        command(
            "fuzz",
            vec![
                "test",
                "--locked",
                "--features",
                "broken",
                "--test",
                "reduction_broken",
            ],
        ),
    );
    for t in fuzz_targets()? {
        let name = format!("fuzz target {t} over its corpus");
        check(
            &name,
            Box::new(move || cargo_fuzz_run(&t, &["-runs=0".to_owned()])),
        );
    }
    // The C ABI: its crate's own checks, then the header, the C test, the symbol audit, the
    // kernel module booted in QEMU and the UEFI application under OVMF.
    check("ffi format", command("ffi", vec!["fmt", "--check"]));
    check(
        "ffi clippy",
        command(
            "ffi",
            with_lint(vec!["clippy", "--all-targets", "--locked"]),
        ),
    );
    check(
        "ffi clippy (x86_64-unknown-none)",
        command(
            "ffi",
            with_lint(vec!["clippy", "--target", BARE_METAL_TARGET, "--locked"]),
        ),
    );
    check("ffi tests", command("ffi", vec!["test", "--locked"]));
    check(
        "ffi docs",
        Box::new(|| {
            let mut c = cargo_in("ffi", &["doc", "--no-deps", "--locked"]);
            c.env("RUSTDOCFLAGS", "-D warnings");
            run(c)
        }),
    );
    check(
        "ffi UEFI app format",
        command("ffi/uefi", vec!["fmt", "--check"]),
    );
    check(
        "ffi UEFI app clippy",
        command(
            "ffi/uefi",
            with_lint(vec!["clippy", "--target", UEFI_TARGET, "--locked"]),
        ),
    );
    check(
        "ffi header (cbindgen, not stale)",
        Box::new(|| ffi::ffi(&["header".to_owned()])),
    );
    check(
        "ffi C test (gcc -Wall -Werror)",
        Box::new(|| ffi::ffi(&["c-test".to_owned()])),
    );
    check(
        "ffi symbol audit (x86_64-unknown-none, kernel code model)",
        Box::new(|| ffi::ffi(&["audit".to_owned()])),
    );
    check(
        "ffi kernel module in Debian's kernel under QEMU",
        Box::new(|| ffi::ffi(&["kmod".to_owned()])),
    );
    check(
        "ffi UEFI application under OVMF",
        Box::new(|| ffi::ffi(&["uefi".to_owned()])),
    );
    let mut failed = Vec::new();
    let total = checks.len();
    for (name, f) in &checks {
        eprintln!("== {name}");
        if let Err(e) = f() {
            eprintln!("!! {name}: {e}");
            failed.push(name.clone());
        }
    }
    println!(
        "checks: {} passed, {} failed",
        total - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join(", ")))
    }
}
