//! Shared state and the router: `app(state)` is all a test, the binary or a Lambda adapter needs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use brs_image::detect::DetectorPool;

use crate::config::Config;
use crate::drain::Drain;
use crate::jobs::Jobs;
use crate::metrics::{Gauges, Metrics};
use crate::registry::{Registry, RegistryError, spawn_poller};
use crate::results::{Store, spawn_pruner};
use crate::routes;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("results directory {path}: {cause}")]
    Results {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error("face detector: {0}")]
    Detector(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Everything handlers share; cloning is cheap.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) config: Arc<Config>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) results: Arc<Store>,
    pub(crate) jobs: Arc<Jobs>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) drain: Arc<Drain>,
    pub(crate) detector: Option<Arc<DetectorPool>>,
    /// Counters of the AWS lifecycle watcher (zero when no `[aws]` section is configured).
    #[cfg(feature = "aws")]
    pub(crate) aws_stats: Arc<brs_aws::AwsStats>,
}

impl AppState {
    /// Loads every style, starts the inference workers and the reload poller. Blocking: call it
    /// before the runtime starts or from `spawn_blocking`.
    pub fn build(config: Config) -> Result<AppState, StartError> {
        config.validate()?;
        let metrics = Arc::new(Metrics::default());
        let detector = match &config.detector {
            Some(spec) => Some(Arc::new(
                DetectorPool::new(spec.clone()).map_err(|e| StartError::Detector(e.to_string()))?,
            )),
            None => None,
        };
        let registry = Arc::new(Registry::load(&config, metrics.clone())?);
        spawn_poller(
            Arc::downgrade(&registry),
            Duration::from_millis(config.reload_poll_ms),
        )?;
        let dir = config.results_dir();
        let results = Arc::new(Store::open(&dir).map_err(|cause| StartError::Results {
            path: dir.clone(),
            cause,
        })?);
        if let Some((max_age, every)) = config.results_pruning() {
            spawn_pruner(
                Arc::downgrade(&results),
                Arc::downgrade(&metrics),
                max_age,
                every,
            )?;
        }
        Ok(AppState {
            drain: Drain::new(Duration::from_secs_f64(config.drain_grace_secs)),
            config: Arc::new(config),
            registry,
            results,
            jobs: Arc::new(Jobs::shared(&dir.join("jobs"))),
            metrics,
            detector,
            #[cfg(feature = "aws")]
            aws_stats: Arc::default(),
        })
    }

    /// The drain handle: SIGTERM handling, the AWS lifecycle hook or a test call `start()` on it.
    pub fn drain(&self) -> Arc<Drain> {
        self.drain.clone()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Models loaded and warmed up, and not draining.
    pub fn is_ready(&self) -> bool {
        self.registry.all_ready() && !self.drain.is_draining()
    }

    pub(crate) fn gauges(&self) -> Gauges {
        Gauges {
            queue_depth: self
                .registry
                .styles()
                .map(|s| (s.name.clone(), s.batcher.queued()))
                .collect(),
            in_flight: self.drain.in_flight(),
            pending_jobs: self.drain.pending_jobs(),
            draining: self.drain.is_draining(),
        }
    }
}

/// Multipart framing and field headers on top of the image bytes.
const MULTIPART_SLACK: usize = 64 * 1024;

/// The whole HTTP API.
pub fn app(state: AppState) -> Router {
    let one = state
        .config
        .max_upload_bytes
        .saturating_add(MULTIPART_SLACK);
    let many = state
        .config
        .max_upload_bytes
        .saturating_add(MULTIPART_SLACK)
        .saturating_mul(state.config.max_job_images);
    Router::new()
        .route(
            "/v1/translate",
            post(routes::translate::translate).layer(DefaultBodyLimit::max(one)),
        )
        .route(
            "/v1/jobs",
            post(routes::jobs::create).layer(DefaultBodyLimit::max(many)),
        )
        .route("/v1/jobs/{id}", get(routes::jobs::status))
        .route("/v1/jobs/{id}/events", get(routes::jobs::events))
        .route("/v1/results/{key}", get(routes::jobs::result))
        .route("/v1/models", get(routes::models::models))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .route("/openapi.json", get(routes::openapi::openapi))
        .route("/", get(routes::page::index))
        .fallback(routes::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

/// Counts every request by matched route and status.
async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .request(&route, resp.status().as_u16(), started.elapsed());
    resp
}
