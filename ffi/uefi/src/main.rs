//! hugesept-uefi-selftest: a UEFI application (x86_64-unknown-uefi) that links hugesept-core
//! through its C ABI (the hugesept-ffi rlib) and, under OVMF, runs the self-test table that
//! the C test program and the kernel module run: every case through the exported `extern "C"`
//! functions, compared with the typed API's result, and the digest of the outcomes printed
//! for `cargo xtask ffi uefi` to compare with the host's (HUGESEPT_SELFTEST_DIGEST). It reports
//! on the console (OVMF's serial console under QEMU) and shuts the machine down.

#![no_std]
#![no_main]

use hugesept::selftest;
use uefi::prelude::*;
use uefi::runtime::ResetType;

#[entry]
fn main() -> Status {
    if uefi::helpers::init().is_err() {
        return Status::ABORTED;
    }
    uefi::println!(
        "hugesept-uefi: ABI {}, state {} bytes aligned to {}",
        hugesept::hugesept_abi_version(),
        hugesept::hugesept_vcpu_size(),
        hugesept::hugesept_vcpu_align()
    );
    let (mut cases, mut passed, mut failed) = (0u32, 0u32, 0u32);
    let mut digest = selftest::DIGEST_INIT;
    // Cases per function, printed as one line each.
    let mut per_func = [(0u32, 0u32); 11];
    selftest::for_each_case(&mut |c| {
        let got = selftest::run(c);
        let want = selftest::expected(c);
        digest = selftest::digest_step(digest, &got);
        cases += 1;
        let slot = per_func.get_mut(c.func as usize);
        if got == want {
            passed += 1;
            if let Some(s) = slot {
                s.0 += 1;
            }
        } else {
            failed += 1;
            if let Some(s) = slot {
                s.1 += 1;
            }
            uefi::println!(
                "hugesept: case {} {}: FAILED, rc {} where Rust gives {}, out {:x?} where Rust gives {:x?}",
                cases - 1,
                selftest::func_name(c.func),
                got.rc,
                want.rc,
                got.out,
                want.out
            );
        }
    });
    for (func, (ok, bad)) in per_func.iter().enumerate() {
        if ok + bad > 0 {
            uefi::println!(
                "hugesept: {}: {} cases, {} passed, {} failed",
                selftest::func_name(func as u32),
                ok + bad,
                ok,
                bad
            );
        }
    }
    uefi::println!(
        "hugesept selftest: {cases} cases, {passed} passed, {failed} failed, digest {digest:#018x}"
    );
    let status = if failed == 0 && cases > 0 {
        Status::SUCCESS
    } else {
        Status::ABORTED
    };
    uefi::runtime::reset(ResetType::SHUTDOWN, status, None)
}
