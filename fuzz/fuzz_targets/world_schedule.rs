//! Fuzz target: see [`hugesept_fuzz::world_schedule`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hugesept_fuzz::world_schedule(data));
