//! `cargo xtask ffi`: the C ABI's checks, each runnable alone and all run by `cargo xtask test`.
//!
//! - `header`: cbindgen (the pinned [`CBINDGEN_VERSION`]) regenerates `ffi/include/hugesept.h`
//!   into a temporary file; a difference from the checked-in header fails (`--write` rewrites
//!   it).
//! - `c-test`: the host static library, the C test program built by the system gcc with
//!   `-Wall -Wextra -Werror` (plus an AddressSanitizer/UBSan build), run.
//! - `audit`: the library for x86_64-unknown-none with panic=abort, the kernel code model, no
//!   red zone, static relocations and soft float (core and compiler_builtins rebuilt with the
//!   same flags), linked with `--gc-sections` from the header's functions into the object the
//!   kernel module links; its undefined symbols, symbol names, relocation types and
//!   instructions are checked.
//! - `kmod`: the out-of-tree module built with Kbuild against Debian's linux-headers-amd64,
//!   put in a busybox initramfs, booted with Debian's packaged kernel in QEMU (KVM where it
//!   boots, TCG otherwise); the serial console must show every case and the summary with the
//!   host's digest.
//! - `uefi`: the UEFI application run under Debian's OVMF in QEMU, with the same check.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::{Result, cmd, guest_toolchain, output, root, run};

/// The cbindgen that generates the header; `cargo xtask setup` installs it.
pub const CBINDGEN_VERSION: &str = "0.29.4";
/// Debian packages the C ABI's checks need.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "gcc",
    "binutils",
    "make",
    "cpio",
    "gzip",
    "busybox-static",
    "qemu-system-x86",
    "ovmf",
    "linux-headers-amd64",
];
/// The bare-metal library's flags: the kernel code model, no red zone, static relocations,
/// direct calls to the mem* functions (no GOT); the target is soft-float and panic=abort.
const KERNEL_RUSTFLAGS: &str =
    "-C code-model=kernel -C relocation-model=static -C no-redzone=yes -Z plt=yes";
/// The only symbols the bare-metal library may leave undefined.
const MEM_FAMILY: &[&str] = &["memcpy", "memmove", "memset", "memcmp", "bcmp"];
/// The relocation types the x86-64 kernel module loader applies (arch/x86/kernel/module.c).
const KERNEL_RELOCATIONS: &[&str] = &[
    "R_X86_64_64",
    "R_X86_64_32S",
    "R_X86_64_PC32",
    "R_X86_64_PLT32",
];
/// Names of the panic and formatting machinery (legacy and v0 mangling).
const FORBIDDEN_NAMES: &[&str] = &[
    "panicking",
    "panic_fmt",
    "panic_bounds_check",
    "rust_begin_unwind",
    "rust_panic",
    "4core3fmt",
    "core..fmt",
    "3fmt9Formatter",
];

fn ffi_dir() -> PathBuf {
    root().join("ffi")
}

/// Where the checks build: the workspace's target directory.
fn work_dir(name: &str) -> Result<PathBuf> {
    let d = root().join("target/ffi").join(name);
    fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    Ok(d)
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, text: &[u8]) -> Result {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result {
    fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("{} → {}: {e}", from.display(), to.display()))
}

/// `cargo xtask ffi [header [--write] | c-test | audit | kmod | uefi]`; no argument runs all.
pub fn ffi(args: &[String]) -> Result {
    match args.first().map(String::as_str) {
        Some("header") => header(args.iter().any(|a| a == "--write")),
        Some("c-test") => c_test(),
        Some("audit") => audit().map(|_| ()),
        Some("kmod") => kmod(),
        Some("uefi") => uefi(),
        None => {
            header(false)?;
            c_test()?;
            audit()?;
            kmod()?;
            uefi()
        }
        Some(other) => Err(format!(
            "ffi: unknown step {other:?} (header [--write] | c-test | audit | kmod | uefi)"
        )),
    }
}

/// Installs the pinned cbindgen when it is missing or another version.
pub fn setup_cbindgen() -> Result {
    let have = Command::new("cbindgen")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if have != format!("cbindgen {CBINDGEN_VERSION}") {
        run({
            let mut c = cmd("cargo");
            c.args([
                "install",
                "cbindgen",
                "--locked",
                "--version",
                CBINDGEN_VERSION,
            ]);
            c
        })?;
    }
    Ok(())
}

