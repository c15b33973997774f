//! GET /openapi.json: the API described as OpenAPI 3.1, written by hand beside the handlers.

use axum::Json;
use serde_json::{Value, json};

fn err(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn image_params() -> Value {
    json!([
        {"name": "style", "in": "query", "schema": {"type": "string"}, "description": "style name; default: the configured default_style"},
        {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["png", "jpeg", "webp"], "default": "png"}},
        {"name": "size", "in": "query", "schema": {"type": "integer", "minimum": 16}, "description": "output side in pixels; default: the model's img_size; at most max_output_size"},
        {"name": "crop", "in": "query", "schema": {"type": "string", "enum": ["none", "face"], "default": "none"}, "description": "face: translate the best detected face (needs a configured detector)"}
    ])
}

pub(crate) async fn openapi() -> Json<Value> {
    let image_out = json!({"description": "the translated image", "content": {
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/webp": {"schema": {"type": "string", "format": "binary"}}}});
    let upload = json!({"required": true, "content": {
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/webp": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
            "properties": {"image": {"type": "string", "format": "binary"}}}}}});
    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "brs-serve", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Photos to animation-style drawings with U-GAT-IT. Every error is JSON of the Error schema."},
        "paths": {
            "/v1/translate": {"post": {
                "summary": "Translate one image", "parameters": image_params(), "requestBody": upload,
                "responses": {"200": image_out, "400": err("bad parameter"), "404": err("unknown style (code unknown_style)"),
                    "413": err("body over max_upload_bytes"), "415": err("unsupported media type"),
                    "422": err("empty, undecodable, animated or over max_pixels (code names which)"),
                    "503": err("queue full (queue_full), draining or not ready; has Retry-After"),
                    "504": err("not translated within request_timeout")}}},
            "/v1/jobs": {"post": {
                "summary": "Translate several images in the background", "parameters": image_params(),
                "requestBody": {"required": true, "content": {"multipart/form-data": {"schema": {"type": "object",
                    "properties": {"image": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}},
                "responses": {"202": {"description": "job accepted", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                    "400": err("no images, too many, or an unknown field"), "404": err("unknown style"),
                    "413": err("an image over max_upload_bytes"), "415": err("not multipart"), "503": err("draining")}}},
            "/v1/jobs/{id}": {"get": {"summary": "Job status",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                    "404": err("unknown job")}}},
            "/v1/jobs/{id}/events": {"get": {"summary": "Server-Sent Events: `item` per finished image, then `done`",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {}}}, "404": err("unknown job")}}},
            "/v1/results/{key}": {"get": {"summary": "A stored translation (immutable)",
                "parameters": [{"name": "key", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{64}\\.(png|jpeg|webp)$"}}],
                "responses": {"200": image_out, "404": err("unknown result")}}},
            "/v1/models": {"get": {"summary": "Styles and the checkpoints they serve", "responses": {"200": {"description": "styles"}}}},
            "/healthz": {"get": {"summary": "Alive", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "Models loaded and warmed up, not draining",
                "responses": {"200": {"description": "ready"}, "503": err("not ready or draining")}}},
            "/metrics": {"get": {"summary": "Prometheus text format", "responses": {"200": {"description": "metrics"}}}},
            "/": {"get": {"summary": "Web page", "responses": {"200": {"description": "HTML"}}}}
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
            "Job": {"type": "object", "properties": {"id": {"type": "string"}, "status": {"type": "string", "enum": ["running", "done"]},
                "done": {"type": "integer"}, "total": {"type": "integer"}, "events_url": {"type": "string"},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "index": {"type": "integer"}, "filename": {"type": ["string", "null"]},
                    "status": {"type": "string", "enum": ["queued", "done", "failed"]},
                    "result_url": {"type": "string"}, "cached": {"type": "boolean"},
                    "error": {"$ref": "#/components/schemas/Error/properties/error"}}}}}}
        }}
    }))
}
