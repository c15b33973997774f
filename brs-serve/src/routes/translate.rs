//! POST /v1/translate: one image in (raw body or multipart field `image`), its translation out.

use axum::body::Bytes;
use axum::extract::multipart::Multipart;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;
use crate::pipeline::{self, Params};
use crate::routes::query;
use crate::validate;

pub(crate) async fn translate(
    State(state): State<AppState>,
    q: Result<Query<pipeline::Query>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    if state.drain.is_refusing() {
        return Err(ApiError::Draining);
    }
    let _work = state.drain.request();
    let params = Params::parse(&state, &query(q)?)?;
    let bytes = read_image(&state, req).await?;
    let out = pipeline::translate(&state, bytes, &params, false).await?;
    let mut resp = out.bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(out.format.mime()),
    );
    for (name, value) in [
        ("x-brs-result-key", out.key.as_str()),
        ("x-brs-model-version", out.version.as_str()),
        ("x-brs-cache", if out.cached { "hit" } else { "miss" }),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    Ok(resp)
}

fn is_multipart(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// Maps a body or multipart rejection: over the limit is 413, anything else 400.
pub(crate) fn body_error(status: axum::http::StatusCode, text: String, limit: usize) -> ApiError {
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::BadRequest(text)
    }
}

async fn read_image(state: &AppState, req: Request) -> Result<Bytes, ApiError> {
    let limit = state.config.max_upload_bytes;
    if !is_multipart(&req) {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?").to_string());
        validate::check_content_type(ct.as_deref())?;
        let bytes = Bytes::from_request(req, &())
            .await
            .map_err(|e| body_error(e.status(), e.body_text(), limit))?;
        if bytes.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        return Ok(bytes);
    }
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut image = None;
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| body_error(e.status(), e.body_text(), limit))?
    {
        match field.name() {
            Some("image") if image.is_none() => {
                let b = field
                    .bytes()
                    .await
                    .map_err(|e| body_error(e.status(), e.body_text(), limit))?;
                if b.len() > limit {
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                image = Some(b);
            }
            Some("image") => {
                return Err(ApiError::BadRequest(
                    "more than one `image` field; use POST /v1/jobs for several images".into(),
                ));
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unexpected multipart field {:?}; send the picture as `image`",
                    other.unwrap_or("")
                )));
            }
        }
    }
    image.ok_or_else(|| ApiError::BadRequest("multipart body has no `image` field".into()))
}
