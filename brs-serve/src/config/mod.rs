//! Server configuration: a TOML file (`--config`), overlaid by `--set key=value` for any key and
//! by the few flags a first run needs (`--model-dir`, `--bind`). Defaults live in one place, the
//! `Default` impls here; `brs-serve --print-config` prints them (docs/serving.md embeds that
//! output, and a test keeps the two equal). Durations are written as `"30s"`, `"500ms"`, `"30d"`.

mod sections;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use brs_engine::{EngineSpec, OnnxLanes};
use brs_image::crop::CropConfig;
use brs_image::detect::DetectorSpec;
use brs_model::{DeviceSpec, Direction, Precision};
use serde::{Deserialize, Serialize};

pub use sections::{
    AuthConfig, ClientLimits, HttpLimits, Listen, ModelLimits, QueueConfig, QueueKind, StoreConfig,
    StoreKind, WorkerConfig,
};

/// Why a configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("--set {assignment:?}: {message}")]
    Set { assignment: String, message: String },
    #[error("invalid configuration: {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("secret: {0}")]
    Secret(String),
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The `[aws]` section: brs-aws's settings, or (in a build without the `aws` feature) any table,
/// refused by `validate` with a message saying why.
#[cfg(feature = "aws")]
pub type AwsSection = brs_aws::AwsConfig;
#[cfg(not(feature = "aws"))]
pub type AwsSection = toml::Table;

/// One named style: a run, checkpoint or export directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StyleConfig {
    /// A run directory (watched through its `latest` pointer), a checkpoint or an export directory.
    pub path: PathBuf,
    /// Which generator of a training checkpoint to serve: `a2b` (photo -> animation) or `b2a`.
    #[serde(default = "default_direction")]
    pub direction: Direction,
}

fn default_direction() -> Direction {
    Direction::A2B
}

