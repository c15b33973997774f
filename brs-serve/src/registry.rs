//! The named styles, each a generator behind its own batcher, and the hot-reload poller that
//! watches each style's `latest` pointer: a new checkpoint is loaded and warmed up on the poller's
//! thread, then handed to the batcher; a checkpoint that fails to load is logged, counted and
//! skipped while the old one keeps serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use brs_model::checkpoint::{META, read_latest};
use brs_model::{Direction, Precision, Translator};

use crate::batcher::{BatchConfig, Batcher, warm_up};
use crate::config::{Config, StyleConfig};
use crate::metrics::Metrics;

/// Why the registry could not start.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("style {style}: {cause}")]
    Load {
        style: String,
        cause: brs_model::ModelError,
    },
    #[error("could not start the inference thread for style {style}: {cause}")]
    Thread {
        style: String,
        cause: std::io::Error,
    },
}

/// One served style.
#[derive(Debug)]
pub(crate) struct Style {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) direction: Direction,
    pub(crate) batcher: Batcher,
    /// Run directories are watched; a checkpoint or export directory given directly is fixed.
    watched: bool,
    pointer: Mutex<Pointer>,
}

#[derive(Debug, Default)]
struct Pointer {
    current: Option<String>,
    refused: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Registry {
    styles: BTreeMap<String, Arc<Style>>,
    default: String,
    device: tch::Device,
    precision: Precision,
    metrics: Arc<Metrics>,
}

fn is_run_dir(path: &Path) -> bool {
    !path.join(META).is_file()
}

/// The generator of `direction` in checkpoint `dir`, in the serving precision.
fn open(
    dir: &Path,
    direction: Direction,
    device: tch::Device,
    precision: Precision,
) -> Result<Translator, brs_model::ModelError> {
    Ok(Translator::load(dir, direction, device)?.with_precision(precision))
}

impl Registry {
    /// Loads every style (the first load must succeed) and starts its worker.
    pub(crate) fn load(cfg: &Config, metrics: Arc<Metrics>) -> Result<Registry, RegistryError> {
        let device = brs_model::parse_device(&cfg.device).map_err(|cause| RegistryError::Load {
            style: "*".into(),
            cause,
        })?;
        let batch = BatchConfig {
            max_batch: cfg.max_batch,
            max_wait: Duration::from_millis(cfg.max_wait_ms),
            queue_depth: cfg.queue_depth,
        };
        let mut styles = BTreeMap::new();
        for (name, sc) in &cfg.styles {
            styles.insert(
                name.clone(),
                Arc::new(Self::load_style(
                    name,
                    sc,
                    device,
                    cfg.precision,
                    batch,
                    metrics.clone(),
                )?),
            );
        }
        Ok(Registry {
            styles,
            default: cfg.default_style_name(),
            device,
            precision: cfg.precision,
            metrics,
        })
    }

    fn load_style(
        name: &str,
        sc: &StyleConfig,
        device: tch::Device,
        precision: Precision,
        batch: BatchConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Style, RegistryError> {
        let load_err = |cause| RegistryError::Load {
            style: name.to_string(),
            cause,
        };
        let watched = is_run_dir(&sc.path);
        // Read the pointer before loading: if it moves meanwhile, the poller sees a change.
        let current = if watched {
            read_latest(&sc.path).map_err(load_err)?
        } else {
            None
        };
        let path = match &current {
            Some(n) => sc.path.join(n),
            None => sc.path.clone(),
        };
        let t = open(&path, sc.direction, device, precision).map_err(load_err)?;
        tracing::info!(style = name, checkpoint = %t.dir().display(), iteration = t.meta().iteration, "loaded");
        let batcher =
            Batcher::start(name, t, batch, metrics).map_err(|cause| RegistryError::Thread {
                style: name.to_string(),
                cause,
            })?;
        Ok(Style {
            name: name.to_string(),
            path: sc.path.clone(),
            direction: sc.direction,
            batcher,
            watched,
            pointer: Mutex::new(Pointer {
                current,
                refused: None,
            }),
        })
    }

    pub(crate) fn get(&self, name: Option<&str>) -> Option<&Arc<Style>> {
        self.styles.get(name.unwrap_or(&self.default))
    }

    pub(crate) fn default_name(&self) -> &str {
        &self.default
    }

    pub(crate) fn styles(&self) -> impl Iterator<Item = &Arc<Style>> {
        self.styles.values()
    }

    pub(crate) fn all_ready(&self) -> bool {
        self.styles.values().all(|s| s.batcher.is_ready())
    }

    /// Checks every watched style once; returns how many swapped.
    pub(crate) fn poll_once(&self) -> usize {
        let mut swapped = 0;
        for style in self.styles.values().filter(|s| s.watched) {
            if self.poll_style(style) {
                swapped += 1;
            }
        }
        swapped
    }

    fn poll_style(&self, style: &Style) -> bool {
        let name = match read_latest(&style.path) {
            Ok(Some(n)) => n,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(style = %style.name, error = %e, "cannot read the latest pointer");
                return false;
            }
        };
        {
            let p = style.pointer.lock().unwrap_or_else(|e| e.into_inner());
            if p.current.as_deref() == Some(&name) || p.refused.as_deref() == Some(&name) {
                return false;
            }
        }
        let dir = style.path.join(&name);
        let loaded = open(&dir, style.direction, self.device, self.precision)
            .map_err(|e| e.to_string())
            .and_then(|t| warm_up(&t).map(|()| t));
        let mut p = style.pointer.lock().unwrap_or_else(|e| e.into_inner());
        match loaded {
            Ok(t) => {
                tracing::info!(style = %style.name, checkpoint = %name, "reloaded");
                style.batcher.offer(t);
                p.current = Some(name);
                p.refused = None;
                self.metrics.reload(&style.name, true);
                true
            }
            Err(e) => {
                tracing::error!(style = %style.name, checkpoint = %name, error = %e,
                    "refusing new checkpoint; still serving the previous one");
                p.refused = Some(name);
                self.metrics.reload(&style.name, false);
                false
            }
        }
    }
}

/// Polls every `period` until the registry is dropped.
pub(crate) fn spawn_poller(registry: Weak<Registry>, period: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("reload-poller".into())
        .spawn(move || {
            loop {
                std::thread::sleep(period);
                match registry.upgrade() {
                    Some(r) => {
                        r.poll_once();
                    }
                    None => return,
                }
            }
        })
        .map(|_| ())
}
