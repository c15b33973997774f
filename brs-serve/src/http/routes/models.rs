//! GET /v1/models: every style and the checkpoint it serves (names only, never server paths).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::AppState;

pub(crate) async fn models(State(state): State<AppState>) -> Json<Value> {
    let styles: Vec<Value> = state
        .registry
        .styles()
        .map(|s| {
            json!({
                "name": s.name,
                "direction": s.direction.to_string(),
                "ready": s.batcher.is_ready(),
                "queued": s.slots.held(),
                "model": *s.batcher.model(),
            })
        })
        .collect();
    Json(json!({
        "default_style": state.registry.default_name(),
        "styles": styles,
    }))
}
