//! The training configuration: a TOML file with the official U-GAT-IT option names, `--set`
//! overrides, and validation that names the key and its allowed range.

use std::path::{Path, PathBuf};

use brs_model::config::{DEFAULT_N_DIS, Flavour};
use brs_model::{DeviceSpec, ModelConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Everything a training run needs. Defaults are the official code's (main.py) for the paper's
/// selfie2anime run, so an empty file trains the full model like the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Side of the square training images (default 256; at least 96, a multiple of 4).
    pub img_size: i64,
    /// Image channels (default 3).
    pub img_ch: i64,
    /// Base channel count of every network (default 64).
    pub ch: i64,
    /// Residual blocks in the generator's encoder and decoder (default 4).
    pub n_res: i64,
    /// Light generator (default false; the paper's light model sets true).
    pub light: bool,
    /// The official implementation whose network and training step to follow: `pytorch`
    /// (default) or `tensorflow` (the authors' code, whose released weights `import-tf` reads).
    pub flavour: Flavour,
    /// AdaLIN smoothing of the tensorflow flavour (default true, the official default).
    pub smoothing: bool,
    /// Discriminator depth of the tensorflow flavour, the official `n_dis` (default 6: the
    /// paper's 7-layer global and 5-layer local discriminators).
    pub n_dis: i64,
    /// Total training iterations (default 1,000,000).
    pub iteration: u64,
    /// Images per domain per iteration (default 1).
    pub batch_size: usize,
    /// Adam learning rate (default 1e-4).
    pub lr: f64,
    /// Adam weight decay, added to the gradient as L2 like torch.optim.Adam (default 1e-4).
    pub weight_decay: f64,
    /// Weight of the LSGAN losses (default 1).
    pub adv_weight: f64,
    /// Weight of the L1 cycle loss (default 10).
    pub cycle_weight: f64,
    /// Weight of the L1 identity loss (default 10).
    pub identity_weight: f64,
    /// Weight of the generators' CAM loss (default 1000).
    pub cam_weight: f64,
    /// Decay the learning rate linearly to 0 over the second half of training (default true).
    pub decay_flag: bool,
    /// Every this many iterations: sample grids and the loss plot (default 1000).
    pub print_freq: u64,
    /// Every this many iterations: a checkpoint (default 100,000).
    pub save_freq: u64,
    /// Every this many iterations: one line of metrics.jsonl (default 10).
    pub log_freq: u64,
    /// Seeds the initial weights (torch) and all data randomness (ChaCha20) (default 0).
    pub seed: u64,
    /// auto, cpu, cuda or cuda:N (default auto).
    pub device: DeviceSpec,
    /// Checkpoints kept in the run directory; `latest` is never removed (default 3).
    pub keep_last: usize,
    /// Test images per direction in each sample grid (default 5).
    pub sample_count: usize,
    /// Intra-op CPU threads for libtorch, per training thread (so `replicas * threads` in all); 0
    /// keeps libtorch's default, one per core, or with `replicas` above 1 one each (default 0).
    pub threads: usize,
    /// Copies of the networks that each train on a part of every batch on their own CPU thread
    /// (data parallelism; gradients are summed, so training is the same up to float rounding);
    /// 1 = none. Pays off when per-operation overhead dominates, as at the demo's sizes (default 1).
    pub replicas: usize,
    /// Keep image tensors and conv weights channels-last (NHWC) (default false).
    pub channels_last: bool,
    /// Run forward passes under libtorch's CUDA autocast; no effect on the CPU (default false).
    pub autocast: bool,
    /// Dataset root with trainA, trainB, testA, testB; `--data` overrides (default none).
    pub data: Option<PathBuf>,
    /// Run directory for checkpoints, samples and logs; `--out` overrides (default none).
    pub out: Option<PathBuf>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            img_size: 256,
            img_ch: 3,
            ch: 64,
            n_res: 4,
            light: false,
            flavour: Flavour::Pytorch,
            smoothing: true,
            n_dis: DEFAULT_N_DIS,
            iteration: 1_000_000,
            batch_size: 1,
            lr: 1e-4,
            weight_decay: 1e-4,
            adv_weight: 1.0,
            cycle_weight: 10.0,
            identity_weight: 10.0,
            cam_weight: 1000.0,
            decay_flag: true,
            print_freq: 1000,
            save_freq: 100_000,
            log_freq: 10,
            seed: 0,
            device: DeviceSpec::Auto,
            keep_last: 3,
            sample_count: 5,
            threads: 0,
            replicas: 1,
            channels_last: false,
            autocast: false,
            data: None,
            out: None,
        }
    }
}

