//! brs-serve: the HTTP translation tier. Photos in, animation-style drawings out.
//!
//! The domain (no HTTP): [`state`] holds what everything shares and starts the background work;
//! `pipeline` decodes, batches and encodes; `admission` and `clients` decide what is let in;
//! `interactive` answers one photo; `jobs`, `worker` and `results` run photos in the background
//! through the [`queue`] and keep them in the [`store`]; `registry` loads and hot-reloads models;
//! [`drain`] stops gracefully. The HTTP layer ([`http`]) only parses, calls the domain, answers.
//!
//! Entry points: [`AppState::start`], [`app`], [`serve`], [`run`].

mod admission;
#[cfg(feature = "aws")]
mod aws_sdk;
mod bans;
mod batcher;
mod clients;
pub mod config;
mod crop;
pub mod drain;
mod error;
mod fair;
mod health;
pub mod http;
mod ids;
mod interactive;
mod jobs;
mod memory;
mod metrics;
mod pipeline;
mod prune;
pub mod queue;
mod registry;
mod results;
mod secret;
mod state;
pub mod store;
mod worker;

pub use clients::hash_key;
pub use config::{Cli, Config};
pub use error::ServeError;
pub use http::{ApiError, Stop, app, serve};
pub use memory::IDLE_BEFORE_RELEASE;
pub use state::{AppState, Role, StartError};
pub use worker::Outcome;

/// SIGTERM or Ctrl-C, whichever comes first.
pub async fn shutdown_signal() -> Stop {
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
    let how = tokio::select! {
        () = ctrl_c => Stop::Interrupt,
        () = term => Stop::Terminate,
    };
    tracing::info!(?how, "shutdown signal received");
    how
}

/// Starts the domain for `role` and runs until SIGTERM or Ctrl-C, then drains: the HTTP server
/// on `config.bind` (role `Server`), or only the queue's consumer (role `Worker`), with its
/// operations port on `worker.ops_bind` when that is set.
pub async fn run(config: Config, role: Role) -> Result<(), StartError> {
    let bind = config.bind;
    let ops = match (role, config.worker.ops_bind.addr()) {
        (Role::Worker, Some(addr)) => Some(bind_ops(addr).await?),
        (_, Some(_)) => {
            tracing::warn!(
                "worker.ops_bind is for `brs-serve worker`; this process answers /healthz, /readyz and /metrics on `bind`"
            );
            None
        }
        (_, None) => None,
    };
    let state = AppState::start(config, role).await?;
    // From here the consumer runs (AppState::start spawned it): /healthz answers 200 until exit.
    let ops = ops.map(|listener| tokio::spawn(http::ops::serve(listener, state.clone())));
    // On an Auto Scaling instance the lifecycle watcher drains us when the group terminates the
    // instance, and must complete the lifecycle action after the drain, before we exit.
    #[cfg(feature = "aws")]
    let watcher = state
        .config
        .aws
        .clone()
        .map(|aws| brs_aws::spawn(aws, state.drain(), state.aws_stats.clone()));
    let served = match role {
        Role::Server | Role::Lambda => {
            let listener = tokio::net::TcpListener::bind(bind).await?;
            tracing::info!(addr = %listener.local_addr()?, "listening");
            serve(listener, state, shutdown_signal()).await
        }
        Role::Worker => {
            let drain = state.drain();
            let how = tokio::select! {
                how = shutdown_signal() => { drain.start(); how }
                () = drain.started() => Stop::Terminate,
            };
            if how == Stop::Terminate {
                drain.grace_elapsed().await;
            }
            if !drain.wait_idle(state.config().drain_timeout).await {
                tracing::warn!(
                    pending_jobs = drain.pending_jobs(),
                    "drain timeout; stopping with work left"
                );
            }
            Ok(())
        }
    };
    #[cfg(feature = "aws")]
    if let Some(watcher) = watcher {
        watcher.finish().await;
    }
    if let Some(ops) = ops {
        ops.abort();
    }
    served?;
    Ok(())
}

/// The worker's operations listener, bound before the models load: a port already taken fails
/// the start at once, naming the key.
async fn bind_ops(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        StartError::Config(config::ConfigError::Invalid {
            key: "worker.ops_bind".into(),
            message: format!("cannot listen on {addr}: {e}"),
        })
    })?;
    tracing::info!(addr = %listener.local_addr()?, "operations port (/healthz, /readyz, /metrics)");
    Ok(listener)
}
