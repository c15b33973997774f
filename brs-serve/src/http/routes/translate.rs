//! POST /v1/translate: one image in (raw body or multipart field `image`), its translation out.
//! Order: who is asking (key, rate, in-flight) -> parameters -> a queue slot -> the body -> work.

use axum::body::Bytes;
use axum::extract::multipart::Multipart;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;
use crate::http::request::{self, Peer, content_length, read_body};
use crate::http::routes::{ImageQuery, admit};
use crate::interactive;
use crate::pipeline;
use crate::state::AppState;

/// Media types accepted as a raw request body.
pub(crate) const ACCEPTED: &[&str] = &["image/jpeg", "image/png", "image/webp"];

pub(crate) async fn translate(
    State(state): State<AppState>,
    peer: Peer,
    q: Result<Query<ImageQuery>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    // The slot before the body: a full queue costs the client nothing to learn.
    let admitted = admit(&state, peer, q, req, |a| {
        let owner = state.tenant(&a.client).into();
        Ok(a.params.style.slots.try_interactive(owner)?)
    });
    let (admitted, slot, req) = match admitted {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(*refused),
    };
    let params = &admitted.params;
    let (req, unread) = request::Unread::split(req, &state.config.http);
    let bytes = match read_image(&state, req).await {
        Ok(bytes) => bytes,
        Err(e) => return Ok(unread.refuse(e, &state.config)),
    };
    // The header before the decode: a bad one is answered now, and a large image pays for its
    // pixels (admission charged one token).
    let cost = pipeline::header_cost(&state, &bytes)?;
    state
        .clients
        .charge_images(&admitted.client, cost.saturating_sub(1))?;
    let out = interactive::translate(&state, bytes, params, slot).await?;
    let mut resp = out.bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(params.format.mime()),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    let result = out.name.as_ref().map(|n| n.file_name()).unwrap_or_default();
    for (name, value) in [
        ("x-brs-result-key", result.as_str()),
        ("x-brs-model-version", out.version.as_str()),
        ("x-brs-cache", if out.cached { "hit" } else { "miss" }),
    ] {
        if !value.is_empty()
            && let Ok(v) = HeaderValue::from_str(value)
        {
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

/// Checks a raw body's declared type; parameters such as `; charset=` are ignored.
fn check_content_type(ct: Option<&str>) -> Result<(), ApiError> {
    let essence = ct
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if ACCEPTED.contains(&essence.as_str()) {
        return Ok(());
    }
    let what = if essence.is_empty() {
        "no Content-Type".to_string()
    } else {
        format!("Content-Type {essence:?} is not accepted")
    };
    Err(ApiError::UnsupportedMediaType(format!(
        "{what}; send one of {} or multipart/form-data with a field `image`",
        ACCEPTED.join(", ")
    )))
}

async fn read_image(state: &AppState, req: Request) -> Result<Bytes, ApiError> {
    let limit = state.config.max_upload_bytes;
    let http = &state.config.http;
    let declared = content_length(req.headers());
    if !is_multipart(&req) {
        check_content_type(
            req.headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap_or("?")),
        )?;
        return read_body(req.into_body(), declared, limit).await;
    }
    let whole = limit.saturating_add(crate::http::MULTIPART_SLACK);
    if declared.is_some_and(|n| n > whole) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mp = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut image = None;
    let mut fields = request::Fields::new(mp, limit, http);
    while let Some(field) = fields.next().await? {
        match field.name() {
            Some("image") if image.is_none() => {
                image = Some(request::field_bytes(field, limit).await?);
            }
            Some("image") => {
                return Err(ApiError::BadRequest(
                    "more than one `image` field; use POST /v1/jobs for several images".into(),
                ));
            }
            other => {
                let name = request::shown_name(other);
                return Err(ApiError::BadRequest(format!(
                    "unexpected multipart field {name:?}; send the picture as `image`"
                )));
            }
        }
    }
    image.ok_or_else(|| ApiError::BadRequest("multipart body has no `image` field".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn content_types() {
        assert!(check_content_type(Some("image/png")).is_ok());
        assert!(check_content_type(Some("IMAGE/JPEG; q=1")).is_ok());
        for ct in [None, Some("text/plain"), Some("image/gif")] {
            let e = check_content_type(ct).expect_err("refused");
            assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
    }
}
