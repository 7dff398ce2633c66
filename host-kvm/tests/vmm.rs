//! `hugesept run` end to end: every scenario on real vCPUs through /dev/kvm with the guest-td
//! payload, its verdict the scenario's, the payload's reports agreeing with the model, and its
//! choices replayed in-process to the same verdict and metrics; the other vCPUs woken through
//! the ACPI mailbox, touches of unaccepted memory exiting for real (#VE delivered, or the TD
//! killed), TDCALLs raising #UD and forwarded, td-shim's entry, the defmt log decoded;
//! hostile guests and a hostile boot block end in typed errors, never a crash or a hang.
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

mod common;

use common::scenario_files;

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
        entry: vmm::Entry::Hugesept,
        log: false,
        boot_block: None,
    }
}

fn scenario_file(f: &str) -> Scenario {
    let text = std::fs::read_to_string(repo().join("scenarios").join(f)).unwrap();
    scenario::parse(&text).unwrap()
}

/// The log's lines, joined.
fn log_text(r: &RunResult) -> String {
    r.log
        .iter()
        .map(|l| format!("[vCPU {}] {}", l.vcpu, l.text))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Steps `choices` on the scenario's world in-process: the world's verdict (if it ended) and
/// the metrics.
fn replay(sc: &Scenario, choices: &[hugesept_core::world::Choice]) -> (Option<Verdict>, Metrics) {
    // The VMM's own world size, whatever the scenario's.
    let mut w = sc.run_world().unwrap();
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
        scenario::RunWorld::check_transition(&before, &w).unwrap();
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
    let files = scenario_files("");
    assert!(files.len() >= 10);
    for f in files {
        let name = f.display().to_string();
        let sc = scenario::parse(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let r = vmm::run(&sc, &options(payload.clone())).unwrap();
        check_run(&name, &sc, &r);
        // Every vCPU but the first came up through the mailbox; each one's program ended in
        // its log line.
        assert_eq!(usize::from(r.woken), r.vcpus.len() - 1, "{name}");
        let log = log_text(&r);
        if !matches!(sc.expect, Some(Verdict::Livelock)) {
            for i in 0..r.vcpus.len() {
                assert!(
                    log.contains(&format!("[vCPU {i}] ")) && log.contains("after"),
                    "{name}: vCPU {i}'s log:\n{log}"
                );
            }
        }
    }
}

/// A touch-first guest's touches of pending memory exit for real and take a real #VE, whose
/// handler reads the cause with TDG.VP.VEINFO.GET before the strategy accepts the page: under
/// GUEST_INHIBIT the run ends ok; under RFC v1 it livelocks (the run's progress check).
#[test]
fn touches_of_pending_memory_exit_and_take_a_real_ve() {
    let Some(payload) = prerequisites() else {
        return;
    };
    for (f, verdict) in [
        ("touch-first-4k-guest-inhibit.toml", Verdict::Ok),
        ("touch-first-4k-rfc-v1.toml", Verdict::Livelock),
    ] {
        let sc = scenario_file(f);
        let r = vmm::run(&sc, &options(payload.clone())).unwrap();
        check_run(f, &sc, &r);
        assert_eq!(r.end, RunEnd::Verdict(verdict), "{f}");
        let v = &r.vcpus[0];
        assert!(v.window_exits >= 1 && v.ves >= 1, "{f}: {v:?}");
        assert_eq!(v.veinfo_gets, v.ves, "{f}: one VEINFO.GET per #VE");
        assert_eq!(
            r.model_reports[0].virtualization_exceptions, v.ves,
            "{f}: the model's #VEs are the ones delivered"
        );
    }
    // With #VE disabled (SEPT_VE_DISABLE), the same touch ends the TD: KVM kills it.
    let text = std::fs::read_to_string(repo().join("scenarios/touch-first-4k-guest-inhibit.toml"))
        .unwrap()
        .replace("ve = true", "ve = false")
        .replace("expect = \"ok\"", "expect = \"vm-killed\"");
    let sc = scenario::parse(&text).unwrap();
    let r = vmm::run(&sc, &options(payload)).unwrap();
    assert_eq!(r.end, RunEnd::Verdict(Verdict::VmKilled));
    assert!(r.vcpus[0].window_exits >= 1 && r.vcpus[0].ves == 0);
}

/// td-shim's entry: the HOB list carries the memory map, the MADT and the boot block; the
/// payload reads them and runs as it does from the hugesept VMM's entry.
#[test]
fn the_td_shim_entry_reads_the_hob_list() {
    let Some(payload) = prerequisites() else {
        return;
    };
    for f in ["seed-rfc-v1.toml", "linux-boot-guest-inhibit.toml"] {
        let sc = scenario_file(f);
        let r = vmm::run(
            &sc,
            &RunOptions {
                entry: vmm::Entry::TdShim,
                ..options(payload.clone())
            },
        )
        .unwrap();
        check_run(f, &sc, &r);
        let log = log_text(&r);
        assert!(
            log.contains("td-shim entry: payload at 0x100000, HOB list at 0xc0000")
                && log.contains("1 ACPI table(s)"),
            "{f}:\n{log}"
        );
        assert_eq!(usize::from(r.woken), r.vcpus.len() - 1, "{f}");
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
        // Every TDCALL raised #UD and came through the port, forwarded by the payload's #UD
        // handler: as many TDCALLs served as #UDs injected.
        for (i, v) in r.vcpus.iter().enumerate() {
            assert!(v.uds > 0 && v.tdcall_exits >= v.uds, "{f}: vCPU {i}: {v:?}");
        }
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
            timeout,
            ..options(vmm::elf::tiny_image(code))
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
    // A load from the window with no access announced: the page is not in the guest's view,
    // the load exits, and the model had no access to answer it with.
    let touch = [
        0x48, 0xa1, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, // mov rax, [0x40000000]
        0xf4,
    ];
    match hostile(&touch, Duration::from_secs(10)).end {
        RunEnd::Disagreement { what, .. } => assert!(what.contains("0x40000000"), "{what}"),
        e => panic!("a stray touch: {e}"),
    }
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
    let n = vmm::boot_info(&sc).unwrap().encode(&mut block).unwrap();
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

/// The firmware side of the wakeup mailbox refuses what names no sleeping vCPU.
#[test]
fn a_bad_wakeup_request_is_a_guest_fault() {
    if prerequisites().is_none() {
        return;
    }
    let two = format!(
        "{ONE_VCPU}\n[[vcpu]]\nguest = \"accept-4k-only\"\nstart = \"0x40200000\"\nend = \
         \"0x40201000\"\n"
    );
    let sc = scenario::parse(&two).unwrap();
    // APIC ID 7 (no such vCPU), vector 0x100000, command 1; then spin.
    let wake_seven = [
        0xc7, 0x04, 0x25, 0x04, 0x00, 0x0f, 0x00, 0x07, 0x00, 0x00,
        0x00, // mov dword [0xf0004], 7
        0xc7, 0x04, 0x25, 0x08, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x10,
        0x00, // mov dword [0xf0008], 0x100000
        0x66, 0xc7, 0x04, 0x25, 0x00, 0x00, 0x0f, 0x00, 0x01, 0x00, // mov word [0xf0000], 1
        0xeb, 0xfe, // jmp $
    ];
    let r = vmm::run(
        &sc,
        &RunOptions {
            timeout: Duration::from_secs(10),
            ..options(vmm::elf::tiny_image(&wake_seven))
        },
    )
    .unwrap();
    guest_fault(&r, "APIC ID 7");
    assert_eq!(r.woken, 0);
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

#[test]
fn a_world_of_eight_vcpus_runs_on_real_vcpus() {
    let Some(payload) = prerequisites() else {
        return;
    };
    // asterinas' parallel accept on eight vCPUs, each a contiguous 4 MiB share, with markers:
    // more vCPUs than the explorer's worlds hold.
    let sc = scenario::parse(
        "name = \"eight vCPUs\"\npolicy = \"guest-inhibit\"\nregions = 16\nexpect = \"ok\"\n\
         [[vcpu]]\nguest = \"asterinas\"\nstart = \"0x40000000\"\nend = \"0x42000000\"\n\
         count = 8\n",
    )
    .unwrap();
    assert!(sc.is_wide());
    let r = vmm::run(&sc, &options(payload)).unwrap();
    check_run("eight vCPUs", &sc, &r);
    assert_eq!(r.vcpus.len(), 8);
    assert_eq!(r.woken, 7);
    // Each accepted its two 2M pages.
    assert_eq!(
        &r.metrics.vcpu_pages[..9],
        &[1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024, 0]
    );
}
