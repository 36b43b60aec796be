//! {{name}}: a Sluice handler (component ABI, world `sluice:function/handler` in wit/). Greets
//! whoever a `com.example.hello` event names; an event without `data.name` is a fatal error,
//! which sends it to the dead-letter bus without retrying.

/// The decision, kept pure so `cargo test` checks it without a Wasm runtime.
pub fn greeting(data: &[u8]) -> Result<String, String> {
    const NO_NAME: &str = "data.name: must be a non-empty string";
    let data: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| format!("data: not JSON: {e}"))?;
    match data.get("name").and_then(|n| n.as_str()) {
        Some(name) if !name.is_empty() => Ok(format!("Hello, {name}!")),
        _ => Err(NO_NAME.into()),
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "wit", world: "handler" });

    use sluice::function::log::{Level, log};

    struct Handler;

    impl Guest for Handler {
        fn handle(event: Event) -> Result<Vec<Event>, Error> {
            let greeting = super::greeting(event.data.as_deref().unwrap_or(b"null".as_slice()))
                .map_err(Error::Fatal)?;
            log(Level::Info, &greeting);
            let data = serde_json::json!({ "greeting": greeting }).to_string();
            Ok(vec![Event {
                // Empty id and source: the host fills a fresh id and this Function's source.
                id: String::new(),
                source: String::new(),
                type_: "com.example.greeting".into(),
                subject: event.subject,
                time: None,
                datacontenttype: Some("application/json".into()),
                dataschema: None,
                // Keep the trace going: the reply belongs to the same trace as the event.
                extensions: event
                    .extensions
                    .into_iter()
                    .filter(|(k, _)| k == "traceparent" || k == "tracestate")
                    .collect(),
                data: Some(data.into_bytes()),
            }])
        }
    }

    export!(Handler);
}

#[cfg(test)]
mod tests {
    use super::greeting;

    #[test]
    fn greets_by_name() {
        assert_eq!(greeting(br#"{"name":"Ada"}"#).unwrap(), "Hello, Ada!");
    }

    #[test]
    fn a_missing_name_is_refused() {
        assert!(greeting(br#"{"nickname":"ada"}"#).is_err());
        assert!(greeting(br#"{"name":""}"#).is_err());
        assert!(greeting(b"not json").is_err());
    }
}
