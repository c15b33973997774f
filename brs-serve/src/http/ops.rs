//! The queue worker's operations port (`worker.ops_bind`). `brs-serve worker` has no HTTP API, but
//! its group is scraped and checked like the web tier: this serves [`app`](super::app)'s own
//! /healthz, /readyz and /metrics handlers, counted by the same metrics layer, and 404 to any
//! other path. Nothing here takes work, so the API's body limits, load shedding and deadlines have
//! nothing to guard; the header-read timeout still bounds what a half-sent request may hold.

use axum::Router;
use axum::middleware;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

use super::routes;
use crate::state::AppState;

/// The three operations routes and the 404 fallback.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .fallback(routes::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), super::record))
        .with_state(state)
}

/// Answers on `listener` until the task is aborted: the process's last act, after its drain, so
/// the port tells the truth (/readyz 503 `draining`, `brs_pending_job_images`) until the end.
pub(crate) async fn serve(listener: tokio::net::TcpListener, state: AppState) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.config().http.header_read_timeout);
    let router = router(state);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                tracing::warn!(error = %e, "operations port: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let conn = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "operations connection ended with an error");
            }
        });
    }
}
