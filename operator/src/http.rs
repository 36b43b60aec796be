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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str) -> (u16, String) {
        let metrics = Arc::new(Metrics::default());
        metrics.reconcile("Function");
        let res = app(metrics)
            .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn healthz_and_metrics() {
        assert_eq!(get("/healthz").await, (200, "ok\n".into()));
        let (status, body) = get("/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.contains("sluice_operator_reconciliations_total{kind=\"Function\"} 1"),
            "{body}"
        );
        assert!(body.contains("sluice_operator_leader 0"));
    }
}
