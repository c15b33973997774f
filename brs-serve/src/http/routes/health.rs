//! Liveness, readiness and Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::error::ApiError;
use crate::state::AppState;

pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 once every style is loaded and warmed up and the store answers; 503 while loading,
/// draining, or while the store keeps failing.
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.readiness()?;
    Ok(Json(json!({"status": "ready"})).into_response())
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let mut resp = state.metrics_text().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
