//! The web console: one page (`console/index.html`, compiled into the binary, no CDN) served
//! at `/console` by `sluice dev` and `sluice ingress`, and the one JSON call it adds,
//! `/console/api/overview`. Everything else it shows comes from the endpoints the CLI uses:
//! tails, trace steps, dead letters, publishing.
//!
//! Reading needs what the rest of the front door needs (the process's token when it has one).
//! Writing (the "send test event" form, "redrive") is offered only to a caller that presented
//! the process's token, so a process without a token has a read-only console.

use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::http::{AppState, has_process_token};

const PAGE: &str = include_str!("../console/index.html");

/// What a process runs, as the console lists it. Set by the process on every reload.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct CatalogSnapshot {
    pub functions: Vec<FunctionInfo>,
    pub triggers: Vec<TriggerInfo>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionInfo {
    /// `namespace/name`.
    pub id: String,
    /// Loaded and serving.
    pub ready: bool,
    /// Why it is not ready, or what is wrong with its newest manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerInfo {
    /// `namespace/name`.
    pub id: String,
    /// `namespace/name` of its Function.
    pub function: String,
    /// `spec.source` as written: `{"bus": "default"}`, `{"schedule": …}`, …
    pub source: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Value>,
    /// Whether it has a queue (every source but `http`): depth and dead letters apply.
    pub queued: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The catalog a process keeps current; cheap to read.
#[derive(Default)]
pub struct SharedCatalog(RwLock<Arc<CatalogSnapshot>>);

impl SharedCatalog {
    pub fn set(&self, snapshot: CatalogSnapshot) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
    }

    pub fn get(&self) -> Arc<CatalogSnapshot> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// `GET /console`: the page. It holds no data, so it needs no token; its calls do.
pub async fn page() -> Response {
    let mut r = PAGE.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Everything the page loads is its own; nothing from elsewhere may run in it.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    r
}

/// `GET /console/api/overview`: Functions, Triggers with depth and dead letters, and whether
/// this caller may write.
pub async fn overview(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let catalog = s.catalog.get();
    let mut triggers = Vec::with_capacity(catalog.triggers.len());
    for t in &catalog.triggers {
        let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
        if t.queued {
            // One trigger's unreadable depth does not blank the page: it shows the error.
            match s.bus.depth(&t.id).await {
                Ok(d) => v["depth"] = json!({ "queued": d.queued, "inflight": d.inflight }),
                Err(e) => v["error"] = json!(e.to_string()),
            }
            match s.bus.dead_letters(&t.id, 0, 0).await {
                Ok(page) => v["deadLetters"] = json!(page.total),
                Err(e) => v["error"] = json!(e.to_string()),
            }
        }
        triggers.push(v);
    }
    let write = has_process_token(&s, &headers) == Some(true);
    (
        StatusCode::OK,
        Json(json!({
            "bus": s.bus.kind(),
            "write": write,
            "functions": catalog.functions,
            "triggers": triggers,
        })),
    )
        .into_response()
}
