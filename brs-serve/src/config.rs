//! Server configuration: a TOML file (`--config`) overlaid by command-line flags, with every
//! default documented on its field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use brs_image::crop::CropConfig;
use brs_image::detect::DetectorSpec;
use brs_model::{Direction, Precision};
use serde::{Deserialize, Serialize};

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
    #[error("invalid configuration: {0}")]
    Invalid(String),
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
    /// Which generator of a training checkpoint to serve. Default: `a2b` (photo -> animation).
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
    /// Listen address. Default `127.0.0.1:8080`.
    pub bind: SocketAddr,
    /// Torch device: `cpu`, `cuda`, `cuda:N` or `auto`. Default `cpu`.
    pub device: String,
    /// Number format of inference: `auto` (bfloat16 on CPUs with AVX512-BF16, about 2.2x faster
    /// than float32 and within a few grey levels of it; float32 elsewhere), `f32` or `bf16`.
    /// Default `auto`.
    pub precision: Precision,
    /// Largest batch the inference worker builds. Default 4.
    pub max_batch: usize,
    /// How long the worker waits for a batch to fill once it holds a request, in ms. Default 0:
    /// the worker still batches whatever is already queued, but on a CPU a batch of 4 costs 4
    /// single images (measured), so waiting would only add latency. Raise it on a GPU.
    pub max_wait_ms: u64,
    /// Requests waiting for inference per style before new ones get 503. Default 32.
    pub queue_depth: usize,
    /// Seconds a request may wait for its translation before 504. Default 30.
    pub request_timeout: f64,
    /// Largest accepted upload body in bytes. Default 10 MiB.
    pub max_upload_bytes: usize,
    /// Largest accepted width x height, checked from the header before decoding. Default 40 M.
    pub max_pixels: u64,
    /// Largest accepted width or height. Default 16384.
    pub max_side: u32,
    /// Largest `size` a client may ask for. Default 1024.
    pub max_output_size: u32,
    /// Most images in one job. Default 16.
    pub max_job_images: usize,
    /// Where results are kept by content hash (shared storage in production). Default
    /// `<system temp dir>/brs-serve-results`.
    pub results_dir: Option<PathBuf>,
    /// Results and published jobs older than this many hours are deleted (by every instance, about
    /// every twentieth of it, at most hourly). 0 keeps them forever. Default 720 (30 days).
    pub results_max_age_hours: f64,
    /// How often each style's `latest` pointer is polled, in ms. Default 1000.
    pub reload_poll_ms: u64,
    /// After a drain starts (SIGTERM), seconds during which new work is still accepted while the
    /// load balancer notices /readyz failing. Default 5.
    pub drain_grace_secs: f64,
    /// Longest wait for in-flight and queued work at shutdown, in seconds. Default 120.
    pub drain_timeout_secs: f64,
    /// Style used when a request names none. Default: the only style, or `default`.
    pub default_style: Option<String>,
    /// Named styles: `[styles.NAME] path = "..."`.
    pub styles: BTreeMap<String, StyleConfig>,
    /// Face detector for `crop=face`; absent = `crop=face` is refused with 400.
    pub detector: Option<DetectorSpec>,
    /// How `crop=face` frames a detected face: brs-dataset's `[crop]` keys (`margin_top` 0.8,
    /// `margin_bottom` 0.3, `margin_side` 0.3, `pad` reflect), so served photos are framed like
    /// the training crops. `size` is ignored: crops are resized to the model's `img_size`.
    pub crop: CropConfig,
    /// AWS lifecycle settings: brs-aws's watcher runs when present (feature `aws`, on by default).
    pub aws: Option<AwsSection>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            device: "cpu".into(),
            precision: Precision::Auto,
            max_batch: 4,
            max_wait_ms: 0,
            queue_depth: 32,
            request_timeout: 30.0,
            max_upload_bytes: 10 * 1024 * 1024,
            max_pixels: 40_000_000,
            max_side: 16_384,
            max_output_size: 1024,
            max_job_images: 16,
            results_dir: None,
            results_max_age_hours: 720.0,
            reload_poll_ms: 1000,
            drain_grace_secs: 5.0,
            drain_timeout_secs: 120.0,
            default_style: None,
            styles: BTreeMap::new(),
            detector: None,
            crop: CropConfig::default(),
            aws: None,
        }
    }
}

