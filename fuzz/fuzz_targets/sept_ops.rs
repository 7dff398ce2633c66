//! Fuzz target: see [`hugesept_fuzz::sept_ops`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hugesept_fuzz::broken_from_env();
    hugesept_fuzz::sept_ops(data)
});
