//! Liveness, readiness and Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;
use crate::error::ApiError;

pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 once every style is loaded and warmed up; 503 while loading or draining.
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    if state.drain.is_draining() {
        return Err(ApiError::Draining);
    }
    if !state.registry.all_ready() {
        return Err(ApiError::NotReady);
    }
    Ok(Json(json!({"status": "ready"})).into_response())
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    #[cfg(feature = "aws")]
    let text =
        state.metrics.render(&state.gauges()) + &state.aws_stats.snapshot().prometheus_text();
    #[cfg(not(feature = "aws"))]
    let text = state.metrics.render(&state.gauges());
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
