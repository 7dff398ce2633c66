//! Fuzz target: see [`hugesept_fuzz::abi_accept_operand`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hugesept_fuzz::abi_accept_operand(data));
