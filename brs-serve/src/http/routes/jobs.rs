//! Jobs: POST /v1/jobs (several images, multipart), GET /v1/jobs/{id}, GET /v1/jobs/{id}/events
//! (Server-Sent Events), DELETE /v1/jobs/{id}. A job's id is its capability: whoever holds it may
//! read or delete the job, nobody can guess one.

use axum::Json;
use axum::extract::multipart::Multipart;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::convert::Infallible;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ServeError;
use crate::http::error::ApiError;
use crate::http::request::{self, Peer, clean_filename, content_length};
use crate::http::routes::{ImageQuery, admit, charge_read};
use crate::ids::new_id;
use crate::jobs::{ItemSpec, JobEvent, Manifest};
use crate::pipeline;
use crate::state::AppState;

pub(crate) async fn create(
    State(state): State<AppState>,
    peer: Peer,
    q: Result<Query<ImageQuery>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let admitted = admit(&state, peer, q, req, |_| {
        state
            .upload_permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded)
    });
    let (admitted, _upload, req) = match admitted {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(*refused),
    };
    let (client, params) = (&admitted.client, &admitted.params);
    let id = new_id().map_err(|e| ApiError::from(ServeError::Random(e.to_string())))?;
    let (req, unread) = request::Unread::split(req, &state.config.http);
    let mut items = Vec::new();
    let mut tokens = 0u32;
    if let Err(e) = upload(&state, req, &id, &mut items, &mut tokens).await {
        let refused = unread.refuse(e, &state.config);
        state.jobs.abort(&id, items.len()).await;
        return Ok(refused);
    }
    if items.is_empty() {
        return Err(ApiError::BadRequest("no `image` field in the job".into()));
    }
    // Admission charged one token; the rest is the images' cost beyond it.
    if let Err(refused) = state
        .clients
        .charge_images(client, tokens.saturating_sub(1))
    {
        state.jobs.abort(&id, items.len()).await;
        return Err(refused.into());
    }
    let n = items.len();
    let manifest = Manifest {
        id: id.clone(),
        created: crate::state::now_rfc3339(),
        request: params.request(),
        tenant: state.tenant(client),
        items,
    };
    // Counted before the messages exist: a worker may finish one before `commit` returns.
    let local = state.queue.is_local();
    if local {
        state.drain.enqueued(n);
    }
    let view = match state.jobs.commit(manifest).await {
        Ok(v) => v,
        Err(e) => {
            if local {
                (0..n).for_each(|_| state.drain.dequeued());
            }
            return Err(e.into());
        }
    };
    let mut resp = (StatusCode::ACCEPTED, Json(view)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/jobs/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// Stores each image of a job's multipart body as it arrives (one part in memory at a time),
/// adding it to `items` and its cost to `tokens`.
async fn upload(
    state: &AppState,
    req: Request,
    id: &str,
    items: &mut Vec<ItemSpec>,
    tokens: &mut u32,
) -> Result<(), ApiError> {
    let limit = state.config.max_upload_bytes;
    let max_images = state.config.max_job_images;
    let http = &state.config.http;
    let whole = crate::http::job_body_limit(&state.config);
    let declared = content_length(req.headers());
    if declared.is_some_and(|n| n > whole) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mp = Multipart::from_request(req, &()).await.map_err(|e| {
        ApiError::UnsupportedMediaType(format!(
            "POST /v1/jobs takes multipart/form-data with one or more `image` fields ({})",
            e.body_text()
        ))
    })?;
    let mut fields = request::Fields::new(mp, limit, http);
    while let Some(field) = fields.next().await? {
        if field.name() != Some("image") {
            let name = request::shown_name(field.name());
            return Err(ApiError::BadRequest(format!(
                "unexpected multipart field {name:?}; send each picture as `image`"
            )));
        }
        if items.len() == max_images {
            return Err(ApiError::BadRequest(format!(
                "more than {max_images} images in one job"
            )));
        }
        let filename = match field.file_name() {
            Some(f) => clean_filename(f)?,
            None => None,
        };
        let bytes = request::field_bytes(field, limit).await?;
        pipeline::accepted(&bytes)?;
        // An image whose header does not read fails as its item, with its reason, later.
        let cost = pipeline::header_cost(state, &bytes).unwrap_or(1);
        *tokens = tokens.saturating_add(cost);
        let index = items.len();
        state.jobs.put_input(id, index, bytes).await?;
        items.push(ItemSpec { index, filename });
    }
    Ok(())
}

pub(crate) async fn status(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    charge_read(&state, peer, &headers)?;
    let view = state.jobs.view(&id).await?;
    Ok(Json(view).into_response())
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    charge_read(&state, peer, &headers)?;
    state.jobs.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// One `item` event per finished image (including those finished before the stream opened),
/// then one `done` event with the whole job, then the stream ends.
pub(crate) async fn events(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let client = charge_read(&state, peer, &headers)?;
    let guard = state.clients.begin_stream(&client)?;
    // 404 now rather than an empty stream.
    state.jobs.view(&id).await?;
    let rx = state.jobs.events(id);
    let stream = ReceiverStream::new(rx).map(move |e| {
        let _open = &guard;
        let event = match e {
            JobEvent::Item(item) => Event::default().event("item").json_data(&item),
            JobEvent::Done(view) => Event::default().event("done").json_data(&view),
        };
        Ok::<_, Infallible>(event.unwrap_or_else(|_| Event::default().event("error")))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
