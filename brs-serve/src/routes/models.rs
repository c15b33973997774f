//! GET /v1/models: every style and the checkpoint it serves.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::app::AppState;

pub(crate) async fn models(State(state): State<AppState>) -> Json<Value> {
    let styles: Vec<Value> = state
        .registry
        .styles()
        .map(|s| {
            json!({
                "name": s.name,
                "path": s.path.display().to_string(),
                "direction": s.direction.to_string(),
                "ready": s.batcher.is_ready(),
                "queued": s.batcher.queued(),
                "model": *s.batcher.model(),
            })
        })
        .collect();
    Json(json!({
        "default_style": state.registry.default_name(),
        "styles": styles,
    }))
}
