//! Fuzz target: see [`hugesept_fuzz::abi_encodings`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hugesept_fuzz::abi_encodings(data));
