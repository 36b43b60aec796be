//! Fuzz target: CloudEvents batch mode (see `sluice_event::fuzz::batch`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_event::fuzz::batch(data));
