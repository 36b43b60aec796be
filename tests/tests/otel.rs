//! OpenTelemetry export: `sluice dev` with the standard `OTEL_EXPORTER_OTLP_*` variables sends
//! a span per delivery attempt over OTLP/HTTP (JSON here), a child of the event's
//! `traceparent`. The receiver is this test: an HTTP endpoint that keeps what is posted to
//! `/v1/traces`, as a collector's OTLP receiver would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sluice_tests::{Dev, free_port, tester_setup, tester_trigger, wait_for};

/// What the receiver got: (request line, body) per request.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// Accepts OTLP/HTTP posts on a thread; returns its address and the bodies received.
fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got: Received = Arc::default();
    let kept = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            kept.lock().unwrap().push((
                request_line.trim().to_owned(),
                String::from_utf8_lossy(&body).into_owned(),
            ));
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
        }
    });
    (addr, got)
}

#[test]
fn each_attempt_is_a_span_under_the_events_traceparent() {
    let (addr, got) = receiver();
    let (_tmp, dir, data) = tester_setup(&tester_trigger(
        "spans",
        "com.example.spans",
        &["retry: { maxAttempts: 2, initialDelay: 100ms }"],
    ));
    let endpoint = format!("http://{addr}");
    let env: [(&str, &std::ffi::OsStr); 3] = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_ref()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".as_ref()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".as_ref()),
    ];
    let dev = Dev::start_with_env(&dir, &data, free_port(), &[], &env);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    for (id, data) in [("span-ok", "{}"), ("span-bad", r#"{"fail":true}"#)] {
        let event = format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"/t","type":"com.example.spans","traceparent":"00-{trace_id}-{parent}-01","data":{data}}}"#
        );
        let (status, _, body) = dev
            .request(
                "POST",
                "/",
                &[("content-type", "application/cloudevents+json")],
                event.as_bytes(),
            )
            .unwrap();
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    }
    // Three attempts in all: span-ok once, span-bad twice (then dead-lettered).
    let spans = wait_for(30, || {
        let spans: Vec<Value> = got
            .lock()
            .unwrap()
            .iter()
            .filter(|(line, _)| line.starts_with("POST /v1/traces"))
            .filter_map(|(_, body)| serde_json::from_str::<Value>(body).ok())
            .flat_map(|v| {
                v["resourceSpans"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
                    .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
                    .collect::<Vec<_>>()
            })
            .collect();
        (spans.len() >= 3).then_some(spans)
    })
    .unwrap_or_else(|| {
        panic!(
            "no spans arrived: {:?}\n{}",
            got.lock().unwrap(),
            dev.log_text()
        )
    });
    assert_eq!(spans.len(), 3, "{spans:#?}");
    for s in &spans {
        assert_eq!(s["traceId"], trace_id, "{s}");
        assert_eq!(s["parentSpanId"], parent, "{s}");
        assert_eq!(s["name"], "deliver e2e/spans", "{s}");
    }
    let attr = |s: &Value, key: &str| -> Value {
        s["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == key)
            .map(|a| a["value"].clone())
            .unwrap_or(Value::Null)
    };
    let failed: Vec<&Value> = spans
        .iter()
        .filter(|s| attr(s, "messaging.message.id")["stringValue"] == "span-bad")
        .collect();
    assert_eq!(failed.len(), 2, "{spans:#?}");
    let outcomes: Vec<Value> = failed
        .iter()
        .map(|s| attr(s, "sluice.outcome")["stringValue"].clone())
        .collect();
    assert!(
        outcomes.contains(&Value::from("retry")) && outcomes.contains(&Value::from("dead_letter")),
        "{outcomes:?}"
    );
    assert!(
        failed.iter().all(|s| s["status"]["code"] == 2),
        "{failed:#?}"
    );
}
