//! Set-up shared by the integration tests: a runnable TD over a window at 1 GiB, its KVM state
//! with one guest_memfd memslot over the whole window, and a fault path run to its end.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use hugesept_core::abi::Gpa;
use hugesept_core::kvm::{
    FaultCtx, FaultEnd, FaultPath, FaultStep, Kvm, KvmArrayStorage, KvmStorage, Memslot,
};
use hugesept_core::policy::PolicyId;
use hugesept_core::sept::{ArrayStorage, ModuleProfile, Sept, SeptConfig, SeptStorage};

/// The first GPA of every test window.
pub const BASE: u64 = 0x4000_0000;

/// A finalized TD of `profile` over `R` 2 MiB regions from [`BASE`] (pools of `T` tables), and
/// KVM's state with a guest_memfd memslot over all of it.
pub fn td<const R: usize, const T: usize>(
    profile: &str,
    ve_enabled: bool,
) -> (Sept<ArrayStorage<1, R, T>>, Kvm<KvmArrayStorage<1, R, T>>) {
    let mut config = SeptConfig::new(Gpa(BASE), R as u32);
    config.profile = ModuleProfile::parse(profile).unwrap();
    config.pending_ve_disable = !ve_enabled;
    let mut sept = Sept::new(config, ArrayStorage::new()).unwrap();
    sept.finalize();
    let mut kvm = Kvm::new(&config, KvmArrayStorage::new()).unwrap();
    kvm.add_memslot(Memslot {
        base: Gpa(BASE).gfn(),
        pages: R as u64 * 512,
        guest_memfd: true,
    })
    .unwrap();
    (sept, kvm)
}

/// Runs `path` with no other vCPU (a blocked step is a failure) for at most `limit` steps;
/// None if it did not end.
pub fn run_fault<KS: KvmStorage, SS: SeptStorage>(
    ctx: &mut FaultCtx<'_, KS, SS, PolicyId>,
    mut path: FaultPath,
    limit: u32,
) -> Option<FaultEnd> {
    for _ in 0..limit {
        match path.step(ctx).unwrap() {
            FaultStep::Progress => {}
            FaultStep::Blocked => panic!("blocked with no other vCPU ({})", path.phase_name()),
            FaultStep::Done(e) => return Some(e),
        }
    }
    None
}
