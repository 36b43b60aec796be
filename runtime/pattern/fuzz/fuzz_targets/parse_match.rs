//! Fuzz target: arbitrary bytes split into a pattern and an event. Parsing must never panic;
//! for a valid pattern, raw-byte matching (whole or until decided) must never panic, and
//! whenever serde_json accepts the event, the compiled matcher (every entry point) must agree
//! with the reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_pattern::{Matcher, Pattern, reference};

fuzz_target!(|data: &[u8]| {
    // First line: the pattern; the rest: the event.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (pattern, event) = (&data[..split], data.get(split + 1..).unwrap_or(&[]));
    let Ok(pattern) = serde_json::from_slice::<serde_json::Value>(pattern) else {
        return;
    };
    let Ok(pattern) = Pattern::parse(&pattern) else {
        return;
    };
    let mut m = Matcher::new();
    m.insert(0u8, &pattern);
    let raw = m.matches_json(event);
    // Bytes that break its promise (valid JSON, unique keys) still give an answer, no panic.
    let _ = m.matches_valid_json_into(event, &mut Vec::new());
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(event) {
        let want = reference::matches(&pattern, &value);
        assert_eq!(!m.matches(&value).is_empty(), want, "Value path");
        let raw = raw.expect("serde_json accepted this event");
        assert_eq!(!raw.is_empty(), want, "bytes path");
        // Re-serialized, the event must match the same way.
        let bytes = serde_json::to_vec(&value).expect("serializes");
        assert_eq!(
            !m.matches_json(&bytes).expect("valid").is_empty(),
            want,
            "re-serialized"
        );
        let mut early = Vec::new();
        m.matches_valid_json_into(&bytes, &mut early).expect("valid");
        assert_eq!(!early.is_empty(), want, "re-serialized, read until decided");
    }
});