fn bad(key: &str, value: impl std::fmt::Display, allowed: &str) -> TrainError {
    TrainError::Config(format!("{key} = {value} (allowed: {allowed})"))
}

impl TrainConfig {
    /// Reads a TOML file, applies `key=value` overrides (values in TOML syntax; bare words are
    /// strings), and validates the result.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_toml(&text, overrides)
            .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))
    }

    /// Parses TOML text plus overrides; errors name the offending key.
    pub fn from_toml(text: &str, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| TrainError::Config(e.message().to_string()))?;
        for item in overrides {
            let (key, value) = parse_override(item)?;
            table.insert(key, value);
        }
        // Deserialized from text, not from the table, so an error has a span: the message then
        // names the line at fault (`device = "tpu": invalid device ...`), key and value.
        let text = toml::to_string(&table)
            .map_err(|e| TrainError::Config(format!("config overrides: {e}")))?;
        let cfg: TrainConfig =
            toml::from_str(&text).map_err(|e| TrainError::Config(at_line(&text, &e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The shape of the networks.
    pub fn model(&self) -> ModelConfig {
        ModelConfig {
            img_size: self.img_size,
            img_ch: self.img_ch,
            ch: self.ch,
            n_res: self.n_res,
            light: self.light,
            flavour: self.flavour,
            smoothing: self.smoothing,
            n_dis: self.n_dis,
        }
    }

    /// Checks every value, naming the key and the allowed range.
    pub fn validate(&self) -> Result<()> {
        self.model()
            .validate()
            .map_err(|e| TrainError::Config(e.to_string()))?;
        if self.img_ch != 3 {
            return Err(bad("img_ch", self.img_ch, "3: training reads RGB images"));
        }
        if !(1..=1_000_000_000).contains(&self.iteration) {
            return Err(bad("iteration", self.iteration, "1..=1000000000"));
        }
        if !(1..=1024).contains(&self.batch_size) {
            return Err(bad("batch_size", self.batch_size, "1..=1024"));
        }
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            return Err(bad("lr", self.lr, "0 < lr <= 1"));
        }
        if !(0.0..=1.0).contains(&self.weight_decay) {
            return Err(bad("weight_decay", self.weight_decay, "0..=1"));
        }
        for (key, w) in [
            ("adv_weight", self.adv_weight),
            ("cycle_weight", self.cycle_weight),
            ("identity_weight", self.identity_weight),
            ("cam_weight", self.cam_weight),
        ] {
            if !(0.0..=1e6).contains(&w) {
                return Err(bad(key, w, "0..=1000000"));
            }
        }
        for (key, f) in [
            ("print_freq", self.print_freq),
            ("save_freq", self.save_freq),
            ("log_freq", self.log_freq),
        ] {
            if f == 0 {
                return Err(bad(key, f, "1 or more iterations"));
            }
        }
        if !(1..=10_000).contains(&self.keep_last) {
            return Err(bad("keep_last", self.keep_last, "1..=10000"));
        }
        if !(1..=64).contains(&self.sample_count) {
            return Err(bad("sample_count", self.sample_count, "1..=64"));
        }
        if self.threads > 1024 {
            return Err(bad("threads", self.threads, "0 (libtorch default)..=1024"));
        }
        if !(1..=64).contains(&self.replicas) {
            return Err(bad("replicas", self.replicas, "1..=64"));
        }
        Ok(())
    }

    /// The intra-op thread count each training thread sets, if not libtorch's default.
    pub(crate) fn intra_op_threads(&self) -> Option<i32> {
        match (self.threads, self.replicas) {
            (0, 1) => None,
            (0, _) => Some(1),
            (n, _) => Some(n as i32),
        }
    }

    /// The learning rate over the run: constant, then (with decay_flag) linear to 0 over the
    /// second half of `iteration`, as the reference computes it.
    pub fn schedule(&self) -> LrSchedule {
        let half = self.iteration / 2;
        LrSchedule {
            lr: self.lr,
            decay: (self.decay_flag && half > 0).then_some((half, 2 * half)),
        }
    }
}

/// The learning rate by iteration: `lr`, then, with a `decay` window `(from, to)`, linear from
/// `lr` after iteration `from` to 0 at `to`. Closed form, so a resumed run gets exactly the value
/// a straight run has (the reference subtracts a step at a time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub lr: f64,
    pub decay: Option<(u64, u64)>,
}

