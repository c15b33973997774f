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
                "security": [{}, {"apiKey": []}, {"bearer": []}],
                "responses": {"200": image_out, "400": err("bad parameter"), "401": err("[auth] is on and no valid key was sent (unauthorized)"),
                    "404": err("unknown style (code unknown_style)"),
                    "408": err("the body arrived slower than http.body_min_rate (body_timeout)"),
                    "413": err("body over max_upload_bytes"), "415": err("unsupported media type"),
                    "422": err("empty, undecodable, corrupt or truncated, animated, over max_pixels, or no face (code names which)"),
                    "429": err("this client is over its rate or in-flight limit (too_many_requests), or turned away for a while after repeated refusals for its limits (banned); has Retry-After"),
                    "503": err("queue full (queue_full), overloaded, draining, not ready, or the style has no model deployed yet (model_unavailable); has Retry-After"),
                    "504": err("not translated within request_timeout")}}},
            "/v1/jobs": {"post": {
                "summary": "Translate several images in the background", "parameters": image_params(),
                "requestBody": {"required": true, "content": {"multipart/form-data": {"schema": {"type": "object",
                    "properties": {"image": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}},
                "security": [{}, {"apiKey": []}, {"bearer": []}],
                "responses": {"202": {"description": "job accepted", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                    "400": err("no images, too many, too many parts, a file name over 255 bytes, or an unknown field"),
                    "401": err("no valid key"), "404": err("unknown style"), "408": err("body too slow"),
                    "413": err("an image over max_upload_bytes"), "415": err("not multipart, or not png/jpeg/webp"),
                    "429": err("over this client's limits; has Retry-After"),
                    "503": err("draining, overloaded, the store or queue unavailable, or the style has no model deployed yet (model_unavailable); has Retry-After")}}},
            "/v1/jobs/{id}": {"get": {"summary": "Job status",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                    "404": err("unknown job")}},
                "delete": {"summary": "Delete the job, its uploaded images and its results",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"204": {"description": "deleted"}, "404": err("unknown job")}}},
            "/v1/jobs/{id}/events": {"get": {"summary": "Server-Sent Events: `item` per finished image, then `done`",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {}}}, "404": err("unknown job")}}},
            "/v1/results/{name}": {"get": {"summary": "A stored translation, by the name a translation or job gave it (private; an S3 store redirects to a short-lived URL)",
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9]{10}[0-9a-f]{32}(-[0-9]{1,4})?\\.(png|jpeg|webp)$"}}],
                "responses": {"200": image_out, "307": {"description": "redirect to a presigned URL (S3 store)"}, "404": err("unknown result")}},
                "delete": {"summary": "Delete a stored translation",
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"204": {"description": "deleted"}, "404": err("unknown result")}}},
            "/v1/models": {"get": {"summary": "Styles and the checkpoints they serve", "responses": {"200": {"description": "styles"}}}},
            "/healthz": {"get": {"summary": "Alive", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "Models loaded and warmed up, not draining, the store answering",
                "responses": {"200": {"description": "ready; `waiting` lists styles whose model is not deployed yet (their requests answer model_unavailable)"}, "503": err("not_ready, draining or store_unavailable")}}},
            "/metrics": {"get": {"summary": "Prometheus text format", "responses": {"200": {"description": "metrics"}}}},
            "/": {"get": {"summary": "Web page", "responses": {"200": {"description": "HTML"}}}}
        },
        "components": {"securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            "bearer": {"type": "http", "scheme": "bearer"}},
          "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
            "Job": {"type": "object", "properties": {"id": {"type": "string"}, "status": {"type": "string", "enum": ["running", "done"]},
                "done": {"type": "integer"}, "total": {"type": "integer"}, "events_url": {"type": "string"},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "index": {"type": "integer"}, "filename": {"type": ["string", "null"]},
                    "status": {"type": "string", "enum": ["queued", "done", "failed"]},
                    "result_url": {"type": "string"}, "cached": {"type": "boolean"}, "attempts": {"type": "integer"},
                    "error": {"$ref": "#/components/schemas/Error/properties/error"}}}}}}
        }}
    }))
}
