//! GET and DELETE /v1/results/{id}.{ext}: a stored translation, fetched by its unguessable name.
//! From an S3 store the client is redirected to a short-lived presigned URL.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::ServeError;
use crate::http::error::ApiError;
use crate::http::request::Peer;
use crate::http::routes::charge_read;
use crate::results::ResultName;
use crate::state::AppState;
use crate::store::Key;

/// How long a presigned result URL works.
const PRESIGNED_TTL: Duration = Duration::from_secs(300);

/// Charges the read, then the result `raw` names and its key in the store.
fn locate(
    state: &AppState,
    peer: Peer,
    headers: &HeaderMap,
    raw: &str,
) -> Result<(ResultName, Key), ApiError> {
    charge_read(state, peer, headers)?;
    let unknown = || ServeError::UnknownResult(raw.chars().take(80).collect());
    let name = ResultName::parse(raw).ok_or_else(unknown)?;
    let key = name.key().ok_or_else(unknown)?;
    Ok((name, key))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let (name, key) = locate(&state, peer, &headers, &raw)?;
    if let Some(url) = state.store.presigned_get(&key, PRESIGNED_TTL).await {
        return Ok(Redirect::temporary(&url).into_response());
    }
    let bytes = state
        .store
        .get(&key)
        .await
        .map_err(ServeError::from)?
        .ok_or(ServeError::UnknownResult(raw))?;
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(name.format.mime()),
    );
    // Whoever holds the name may see it, but no shared cache may keep it.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400"),
    );
    Ok(resp)
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let (_, key) = locate(&state, peer, &headers, &raw)?;
    if state
        .store
        .get(&key)
        .await
        .map_err(ServeError::from)?
        .is_none()
    {
        return Err(ServeError::UnknownResult(raw).into());
    }
    state.store.delete(&key).await.map_err(ServeError::from)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
