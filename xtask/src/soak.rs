//! `cargo xtask soak [--runs N] [--seed S] [--timeout SECS]`: the `hugesept` command line
//! under random and extreme input — every numeric field of the shipped scenario files and
//! every numeric flag set to edge values, lines dropped, doubled or cut, files that are not
//! scenarios or traces, outputs that cannot be written — each run watched for what a user
//! must never see: a panic or a crash, a run still going after its timeout (it is sent
//! SIGINT and must end within a grace period), a resident set above 2 GiB, and an exit code 0
//! for a run that did not do what it said (fewer schedules than asked, more states than
//! allowed, a replay that reproduced nothing, an interrupted run).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Result;

/// The resident set no run may exceed.
const MAX_RSS_BYTES: u64 = 2 << 30;
/// How long an interrupted run may take to end.
const GRACE: Duration = Duration::from_secs(3);

/// Edge values for numbers, as TOML values and as flag values.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "5",
    "9",
    "18",
    "255",
    "256",
    "4096",
    "4097",
    "32768",
    "32769",
    "65535",
    "65536",
    "1000000",
    "1000001",
    "50000001",
    "1000000000",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "99999999999999999999",
    "-1",
    "3.5",
];

/// Edge values only a TOML value can take.
const TOML_ONLY: &[&str] = &[
    "\"0x0\"",
    "\"0x40000001\"",
    "\"0xffffffffffffffff\"",
    "\"0x1000000000000\"",
    "\"\"",
    "true",
    "[]",
];

/// Where outputs go: a normal file, a missing directory, a directory, a full device.
const OUTPUTS: &[&str] = &["out.toml", "missing/dir/out.toml", ".", "/dev/full"];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.get(self.below(items.len())).copied().unwrap_or("")
    }
}

/// A run's command line and what it promises when it exits 0.
struct Case {
    args: Vec<String>,
    /// `sim --runs N`: N schedules.
    runs: Option<u64>,
    /// `explore --max-states N`: at most N states.
    max_states: Option<u64>,
}

/// How a run went.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Class {
    Ok,
    Refused,
    Interrupted,
}

/// Runs the soak.
pub fn soak(args: &[String], root: &Path) -> Result {
    let mut runs = 10_000u64;
    let mut seed = 1u64;
    let mut timeout = Duration::from_secs(20);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{a} takes a number"))
        };
        match a.as_str() {
            "--runs" => runs = value()?,
            "--seed" => seed = value()?,
            "--timeout" => timeout = Duration::from_secs(value()?),
            other => return Err(format!("soak: unknown argument {other}")),
        }
    }
    let mut build = super::cmd("cargo");
    build
        .current_dir(root)
        .args(["build", "--release", "--locked", "-p", "hugesept-host-kvm"]);
    super::run(build)?;
    let bin = root.join("target/release/hugesept");
    let work = root.join("target/soak");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let scenarios = shipped_scenarios(&root.join("scenarios"))?;
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut failures: Vec<String> = Vec::new();
    let mut counts = std::collections::BTreeMap::new();
    let mut peak_rss = 0u64;
    let started = Instant::now();
    for n in 0..runs {
        let dir = work.join(format!("run{}", n % 64));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let case = make_case(&mut rng, &scenarios, &dir, &work)?;
        let (class, rss) = match watch(&bin, &case, &dir, timeout) {
            Ok(r) => r,
            Err(why) => {
                failures.push(format!(
                    "run {n}: {why}\n  hugesept {}",
                    case.args.join(" ")
                ));
                keep(&dir, &work, n);
                continue;
            }
        };
        peak_rss = peak_rss.max(rss);
        *counts.entry(class).or_insert(0u64) += 1;
        // Keep a trace a run wrote for later replays.
        for f in ["out.toml", "trace.toml"] {
            let p = dir.join(f);
            if let Ok(text) = fs::read_to_string(&p)
                && text.contains("hugesept trace")
            {
                let _ = fs::write(work.join(format!("trace{}.toml", n % 16)), text);
            }
        }
    }
    eprintln!(
        "soak: {runs} runs in {:.0} s: {} ended with a result, {} refused their input, {} \
         interrupted at the {} s timeout; largest resident set {} MiB",
        started.elapsed().as_secs_f64(),
        counts.get(&Class::Ok).unwrap_or(&0),
        counts.get(&Class::Refused).unwrap_or(&0),
        counts.get(&Class::Interrupted).unwrap_or(&0),
        timeout.as_secs(),
        peak_rss >> 20
    );
    if failures.is_empty() {
        Ok(())
    } else {
        for f in &failures {
            eprintln!("{f}");
        }
        Err(format!(
            "soak: {} of {runs} runs failed (inputs kept in {})",
            failures.len(),
            work.join("failures").display()
        ))
    }
}

/// The shipped scenario files' texts.
fn shipped_scenarios(dir: &Path) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for p in paths {
        texts.push(fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?);
    }
    if texts.is_empty() {
        return Err(format!("no scenario files in {}", dir.display()));
    }
    Ok(texts)
}

