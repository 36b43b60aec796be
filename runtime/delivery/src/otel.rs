//! OpenTelemetry spans of delivery attempts, exported with OTLP over HTTP. Off unless the
//! standard variables configure an exporter (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_EXPORTER_OTLP_PROTOCOL` picks `http/protobuf`,
//! the default, or `http/json`; `OTEL_SERVICE_NAME` names the service, `sluice` otherwise).
//!
//! Each attempt is one span, a child of the event's W3C `traceparent` (which ingress checked
//! and handlers' replies carry on), so the producer's trace shows the delivery, its retries
//! and, through the replies, whatever they triggered. Spans are batched and sent from a
//! thread of their own: a slow or absent collector never holds up a delivery.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use sluice_bus::trace::Outcome;
use sluice_event::{CloudEvent, Extension};

struct Exporter {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

static EXPORTER: OnceLock<Option<Exporter>> = OnceLock::new();

/// Whether the environment asks for OTLP export.
fn configured(var: impl Fn(&str) -> Option<String>) -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|k| var(k).is_some_and(|v| !v.trim().is_empty()))
}

/// Starts exporting when the environment asks for it; returns whether it does. Called once by
/// each process that runs workers, before they start.
pub fn init_from_env() -> bool {
    EXPORTER
        .get_or_init(|| {
            if !configured(|k| std::env::var(k).ok()) {
                return None;
            }
            // The HTTP client's rustls (shared with the operator's, which names no provider)
            // needs a process default; ring is the one every part of Sluice uses.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let exporter = match opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
            {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "OTLP span exporter not started; no spans are sent");
                    return None;
                }
            };
            let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "sluice".into());
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(service)
                        .build(),
                )
                .build();
            let tracer = provider.tracer("sluice");
            tracing::info!("exporting delivery spans with OTLP");
            Some(Exporter { provider, tracer })
        })
        .is_some()
}

/// Sends what is batched; called as the process stops.
pub fn shutdown() {
    if let Some(Some(e)) = EXPORTER.get()
        && let Err(err) = e.provider.shutdown_with_timeout(Duration::from_secs(5))
    {
        tracing::warn!(error = %err, "flushing spans at shutdown");
    }
}

/// The parent a `traceparent` value names (`00-<trace>-<span>-<flags>`), if it is one.
fn parent_of(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace = TraceId::from_hex(trace)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let span = SpanId::from_hex(span)
        .ok()
        .filter(|s| *s != SpanId::INVALID)?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        trace,
        span,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    ))
}

/// One attempt as a span, when exporting.
pub fn attempt(
    event: &CloudEvent,
    trigger: &str,
    attempt: u32,
    started: SystemTime,
    took: Duration,
    outcome: &Outcome,
) {
    let Some(Some(e)) = EXPORTER.get() else {
        return;
    };
    let parent = match event.extensions.get("traceparent") {
        Some(Extension::String(tp)) => parent_of(tp),
        _ => None,
    };
    let cx = match parent {
        Some(p) => Context::new().with_remote_span_context(p),
        None => Context::new(),
    };
    let mut attributes = vec![
        KeyValue::new("messaging.system", "sluice"),
        KeyValue::new("messaging.operation.type", "process"),
        KeyValue::new("messaging.destination.name", trigger.to_owned()),
        KeyValue::new("messaging.message.id", event.id.clone()),
        KeyValue::new("cloudevents.event_id", event.id.clone()),
        KeyValue::new("cloudevents.event_source", event.source.clone()),
        KeyValue::new("cloudevents.event_type", event.ty.clone()),
        KeyValue::new("sluice.attempt", i64::from(attempt)),
    ];
    let status = match outcome {
        Outcome::Ok { replies } => {
            attributes.push(KeyValue::new("sluice.replies", replies.len() as i64));
            Status::Ok
        }
        Outcome::Retry { reason, error, .. } => {
            attributes.push(KeyValue::new("sluice.outcome", "retry"));
            attributes.push(KeyValue::new("sluice.reason", reason.clone()));
            Status::error(error.clone())
        }
        Outcome::DeadLetter { reason, error, .. } => {
            attributes.push(KeyValue::new("sluice.outcome", "dead_letter"));
            attributes.push(KeyValue::new("sluice.reason", reason.clone()));
            Status::error(error.clone())
        }
    };
    let mut span = e
        .tracer
        .span_builder(format!("deliver {trigger}"))
        .with_kind(SpanKind::Consumer)
        .with_start_time(started)
        .with_attributes(attributes)
        .start_with_context(&e.tracer, &cx);
    use opentelemetry::trace::Span as _;
    span.set_status(status);
    span.end_with_timestamp(started + took);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configured_endpoint_turns_export_on() {
        assert!(!configured(|_| None));
        assert!(!configured(|_| Some(" ".into())));
        assert!(configured(
            |k| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://c:4318".into())
        ));
        assert!(configured(
            |k| (k == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").then(|| "http://c/v1/traces".into())
        ));
    }

    #[test]
    fn traceparent_names_the_parent_span() {
        let p = parent_of("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(p.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id().to_string(), "00f067aa0ba902b7");
        assert!(p.is_sampled() && p.is_remote());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(parent_of(bad).is_none(), "{bad}");
        }
    }
}
