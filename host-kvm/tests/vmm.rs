//! `hugesept run` end to end: every scenario on real vCPUs through /dev/kvm with the guest-td
//! payload, its verdict the scenario's, the payload's reports agreeing with the model, and its
//! choices replayed in-process to the same verdict and metrics; hostile guests and a hostile
//! boot block end in typed errors, never a crash or a hang.
//!
//! Needs /dev/kvm and the payload (`cargo xtask guest`). Where either is missing the tests say
//! so and pass, unless HUGESEPT_REQUIRE_KVM is set (as `cargo xtask test` sets it), which turns
//! a missing prerequisite into a failure.

use std::path::PathBuf;
use std::time::Duration;

use hugesept_core::payload::{BOOT_MAX_SIZE, BootError};
use hugesept_core::world::{Metrics, Verdict};
use hugesept_host_kvm::scenario::{self, Scenario};
use hugesept_host_kvm::vmm::{self, RunOptions, RunResult, VmmError, service::RunEnd};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The payload's bytes, or why the tests cannot run here.
fn prerequisites() -> Option<Vec<u8>> {
    let required = std::env::var_os("HUGESEPT_REQUIRE_KVM").is_some();
    let missing = |why: String| {
        assert!(!required, "HUGESEPT_REQUIRE_KVM is set but {why}");
        eprintln!("SKIPPED (needs /dev/kvm and the payload): {why}");
        None
    };
    if let Err(e) = vmm::kvm_available() {
        return missing(format!("/dev/kvm is not usable: {e}"));
    }
    let p = repo().join("guest-td/target/x86_64-unknown-none/release/hugesept-guest-td");
    match std::fs::read(&p) {
        Ok(b) => Some(b),
        Err(e) => missing(format!(
            "no payload at {} ({e}): run `cargo xtask guest`",
            p.display()
        )),
    }
}

fn options(payload: Vec<u8>) -> RunOptions {
    RunOptions {
        payload,
        timeout: Duration::from_secs(60),
        tdcall_by_port: false,
        boot_block: None,
    }
}

/// Steps `choices` on the scenario's world in-process: the world's verdict (if it ended) and
/// the metrics.
fn replay(sc: &Scenario, choices: &[hugesept_core::world::Choice]) -> (Option<Verdict>, Metrics) {
    let mut w = sc.world().unwrap();
    let mut m = Metrics::default();
    for (k, &c) in choices.iter().enumerate() {
        assert!(
            w.ended().is_none(),
            "step {k}: the world ended before the run's choices did"
        );
        assert!(
            w.is_enabled(c),
            "step {k}: {c} is not enabled in the replay"
        );
        let before = w.clone();
        w.step(c, &mut m).unwrap();
        w.check().unwrap();
        scenario::ScenarioWorld::check_transition(&before, &w).unwrap();
    }
    (w.ended(), m)
}

fn check_run(name: &str, sc: &Scenario, r: &RunResult) {
    let expected = sc.expect.unwrap_or(Verdict::Ok);
    assert_eq!(r.end, RunEnd::Verdict(expected), "{name}: the run's end");
    for (i, (rep, m)) in r.reports.iter().zip(&r.model_reports).enumerate() {
        let rep = rep
            .as_ref()
            .unwrap_or_else(|e| panic!("{name}: vCPU {i}: {e}"));
        assert_eq!(
            rep, m,
            "{name}: vCPU {i}: the payload's report and the model's count"
        );
    }
    let (ended, metrics) = replay(sc, &r.choices);
    match expected {
        // A livelock has no end: the run stopped it after `patience` steps without progress.
        Verdict::Livelock => assert_eq!(ended, None, "{name}"),
        v => assert_eq!(ended, Some(v), "{name}: the replay's verdict"),
    }
    assert_eq!(metrics, r.metrics, "{name}: the replay's metrics");
    // A served TDCALL is an exit that the run counted.
    let tdcall_exits: u64 = r.vcpus.iter().map(|v| v.tdcall_exits).sum();
    assert!(
        tdcall_exits >= u64::from(r.metrics.tdcalls),
        "{name}: TDCALL exits"
    );
}

