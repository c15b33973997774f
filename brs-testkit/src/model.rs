//! Tiny real models: the smallest generator brs-model accepts, fast enough for hundreds of
//! forward passes in a test.

use std::path::{Path, PathBuf};

use brs_model::ModelConfig;

/// light, 96 px, ch 4, one residual block.
pub fn tiny_config() -> ModelConfig {
    ModelConfig {
        img_size: 96,
        img_ch: 3,
        ch: 4,
        n_res: 1,
        light: true,
        ..ModelConfig::default()
    }
}

/// Publishes a random generator into `run_dir` (moving its `latest`); returns its directory.
pub fn publish(run_dir: &Path, cfg: &ModelConfig, seed: i64, iteration: u64) -> PathBuf {
    brs_model::translator::write_random_export(run_dir, cfg, seed, iteration)
        .expect("write a random export")
}