/// A scenario text with some of its values, lines or bytes changed.
fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for line in &mut lines {
        let is_value = line.contains(" = ") && !line.trim_start().starts_with('#');
        if is_value && rng.chance(7) {
            let key = line.split(" = ").next().unwrap_or("").to_owned();
            let value = if rng.chance(80) {
                rng.pick(NUMBERS)
            } else {
                rng.pick(TOML_ONLY)
            };
            *line = format!("{key} = {value}");
        }
    }
    // Fields a file may lack, set to edge values.
    for key in [
        "tables",
        "steps",
        "patience",
        "schedules",
        "regions",
        "interrupts",
    ] {
        if rng.chance(8) {
            let at = lines
                .iter()
                .position(|l| l.starts_with("[["))
                .unwrap_or(lines.len());
            lines.insert(at, format!("{key} = {}", rng.pick(NUMBERS)));
        }
    }
    if rng.chance(10) && !lines.is_empty() {
        let i = rng.below(lines.len());
        lines.remove(i);
    }
    if rng.chance(10) && !lines.is_empty() {
        let i = rng.below(lines.len());
        let l = lines[i].clone();
        lines.insert(i, l);
    }
    let mut out = lines.join("\n");
    if rng.chance(5) {
        let mut cut = rng.below(out.len().max(1));
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

fn flag(rng: &mut Rng, args: &mut Vec<String>, name: &str, values: &[&str]) -> Option<String> {
    let v = rng.pick(values).to_owned();
    args.push(name.to_owned());
    args.push(v.clone());
    Some(v)
}

/// A random command line, its input files written into `dir`.
fn make_case(rng: &mut Rng, scenarios: &[String], dir: &Path, work: &Path) -> Result<Case> {
    let write = |name: &str, text: &str| -> Result<String> {
        let p = dir.join(name);
        fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(name.to_owned())
    };
    let base = scenarios
        .get(rng.below(scenarios.len()))
        .cloned()
        .unwrap_or_default();
    let text = if rng.chance(70) {
        mutate(rng, &base)
    } else {
        base
    };
    // The scenario argument: mostly a (mutated) file, sometimes something that is none.
    let input = match rng.below(20) {
        0 => "/dev/zero".to_owned(),
        1 => ".".to_owned(),
        2 => "missing.toml".to_owned(),
        _ => write("scenario.toml", &text)?,
    };
    let mut case = Case {
        args: Vec::new(),
        runs: None,
        max_states: None,
    };
    let args = &mut case.args;
    match rng.below(10) {
        0..=3 => {
            args.extend(["sim".to_owned(), input]);
            if rng.chance(70) {
                case.runs = flag(rng, args, "--runs", NUMBERS).and_then(|v| v.parse().ok());
            }
            if rng.chance(30) {
                flag(rng, args, "--seed", NUMBERS);
            }
            if rng.chance(30) {
                flag(
                    rng,
                    args,
                    "--scheduler",
                    &["random", "pct", "priority", "fair"],
                );
            }
            if rng.chance(20) {
                flag(rng, args, "--depth", NUMBERS);
            }
            if rng.chance(30) {
                flag(rng, args, "--trace", OUTPUTS);
            }
        }
        4..=6 => {
            args.extend(["explore".to_owned(), input]);
            if rng.chance(70) {
                case.max_states =
                    flag(rng, args, "--max-states", NUMBERS).and_then(|v| v.parse().ok());
            }
            if rng.chance(30) {
                flag(
                    rng,
                    args,
                    "--max-memory",
                    &["0", "1", "4K", "64M", "1G", "1536M", "99999999999G", "abc"],
                );
            }
            if rng.chance(30) {
                flag(rng, args, "--trace", OUTPUTS);
            }
        }
        7 | 8 => {
            // A trace an earlier run wrote, perhaps damaged, or a scenario given as a trace.
            let kept: Vec<PathBuf> = (0..16)
                .map(|k| work.join(format!("trace{k}.toml")))
                .filter(|p| p.exists())
                .collect();
            let trace = match kept.get(rng.below(kept.len().max(1))) {
                Some(p) => fs::read_to_string(p).unwrap_or_default(),
                None => text.clone(),
            };
            let trace = if rng.chance(50) {
                mutate(rng, &trace)
            } else {
                trace
            };
            let arg = if rng.chance(5) {
                "/dev/zero".to_owned()
            } else {
                write("trace.toml", &trace)?
            };
            args.extend(["replay".to_owned(), arg]);
            if rng.chance(30) {
                flag(rng, args, "--last", NUMBERS);
            }
            if rng.chance(50) {
                args.push("--brief".to_owned());
            }
            if rng.chance(20) {
                flag(rng, args, "--confirm-states", NUMBERS);
            }
        }
        _ => {
            if rng.chance(50) {
                args.push("matrix".to_owned());
                flag(rng, args, "--seeds", &["0", "1", "2", "-1", "4294967296"]);
                if rng.chance(30) {
                    flag(rng, args, "--format", &["markdown", "json", "svg", "pdf"]);
                }
                if rng.chance(30) {
                    flag(rng, args, "--json", OUTPUTS);
                }
                if rng.chance(30) {
                    flag(rng, args, "--svg", OUTPUTS);
                }
                if rng.chance(30) {
                    flag(rng, args, "--threads", &["0", "1", "2", "1000", "-1"]);
                }
            } else {
                args.push("accept-matrix".to_owned());
                if rng.chance(50) {
                    flag(
                        rng,
                        args,
                        "--profile",
                        &["tdx-1.5", "accept-1g+explicit-demotion", "tdx-9", ""],
                    );
                }
                if rng.chance(50) {
                    args.push("--markdown".to_owned());
                }
            }
        }
    }
    Ok(case)
}

/// The resident set of process `pid` in bytes (0 once it has gone).
fn rss(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib << 10)
}