/// Command-line flags; each overrides the same key of the `--config` file.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(name = "brs-serve", about = "Serve U-GAT-IT translations over HTTP")]
pub struct Cli {
    /// TOML config file (keys as the flags, snake_case; styles as [styles.NAME] path = "...").
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Model directory served as the style `default` (run, checkpoint or export directory).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    #[arg(long)]
    pub bind: Option<SocketAddr>,
    #[arg(long)]
    pub device: Option<String>,
    /// auto | f32 | bf16.
    #[arg(long)]
    pub precision: Option<Precision>,
    #[arg(long)]
    pub max_batch: Option<usize>,
    #[arg(long)]
    pub max_wait_ms: Option<u64>,
    #[arg(long)]
    pub queue_depth: Option<usize>,
    /// Seconds.
    #[arg(long)]
    pub request_timeout: Option<f64>,
    #[arg(long)]
    pub max_upload_bytes: Option<usize>,
    #[arg(long)]
    pub max_pixels: Option<u64>,
    #[arg(long)]
    pub results_dir: Option<PathBuf>,
    /// Hours; 0 keeps results forever.
    #[arg(long)]
    pub results_max_age_hours: Option<f64>,
    #[arg(long)]
    pub reload_poll_ms: Option<u64>,
    #[arg(long)]
    pub drain_grace_secs: Option<f64>,
    #[arg(long)]
    pub drain_timeout_secs: Option<f64>,
    #[arg(long)]
    pub default_style: Option<String>,
}

