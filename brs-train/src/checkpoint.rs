//! Training checkpoints: everything an exact resume needs (the six networks, both Adams' moments
//! and step counts, the data stream's position), written through brs-model's atomic writer and
//! read back with checks that it fits the config and the dataset.

use std::path::{Path, PathBuf};

use brs_model::checkpoint::{
    CKPT_PREFIX, Checkpoint, CheckpointKind, CheckpointMeta, CheckpointWriter, D_OPTIMIZER,
    G_OPTIMIZER, OPTIM_FILE, RNG_FILE, checkpoint_name, prune,
};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::data::{Loader, LoaderState};
use crate::error::{Result, TrainError};
use crate::events::Notice;
use crate::step::Models;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RngFile {
    loader: LoaderState,
}

/// Writes the checkpoint of `iteration` into the run directory `out`, then prunes old ones. Any
/// failure (a full disk, say) leaves the previous checkpoint and `latest` as they were: the writer
/// works in a hidden directory that it removes when it fails.
pub(crate) fn save(
    out: &Path,
    cfg: &TrainConfig,
    iteration: u64,
    models: &Models,
    loader: &Loader,
) -> Result<PathBuf> {
    let dir = write(out, cfg, iteration, models, loader).map_err(|e| TrainError::Save {
        iteration,
        cause: Box::new(e),
    })?;
    prune(out, CKPT_PREFIX, cfg.keep_last)?;
    Ok(dir)
}

fn write(
    out: &Path,
    cfg: &TrainConfig,
    iteration: u64,
    models: &Models,
    loader: &Loader,
) -> Result<PathBuf> {
    let name = checkpoint_name(CKPT_PREFIX, iteration);
    let mut writer = CheckpointWriter::begin(out, &name)?;
    models.nets.add_to(&mut writer)?;
    let mut optim = models.g_opt.state(G_OPTIMIZER);
    optim.extend(models.d_opt.state(D_OPTIMIZER));
    writer.add_tensors(OPTIM_FILE, &optim, None)?;
    let rng = serde_json::to_vec_pretty(&RngFile {
        loader: loader.state(),
    })
    .map_err(|cause| TrainError::Serialise {
        what: "the data stream state",
        cause,
    })?;
    writer.add_file(RNG_FILE, &rng)?;
    let mut meta = CheckpointMeta::new(CheckpointKind::Training, &cfg.model(), iteration);
    meta.training = serde_json::to_value(cfg).ok();
    Ok(writer.commit(meta)?)
}

/// Loads the latest checkpoint of the run directory `out` into `models` and `loader`; returns
/// its iteration. A checkpoint without optimizer state (an imported one) leaves Adam fresh and
/// says so in `notices`.
pub(crate) fn restore(
    out: &Path,
    cfg: &TrainConfig,
    models: &mut Models,
    loader: &mut Loader,
    notices: &mut Vec<Notice>,
) -> Result<u64> {
    let ckpt = Checkpoint::open(out)?;
    let fail = |reason: String| TrainError::Resume {
        path: ckpt.dir.clone(),
        reason,
    };
    if ckpt.meta.kind != CheckpointKind::Training {
        return Err(fail("it is an export, not a training checkpoint".into()));
    }
    if ckpt.meta.model != cfg.model() {
        return Err(fail(format!(
            "it was trained with {:?}, the config says {:?}; the network keys (img_size, ch, \
             n_res, light) must match",
            ckpt.meta.model,
            cfg.model()
        )));
    }
    models.nets.load_from(&ckpt)?;
    if ckpt.meta.files.contains_key(OPTIM_FILE) {
        let state = ckpt.read_tensors(OPTIM_FILE)?;
        models
            .g_opt
            .load_state(G_OPTIMIZER, &state)
            .map_err(|e| fail(e.to_string()))?;
        models
            .d_opt
            .load_state(D_OPTIMIZER, &state)
            .map_err(|e| fail(e.to_string()))?;
    } else {
        notices.push(Notice::NoOptimizerState {
            checkpoint: ckpt.dir.clone(),
        });
    }
    if ckpt.meta.files.contains_key(RNG_FILE) {
        let rng: RngFile = serde_json::from_slice(&ckpt.read_file(RNG_FILE)?)
            .map_err(|e| fail(format!("{RNG_FILE}: {e}")))?;
        loader
            .restore(&rng.loader)
            .map_err(|e| fail(e.to_string()))?;
    }
    notices.push(Notice::Resumed {
        checkpoint: ckpt.dir.clone(),
        iteration: ckpt.meta.iteration,
    });
    Ok(ckpt.meta.iteration)
}
