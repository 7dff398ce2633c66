//! Fuzz target: see [`hugesept_fuzz::interleave`].
#![no_main]

libfuzzer_sys::fuzz_target!(|spec: hugesept_fuzz::interleave::Spec| {
    hugesept_fuzz::interleave_spec(&spec)
});
