//! The config's sections: HTTP limits, per-client limits, API keys, model limits, store, queue and
//! the queue worker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// `[http]`: what a connection may cost before any handler runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Time for a client to send a request's headers (also the idle keep-alive limit).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Slowest accepted upload, in bytes per second, measured on what arrives whatever length
    /// the body declares: each byte buys `1 / body_min_rate` s, a sender may be `body_grace`
    /// ahead at most, and a body whose time runs out before it ends gets 408 `body_timeout`.
    pub body_min_rate: u64,
    /// The slack on `body_min_rate`: the time a body has for its first bytes, the longest it may
    /// send nothing (a stalled body is cut this long after its last byte, whatever it declared),
    /// and the time a stretch slower than the rate may lose against it before it is cut. Also how
    /// long a refused body is still read (lingering) so its sender reads the answer.
    #[serde(with = "humantime_serde")]
    pub body_grace: Duration,
    /// Requests served at once on the /v1 API; beyond it 503 `overloaded` at once.
    pub max_concurrent_requests: usize,
    /// Multipart: most parts in one body, and most bytes of a part's headers.
    pub max_parts: usize,
    pub max_part_header_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            body_min_rate: 16 * 1024,
            body_grace: Duration::from_secs(5),
            max_concurrent_requests: 512,
            max_parts: 32,
            max_part_header_bytes: 4096,
        }
    }
}

impl HttpLimits {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.header_read_timeout.is_zero() {
            return Err(invalid("http.header_read_timeout", "must be positive"));
        }
        if self.body_min_rate == 0 {
            return Err(invalid("http.body_min_rate", "must be positive"));
        }
        if self.body_grace.is_zero() {
            return Err(invalid("http.body_grace", "must be positive"));
        }
        if self.max_concurrent_requests == 0 || self.max_parts == 0 {
            return Err(invalid(
                "http.max_concurrent_requests / http.max_parts",
                "must be positive",
            ));
        }
        if self.max_part_header_bytes < 256 {
            return Err(invalid(
                "http.max_part_header_bytes",
                "must be at least 256",
            ));
        }
        Ok(())
    }

    /// The longest a body of `len` bytes can be waited for at the pace `body_min_rate` and
    /// `body_grace` set (the bound the pacing of `http::request` implies, for the routes' overall
    /// deadline).
    pub(crate) fn body_deadline(&self, len: usize) -> Duration {
        self.body_grace + Duration::from_secs_f64(len as f64 / self.body_min_rate as f64)
    }
}

/// `[clients]`: limits per client (its API key when `[auth]` is on, else its address, the
/// load balancer's `X-Forwarded-For` believed only from `trusted_proxies`; IPv6 clients are
/// counted per /64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLimits {
    /// Images per second a client may submit, on average (translations and job images).
    pub images_per_sec: f64,
    /// Images a client may submit in a burst above that rate.
    pub image_burst: u32,
    /// Other API calls (status, events, results) per second, and their burst.
    pub reads_per_sec: f64,
    pub read_burst: u32,
    /// Work requests (translations, job uploads) a client may have in flight at once.
    pub max_concurrent: usize,
    /// Event streams a client may hold open at once.
    pub max_streams: usize,
    /// Images of one client decoded at once (interactive and job images together), so one
    /// client's pixel bombs never hold every decode permit; 0 = half the decode permits
    /// (`decode_concurrency`), at least 1.
    pub max_decodes: usize,
    /// Clients with images waiting (for a decode permit, or for a style's generator) take turns
    /// by deficit round-robin over the decode (or generator) time their images used there: each
    /// turn a client misses repays this much of what it used, and a client that owes nothing has
    /// its next image served. Smaller is finer: a client whose images cost ten times more gets a
    /// tenth of the turns, as long as the quantum is below what an image costs. When every client
    /// waiting is in debt, the turns needed pass at once, so a small quantum costs no waiting.
    #[serde(with = "humantime_serde")]
    pub turn_quantum: Duration,
    /// Refusals for a client's limits (429 `too_many_requests`, 413 `payload_too_large`, 408
    /// `body_timeout`, 422 `too_many_pixels`) within `ban_window` that turn it away for
    /// `ban_for` (429 `banned`, every /v1 route); a request while banned starts that wait again,
    /// so a client that waits as `Retry-After` says is held no longer. 0 = never.
    pub ban_after: u32,
    /// How far back refusals count toward `ban_after` (a window that starts at the first).
    #[serde(with = "humantime_serde")]
    pub ban_window: Duration,
    /// How long a banned client is turned away after its last request.
    #[serde(with = "humantime_serde")]
    pub ban_for: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            images_per_sec: 2.0,
            image_burst: 32,
            reads_per_sec: 20.0,
            read_burst: 100,
            max_concurrent: 4,
            max_streams: 8,
            max_decodes: 0,
            turn_quantum: Duration::from_millis(10),
            ban_after: 10,
            ban_window: Duration::from_secs(60),
            ban_for: Duration::from_secs(60),
        }
    }
}