#[test]
fn every_scenario_runs_on_real_vcpus_and_replays() {
    let Some(payload) = prerequisites() else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10);
    for f in files {
        let name = f.display().to_string();
        let sc = scenario::parse(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let r = vmm::run(&sc, &options(payload.clone())).unwrap();
        check_run(&name, &sc, &r);
    }
}

#[test]
fn tdcalls_forwarded_by_port_serve_the_same() {
    let Some(payload) = prerequisites() else {
        return;
    };
    for f in [
        "seed-rfc-v1.toml",
        "conversion-4k-in-2m.toml",
        "touch-first-4k-guest-inhibit.toml",
    ] {
        let text = std::fs::read_to_string(repo().join("scenarios").join(f)).unwrap();
        let sc = scenario::parse(&text).unwrap();
        let r = vmm::run(
            &sc,
            &RunOptions {
                tdcall_by_port: true,
                ..options(payload.clone())
            },
        )
        .unwrap();
        check_run(f, &sc, &r);
        // Every TDCALL came through the port: none as an emulation failure.
        assert!(r.vcpus.iter().all(|v| v.tdcall_exits > 0), "{f}");
    }
}

const ONE_VCPU: &str = r#"
name = "one 4K-only vCPU"
policy = "guest-inhibit"
regions = 2

[[vcpu]]
guest = "accept-4k-only"
start = "0x40000000"
end = "0x40002000"
"#;

fn hostile(code: &[u8], timeout: Duration) -> RunResult {
    let sc = scenario::parse(ONE_VCPU).unwrap();
    vmm::run(
        &sc,
        &RunOptions {
            payload: vmm::elf::tiny_image(code),
            timeout,
            tdcall_by_port: false,
            boot_block: None,
        },
    )
    .unwrap()
}

fn guest_fault(r: &RunResult, needle: &str) {
    match &r.end {
        RunEnd::GuestFault { what, .. } => assert!(what.contains(needle), "{what}"),
        e => panic!("expected a guest fault ({needle}), got {e}"),
    }
}

#[test]
fn hostile_guests_end_in_typed_errors() {
    if prerequisites().is_none() {
        return;
    }
    // ud2 with no IDT: #UD, #DF, triple fault.
    guest_fault(
        &hostile(&[0x0f, 0x0b], Duration::from_secs(10)),
        "triple fault",
    );
    // A 4-byte write of a GPA in the window to the TDCALL port.
    let bad_port = [
        0x66, 0xba, 0xe0, 0x05, // mov dx, 0x5e0
        0xb8, 0x00, 0x00, 0x00, 0x40, // mov eax, 0x40000000
        0xef, // out dx, eax
        0xf4,
    ];
    guest_fault(&hostile(&bad_port, Duration::from_secs(10)), "TDCALL port");
    // A hugesept call the VMM does not know, then a halt before the program ran.
    let mut unknown_call = vec![
        0x31, 0xc0, // xor eax, eax (TDG.VP.VMCALL)
        0xb9, 0x00, 0x3c, 0x00, 0x00, // mov ecx, 0x3c00
        0x49, 0xba, // mov r10, imm64
    ];
    unknown_call.extend_from_slice(&hugesept_core::payload::VMCALL_VENDOR.to_le_bytes());
    unknown_call.extend_from_slice(&[
        0x41, 0xbb, 0x63, 0x00, 0x00, 0x00, // mov r11d, 99
        0x66, 0x0f, 0x01, 0xcc, // tdcall
        0xf4, // hlt
    ]);
    guest_fault(
        &hostile(&unknown_call, Duration::from_secs(10)),
        "halted before",
    );
    // A storm of TDCALLs with a leaf that does not exist, forever: the timeout ends it.
    let storm = [
        0xb8, 0xff, 0xff, 0x00, 0x00, // mov eax, 0xffff
        0x66, 0x0f, 0x01, 0xcc, // tdcall
        0xeb, 0xf5, // jmp back to the mov
    ];
    let r = hostile(&storm, Duration::from_millis(500));
    assert_eq!(r.end, RunEnd::Timeout);
    assert!(r.vcpus[0].tdcalls[4] > 10, "{:?}", r.vcpus[0]);
    // A guest spinning without an exit: the timeout kicks it out of KVM_RUN.
    let r = hostile(&[0xeb, 0xfe], Duration::from_millis(300));
    assert_eq!(r.end, RunEnd::Timeout);
    // Not an ELF: a typed error before any vCPU runs.
    let sc = scenario::parse(ONE_VCPU).unwrap();
    let e = vmm::run(
        &sc,
        &RunOptions {
            payload: b"not an elf".to_vec(),
            ..options(Vec::new())
        },
    )
    .unwrap_err();
    assert!(matches!(e, VmmError::Elf(_)), "{e}");
}

