//! With each of the models' deliberately broken variants on (`hugesept_core::broken`), the
//! explorer's partial-order reduction still keeps what the full search finds: whether an
//! invariant breaks, the verdicts reached, the end states where every vCPU finished, liveness.
//! The reduction is argued for the models as they are; this checks that it also keeps the
//! faults a real patch could bring in (`cargo xtask test` runs it with `--features broken`).
#![cfg(feature = "broken")]

use std::path::Path;

use hugesept_core::broken::{self, Variant};
use hugesept_host_kvm::explore::{Bounds, verify_reduction};
use hugesept_host_kvm::scenario::{self, random};

/// What one world's two searches said: complete, and whether the full one found something
/// other than ok (a broken invariant, a VM bugged or killed, data lost, a panic, a livelock).
fn compare(text: &str, max_states: usize, what: &str) -> Option<bool> {
    let sc = scenario::parse(text).ok()?;
    let w = sc.world().ok()?;
    let check = verify_reduction(
        &w,
        Bounds {
            max_states,
            ..Bounds::default()
        },
        &mut |_, _| {},
    )
    .unwrap();
    if !check.complete() {
        return None;
    }
    assert!(
        check.disagreements.is_empty(),
        "{what}: {:?}\n{text}",
        check.disagreements
    );
    Some(
        check.full.violation.is_some()
            || check.full.livelock_states > 0
            || check.full.ends.keys().any(|v| *v != "ok"),
    )
}

#[test]
fn the_reduction_keeps_what_each_broken_variant_breaks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        // The boot-like worlds are too large for both searches to finish; `sim` covers them.
        .filter(|p| !p.to_string_lossy().contains("linux-boot-"))
        .collect();
    files.sort();
    let texts: Vec<(String, String)> = files
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect();
    let (mut compared, mut bad) = (0, 0);
    for v in Variant::ALL {
        broken::set(Some(v));
        let mut r = random::Rng::new(0x5eed ^ v as u64);
        for (name, text) in &texts {
            if let Some(b) = compare(text, 20_000, &format!("{} with {name}", v.name())) {
                compared += 1;
                bad += usize::from(b);
            }
        }
        for n in 0..40 {
            let text = random::world(&mut r);
            if let Some(b) = compare(&text, 12_000, &format!("{}, world {n}", v.name())) {
                compared += 1;
                bad += usize::from(b);
            }
        }
    }
    broken::set(None);
    eprintln!("{compared} worlds compared under the broken variants, {bad} with something not ok");
    assert!(compared >= 150, "only {compared} compared");
    assert!(bad >= 50, "only {bad} found something");
}
