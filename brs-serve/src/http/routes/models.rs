//! GET /v1/models: every style, its state and the checkpoint it serves (names only, never server
//! paths).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::AppState;

/// Each style's `state`: `waiting` for a model to be deployed (`model` is null, `waiting` says
/// what is missing), `loading` while its model warms up, `serving`.
pub(crate) async fn models(State(state): State<AppState>) -> Json<Value> {
    let styles: Vec<Value> = state
        .registry
        .styles()
        .map(|s| {
            let waiting = s.waiting();
            let ready = s.batcher.is_ready();
            let phase = match (&waiting, ready) {
                (Some(_), _) => "waiting",
                (None, false) => "loading",
                (None, true) => "serving",
            };
            json!({
                "name": s.name,
                "direction": s.direction.to_string(),
                "state": phase,
                "ready": ready,
                "queued": s.slots.held(),
                "model": s.batcher.loaded().as_deref(),
                "waiting": waiting.map(|w| json!({
                    "reason": w.code(),
                    "missing": w.missing(),
                    "message": w.to_string(),
                })),
            })
        })
        .collect();
    Json(json!({
        "default_style": state.registry.default_name(),
        "styles": styles,
    }))
}