#[test]
fn the_payload_refuses_a_bad_boot_block() {
    let Some(payload) = prerequisites() else {
        return;
    };
    let sc = scenario::parse(ONE_VCPU).unwrap();
    let mut block = vec![0u8; BOOT_MAX_SIZE];
    let n = vmm::boot_info(&sc, false)
        .unwrap()
        .encode(&mut block)
        .unwrap();
    block[n - 1] ^= 0x40;
    let r = vmm::run(
        &sc,
        &RunOptions {
            boot_block: Some(block[..n].to_vec()),
            ..options(payload.clone())
        },
    )
    .unwrap();
    guest_fault(&r, &BootError::Checksum.to_string());
    let r = vmm::run(
        &sc,
        &RunOptions {
            boot_block: Some(vec![0xff; 64]),
            ..options(payload)
        },
    )
    .unwrap();
    guest_fault(&r, &BootError::Magic.to_string());
}

/// Every guest strategy the core has runs in the payload with real instructions: a vCPU running
/// it over two regions beside a 4K-only vCPU inside its second 2M page, under two designs. The
/// verdict is whatever the model says for the order the threads took (the adversarial guest may
/// break things); the payload's reports must agree and the replay must match.
#[test]
fn every_guest_strategy_runs_in_the_payload() {
    let Some(payload) = prerequisites() else {
        return;
    };
    for policy in ["guest-inhibit", "upstream-4k"] {
        for kind in hugesept_core::guest::GuestKind::ALL {
            let text = format!(
                "name = \"{kind} beside a 4K-only vCPU\"\npolicy = \"{policy}\"\nregions = 2\n\
                 ve = {}\n\n[[vcpu]]\nguest = \"{kind}\"\nstart = \"0x40000000\"\nend = \
                 \"0x40400000\"\n\n[[vcpu]]\nguest = \"accept-4k-only\"\nstart = \"0x40201000\"\n\
                 end = \"0x40202000\"\nmarkers = false\n",
                kind == hugesept_core::guest::GuestKind::TouchFirst
            );
            let sc = scenario::parse(&text).unwrap();
            let r = vmm::run(&sc, &options(payload.clone())).unwrap();
            let name = format!("{kind} under {policy}");
            let RunEnd::Verdict(v) = r.end else {
                panic!("{name}: {}", r.end);
            };
            for (i, (rep, m)) in r.reports.iter().zip(&r.model_reports).enumerate() {
                assert_eq!(rep.as_ref().ok(), Some(m), "{name}: vCPU {i}");
            }
            let (ended, metrics) = replay(&sc, &r.choices);
            if v != Verdict::Livelock {
                assert_eq!(ended, Some(v), "{name}");
            }
            assert_eq!(metrics, r.metrics, "{name}");
        }
    }
}