impl LrSchedule {
    /// The learning rate of 1-based iteration `step`.
    pub fn at(&self, step: u64) -> f64 {
        match self.decay {
            Some((from, to)) if step > from => {
                let done = (step - from) as f64 / (to - from) as f64;
                (self.lr * (1.0 - done)).max(0.0)
            }
            _ => self.lr,
        }
    }

    /// The paper's decay for a run bounded by time rather than iterations: half of its time is
    /// gone at iteration `step`, after `ran` iterations of this process, so the second half is
    /// about as many again, and the decay runs from `step` to `step + ran`. `None` without decay,
    /// or when this schedule's own decay has begun by then or ends first.
    pub fn at_half_time(&self, step: u64, ran: u64) -> Option<LrSchedule> {
        let (from, to) = self.decay?;
        let end = step + ran;
        (ran > 0 && step < from && end < to).then_some(LrSchedule {
            lr: self.lr,
            decay: Some((step, end)),
        })
    }
}

/// `key=value` as a TOML key and value; a value that is not valid TOML is taken as a string.
fn parse_override(item: &str) -> Result<(String, toml::Value)> {
    let (key, raw) = item
        .split_once('=')
        .ok_or_else(|| TrainError::Config(format!("--set {item:?}: expected key=value")))?;
    let key = key.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(TrainError::Config(format!(
            "--set {item:?}: the key must be a config option name"
        )));
    }
    let raw = raw.trim();
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    Ok((key.to_string(), value))
}