/// Everything the server reads at start-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address.
    pub bind: SocketAddr,
    /// Torch device: `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: DeviceSpec,
    /// Number format of inference: `auto` (bfloat16 on CPUs with AVX512-BF16, about 2.2x faster
    /// than float32 and within a few grey levels of it; float32 elsewhere), `f32` or `bf16`.
    pub precision: Precision,
    /// What runs the generator: `auto` (at every load, a few forward passes of one image with
    /// each engine on this machine, the faster kept: libtorch in `precision`, or ONNX Runtime in
    /// float32; the choice and both times in the log and in /v1/models), `torch` (libtorch) or
    /// `onnx` (ONNX Runtime, float32 on the CPU; the server refuses to start without the
    /// library). Both give the same image within rounding in float32.
    pub engine: EngineSpec,
    /// Whether ONNX Runtime also gets a single-thread session per core ("lanes"), and when
    /// waiting images run on them side by side, each lane taking the next image as it finishes
    /// its own (docs/serving.md, "The engine"): `"off"`, `"timed"` (side by side where that was
    /// timed faster at load, else batches on every core) or `"always"`; `false` and `true` mean
    /// `"off"` and `"timed"`. An image alone runs on every core either way. Each lane holds a
    /// copy of the weights (only models under 256 MiB of them get any). Needs `max_batch` of 2
    /// or more.
    pub onnx_lanes: OnnxLanes,
    /// Largest batch the inference worker builds.
    pub max_batch: usize,
    /// How long the worker waits for a batch to fill once it holds a request. On a CPU a batch
    /// of 4 costs 4 single images (measured), so waiting only adds latency; raise it on a GPU.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Images admitted per style (decoding, waiting or in the generator) before new requests
    /// get 503: the slot is taken before the upload is read.
    pub queue_depth: usize,
    /// Largest share of `queue_depth` that job images may hold, so interactive requests always
    /// find room (0.0 ..= 1.0).
    pub job_queue_share: f64,
    /// How long a request may wait for its translation before 504.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Largest accepted upload body, per image, in bytes.
    pub max_upload_bytes: usize,
    /// Largest accepted width x height, checked from the header before decoding. Photos are
    /// decoded straight to the model's size where the format allows (JPEG, PNG), so this bounds
    /// what a WebP or a progressive JPEG may cost.
    pub max_pixels: u64,
    /// Largest accepted width or height.
    pub max_side: u32,
    /// Largest `size` a client may ask for.
    pub max_output_size: u32,
    /// Most images in one job.
    pub max_job_images: usize,
    /// Images decoded at once, across all requests and jobs; 0 = one per CPU core. One client
    /// holds at most `clients.max_decodes` of them.
    pub decode_concurrency: usize,
    /// Results, inputs and job state older than this are deleted; "0s" keeps them forever. The fs
    /// store only: an S3 bucket expires them by its lifecycle rules.
    #[serde(with = "humantime_serde")]
    pub results_max_age: Duration,
    /// Largest total size of the store in bytes; the oldest hours go first. 0 = no cap. The fs
    /// store only.
    pub results_max_bytes: u64,
    /// How often each style's `latest` pointer is polled.
    #[serde(with = "humantime_serde")]
    pub reload_poll: Duration,
    /// A new checkpoint is loaded after a random delay up to this, so instances sharing a
    /// run directory do not all load (and pause) at the same moment.
    #[serde(with = "humantime_serde")]
    pub reload_jitter: Duration,
    /// After a drain starts (SIGTERM), how long new work is still accepted while the load
    /// balancer notices /readyz failing.
    #[serde(with = "humantime_serde")]
    pub drain_grace: Duration,
    /// Longest wait for in-flight and queued work at shutdown.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Style used when a request names none: the only style, or `default`, when unset.
    pub default_style: Option<String>,
    /// A file holding the per-deployment secret (>= 32 bytes) that keys result identifiers
    /// and deduplication; else the environment variable `BRS_SECRET`; else a random secret
    /// per process (deduplication then works within one instance only).
    pub secret_file: Option<PathBuf>,
    /// An AWS Secrets Manager secret (ARN or name) holding that secret, read once at start with
    /// the process's credentials: what keeps it out of a Lambda function's environment.
    pub secret_arn: Option<String>,
    /// Proxies (CIDRs, e.g. the load balancer's subnets) whose `X-Forwarded-For` is believed
    /// when telling clients apart.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Named styles: `[styles.NAME] path = "..."`.
    pub styles: BTreeMap<String, StyleConfig>,
    /// Face detector for `crop=face`; absent = `crop=face` is refused with 400.
    pub detector: Option<DetectorSpec>,
    /// How `crop=face` frames a detected face (brs-image's `CropConfig`, as training crops are
    /// framed). `size` is ignored: crops are resized to the model's `img_size`.
    pub crop: CropConfig,
    /// Connection and body limits.
    pub http: HttpLimits,
    /// Per-client rate and concurrency limits.
    pub clients: ClientLimits,
    /// API keys; absent = anyone may submit work.
    pub auth: Option<AuthConfig>,
    /// What a checkpoint may ask for before it is loaded.
    pub models: ModelLimits,
    /// Where inputs, results and job state live.
    pub store: StoreConfig,
    /// Where job images wait for a worker.
    pub queue: QueueConfig,
    /// `brs-serve worker` only: its operations port.
    pub worker: WorkerConfig,
    /// AWS lifecycle settings: brs-aws's watcher runs when present (feature `aws`).
    pub aws: Option<AwsSection>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            device: DeviceSpec::Cpu,
            precision: Precision::Auto,
            engine: EngineSpec::Auto,
            onnx_lanes: OnnxLanes::Timed,
            max_batch: 4,
            max_wait: Duration::ZERO,
            queue_depth: 32,
            job_queue_share: 0.5,
            request_timeout: Duration::from_secs(30),
            max_upload_bytes: 10 * 1024 * 1024,
            max_pixels: 24_000_000,
            max_side: 16_384,
            max_output_size: 1024,
            max_job_images: 16,
            decode_concurrency: 0,
            results_max_age: Duration::from_secs(30 * 86_400),
            results_max_bytes: 0,
            reload_poll: Duration::from_secs(1),
            reload_jitter: Duration::from_secs(20),
            drain_grace: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(120),
            default_style: None,
            secret_file: None,
            secret_arn: None,
            trusted_proxies: Vec::new(),
            styles: BTreeMap::new(),
            detector: None,
            crop: CropConfig::default(),
            http: HttpLimits::default(),
            clients: ClientLimits::default(),
            auth: None,
            models: ModelLimits::default(),
            store: StoreConfig::default(),
            queue: QueueConfig::default(),
            worker: WorkerConfig::default(),
            aws: None,
        }
    }
}

/// Command-line flags: the few a first run needs; every other key through `--set`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Cli {
    /// TOML config file (see docs/serving.md; `--print-config` alone shows every key and default).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Model directory served as the style `default` (run, checkpoint or export directory).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Listen address (the key `bind`).
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    /// Overrides one key of the config, as TOML: `--set max_batch=8`, `--set store.kind=s3`,
    /// `--set request_timeout=10s`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl Cli {
    /// True when no flag says anything about the config.
    pub fn is_empty(&self) -> bool {
        self.config.is_none()
            && self.model_dir.is_none()
            && self.bind.is_none()
            && self.set.is_empty()
    }
}