/// The kernel release of Debian's linux-headers-amd64, as installed (e.g. `6.1.0-57-amd64`).
fn kernel_release() -> Result<String> {
    let deps = output({
        let mut c = Command::new("dpkg-query");
        c.args(["-W", "-f=${Depends}", "linux-headers-amd64"]);
        c
    })?;
    deps.split([',', ' '])
        .find_map(|d| d.strip_prefix("linux-headers-"))
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| format!("linux-headers-amd64 depends on {deps:?}: no kernel release"))
}

/// Debian's packaged kernel for that release (the linux-image package linux-image-amd64
/// depends on), downloaded and unpacked under target/ffi/kernel: it is booted, not installed.
pub fn setup_kernel_image() -> Result<PathBuf> {
    let release = kernel_release()?;
    let dir = work_dir("kernel")?;
    let vmlinuz = dir.join(format!("root/boot/vmlinuz-{release}"));
    if vmlinuz.exists() {
        return Ok(vmlinuz);
    }
    let package = format!("linux-image-{release}");
    run({
        let mut c = cmd("apt-get");
        c.args(["download", &package]).current_dir(&dir);
        c
    })?;
    let deb = fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .ok_or_else(|| {
            format!(
                "apt-get download {package} left no .deb in {}",
                dir.display()
            )
        })?;
    run({
        let mut c = cmd("dpkg-deb");
        c.arg("-x").arg(&deb).arg(dir.join("root"));
        c
    })?;
    let _ = fs::remove_file(&deb);
    if vmlinuz.exists() {
        Ok(vmlinuz)
    } else {
        Err(format!("{package} has no {}", vmlinuz.display()))
    }
}

/// The header, regenerated and compared (or written).
fn header(write_it: bool) -> Result {
    let dir = ffi_dir();
    let fresh = work_dir("header")?.join("hugesept.h");
    run({
        let mut c = cmd("cbindgen");
        c.current_dir(&dir)
            .args([
                "--quiet",
                "--config",
                "cbindgen.toml",
                "--crate",
                "hugesept-ffi",
                "--output",
            ])
            .arg(&fresh);
        c
    })?;
    let checked_in = dir.join("include/hugesept.h");
    let new = read(&fresh)?;
    if write_it {
        write(&checked_in, new.as_bytes())?;
        eprintln!("ffi header: wrote {}", checked_in.display());
        return Ok(());
    }
    let old = read(&checked_in).unwrap_or_default();
    if old != new {
        return Err(format!(
            "{} is stale: the Rust source generates a different header \
             (cargo xtask ffi header --write)",
            checked_in.display()
        ));
    }
    eprintln!(
        "ffi header: {} is what cbindgen {CBINDGEN_VERSION} generates from ffi/src",
        checked_in.display()
    );
    Ok(())
}

/// The functions the header declares.
fn header_functions() -> Result<Vec<String>> {
    let text = read(&ffi_dir().join("include/hugesept.h"))?;
    // Every `hugesept_<identifier>(`: a declared function (the typedef of the lookup is
    // `(*hugesept_lpage_lookup)(`, which the `(*` before it rules out).
    let mut names = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("hugesept_") {
        let after = &rest[i..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let declared = after[len..].starts_with('(') && !rest[..i].ends_with("(*");
        if declared {
            names.push(after[..len].to_owned());
        }
        rest = &after[len..];
    }
    names.sort();
    names.dedup();
    if names.len() < 10 {
        return Err(format!("the header declares only {names:?}"));
    }
    Ok(names)
}

/// The generated table's case count and digest, as cases.h defines them.
fn table_summary() -> Result<(u64, String)> {
    let text = read(&ffi_dir().join("selftest/cases.h"))?;
    let define = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
            .map(|v| v.trim().trim_end_matches("ull").to_owned())
            .ok_or_else(|| format!("cases.h defines no {name}"))
    };
    let count = define("HUGESEPT_SELFTEST_CASE_COUNT")?
        .parse::<u64>()
        .map_err(|e| format!("HUGESEPT_SELFTEST_CASE_COUNT: {e}"))?;
    Ok((count, define("HUGESEPT_SELFTEST_DIGEST")?))
}

/// Checks a runner's summary line against the table: every case passed, the host's digest.
fn check_summary(what: &str, log: &str) -> Result {
    let (count, digest) = table_summary()?;
    let want =
        format!("hugesept selftest: {count} cases, {count} passed, 0 failed, digest {digest}");
    match log.lines().find(|l| l.contains("hugesept selftest:")) {
        Some(l) if l.trim_end().ends_with(&want) => {
            eprintln!("{what}: {}", want);
            Ok(())
        }
        Some(l) => Err(format!("{what}: {l:?}, where the table wants {want:?}")),
        None => Err(format!("{what}: no summary line (want {want:?})")),
    }
}

