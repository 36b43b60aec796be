//! Fuzz target: CloudEvents structured mode (see `sluice_event::fuzz::structured`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_event::fuzz::structured(data));