impl Config {
    /// Parses a TOML document.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// File (if any), then `--set` assignments and flags, then validation.
    pub fn from_cli(cli: &Cli) -> Result<Config, ConfigError> {
        let mut table = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
                    path: path.clone(),
                    cause,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        path: path.clone(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        for assignment in &cli.set {
            apply_set(&mut table, assignment)?;
        }
        let origin = cli.config.clone().unwrap_or_else(|| PathBuf::from("--set"));
        let mut cfg: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: origin,
                    message: e.to_string(),
                })?;
        if let Some(dir) = &cli.model_dir {
            cfg.styles.insert(
                "default".into(),
                StyleConfig {
                    path: dir.clone(),
                    direction: Direction::A2B,
                },
            );
        }
        if let Some(bind) = cli.bind {
            cfg.bind = bind;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The defaults as a TOML document (what `--print-config` shows without a config).
    pub fn defaults_toml() -> String {
        Config::default().to_toml()
    }

    /// This config as a TOML document that parses back to it.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Refuses settings the server cannot honour, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.styles.is_empty() {
            return Err(invalid(
                "styles",
                "no styles: pass --model-dir DIR or add [styles.NAME] path = \"...\"",
            ));
        }
        for name in self.styles.keys() {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    "styles",
                    format!("style name {name:?}: use letters, digits, '-' and '_'"),
                ));
            }
        }
        if let Some(d) = &self.default_style
            && !self.styles.contains_key(d)
        {
            return Err(invalid(
                "default_style",
                format!("{d:?} is not one of the styles"),
            ));
        }
        let positive: [(&str, u64); 8] = [
            ("max_batch", self.max_batch as u64),
            ("queue_depth", self.queue_depth as u64),
            ("max_upload_bytes", self.max_upload_bytes as u64),
            ("max_pixels", self.max_pixels),
            ("max_side", u64::from(self.max_side)),
            ("max_job_images", self.max_job_images as u64),
            (
                "request_timeout",
                u64::from(!self.request_timeout.is_zero()),
            ),
            ("reload_poll", u64::from(!self.reload_poll.is_zero())),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(invalid(key, "must be positive"));
            }
        }
        if self.max_batch > 256 {
            return Err(invalid(
                "max_batch",
                format!("{} (allowed 1..=256)", self.max_batch),
            ));
        }
        self.engine
            .check(self.precision, self.device)
            .map_err(|message| invalid("engine", message))?;
        if !(0.0..=1.0).contains(&self.job_queue_share) {
            return Err(invalid("job_queue_share", "allowed 0.0..=1.0"));
        }
        if self.max_output_size < 16 {
            return Err(invalid("max_output_size", "must be at least 16"));
        }
        self.crop
            .validate()
            .map_err(|e| invalid(&format!("crop.{}", e.key), e.message))?;
        self.http.validate()?;
        self.clients.validate()?;
        self.models.validate()?;
        self.store.validate()?;
        self.queue.validate()?;
        self.worker.validate()?;
        if let Some(auth) = &self.auth {
            auth.validate()?;
        }
        if self.secret_file.is_some() && self.secret_arn.is_some() {
            return Err(invalid(
                "secret_arn",
                "give secret_file or secret_arn, not both",
            ));
        }
        if self.secret_arn.is_some() && !cfg!(feature = "aws") {
            return Err(invalid(
                "secret_arn",
                "this brs-serve was built without the `aws` feature (no Secrets Manager client)",
            ));
        }
        #[cfg(not(feature = "aws"))]
        if self.aws.is_some() {
            return Err(invalid(
                "aws",
                "this brs-serve was built without the `aws` feature (no lifecycle watcher); \
                 rebuild with default features or remove the section",
            ));
        }
        Ok(())
    }

    /// The style used when a request names none.
    pub fn default_style_name(&self) -> String {
        if let Some(d) = &self.default_style {
            return d.clone();
        }
        if self.styles.len() == 1
            && let Some(k) = self.styles.keys().next()
        {
            return k.clone();
        }
        "default".into()
    }

    /// Images decoded at once.
    pub(crate) fn decode_permits(&self) -> usize {
        match self.decode_concurrency {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// Decode permits one client may hold at once.
    pub(crate) fn decodes_per_client(&self) -> usize {
        match self.clients.max_decodes {
            0 => (self.decode_permits() / 2).max(1),
            n => n,
        }
    }

    /// Queue slots job images may hold per style (at least one, so jobs always progress).
    pub(crate) fn job_slots(&self) -> usize {
        ((self.queue_depth as f64 * self.job_queue_share).floor() as usize)
            .clamp(1, self.queue_depth)
    }
}

/// Applies `key.path=value` to a TOML table; the value is TOML (`8`, `"s3"`, `true`), or a bare
/// string when it does not parse as TOML (`store.kind=s3`, `request_timeout=10s`).
fn apply_set(table: &mut toml::Table, assignment: &str) -> Result<(), ConfigError> {
    let err = |message: &str| ConfigError::Set {
        assignment: assignment.to_string(),
        message: message.to_string(),
    };
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| err("expected KEY=VALUE"))?;
    let key = key.trim();
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| err("empty key"))?;
    let mut node = table;
    for part in parts {
        let next = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = next
            .as_table_mut()
            .ok_or_else(|| err(&format!("{part} is not a table")))?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests;
