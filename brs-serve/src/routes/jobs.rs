//! Jobs: POST /v1/jobs (several images), GET /v1/jobs/{id}, GET /v1/jobs/{id}/events (SSE), and
//! GET /v1/results/{key} for the stored translations.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::multipart::Multipart;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::wrappers::ReceiverStream;

use crate::app::AppState;
use crate::error::ApiError;
use crate::jobs::{ItemState, ItemStatus, Job, JobView};
use crate::pipeline::{self, Params};
use crate::results::parse_key;
use crate::routes::query;
use crate::routes::translate::body_error;

pub(crate) async fn create(
    State(state): State<AppState>,
    q: Result<Query<pipeline::Query>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    if state.drain.is_refusing() {
        return Err(ApiError::Draining);
    }
    let _work = state.drain.request();
    let params = Params::parse(&state, &query(q)?)?;
    let limit = state.config.max_upload_bytes;
    let max_images = state.config.max_job_images;
    let mut mp = Multipart::from_request(req, &()).await.map_err(|e| {
        ApiError::UnsupportedMediaType(format!(
            "POST /v1/jobs takes multipart/form-data with one or more `image` fields ({})",
            e.body_text()
        ))
    })?;
    let mut images = Vec::new();
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| body_error(e.status(), e.body_text(), limit))?
    {
        if field.name() != Some("image") {
            return Err(ApiError::BadRequest(format!(
                "unexpected multipart field {:?}; send each picture as `image`",
                field.name().unwrap_or("")
            )));
        }
        if images.len() == max_images {
            return Err(ApiError::BadRequest(format!(
                "more than {max_images} images in one job"
            )));
        }
        let filename = field.file_name().map(str::to_string);
        let b = field
            .bytes()
            .await
            .map_err(|e| body_error(e.status(), e.body_text(), limit))?;
        if b.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        images.push((filename, b));
    }
    if images.is_empty() {
        return Err(ApiError::BadRequest("no `image` field in the job".into()));
    }
    let job = state
        .jobs
        .create(images.iter().map(|(f, _)| f.clone()).collect());
    let published = job.clone();
    // Published before the 202, so the id works on every instance from the start.
    tokio::task::spawn_blocking(move || published.publish())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("publishing the job: {e}")))?;
    for (index, (filename, bytes)) in images.into_iter().enumerate() {
        let guard = state.drain.job_image();
        let (state, job, params) = (state.clone(), job.clone(), params.clone());
        tokio::spawn(async move {
            let item = match pipeline::translate(&state, bytes, &params, true).await {
                Ok(out) => ItemState {
                    index,
                    filename,
                    status: ItemStatus::Done,
                    result_url: Some(format!("/v1/results/{}", out.key)),
                    cached: Some(out.cached),
                    error: None,
                },
                Err(e) => ItemState {
                    index,
                    filename,
                    status: ItemStatus::Failed,
                    result_url: None,
                    cached: None,
                    error: Some(e.detail()),
                },
            };
            let id = job.id.clone();
            // The image stops counting as pending work (for a drain) once its state is
            // published, and before anyone is told: whoever hears of it sees no pending work.
            let finished = tokio::task::spawn_blocking(move || {
                let published = job.record(&item);
                drop(guard);
                job.announce(item);
                published
            })
            .await;
            if let Ok(Err(e)) | Err(e) = finished.map_err(std::io::Error::other) {
                tracing::warn!(job = %id, error = %e, "could not publish the job's state");
            }
        });
    }
    let mut resp = (StatusCode::ACCEPTED, Json(job.view())).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// A job this instance runs, or one another instance published in the shared store.
enum Found {
    Here(Arc<Job>),
    Elsewhere(JobView),
}

async fn find(state: &AppState, id: &str) -> Result<Found, ApiError> {
    if let Some(job) = state.jobs.get(id) {
        return Ok(Found::Here(job));
    }
    read_published(state, id)
        .await
        .map(Found::Elsewhere)
        .ok_or_else(|| ApiError::not_found("unknown_job", format!("job {id:?}")))
}

