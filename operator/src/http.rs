//! `/healthz` and `/metrics`. `app()` builds the router so tests call it without a socket.

use std::sync::Arc;

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};

use crate::metrics::Metrics;

pub fn app(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(render))
        .with_state(metrics)
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}