impl ClientLimits {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("clients.images_per_sec", self.images_per_sec),
            ("clients.reads_per_sec", self.reads_per_sec),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(invalid(key, "must be a positive number"));
            }
        }
        if self.image_burst == 0 || self.read_burst == 0 {
            return Err(invalid(
                "clients.image_burst / clients.read_burst",
                "must be positive",
            ));
        }
        if self.max_concurrent == 0 || self.max_streams == 0 {
            return Err(invalid(
                "clients.max_concurrent / clients.max_streams",
                "must be positive",
            ));
        }
        if self.turn_quantum < Duration::from_micros(1) {
            return Err(invalid("clients.turn_quantum", "at least 1us"));
        }
        if self.ban_after > 0 && (self.ban_window.is_zero() || self.ban_for.is_zero()) {
            return Err(invalid(
                "clients.ban_window / clients.ban_for",
                "must be positive when clients.ban_after is",
            ));
        }
        Ok(())
    }
}

/// `[auth]`: API keys, stored hashed. Clients send `Authorization: Bearer KEY` or `x-api-key:
/// KEY` with work requests (POST); reading a job or a result needs only its unguessable id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `"sha256:<64 hex digits>"` of each accepted key (`brs-serve hash-key` prints one).
    pub keys: Vec<String>,
}

impl AuthConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.keys.is_empty() {
            return Err(invalid(
                "auth.keys",
                "no keys: remove [auth] to run without keys",
            ));
        }
        for k in &self.keys {
            let ok = k
                .strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if !ok {
                return Err(invalid(
                    "auth.keys",
                    format!("{k:?}: expected \"sha256:<64 hex digits>\" (brs-serve hash-key)"),
                ));
            }
        }
        Ok(())
    }
}

/// `[models]`: what a checkpoint's `meta.json` may ask for before anything is allocated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelLimits {
    /// Largest `img_size` served.
    pub max_img_size: i64,
    /// Largest base channel count `ch`.
    pub max_ch: i64,
    /// Most residual blocks `n_res`.
    pub max_n_res: i64,
    /// Most generator parameters (the light 256 px, ch 64 generator has 10.5 M).
    pub max_params: u64,
}

impl Default for ModelLimits {
    fn default() -> Self {
        ModelLimits {
            max_img_size: 512,
            max_ch: 128,
            max_n_res: 16,
            max_params: 400_000_000,
        }
    }
}

impl ModelLimits {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_img_size < 16 || self.max_ch < 1 || self.max_n_res < 1 || self.max_params == 0 {
            return Err(invalid(
                "models",
                "every limit must be positive (max_img_size >= 16)",
            ));
        }
        Ok(())
    }
}

/// Which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A directory, local or EFS.
    #[default]
    Fs,
    /// An S3 bucket (feature `aws`).
    S3,
}

/// `[store]`: where inputs, results and job state live.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `fs` or `s3`.
    pub kind: StoreKind,
    /// fs: the directory; `<system temp dir>/brs-serve-results` when unset.
    pub path: Option<PathBuf>,
    /// s3: the bucket (required).
    pub bucket: Option<String>,
    /// s3: a prefix for every key, so deployments can share a bucket.
    pub prefix: String,
    /// s3: the region; the SDK's chain (environment, instance metadata) when unset.
    pub region: Option<String>,
    /// s3: an S3-compatible endpoint (moto, MinIO) instead of AWS's; path-style addressing then.
    pub endpoint: Option<String>,
}

impl StoreConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match self.kind {
            StoreKind::Fs => {
                if self.bucket.is_some() || self.endpoint.is_some() || !self.prefix.is_empty() {
                    return Err(invalid(
                        "store",
                        "bucket, prefix and endpoint apply to kind = \"s3\"",
                    ));
                }
            }
            StoreKind::S3 => {
                if !cfg!(feature = "aws") {
                    return Err(invalid(
                        "store.kind",
                        "this brs-serve was built without the `aws` feature (no S3 store)",
                    ));
                }
                if self.bucket.as_deref().is_none_or(str::is_empty) {
                    return Err(invalid("store.bucket", "required for kind = \"s3\""));
                }
                if self.path.is_some() {
                    return Err(invalid("store.path", "applies to kind = \"fs\""));
                }
            }
        }
        Ok(())
    }

    /// The directory of an `fs` store.
    pub(crate) fn fs_path(&self) -> Option<PathBuf> {
        (self.kind == StoreKind::Fs).then(|| {
            self.path
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("brs-serve-results"))
        })
    }

    /// The settings of an `s3` store.
    #[cfg(feature = "aws")]
    pub(crate) fn s3(&self) -> Option<crate::store::S3Settings> {
        (self.kind == StoreKind::S3).then(|| crate::store::S3Settings {
            bucket: self.bucket.clone().unwrap_or_default(),
            prefix: self.prefix.clone(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
        })
    }
}

/// Which queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    /// In this process: items die with it.
    #[default]
    Local,
    /// Amazon SQS (feature `aws`).
    Sqs,
}