async fn read_published(state: &AppState, id: &str) -> Option<JobView> {
    let (jobs, id) = (state.jobs.clone(), id.to_string());
    tokio::task::spawn_blocking(move || jobs.read_published(&id))
        .await
        .ok()
        .flatten()
}

pub(crate) async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = match find(&state, &id).await? {
        Found::Here(job) => job.view(),
        Found::Elsewhere(view) => view,
    };
    Ok(Json(view).into_response())
}

fn item_event(item: &ItemState) -> Event {
    Event::default()
        .event("item")
        .json_data(item)
        .unwrap_or_else(|_| Event::default().event("item"))
}

fn done_event(view: &JobView) -> Event {
    Event::default()
        .event("done")
        .json_data(view)
        .unwrap_or_else(|_| Event::default().event("done"))
}

/// One `item` event per finished image (including those finished before the stream opened),
/// then one `done` event with the whole job, then the stream ends.
pub(crate) async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(16);
    let job = match find(&state, &id).await? {
        Found::Here(job) => job,
        Found::Elsewhere(view) => {
            tokio::spawn(follow_published(state, view, tx));
            return Ok(sse(rx));
        }
    };
    tokio::spawn(async move {
        // Subscribe before the snapshot so nothing finishing in between is missed.
        let mut sub = job.subscribe();
        let mut sent = HashSet::new();
        loop {
            let items = job.items();
            for item in items.iter().filter(|i| i.status != ItemStatus::Queued) {
                if sent.insert(item.index) && tx.send(Ok(item_event(item))).await.is_err() {
                    return;
                }
            }
            if items.iter().all(|i| i.status != ItemStatus::Queued) {
                let _ = tx.send(Ok(done_event(&job.view()))).await;
                return;
            }
            match sub.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    });
    Ok(sse(rx))
}

fn sse(rx: tokio::sync::mpsc::Receiver<Result<Event, Infallible>>) -> Response {
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The events of a job another instance runs, read from the file it publishes after each image.
/// The stream ends after `done`, or when the file has not changed for twice the request timeout
/// (every image finishes or fails within one; an owner that stopped publishing is gone, and the
/// client can still ask for the status).
async fn follow_published(
    state: AppState,
    mut view: JobView,
    tx: tokio::sync::mpsc::Sender<Result<Event, Infallible>>,
) {
    let quiet_limit = state.config.request_timeout() * 2;
    let mut sent = HashSet::new();
    let mut changed = tokio::time::Instant::now();
    loop {
        let mut fresh = false;
        for item in view.items.iter().filter(|i| i.status != ItemStatus::Queued) {
            if sent.insert(item.index) {
                fresh = true;
                if tx.send(Ok(item_event(item))).await.is_err() {
                    return;
                }
            }
        }
        if view.items.iter().all(|i| i.status != ItemStatus::Queued) {
            let _ = tx.send(Ok(done_event(&view))).await;
            return;
        }
        if fresh {
            changed = tokio::time::Instant::now();
        } else if changed.elapsed() > quiet_limit {
            return;
        }
        tokio::time::sleep(FOLLOW_POLL).await;
        if let Some(next) = read_published(&state, &view.id).await {
            view = next;
        }
    }
}

/// How often a stream of another instance's job reads its file.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(200);

pub(crate) async fn result(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let format = parse_key(&key)
        .ok_or_else(|| ApiError::not_found("unknown_result", format!("result {key:?}")))?;
    let store = state.results.clone();
    let k = key.clone();
    let bytes = tokio::task::spawn_blocking(move || store.get(&k))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("result store: {e}")))?
        .ok_or_else(|| ApiError::not_found("unknown_result", format!("result {key:?}")))?;
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.mime()),
    );
    // The key hashes the input, model version and parameters: its bytes never change.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(resp)
}
