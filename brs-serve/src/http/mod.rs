//! The HTTP API: `app(state)` is the whole router, with its layers; `serve` runs it on a socket
//! with header-read timeouts and a graceful drain. Routes only parse, call the domain (`AppState`
//! and the modules it holds) and answer; everything here is HTTP.
//!
//! Layers, outermost first: request id (set, then propagated to the response) -> access log ->
//! panic to JSON 500 -> security headers -> per-route metrics -> on /v1: load shedding at
//! `http.max_concurrent_requests` and an overall deadline on the work routes, all behind the
//! turning away of banned clients (`bans`).

pub(crate) mod error;
mod headers;
pub(crate) mod ops;
pub(crate) mod request;
pub(crate) mod routes;
mod server;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnRequest, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::config::Config;
use crate::http::request::Peer;
use crate::state::AppState;

pub use error::ApiError;
pub use server::{Stop, serve};

/// Multipart framing and field headers on top of the image bytes.
pub(crate) const MULTIPART_SLACK: usize = 64 * 1024;

/// The largest body a job upload may have.
pub(crate) fn job_body_limit(cfg: &Config) -> usize {
    cfg.max_upload_bytes
        .saturating_add(MULTIPART_SLACK)
        .saturating_mul(cfg.max_job_images)
}

/// The code of an error response, so the metrics layer can count refusals by reason.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorCode(pub(crate) &'static str);

/// The whole HTTP API.
pub fn app(state: AppState) -> Router {
    let cfg = state.config.clone();
    let one = cfg.max_upload_bytes.saturating_add(MULTIPART_SLACK);
    let work_deadline = cfg.request_timeout
        + cfg.http.body_deadline(job_body_limit(&cfg))
        + Duration::from_secs(10);
    let shed = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            ApiError::Overloaded.into_response()
        }))
        .load_shed()
        .concurrency_limit(cfg.http.max_concurrent_requests);
    let deadline = tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::GATEWAY_TIMEOUT,
        work_deadline,
    );
    let api = Router::new()
        .route(
            "/v1/translate",
            post(routes::translate::translate)
                .layer::<_, Infallible>(DefaultBodyLimit::max(one))
                .layer::<_, Infallible>(deadline),
        )
        .route(
            "/v1/jobs",
            post(routes::jobs::create)
                .layer::<_, Infallible>(DefaultBodyLimit::max(job_body_limit(&cfg)))
                .layer::<_, Infallible>(deadline),
        )
        .route(
            "/v1/jobs/{id}",
            get(routes::jobs::status).delete(routes::jobs::delete),
        )
        .route("/v1/jobs/{id}/events", get(routes::jobs::events))
        .route(
            "/v1/results/{name}",
            get(routes::results::get).merge(delete(routes::results::delete)),
        )
        .route("/v1/models", get(routes::models::models))
        .layer(shed)
        .layer(middleware::from_fn_with_state(state.clone(), ban));
    let page_policy = headers::page_policy(
        routes::page::INDEX,
        if state.store.kind() == "s3" {
            "https:"
        } else {
            ""
        },
    );
    Router::new()
        .merge(api)
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .route("/openapi.json", get(routes::openapi::openapi))
        .route("/", get(routes::page::index))
        .fallback(routes::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .layer(middleware::from_fn_with_state(page_policy, secure))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("a handler panicked".into()).into_response()
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    // The route, never the path: job ids and result names are capabilities,
                    // and logs are read by more people than the results are.
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", MatchedPath::as_str);
                    tracing::info_span!("http", method = %req.method(), route = %route, request_id = %id)
                })
                .on_request(DefaultOnRequest::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                // Every response is in the access log above with its status, and `ApiError` logs
                // each failure once at its own level with its reason; the default would log every
                // 5xx again at ERROR, a draining instance's /readyz 503 included.
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Counts every request by matched route and status, and refusals by reason.
async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    state
        .metrics
        .request(&route, status.as_u16(), started.elapsed());
    if matches!(status.as_u16(), 401 | 408 | 413 | 429 | 503)
        && let Some(code) = resp.extensions().get::<ErrorCode>()
    {
        state.metrics.rejected(code.0);
    }
    resp
}

/// The refusals for a client's limits that count toward its ban: over its rate or in-flight cap,
/// a body too large or too slow, an image over `max_pixels` or `max_side`.
const STRIKES: [&str; 4] = [
    "too_many_requests",
    "payload_too_large",
    "body_timeout",
    "too_many_pixels",
];

/// Turns away a banned client before anything else on /v1 (the body unread), and counts each
/// refusal for a client's limits toward its ban (see `bans`).
async fn ban(State(state): State<AppState>, peer: Peer, req: Request, next: Next) -> Response {
    let ip = request::client_ip(&state, peer, req.headers());
    let client = state.clients.identify(ip, request::api_key(req.headers()));
    if let Err(refusal) = state.clients.check_ban(&client) {
        return request::refuse(req.into_body(), refusal.into(), &state.config);
    }
    let resp = next.run(req).await;
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    if code.is_some_and(|c| STRIKES.contains(&c)) && state.clients.strike(&client) {
        state.metrics.banned();
        tracing::warn!(%client, "turned away after repeated refusals for its limits");
    }
    resp
}

/// The security headers (see `headers`).
async fn secure(State(page_policy): State<HeaderValue>, req: Request, next: Next) -> Response {
    let is_page = req.uri().path() == "/";
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in headers::ALWAYS {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    let policy = if is_page {
        page_policy
    } else {
        HeaderValue::from_static(headers::API_POLICY)
    };
    h.insert(HeaderName::from_static("content-security-policy"), policy);
    resp
}