/// `[queue]`: where job images wait for a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// `local` or `sqs`.
    pub kind: QueueKind,
    /// Deliveries of a failing image: its last one marks it failed (sqs: the redrive policy's
    /// maxReceiveCount, which moves the message to the dead-letter queue).
    pub max_receives: u32,
    /// Whether HTTP instances also translate job images; `false` leaves them to `brs-serve
    /// worker` processes (a web tier and a worker tier; sqs only).
    pub consume: bool,
    /// sqs: the queue URL (required).
    pub url: Option<String>,
    /// sqs: the region; the SDK's chain when unset.
    pub region: Option<String>,
    /// sqs: an SQS-compatible endpoint (moto) instead of AWS's.
    pub endpoint: Option<String>,
    /// sqs: how long a received message stays invisible to other workers; extended while an
    /// image takes long, so a dead worker's messages come back after it.
    #[serde(with = "humantime_serde")]
    pub visibility_timeout: Duration,
    /// sqs: long-polling wait per receive (at most 20 s).
    #[serde(with = "humantime_serde")]
    pub wait_time: Duration,
    /// sqs: messages per receive (1..=10).
    pub batch_size: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            kind: QueueKind::Local,
            max_receives: 5,
            consume: true,
            url: None,
            region: None,
            endpoint: None,
            visibility_timeout: Duration::from_secs(60),
            wait_time: Duration::from_secs(20),
            batch_size: 4,
        }
    }
}

impl QueueConfig {
    /// Whether an HTTP instance also translates job images.
    pub(crate) fn consume(&self) -> bool {
        self.kind == QueueKind::Local || self.consume
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.max_receives) {
            return Err(invalid("queue.max_receives", "allowed 1..=1000"));
        }
        match self.kind {
            QueueKind::Local => {
                if self.url.is_some() || self.endpoint.is_some() {
                    return Err(invalid("queue", "url and endpoint apply to kind = \"sqs\""));
                }
                if !self.consume {
                    return Err(invalid(
                        "queue.consume",
                        "the in-process queue is consumed by its own process only",
                    ));
                }
            }
            QueueKind::Sqs => {
                if !cfg!(feature = "aws") {
                    return Err(invalid(
                        "queue.kind",
                        "this brs-serve was built without the `aws` feature (no SQS queue)",
                    ));
                }
                if self.url.as_deref().is_none_or(str::is_empty) {
                    return Err(invalid("queue.url", "required for kind = \"sqs\""));
                }
                let vis = self.visibility_timeout.as_secs();
                if !(1..=43_200).contains(&vis) {
                    return Err(invalid("queue.visibility_timeout", "allowed 1s..=12h"));
                }
                if self.wait_time > Duration::from_secs(20) {
                    return Err(invalid("queue.wait_time", "at most 20s"));
                }
                if !(1..=10).contains(&self.batch_size) {
                    return Err(invalid("queue.batch_size", "allowed 1..=10"));
                }
            }
        }
        Ok(())
    }

    /// The settings of an `sqs` queue.
    #[cfg(feature = "aws")]
    pub(crate) fn sqs(&self) -> Option<crate::queue::SqsSettings> {
        (self.kind == QueueKind::Sqs).then(|| crate::queue::SqsSettings {
            url: self.url.clone().unwrap_or_default(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            visibility_timeout: self.visibility_timeout,
            wait_time: self.wait_time,
            batch_size: self.batch_size,
            max_receives: self.max_receives,
        })
    }
}

/// `[worker]`: what only `brs-serve worker` (the queue's consumer, without the HTTP API) reads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// The worker's operations port: an address (`"0.0.0.0:9091"`) where it answers GET /healthz
    /// (200 while the process runs its consumer), /readyz (200 when its models are loaded, the
    /// store answers and it is not draining; else 503) and /metrics (the HTTP server's
    /// Prometheus text), and 404 to anything else; or `"off"`, listening nowhere. No
    /// authentication: bind it to loopback or keep the port inside the VPC.
    pub ops_bind: Listen,
}

impl WorkerConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Listen::On(addr) = self.ops_bind
            && addr.port() == 0
        {
            return Err(invalid(
                "worker.ops_bind",
                format!("{addr}: port 0 would listen where no scraper looks; give a port"),
            ));
        }
        Ok(())
    }
}

/// An address to listen on, or `"off"`, written as a string either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Listen {
    #[default]
    Off,
    On(SocketAddr),
}

impl Listen {
    /// The address, when on.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Listen::Off => None,
            Listen::On(a) => Some(a),
        }
    }
}

impl TryFrom<String> for Listen {
    type Error = String;

    fn try_from(s: String) -> Result<Listen, String> {
        if s == "off" {
            return Ok(Listen::Off);
        }
        s.parse().map(Listen::On).map_err(|_| {
            format!("{s:?}: expected \"off\" or an address with a port, like \"0.0.0.0:9091\"")
        })
    }
}

impl From<Listen> for String {
    fn from(l: Listen) -> String {
        match l {
            Listen::Off => "off".into(),
            Listen::On(a) => a.to_string(),
        }
    }
}