fn c_test() -> Result {
    run({
        let mut c = cmd("cargo");
        c.current_dir(ffi_dir())
            .args(["build", "--release", "--locked"]);
        c
    })?;
    let dir = ffi_dir();
    let lib = dir.join("target/release/libhugesept.a");
    let out = work_dir("c-test")?;
    let builds: [(&str, &[&str]); 2] = [
        ("hugesept-c-test", &["-O2"]),
        (
            "hugesept-c-test-sanitized",
            &[
                "-O1",
                "-g",
                "-fsanitize=address,undefined",
                "-fno-sanitize-recover=all",
            ],
        ),
    ];
    for (name, flags) in builds {
        let exe = out.join(name);
        run({
            let mut c = cmd("gcc");
            c.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"])
                .args(flags)
                .arg("-I")
                .arg(dir.join("include"))
                .arg("-I")
                .arg(dir.join("selftest"))
                .arg(dir.join("c-test/main.c"))
                .arg(dir.join("selftest/selftest.c"))
                .arg(&lib)
                // The library's unused parts (libcore's) go; they are never called.
                .arg("-Wl,--gc-sections")
                .arg("-o")
                .arg(&exe);
            c
        })?;
        let o = Command::new(&exe)
            .output()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        for l in text.lines().filter(|l| l.contains("FAILED")).take(20) {
            eprintln!("{l}");
        }
        if !o.status.success() {
            return Err(format!("{name}: {}\n{}", o.status, text));
        }
        check_summary(name, &text)?;
        if let Some(l) = text.lines().last() {
            eprintln!("{l}");
        }
    }
    Ok(())
}

