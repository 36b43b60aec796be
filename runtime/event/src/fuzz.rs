//! What the fuzz targets (`runtime/event/fuzz`) check, one function per CloudEvents HTTP
//! mode. Here rather than in the targets so that `cargo test` replays the seed corpus and
//! every input the fuzzer ever found (`fuzz/regressions/`) on stable Rust.

use crate::{CloudEvent, from_batch_json, from_binary, to_binary_headers};

/// Structured mode (`application/cloudevents+json`).
pub fn structured(data: &[u8]) {
    if let Ok(e) = CloudEvent::from_json(data) {
        structured_round_trip(&e);
    }
}

/// Batch mode (`application/cloudevents-batch+json`).
pub fn batch(data: &[u8]) {
    if let Ok(events) = from_batch_json(data) {
        for e in &events {
            structured_round_trip(e);
        }
    }
}

/// Binary mode: `name: value` header lines up to an empty line, then the body.
pub fn binary(data: &[u8]) {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let headers: Vec<(&str, &[u8])> = head
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = std::str::from_utf8(&line[..colon]).ok()?;
            Some((name.trim(), line[colon + 1..].trim_ascii()))
        })
        .collect();
    let Ok(e) = from_binary(headers.iter().copied(), body) else {
        return;
    };
    // Back through binary mode: the same event, byte for byte.
    let again = to_binary_headers(&e);
    let back = from_binary(
        again.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        e.data.as_deref().unwrap_or_default(),
    )
    .unwrap_or_else(|err| panic!("{e:?} sent in binary mode as {again:?} is refused: {err}"));
    assert_eq!(back, e, "binary mode changed the event");
    structured_round_trip(&e);
}

/// An accepted event's structured JSON parses back, and serializing that gives the same bytes
/// (`data` may be re-serialized once, compactly; then it is stable).
fn structured_round_trip(e: &CloudEvent) {
    let _ = e.check_bounds();
    let json = e.to_json();
    let value: serde_json::Value = serde_json::from_slice(&json)
        .unwrap_or_else(|err| panic!("{e:?} serialized to invalid JSON: {err}"));
    assert_eq!(
        value,
        e.to_json_value(),
        "to_json and to_json_value disagree"
    );
    let back = CloudEvent::from_json(&json).unwrap_or_else(|err| {
        panic!(
            "{e:?} serialized to {} which is refused: {err}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(
        back.to_json(),
        json,
        "a second trip through structured mode changed the event"
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every seed and every input the fuzzer once failed on, through its target's checks.
    #[test]
    fn the_corpus_and_every_found_input_pass() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        type Check = fn(&[u8]);
        let targets: [(&str, Check); 3] = [
            ("structured", super::structured),
            ("binary", super::binary),
            ("batch", super::batch),
        ];
        for (name, check) in targets {
            let mut n = 0;
            for dir in ["corpus", "regressions"] {
                let Ok(files) = std::fs::read_dir(fuzz.join(dir).join(name)) else {
                    continue;
                };
                for f in files {
                    let path = f.unwrap().path();
                    check(&std::fs::read(&path).unwrap());
                    n += 1;
                }
            }
            assert!(n > 0, "no inputs for {name}");
        }
    }
}
