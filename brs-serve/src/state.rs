//! The domain's shared state and its life: models, store, queue, jobs, admission, clients,
//! metrics, the drain, and the background work they need (reload poller, pruner, store prober,
//! job worker). No HTTP here: the routes, a worker process and the Lambda adapter all drive this.

use std::sync::Arc;

use brs_image::detect::DetectorPool;
use tokio::sync::Semaphore;

use crate::clients::{ClientId, Clients};
use crate::config::{Config, ConfigError, QueueConfig, StoreConfig};
use crate::drain::Drain;
use crate::error::ServeError;
use crate::fair::FairGate;
use crate::health::StoreHealth;
use crate::jobs::Jobs;
use crate::memory::{Activity, IDLE_BEFORE_RELEASE};
use crate::metrics::{Gauges, Metrics};
use crate::queue::{LocalQueue, Queue, WorkItem};
use crate::registry::{Registry, RegistryError, spawn_poller};
use crate::secret::Secret;
use crate::store::{Backend, FsStore, Store};
use crate::worker::Outcome;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("store directory {path}: {cause}")]
    Store {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error("face detector: {0}")]
    Detector(#[from] brs_image::detect::DetectError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What this process does with the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The HTTP API, also consuming the queue (every brs-serve instance).
    Server,
    /// Only the queue's consumer (`brs-serve worker`).
    Worker,
    /// A Lambda function: messages arrive as invocations, nothing polls (except the in-process
    /// queue, whose items would otherwise never run).
    Lambda,
}

/// Everything handlers share; cloning is cheap.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) config: Arc<Config>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) store: Arc<Store>,
    pub(crate) store_health: Arc<StoreHealth>,
    pub(crate) queue: Arc<Queue>,
    pub(crate) jobs: Arc<Jobs>,
    pub(crate) clients: Arc<Clients>,
    /// Decodes at once, served in turns by client (deficit round-robin on their decode time), at
    /// most `clients.max_decodes` per client.
    pub(crate) decode_permits: FairGate,
    pub(crate) upload_permits: Arc<Semaphore>,
    pub(crate) secret: Arc<Secret>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) drain: Arc<Drain>,
    pub(crate) detector: Option<Arc<DetectorPool>>,
    /// Counters of the AWS lifecycle watcher (zero when no `[aws]` section is configured).
    #[cfg(feature = "aws")]
    pub(crate) aws_stats: Arc<brs_aws::AwsStats>,
}

/// Job uploads streaming into the store at once (each holds one image in memory).
const UPLOADS_AT_ONCE: usize = 8;

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

impl AppState {
    /// Loads every style (on the blocking pool), opens the store and the queue the config names,
    /// and starts the background work `role` needs. Call inside a tokio runtime.
    pub async fn start(config: Config, role: Role) -> Result<AppState, StartError> {
        config.validate()?;
        let store = open_store(&config.store).await?;
        let queue = open_queue(&config.queue).await;
        AppState::start_with(config, role, store, queue).await
    }

    /// Like [`start`](Self::start), with a store and a queue built by the caller (clients with
    /// their own credentials or endpoints, as tests and embedders make them).
    pub async fn start_with(
        config: Config,
        role: Role,
        store: Backend,
        queue: Queue,
    ) -> Result<AppState, StartError> {
        config.validate()?;
        let secret = Arc::new(Secret::from_config(&config).await?);
        tracing::info!(origin = secret.origin, "result secret loaded");
        let metrics = Arc::new(Metrics::new());
        let detector = match &config.detector {
            Some(spec) => Some(Arc::new(DetectorPool::new(spec.clone())?)),
            None => None,
        };
        let cfg = config.clone();
        let m = metrics.clone();
        let activity = Arc::new(Activity::default());
        crate::memory::spawn_releaser(
            Arc::downgrade(&activity),
            IDLE_BEFORE_RELEASE,
            metrics.clone(),
        )?;
        let registry = tokio::task::spawn_blocking(move || Registry::load(&cfg, m, activity, role))
            .await
            .map_err(|e| StartError::Io(std::io::Error::other(e.to_string())))??;
        let registry = Arc::new(registry);
        spawn_poller(Arc::downgrade(&registry), config.reload_poll)?;
        let store_health = Arc::new(StoreHealth::default());
        let store = Arc::new(Store::new(store).observed(store_health.clone(), metrics.clone()));
        crate::health::spawn_prober(
            store.clone(),
            Arc::downgrade(&store_health),
            metrics.clone(),
            instance_name(),
        );
        let queue = Arc::new(queue);
        tracing::info!(
            store = store.kind(),
            queue = queue.kind(),
            "job store and queue"
        );
        let jobs = Arc::new(Jobs::new(store.clone(), queue.clone()));
        let policy = crate::prune::Policy::from_config(&config);
        if store.kind() == "fs" {
            crate::prune::spawn(store.clone(), metrics.clone(), policy);
        } else if policy.is_active() {
            // No instance walks a bucket: its lifecycle rules expire every namespace
            // (terraform/store-namespaces.json), and the roles hold no grant outside them.
            tracing::info!(
                "results_max_age and results_max_bytes apply to the fs store; the bucket's lifecycle rules expire S3 objects"
            );
        }
        let clients = Arc::new(Clients::new(
            &config.clients,
            &config.trusted_proxies,
            config.auth.as_ref(),
        ));
        spawn_forgetter(Arc::downgrade(&clients));
        let state = AppState {
            drain: Drain::new(config.drain_grace),
            decode_permits: FairGate::new(
                config.decode_permits(),
                config.decodes_per_client(),
                config.clients.turn_quantum,
            ),
            upload_permits: Arc::new(Semaphore::new(UPLOADS_AT_ONCE)),
            config: Arc::new(config),
            registry,
            store,
            store_health,
            queue,
            jobs,
            clients,
            secret,
            metrics,
            detector,
            #[cfg(feature = "aws")]
            aws_stats: Arc::default(),
        };
        let consume = match role {
            Role::Server => state.config.queue.consume(),
            Role::Worker => true,
            // Between invocations a function is frozen: only the in-process queue, whose items
            // would otherwise never run, is polled.
            Role::Lambda => state.queue.is_local(),
        };
        if consume {
            tokio::spawn(crate::worker::run(state.clone()));
        }
        Ok(state)
    }