/// Runs `case` in `dir`; how it went and its largest resident set, or why it failed.
fn watch(bin: &Path, case: &Case, dir: &Path, timeout: Duration) -> Result<(Class, u64)> {
    use std::os::unix::process::ExitStatusExt;
    let out = fs::File::create(dir.join("stdout")).map_err(|e| e.to_string())?;
    let err = fs::File::create(dir.join("stderr")).map_err(|e| e.to_string())?;
    let mut child = Command::new(bin)
        .args(&case.args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let started = Instant::now();
    let mut peak = 0u64;
    let mut interrupted: Option<Instant> = None;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        peak = peak.max(rss(child.id()));
        if peak > MAX_RSS_BYTES {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("resident set above {} MiB", MAX_RSS_BYTES >> 20));
        }
        match interrupted {
            None if started.elapsed() > timeout => {
                // The shell's own kill: no procps needed.
                let _ = Command::new("sh")
                    .args(["-c", "kill -INT \"$0\"", &child.id().to_string()])
                    .status();
                interrupted = Some(Instant::now());
            }
            Some(at) if at.elapsed() > GRACE => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "still running {} s after SIGINT at the {} s timeout",
                    GRACE.as_secs(),
                    timeout.as_secs()
                ));
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = fs::read_to_string(dir.join("stdout")).unwrap_or_default();
    let stderr = fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    if stderr.contains("panicked at") || status.code() == Some(101) {
        return Err(format!("panic: {}", stderr.lines().next().unwrap_or("")));
    }
    if let Some(sig) = status.signal() {
        // SIGINT is how an interrupted run without a handler ends.
        if !(interrupted.is_some() && sig == 2) {
            return Err(format!("killed by signal {sig}"));
        }
        return Ok((Class::Interrupted, peak));
    }
    if status.code() != Some(0) {
        if stderr.trim().is_empty() {
            return Err(format!("exit code {:?} without a message", status.code()));
        }
        let class = if interrupted.is_some() {
            Class::Interrupted
        } else {
            Class::Refused
        };
        return Ok((class, peak));
    }
    if interrupted.is_some() {
        return Err("exit code 0 for a run interrupted before it ended".into());
    }
    promised(case, &stdout).map(|()| (Class::Ok, peak))
}

/// Whether an exit-0 run did what its command line asked.
fn promised(case: &Case, stdout: &str) -> Result {
    let command = case.args.first().map_or("", String::as_str);
    let number_before = |marker: &str| -> Option<u64> {
        let line = stdout.lines().find(|l| l.contains(marker))?;
        let head = line.split(marker).next()?;
        head.split_whitespace().last()?.parse().ok()
    };
    match command {
        "sim" => {
            // "<file>: <name> — <policy> on <profile>, <N> <scheduler> schedules from seed S"
            let ran: u64 = stdout
                .lines()
                .find(|l| l.contains(" schedules from seed"))
                .and_then(|l| l.split(" schedules from seed").next())
                .and_then(|head| head.rsplit(", ").next())
                .and_then(|tail| tail.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .ok_or("sim exited 0 without saying how many schedules it ran")?;
            let counted: u64 = stdout
                .lines()
                .skip_while(|l| !l.starts_with("outcomes:"))
                .skip(1)
                .take_while(|l| l.starts_with("  ") && !l.starts_with("  ("))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
            if counted != ran {
                return Err(format!("sim said {ran} schedules but counted {counted}"));
            }
            if let Some(asked) = case.runs
                && asked != ran
            {
                return Err(format!("sim --runs {asked} exited 0 after {ran} schedules"));
            }
            Ok(())
        }
        "explore" => {
            let states = number_before(" distinct states")
                .ok_or("explore exited 0 without a state count")?;
            if let Some(max) = case.max_states
                && states > max.max(1)
            {
                return Err(format!("explore --max-states {max} explored {states}"));
            }
            Ok(())
        }
        "replay" if !stdout.contains("reproduced: ") => {
            Err("replay exited 0 without reproducing anything".into())
        }
        _ if stdout.trim().is_empty() => Err(format!("{command} exited 0 with no output")),
        _ => Ok(()),
    }
}

/// Keeps the inputs of failed run `n`.
fn keep(dir: &Path, work: &Path, n: u64) {
    let to = work.join("failures").join(n.to_string());
    let _ = fs::create_dir_all(&to);
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let _ = fs::copy(e.path(), to.join(e.file_name()));
        }
    }
}
