//! Fuzz target: CloudEvents binary mode (see `sluice_event::fuzz::binary`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_event::fuzz::binary(data));