    /// The drain handle: SIGTERM handling, the AWS lifecycle hook or a test call `start()` on it.
    pub fn drain(&self) -> Arc<Drain> {
        self.drain.clone()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Models loaded and warmed up, not draining, and the store answering.
    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }

    pub(crate) fn readiness(&self) -> Result<(), ServeError> {
        if self.drain.is_draining() {
            return Err(ServeError::Draining);
        }
        if !self.registry.all_ready_or_waiting() {
            return Err(ServeError::NotReady);
        }
        if !self.store_health.is_healthy() {
            return Err(ServeError::Store(crate::store::StoreError::Remote {
                op: crate::store::Op::Put,
                key: "-".into(),
                message: "the store keeps failing".into(),
            }));
        }
        Ok(())
    }

    /// The client's identity as jobs record it and as the fair queues serve it: a keyed hash,
    /// so a manifest never holds the client's address or key.
    pub(crate) fn tenant(&self, client: &ClientId) -> String {
        self.secret
            .mac(&[b"brs-tenant", client.as_str().as_bytes()])
    }

    pub(crate) fn gauges(&self) -> Gauges {
        Gauges {
            queue_depth: self
                .registry
                .styles()
                .map(|s| (s.name.clone(), s.slots.held()))
                .collect(),
            in_flight: self.drain.in_flight(),
            pending_jobs: self.drain.pending_jobs(),
            draining: self.drain.is_draining(),
            store_healthy: self.store_health.is_healthy(),
        }
    }

    /// The Prometheus exposition text.
    pub(crate) fn metrics_text(&self) -> String {
        #[cfg(feature = "aws")]
        return self.metrics.render(&self.gauges()) + &self.aws_stats.snapshot().prometheus_text();
        #[cfg(not(feature = "aws"))]
        self.metrics.render(&self.gauges())
    }

    /// Processes one queue message's body delivered by someone else (the Lambda runtime's SQS
    /// batches): `Done` and `Failed` settle it, `Retry` and `GaveUp` should be reported back as
    /// failures for the queue to redeliver or dead-letter.
    pub async fn process_message(
        &self,
        body: &str,
        receive_count: u32,
    ) -> Result<Outcome, ServeError> {
        let item: WorkItem = serde_json::from_str(body)
            .map_err(|e| ServeError::Queue(crate::queue::QueueError::Malformed(e.to_string())))?;
        let _guard = self.drain.job_image();
        Ok(crate::worker::process(self, &item, receive_count).await)
    }
}

async fn open_store(cfg: &StoreConfig) -> Result<Backend, StartError> {
    #[cfg(feature = "aws")]
    if let Some(s3) = cfg.s3() {
        return Ok(Backend::S3(crate::store::S3Store::connect(&s3).await));
    }
    let path = cfg.fs_path().unwrap_or_default();
    let fs = FsStore::open(&path).map_err(|cause| StartError::Store { path, cause })?;
    Ok(Backend::Fs(fs))
}

async fn open_queue(cfg: &QueueConfig) -> Queue {
    #[cfg(feature = "aws")]
    if let Some(sqs) = cfg.sqs() {
        return Queue::Sqs(crate::queue::SqsQueue::connect(&sqs).await);
    }
    Queue::Local(LocalQueue::new(cfg.max_receives))
}

/// This process's name in the store's health probes: host and pid.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let clean: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    format!(
        "{}-{}",
        if clean.is_empty() { "host" } else { &clean },
        std::process::id()
    )
}

/// Forgets idle clients' buckets every minute, until the clients are dropped.
fn spawn_forgetter(clients: std::sync::Weak<Clients>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            match clients.upgrade() {
                Some(c) => c.forget_idle(),
                None => return,
            }
        }
    });
}
