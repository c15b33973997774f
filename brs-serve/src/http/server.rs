//! The socket side: accepts connections and serves `app` over HTTP/1.1 with hyper, with a
//! header-read timeout (also the idle keep-alive limit) so a half-sent request cannot hold a
//! connection, and drains on shutdown: readiness fails at once, new work is still taken during the
//! grace period (a load balancer needs a few health checks to notice; skipped on Ctrl-C, where
//! no balancer is waiting), then in-flight requests and pending job images are awaited, then
//! connections close.

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

use crate::state::AppState;

/// How the process was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM (an orchestrator): honour the grace period.
    Terminate,
    /// Ctrl-C (a person at a terminal): no balancer to wait for.
    Interrupt,
}

/// Serves `state` on `listener` until `shutdown` resolves or the drain is started from code;
/// then drains (see the module docs) and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = Stop> + Send + 'static,
) -> std::io::Result<()> {
    let drain = state.drain();
    let timeout = state.config().drain_timeout;
    let header_timeout = state.config().http.header_read_timeout;
    let router = super::app(state);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let signal = {
        let drain = drain.clone();
        async move {
            let how = tokio::select! {
                how = shutdown => { drain.start(); Some(how) }
                () = drain.started() => None,
            };
            if how != Some(Stop::Interrupt) {
                drain.grace_elapsed().await;
            }
            if drain.wait_idle(timeout).await {
                tracing::info!("drained; shutting down");
            } else {
                tracing::warn!(
                    in_flight = drain.in_flight(),
                    pending_jobs = drain.pending_jobs(),
                    "drain timeout; shutting down with work left"
                );
            }
        }
    };
    tokio::pin!(signal);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let svc = router
            .clone()
            .map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            });
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // In-flight work is done (or timed out); close idle keep-alive connections and let the
    // last responses finish.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}
