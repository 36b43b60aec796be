//! Fuzz target: a journal segment read back and decoded (see `sluice_bus::fuzz::journal`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_bus::fuzz::journal(data));
