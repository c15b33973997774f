//! Liveness, readiness and Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ServeError;
use crate::http::error::ApiError;
use crate::state::AppState;

pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 once every style is loaded and warmed up (or waits for its first model) and the store
/// answers; 503 while loading, draining, or while the store keeps failing.
///
/// A style whose model is not deployed yet does not make the instance unready: no instance has
/// it, so a load balancer has nowhere better to send the request, and an Auto Scaling group
/// replacing "unhealthy" instances until someone copies a run onto EFS would only churn. The
/// answer names each such style and what it waits for; its requests answer `model_unavailable`.
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.readiness()?;
    let waiting = state.registry.waiting();
    if waiting.is_empty() {
        return Ok(Json(json!({"status": "ready"})).into_response());
    }
    let waiting: Vec<_> = waiting
        .iter()
        .map(|(style, why)| {
            json!({
                "style": style,
                "reason": why.code(),
                "missing": why.missing(),
                "message": ServeError::ModelUnavailable {
                    style: (*style).to_string(),
                    reason: why.to_string(),
                }
                .to_string(),
            })
        })
        .collect();
    Ok(Json(json!({"status": "ready", "waiting": waiting})).into_response())
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let mut resp = state.metrics_text().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
