//! The `component` ABI: host bindings generated from `runtime/wit/function.wit` (the single
//! source of the interface), the `log` import, and conversion between the WIT event record
//! and `CloudEvent`.

use std::collections::BTreeMap;

use sluice_event::{CloudEvent, Extension};

use crate::failure::Failure;
use crate::sandbox::ComponentState;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "handler",
        imports: { default: trappable },
        exports: { default: async },
    });
}

pub(crate) use bindings::HandlerPre;
use bindings::sluice::function::{log, types};

pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<ComponentState>,
) -> wasmtime::Result<()> {
    bindings::Handler::add_to_linker::<_, wasmtime::component::HasSelf<ComponentState>>(
        linker,
        |s| s,
    )
}

impl types::Host for ComponentState {}

impl log::Host for ComponentState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        // Log records count against the same budget as stdout and stderr, so a guest cannot
        // flood the host's log through this import either.
        if !self.budget.take(message.len()) {
            self.violations
                .record(Failure::OutputLimit(self.budget.limit));
            return Err(wasmtime::format_err!(
                "output limit exceeded by log records"
            ));
        }
        let level = match level {
            log::Level::Trace => tracing::Level::TRACE,
            log::Level::Debug => tracing::Level::DEBUG,
            log::Level::Info => tracing::Level::INFO,
            log::Level::Warn => tracing::Level::WARN,
            log::Level::Error => tracing::Level::ERROR,
        };
        self.log.guest_log(level, &message);
        Ok(())
    }
}

/// Runs `handle` in a fresh instance. `Ok(Err(_))` is the guest's own verdict.
pub(crate) async fn run(
    pre: &HandlerPre<ComponentState>,
    store: &mut wasmtime::Store<ComponentState>,
    event: &CloudEvent,
) -> wasmtime::Result<Result<Vec<CloudEvent>, Failure>> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let reply = instance.call_handle(&mut *store, &to_wit(event)).await?;
    Ok(match reply {
        Ok(events) => Ok(events.into_iter().map(from_wit).collect()),
        Err(types::Error::Retryable(msg)) => Err(Failure::Retryable(msg)),
        Err(types::Error::Fatal(msg)) => Err(Failure::Fatal(msg)),
    })
}

fn to_wit(e: &CloudEvent) -> types::Event {
    types::Event {
        id: e.id.clone(),
        source: e.source.clone(),
        type_: e.ty.clone(),
        subject: e.subject.clone(),
        time: e.time.clone(),
        datacontenttype: e.datacontenttype.clone(),
        dataschema: e.dataschema.clone(),
        extensions: e
            .extensions
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        data: e.data.clone(),
    }
}

/// A reply as the guest built it; `finish_replies` fills defaults and validates.
fn from_wit(e: types::Event) -> CloudEvent {
    CloudEvent {
        id: e.id,
        source: e.source,
        ty: e.type_,
        subject: e.subject,
        time: e.time,
        datacontenttype: e.datacontenttype,
        dataschema: e.dataschema,
        extensions: e
            .extensions
            .into_iter()
            .map(|(k, v)| (k, Extension::String(v)))
            .collect::<BTreeMap<_, _>>(),
        data: e.data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wit_round_trip_keeps_every_attribute() {
        let mut e = CloudEvent::new("1", "s", "t").with_json_data(&serde_json::json!({"a": 1}));
        e.subject = Some("sub".into());
        e.time = Some("2024-01-01T00:00:00Z".into());
        e.dataschema = Some("https://x/schema".into());
        e.extensions
            .insert("traceparent".into(), Extension::String("00-abc".into()));
        assert_eq!(from_wit(to_wit(&e)), e);
    }

    #[test]
    fn typed_extensions_become_strings() {
        let mut e = CloudEvent::new("1", "s", "t");
        e.extensions.insert("hops".into(), Extension::Integer(3));
        assert_eq!(
            to_wit(&e).extensions,
            vec![("hops".to_string(), "3".to_string())]
        );
    }
}