/// Builds the bare-metal library and checks it; returns the audited object.
fn audit() -> Result<PathBuf> {
    let nightly = format!("+{}", guest_toolchain()?);
    let target_dir = ffi_dir().join("target/kernel");
    run({
        let mut c = cmd("cargo");
        c.current_dir(ffi_dir())
            .args([
                nightly.as_str(),
                "build",
                "--release",
                "--locked",
                "--target",
                crate::BARE_METAL_TARGET,
                "-Zbuild-std=core,compiler_builtins",
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            .env("RUSTFLAGS", KERNEL_RUSTFLAGS);
        c
    })?;
    let lib = target_dir.join(format!(
        "{}/release/libhugesept.a",
        crate::BARE_METAL_TARGET
    ));
    let functions = header_functions()?;
    let object = work_dir("kernel")?.join("libhugesept.o");
    run({
        let mut c = cmd("ld");
        c.args(["-r", "--gc-sections"]);
        for f in &functions {
            c.arg(format!("--require-defined={f}"));
        }
        c.arg("-o").arg(&object).arg(&lib);
        c
    })?;
    let symbols = output({
        let mut c = cmd("readelf");
        c.args(["-sW"]).arg(&object);
        c
    })?;
    let mut problems = Vec::new();
    let mut undefined = Vec::new();
    let mut defined_functions = Vec::new();
    for l in symbols.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let [_, _, _, ty, bind, _, ndx, name] = f.as_slice() else {
            continue;
        };
        if *ndx == "UND" {
            undefined.push((*name).to_owned());
        } else if *ty == "FUNC" && *bind == "GLOBAL" {
            defined_functions.push((*name).to_owned());
        }
        if let Some(bad) = FORBIDDEN_NAMES.iter().find(|b| name.contains(*b)) {
            problems.push(format!("symbol {name} (the {bad} machinery)"));
        }
    }
    for u in &undefined {
        if !MEM_FAMILY.contains(&u.as_str()) {
            problems.push(format!("undefined symbol {u}"));
        }
    }
    for f in &functions {
        if !defined_functions.contains(f) {
            problems.push(format!(
                "the header's {f} is not a global function of the library"
            ));
        }
    }
    let relocations = output({
        let mut c = cmd("readelf");
        c.args(["-rW"]).arg(&object);
        c
    })?;
    let mut kinds: BTreeMap<String, u32> = BTreeMap::new();
    for l in relocations.lines() {
        if let Some(kind) = l.split_whitespace().find(|w| w.starts_with("R_X86_64_")) {
            *kinds.entry(kind.to_owned()).or_default() += 1;
        }
    }
    for k in kinds.keys() {
        if !KERNEL_RELOCATIONS.contains(&k.as_str()) {
            problems.push(format!(
                "relocation {k} (the module loader applies only {KERNEL_RELOCATIONS:?})"
            ));
        }
    }
    let disassembly = output({
        let mut c = cmd("objdump");
        c.args(["-d", "--no-show-raw-insn"]).arg(&object);
        c
    })?;
    let simd = disassembly
        .lines()
        .filter(|l| {
            l.contains("%xmm") || l.contains("%ymm") || l.contains("%zmm") || l.contains("%mm")
        })
        .count();
    if simd > 0 {
        problems.push(format!(
            "{simd} instructions use SIMD registers (soft float wanted)"
        ));
    }
    let size = output({
        let mut c = cmd("size");
        c.arg(&object);
        c
    })?;
    let text_bytes = size
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("?")
        .to_owned();
    if !problems.is_empty() {
        return Err(format!(
            "symbol audit of {}:\n  {}",
            object.display(),
            problems.join("\n  ")
        ));
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    eprintln!(
        "symbol audit: {} functions of the header, {text_bytes} bytes of text; undefined: {}; \
         relocations: {}; no panic or formatting machinery; no SIMD instructions",
        functions.len(),
        if undefined.is_empty() {
            "none".to_owned()
        } else {
            undefined.join(", ")
        },
        kinds.join(", ")
    );
    Ok(object)
}

/// Whether QEMU's KVM acceleration failed to boot a guest earlier in this run.
static KVM_FAILED: AtomicBool = AtomicBool::new(false);

/// Runs QEMU with `args` until it exits or `limit` passes, returning the serial console's text
/// and QEMU's exit status. With /dev/kvm it first tries `-accel kvm`: a boot that shows no `progress` marker within
/// `kvm_probe` is stopped and the run repeated under TCG (and TCG used for the rest of the run).
pub(crate) fn qemu(
    what: &str,
    args: &[String],
    progress: &str,
    kvm_probe: Duration,
    limit: Duration,
) -> Result<(String, std::process::ExitStatus)> {
    let kvm = fs::File::open("/dev/kvm").is_ok() && !KVM_FAILED.load(Ordering::Relaxed);
    let accels: &[&str] = if kvm { &["kvm", "tcg"] } else { &["tcg"] };
    for accel in accels {
        let slug: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let log = work_dir("qemu")?.join(format!("{slug}-{accel}.log"));
        let file = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        eprintln!("$ qemu-system-x86_64 -accel {accel} {}", args.join(" "));
        let start = Instant::now();
        let mut child = cmd("qemu-system-x86_64")
            .args(["-accel", accel])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("qemu-system-x86_64: {e}"))?;
        let probe = *accel == "kvm";
        let status = loop {
            if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                break Some(s);
            }
            let elapsed = start.elapsed();
            if probe && elapsed > kvm_probe && !read_lossy(&log).contains(progress) {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!(
                    "{what}: QEMU with KVM showed nothing in {} s here; running it under TCG",
                    kvm_probe.as_secs()
                );
                KVM_FAILED.store(true, Ordering::Relaxed);
                break None;
            }
            if elapsed > limit {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{what}: QEMU ran past {} s (console in {})",
                    limit.as_secs(),
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let Some(status) = status else { continue };
        let text = read_lossy(&log);
        eprintln!(
            "{what}: QEMU ({accel}) ended with {status} after {:.1} s; console in {}",
            start.elapsed().as_secs_f64(),
            log.display()
        );
        return Ok((text, status));
    }
    Err(format!("{what}: QEMU did not run"))
}

fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn kmod() -> Result {
    let object = audit()?;
    let vmlinuz = setup_kernel_image()?;
    let release = kernel_release()?;
    let headers = PathBuf::from(format!("/usr/src/linux-headers-{release}"));
    if !headers.join("Makefile").exists() {
        return Err(format!(
            "{}: no kernel headers (cargo xtask setup installs linux-headers-amd64)",
            headers.display()
        ));
    }
    let ffi = ffi_dir();
    // The module's build directory: its sources, the runner and table, the header, the object.
    let build = work_dir("kmod-build")?;
    for (from, to) in [
        ("kmod/Kbuild", "Kbuild"),
        ("kmod/module.c", "module.c"),
        ("selftest/selftest.c", "selftest.c"),
        ("selftest/selftest.h", "selftest.h"),
        ("selftest/cases.h", "cases.h"),
        ("include/hugesept.h", "hugesept.h"),
    ] {
        copy(&ffi.join(from), &build.join(to))?;
    }
    copy(&object, &build.join("libhugesept.o_shipped"))?;
    // modpost reads a .cmd file for every object of the module; the copied one has no command.
    write(
        &build.join(".libhugesept.o.cmd"),
        b"# libhugesept.o: copied from libhugesept.o_shipped (the audited object)\n",
    )?;
    run({
        let mut c = cmd("make");
        c.arg("-C")
            .arg(&headers)
            .arg(format!("M={}", build.display()))
            .arg("modules");
        c
    })?;
    let module = build.join("hugesept_selftest.ko");
    // The initramfs: busybox, /init, the module.
    let initroot = work_dir("kmod-initramfs")?;
    let _ = fs::remove_dir_all(&initroot);
    fs::create_dir_all(initroot.join("bin")).map_err(|e| e.to_string())?;
    copy(Path::new("/bin/busybox"), &initroot.join("bin/busybox"))?;
    copy(&ffi.join("kmod/init.sh"), &initroot.join("init"))?;
    copy(&module, &initroot.join("hugesept_selftest.ko"))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        for f in ["init", "bin/busybox"] {
            fs::set_permissions(initroot.join(f), fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
        }
    }
    let initramfs = work_dir("kmod")?.join("initramfs.cpio.gz");
    run({
        let mut c = cmd("sh");
        c.arg("-c")
            .arg(format!(
                "find . | LC_ALL=C sort | cpio --quiet -o -H newc | gzip -1 > '{}'",
                initramfs.display()
            ))
            .current_dir(&initroot);
        c
    })?;
    let args: Vec<String> = [
        "-machine",
        "q35",
        "-m",
        "512",
        "-smp",
        "1",
        "-nographic",
        "-no-reboot",
        "-kernel",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        vmlinuz.display().to_string(),
        "-initrd".into(),
        initramfs.display().to_string(),
    ])
    .chain([
        "-append".into(),
        "console=ttyS0 quiet loglevel=7 panic=-1".into(),
    ])
    .collect();
    let (log, _) = qemu(
        "kernel module",
        &args,
        "Linux version",
        Duration::from_secs(30),
        Duration::from_secs(600),
    )?;
    let (count, _) = table_summary()?;
    let lines = log
        .lines()
        .filter(|l| l.contains("hugesept: case "))
        .count() as u64;
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("FAILED"))
        .take(20)
        .collect();
    for f in &failures {
        eprintln!("{f}");
    }
    if !log.contains("hugesept-initramfs: insmod ok") {
        return Err("kernel module: the module did not load (insmod failed or never ran)".into());
    }
    if lines != count {
        return Err(format!(
            "kernel module: printed {lines} case lines for {count} cases"
        ));
    }
    check_summary(&format!("kernel module in Linux {release}"), &log)
}