/// A deserialization error with the line it points at: `KEY = VALUE: what is wrong`.
fn at_line(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_string();
    };
    let start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let end = text[span.start..]
        .find('\n')
        .map_or(text.len(), |i| span.start + i);
    format!("{}: {}", text[start..end].trim(), e.message())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_reference_defaults() {
        let cfg = TrainConfig::from_toml("", &[]).unwrap();
        assert_eq!(cfg, TrainConfig::default());
        assert_eq!(cfg.model(), ModelConfig::default());
        assert_eq!(
            (cfg.lr, cfg.weight_decay, cfg.cam_weight),
            (1e-4, 1e-4, 1000.0)
        );
    }

    #[test]
    fn overrides_apply_with_toml_types() {
        let sets = [
            "iteration=20".to_string(),
            "light = true".into(),
            "lr=2e-4".into(),
            "device=cpu".into(),
        ];
        let cfg = TrainConfig::from_toml("img_size = 128\nch = 16\n", &sets).unwrap();
        assert_eq!((cfg.iteration, cfg.light, cfg.lr), (20, true, 2e-4));
        assert_eq!(
            (cfg.img_size, cfg.ch, cfg.device),
            (128, 16, DeviceSpec::Cpu)
        );
    }

    #[test]
    fn errors_name_the_key_and_range() {
        for (toml, sets, expect) in [
            (
                "",
                vec!["batch_size=0"],
                "batch_size = 0 (allowed: 1..=1024)",
            ),
            ("lr = -1.0", vec![], "lr = -1"),
            ("img_size = 64", vec![], "img_size = 64"),
            ("cam_weight = 1e9", vec![], "cam_weight"),
            ("save_freq = 0", vec![], "save_freq = 0"),
            ("device = \"tpu\"", vec![], "device = \"tpu\""),
            (
                "",
                vec!["sample_count=100"],
                "sample_count = 100 (allowed: 1..=64)",
            ),
            ("replicas = 0", vec![], "replicas = 0 (allowed: 1..=64)"),
            ("", vec!["nonsense"], "expected key=value"),
        ] {
            let sets: Vec<String> = sets.into_iter().map(String::from).collect();
            let err = TrainConfig::from_toml(toml, &sets).unwrap_err().to_string();
            assert!(err.contains(expect), "{toml:?} {sets:?}: {err}");
        }
    }

    #[test]
    fn unknown_and_mistyped_keys_are_errors() {
        let err = TrainConfig::from_toml("itertion = 5", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("itertion"), "{err}");
        let err = TrainConfig::from_toml("", &["batch_size=two".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batch_size") || err.contains("invalid type"),
            "{err}"
        );
    }

    #[test]
    fn shipped_configs_are_valid_and_the_paper_ones_are_the_papers() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let load = |name: &str| TrainConfig::load(&dir.join(name), &[]).unwrap();
        let full = load("selfie2anime-full.toml");
        assert_eq!(full, TrainConfig::default());
        let light = load("selfie2anime-light.toml");
        assert_eq!(
            light,
            TrainConfig {
                light: true,
                ..TrainConfig::default()
            }
        );
        let demo = load("demo.toml");
        assert!(demo.light && demo.img_size < full.img_size && demo.iteration < 10_000);
    }

    #[test]
    fn replicas_take_one_thread_each_unless_told() {
        let cfg = |threads, replicas| TrainConfig {
            threads,
            replicas,
            ..TrainConfig::default()
        };
        assert_eq!(cfg(0, 1).intra_op_threads(), None);
        assert_eq!(cfg(0, 2).intra_op_threads(), Some(1));
        assert_eq!(cfg(3, 2).intra_op_threads(), Some(3));
        assert_eq!(cfg(2, 1).intra_op_threads(), Some(2));
    }

    #[test]
    fn learning_rate_decays_linearly_over_the_second_half() {
        let cfg = TrainConfig {
            iteration: 100,
            ..TrainConfig::default()
        };
        let lr = cfg.schedule();
        assert_eq!(lr.at(1), 1e-4);
        assert_eq!(lr.at(50), 1e-4);
        assert!((lr.at(51) - 1e-4 * 49.0 / 50.0).abs() < 1e-15);
        assert!((lr.at(75) - 0.5e-4).abs() < 1e-15);
        assert_eq!(lr.at(100), 0.0);
        let flat = TrainConfig {
            decay_flag: false,
            ..cfg
        };
        assert_eq!(flat.schedule().at(100), 1e-4);
        assert_eq!(flat.schedule().at_half_time(10, 10), None);
    }

    #[test]
    fn half_of_a_time_budget_starts_the_decay_over_as_many_iterations_again() {
        let cfg = TrainConfig {
            iteration: 1000,
            ..TrainConfig::default()
        };
        // A fresh run half-way through its minutes at iteration 40: 0 at 80.
        let timed = cfg.schedule().at_half_time(40, 40).unwrap();
        assert_eq!(timed.decay, Some((40, 80)));
        assert_eq!(
            (timed.at(40), timed.at(60), timed.at(80)),
            (1e-4, 0.5e-4, 0.0)
        );
        // Resumed at 300, 40 iterations in: the decay takes the next 40.
        assert_eq!(
            cfg.schedule().at_half_time(340, 40).unwrap().decay,
            Some((340, 380))
        );
        // The config's own decay (from 500) has begun, or its end (1000) comes first: kept.
        assert_eq!(cfg.schedule().at_half_time(500, 500), None);
        assert_eq!(cfg.schedule().at_half_time(400, 600), None);
        assert_eq!(cfg.schedule().at_half_time(0, 0), None);
    }
}