impl Config {
    /// Parses a TOML document.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// File (if any), then flags, then validation.
    pub fn from_cli(cli: &Cli) -> Result<Config, ConfigError> {
        let mut cfg = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
                    path: path.clone(),
                    cause,
                })?;
                Config::from_toml(&text, path)?
            }
            None => Config::default(),
        };
        if let Some(dir) = &cli.model_dir {
            cfg.styles.insert(
                "default".into(),
                StyleConfig {
                    path: dir.clone(),
                    direction: Direction::A2B,
                },
            );
        }
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &cli.$f { cfg.$f = v.clone(); } )* };
        }
        set!(
            bind,
            device,
            precision,
            max_batch,
            max_wait_ms,
            queue_depth,
            request_timeout,
            max_upload_bytes,
            max_pixels,
            results_max_age_hours,
            reload_poll_ms,
            drain_grace_secs,
            drain_timeout_secs
        );
        if cli.results_dir.is_some() {
            cfg.results_dir = cli.results_dir.clone();
        }
        if cli.default_style.is_some() {
            cfg.default_style = cli.default_style.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses settings the server cannot honour, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.styles.is_empty() {
            return bad(
                "no styles: pass --model-dir DIR or add [styles.NAME] path = \"...\"".into(),
            );
        }
        for name in self.styles.keys() {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return bad(format!(
                    "style name {name:?}: use letters, digits, '-' and '_'"
                ));
            }
        }
        if let Some(d) = &self.default_style
            && !self.styles.contains_key(d)
        {
            return bad(format!("default_style {d:?} is not one of the styles"));
        }
        if self.max_batch == 0 || self.max_batch > 256 {
            return bad(format!("max_batch {} (allowed 1..=256)", self.max_batch));
        }
        if self.queue_depth == 0 {
            return bad("queue_depth must be at least 1".into());
        }
        if !(self.request_timeout > 0.0 && self.request_timeout.is_finite()) {
            return bad(format!(
                "request_timeout {} must be > 0",
                self.request_timeout
            ));
        }
        for (k, v) in [
            ("drain_grace_secs", self.drain_grace_secs),
            ("drain_timeout_secs", self.drain_timeout_secs),
            ("results_max_age_hours", self.results_max_age_hours),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(format!("{k} {v} must be >= 0"));
            }
        }
        if self.max_upload_bytes == 0 || self.max_pixels == 0 || self.max_side == 0 {
            return bad("max_upload_bytes, max_pixels and max_side must be positive".into());
        }
        if self.max_output_size < 16 {
            return bad("max_output_size must be at least 16".into());
        }
        if self.max_job_images == 0 {
            return bad("max_job_images must be at least 1".into());
        }
        if self.reload_poll_ms == 0 {
            return bad("reload_poll_ms must be positive".into());
        }
        let c = &self.crop;
        for (key, v) in [
            ("crop.margin_top", c.margin_top),
            ("crop.margin_bottom", c.margin_bottom),
            ("crop.margin_side", c.margin_side),
        ] {
            if !(0.0..=4.0).contains(&v) {
                return bad(format!("{key} {v} (allowed 0..=4)"));
            }
        }
        brs_model::parse_device(&self.device)
            .map_err(|e| ConfigError::Invalid(format!("device: {e}")))?;
        #[cfg(not(feature = "aws"))]
        if self.aws.is_some() {
            return bad(
                "[aws]: this brs-serve was built without the `aws` feature (no lifecycle \
                 watcher); rebuild with default features or remove the section"
                    .into(),
            );
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

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout)
    }

    /// How old a stored result may get, and how often to look (`None`: keep everything).
    pub(crate) fn results_pruning(&self) -> Option<(Duration, Duration)> {
        (self.results_max_age_hours > 0.0).then(|| {
            let max_age = Duration::from_secs_f64(self.results_max_age_hours * 3600.0);
            (max_age, (max_age / 20).min(Duration::from_secs(3600)))
        })
    }

    pub(crate) fn results_dir(&self) -> PathBuf {
        self.results_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("brs-serve-results"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn toml_with_styles_and_aws_section_parses() {
        let text = r#"
            bind = "0.0.0.0:9000"
            max_batch = 8
            precision = "bf16"
            default_style = "female"
            [styles.male]
            path = "/efs/male"
            [styles.female]
            path = "/efs/female"
            direction = "b2a"
            [crop]
            margin_top = 1.0
            pad = { mode = "color", rgb = [255, 255, 255] }
            [aws]
            region = "eu-west-1"
            asg_name = "brs"
            lifecycle_hook = "drain"
            drain_timeout_secs = 300
        "#;
        let cfg = Config::from_toml(text, Path::new("x.toml")).expect("parses");
        assert_eq!(cfg.max_batch, 8);
        assert_eq!(cfg.precision, Precision::Bf16);
        assert_eq!(cfg.crop.margin_top, 1.0);
        assert_eq!(cfg.crop.margin_side, CropConfig::default().margin_side);
        assert_eq!(cfg.styles["female"].direction, Direction::B2A);
        assert_eq!(cfg.styles["male"].direction, Direction::A2B);
        assert_eq!(cfg.default_style_name(), "female");
        #[cfg(feature = "aws")]
        {
            assert_eq!(cfg.aws.as_ref().map(|a| a.drain_timeout_secs), Some(300));
            cfg.validate().expect("valid");
        }
        // A build without the lifecycle watcher must not silently ignore the section.
        #[cfg(not(feature = "aws"))]
        {
            let err = cfg
                .validate()
                .expect_err("no aws in this build")
                .to_string();
            assert!(err.contains("[aws]") && err.contains("feature"), "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_toml("max_bath = 3\n[styles.a]\npath='x'", Path::new("c.toml"))
            .expect_err("typo must fail");
        assert!(err.to_string().contains("max_bath"), "{err}");
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "max_batch = 8\nqueue_depth = 3\n[styles.a]\npath = 'x'\n",
        )
        .expect("write");
        let cli = Cli::parse_from([
            "brs-serve",
            "--config",
            file.to_str().expect("utf8"),
            "--max-batch",
            "2",
            "--precision",
            "f32",
        ]);
        let cfg = Config::from_cli(&cli).expect("config");
        assert_eq!(cfg.max_batch, 2);
        assert_eq!(cfg.precision, Precision::F32);
        assert_eq!(cfg.queue_depth, 3);
        assert_eq!(cfg.default_style_name(), "a");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let cli = Cli::parse_from(["brs-serve", "--model-dir", "x", "--max-batch", "0"]);
        let err = Config::from_cli(&cli).expect_err("invalid");
        assert!(err.to_string().contains("max_batch"), "{err}");
        let bad_crop = "[styles.a]\npath = 'x'\n[crop]\nmargin_side = 9.0\n";
        let err = Config::from_toml(bad_crop, Path::new("c.toml"))
            .expect("parses")
            .validate()
            .expect_err("out of range");
        assert!(err.to_string().contains("crop.margin_side"), "{err}");
        let cli = Cli::parse_from(["brs-serve"]);
        assert!(
            Config::from_cli(&cli)
                .expect_err("no styles")
                .to_string()
                .contains("no styles")
        );
    }
}