fn uefi() -> Result {
    let app_dir = ffi_dir().join("uefi");
    run({
        let mut c = cmd("cargo");
        c.current_dir(&app_dir).args([
            "build",
            "--release",
            "--locked",
            "--target",
            "x86_64-unknown-uefi",
        ]);
        c
    })?;
    let efi = app_dir.join("target/x86_64-unknown-uefi/release/hugesept-uefi-selftest.efi");
    let esp = work_dir("uefi-esp")?;
    fs::create_dir_all(esp.join("EFI/BOOT")).map_err(|e| e.to_string())?;
    copy(&efi, &esp.join("EFI/BOOT/BOOTX64.EFI"))?;
    let firmware = Path::new("/usr/share/ovmf/OVMF.fd");
    if !firmware.exists() {
        return Err(format!(
            "{}: no OVMF (cargo xtask setup installs ovmf)",
            firmware.display()
        ));
    }
    let args: Vec<String> = [
        "-machine",
        "q35",
        "-m",
        "256",
        "-nographic",
        "-no-reboot",
        "-net",
        "none",
        "-bios",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        firmware.display().to_string(),
        "-drive".into(),
        format!("format=raw,file=fat:rw:{}", esp.display()),
    ])
    .collect();
    let (log, _) = qemu(
        "UEFI application",
        &args,
        "hugesept",
        Duration::from_secs(30),
        Duration::from_secs(300),
    )?;
    for l in log.lines().filter(|l| l.contains("hugesept")) {
        eprintln!("{}", l.trim_matches(|c: char| c.is_control()));
    }
    check_summary("UEFI application under OVMF", &log)
}
