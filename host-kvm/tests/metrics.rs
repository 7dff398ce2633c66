//! What a run costs, counted: each vCPU's steps, waits, TDCALLs, exits and SEAMCALLs add up to
//! the run's, the waits on
//! mmu_lock and on the guests are among them, and the seed scenario's races show each kind
//! (ACCEPTs refused with BUSY, fault paths waiting for mmu_lock, splits waiting for an ACCEPT
//! to let go of its entry).

use std::path::Path;

use hugesept_core::world::{Choice, MAX_CHOICES, Metrics, Stepped};
use hugesept_host_kvm::scenario::{self, random::Rng};

/// One random run of the scenario file `name`: its metrics, the vCPU steps that moved or
/// waited, and the steps that waited.
fn run(name: &str, seed: u64) -> (Metrics, u32, u32) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    let text = std::fs::read_to_string(path).unwrap();
    let mut w = scenario::parse(&text).unwrap().world().unwrap();
    let mut r = Rng::new(seed);
    let mut m = Metrics::default();
    let (mut vcpu_steps, mut waits) = (0, 0);
    for _ in 0..100_000 {
        let mut all = [Choice::Vcpu(0); MAX_CHOICES];
        let n = w.enabled(&mut all);
        if n == 0 {
            break;
        }
        let c = all[r.below(n as u64) as usize];
        let s = w.step(c, &mut m).unwrap();
        if matches!(c, Choice::Vcpu(_) | Choice::Interrupt(_)) && s != Stepped::Invalid {
            vcpu_steps += 1;
        }
        if s == Stepped::Blocked {
            waits += 1;
        }
    }
    (m, vcpu_steps, waits)
}

#[test]
fn each_vcpus_steps_and_waits_add_up_and_every_kind_of_wait_is_seen() {
    let mut seen = Metrics::default();
    for seed in 1..=200 {
        let (m, vcpu_steps, waits) = run("seed-guest-inhibit.toml", seed);
        assert_eq!(m.vcpu_steps.iter().sum::<u32>(), vcpu_steps, "seed {seed}");
        assert_eq!(
            m.vcpu_waits.iter().sum::<u32>() + m.host_waits,
            waits,
            "seed {seed}"
        );
        // A fault path that waits is a vCPU's (or a prefetching host actor's) step that waits.
        assert!(
            m.fault.mmu_lock_waits + m.fault.split_waits <= waits,
            "seed {seed}"
        );
        assert!(m.accept_busy <= m.accept_failed, "seed {seed}");
        // Each vCPU's TDCALLs, exits and SEAMCALLs add up to the run's (no host actor here).
        assert_eq!(m.vcpu_tdcalls.iter().sum::<u32>(), m.tdcalls, "seed {seed}");
        assert_eq!(
            m.vcpu_exits.iter().sum::<u32>(),
            m.exits_accept + m.exits_other,
            "seed {seed}"
        );
        assert_eq!(
            m.vcpu_seamcalls.iter().sum::<u32>(),
            m.fault.seamcalls,
            "seed {seed}"
        );
        assert!(
            m.vcpu_waits.iter().zip(&m.vcpu_steps).all(|(w, s)| w <= s),
            "seed {seed}"
        );
        seen.add(&m);
    }
    // Two vCPUs racing a 2M ACCEPT against a 4K one inside it under GUEST_INHIBIT: the
    // 4K one's write lock, the split under it, the ACCEPT's entry lock.
    assert!(seen.accept_busy > 0, "{seen:?}");
    assert!(seen.fault.mmu_lock_waits > 0, "{seen:?}");
    assert!(seen.fault.split_waits > 0, "{seen:?}");
    assert!(
        seen.vcpu_steps.iter().filter(|&&s| s > 0).count() == 2,
        "{seen:?}"
    );
}
