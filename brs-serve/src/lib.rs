//! brs-serve: the HTTP translation tier. Photos in, animation-style drawings out, with dynamic
//! batching on a dedicated inference thread per style, hot reload of the trainer's checkpoints,
//! a content-hash result store, jobs with Server-Sent Events, and a drain for graceful shutdown.
//!
//! Library entry points: [`AppState::build`], [`app`], [`serve`], [`run`], [`drain::Drain`].

mod app;
mod batcher;
pub mod config;
mod crop;
pub mod drain;
mod error;
mod jobs;
mod metrics;
mod pipeline;
mod registry;
mod results;
mod routes;
mod validate;

use std::future::Future;
use std::time::Duration;

pub use app::{AppState, StartError, app};
pub use config::{Cli, Config};
pub use error::ApiError;

/// Serves `state` on `listener` until `shutdown` resolves or the drain is started from code;
/// then drains (grace period, refuse new work, wait for in-flight and queued work) and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let drain = state.drain();
    let timeout = Duration::from_secs_f64(state.config().drain_timeout_secs);
    let signal = async move {
        tokio::select! {
            () = shutdown => drain.start(),
            () = drain.started() => {}
        }
        drain.grace_elapsed().await;
        if drain.wait_idle(timeout).await {
            tracing::info!("drained; shutting down");
        } else {
            tracing::warn!(
                in_flight = drain.in_flight(),
                pending_jobs = drain.pending_jobs(),
                "drain timeout; shutting down with work left"
            );
        }
    };
    axum::serve(listener, app(state))
        .with_graceful_shutdown(signal)
        .await
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}

/// Loads the models, binds and serves until SIGTERM, then drains.
pub async fn run(config: Config) -> Result<(), StartError> {
    let bind = config.bind;
    let state = tokio::task::spawn_blocking(move || AppState::build(config))
        .await
        .map_err(|e| StartError::Io(std::io::Error::other(e.to_string())))??;
    let listener = tokio::net::TcpListener::bind(bind).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    // On an Auto Scaling instance the lifecycle watcher drains us when the group terminates the
    // instance, and must complete the lifecycle action after the drain, before we exit.
    #[cfg(feature = "aws")]
    let watcher = state
        .config
        .aws
        .clone()
        .map(|aws| brs_aws::spawn(aws, state.drain(), state.aws_stats.clone()));
    let served = serve(listener, state, shutdown_signal()).await;
    #[cfg(feature = "aws")]
    if let Some(watcher) = watcher {
        watcher.finish().await;
    }
    served?;
    Ok(())
}
