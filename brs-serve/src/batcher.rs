//! One inference worker per style: a bounded queue feeding a dedicated OS thread that owns the
//! generator and runs dynamic batches (up to `max_batch`, waiting at most `max_wait` for a batch to
//! fill), so no tokio thread ever runs a forward pass. A hot-reloaded generator is handed over
//! through a slot the worker checks between batches, so a swap never interrupts a batch.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use brs_model::Translator;
use serde::Serialize;
use tch::{Kind, Tensor};
use tokio::sync::oneshot;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// What /v1/models shows about the generator a style serves.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModelInfo {
    pub(crate) version: String,
    pub(crate) iteration: u64,
    pub(crate) created: String,
    pub(crate) kind: String,
    pub(crate) direction: String,
    pub(crate) light: bool,
    pub(crate) img_size: i64,
    pub(crate) img_ch: i64,
    pub(crate) ch: i64,
    pub(crate) n_res: i64,
    pub(crate) checkpoint: String,
    /// The number format inference runs in: `f32` or `bf16`.
    pub(crate) precision: String,
}

impl ModelInfo {
    pub(crate) fn of(t: &Translator) -> ModelInfo {
        let m = t.meta();
        ModelInfo {
            version: m.version_id(),
            iteration: m.iteration,
            created: m.created.clone(),
            kind: format!("{:?}", m.kind).to_lowercase(),
            direction: t.direction().to_string(),
            light: m.model.light,
            img_size: m.model.img_size,
            img_ch: m.model.img_ch,
            ch: m.model.ch,
            n_res: m.model.n_res,
            checkpoint: t
                .dir()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            precision: match t.kind() {
                Kind::BFloat16 => "bf16",
                _ => "f32",
            }
            .into(),
        }
    }
}

/// One translated image and the model version that made it.
#[derive(Debug)]
pub(crate) struct Inferred {
    /// [3, S, S] in [-1, 1] on the CPU.
    pub(crate) image: Tensor,
    pub(crate) version: String,
}

type Reply = oneshot::Sender<Result<Inferred, String>>;

struct Item {
    input: Tensor,
    reply: Reply,
    enqueued: Instant,
}

/// Batching knobs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchConfig {
    pub(crate) max_batch: usize,
    pub(crate) max_wait: Duration,
    pub(crate) queue_depth: usize,
}

/// The handle request handlers use; dropping it stops the worker once its queue is empty.
#[derive(Debug)]
pub(crate) struct Batcher {
    tx: SyncSender<Item>,
    depth: Arc<AtomicUsize>,
    swap: Arc<Mutex<Option<Translator>>>,
    info: Arc<RwLock<Arc<ModelInfo>>>,
    ready: Arc<AtomicBool>,
}

struct Worker {
    style: String,
    rx: Receiver<Item>,
    depth: Arc<AtomicUsize>,
    swap: Arc<Mutex<Option<Translator>>>,
    info: Arc<RwLock<Arc<ModelInfo>>>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    cfg: BatchConfig,
}

impl Batcher {
    /// Starts the worker thread; it warms the generator up before reporting ready.
    pub(crate) fn start(
        style: &str,
        translator: Translator,
        cfg: BatchConfig,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Batcher> {
        let (tx, rx) = sync_channel(cfg.queue_depth);
        let info = ModelInfo::of(&translator);
        metrics.model_loaded(style, &info.version, info.iteration);
        let b = Batcher {
            tx,
            depth: Arc::new(AtomicUsize::new(0)),
            swap: Arc::new(Mutex::new(None)),
            info: Arc::new(RwLock::new(Arc::new(info))),
            ready: Arc::new(AtomicBool::new(false)),
        };
        let w = Worker {
            style: style.to_string(),
            rx,
            depth: b.depth.clone(),
            swap: b.swap.clone(),
            info: b.info.clone(),
            ready: b.ready.clone(),
            metrics,
            cfg,
        };
        std::thread::Builder::new()
            .name(format!("infer-{style}"))
            .spawn(move || w.run(translator))?;
        Ok(b)
    }

    /// Queues one [3, S, S] input; a full queue is an immediate 503, never a wait.
    pub(crate) fn submit(
        &self,
        input: Tensor,
    ) -> Result<oneshot::Receiver<Result<Inferred, String>>, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.depth.fetch_add(1, Ordering::SeqCst);
        let item = Item {
            input,
            reply,
            enqueued: Instant::now(),
        };
        match self.tx.try_send(item) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::SeqCst);
                match e {
                    TrySendError::Full(_) => Err(ApiError::QueueFull),
                    TrySendError::Disconnected(_) => {
                        Err(ApiError::Internal("inference worker stopped".into()))
                    }
                }
            }
        }
    }

    /// Hands a loaded, verified generator to the worker, which starts using it at its next batch.
    pub(crate) fn offer(&self, t: Translator) {
        *self.swap.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
    }

    pub(crate) fn model(&self) -> Arc<ModelInfo> {
        self.info.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub(crate) fn queued(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }
}

/// Runs a forward pass, turning a libtorch panic into an error so the worker survives it.
pub(crate) fn forward(t: &Translator, batch: &Tensor) -> Result<Tensor, String> {
    match catch_unwind(AssertUnwindSafe(|| t.translate(batch))) {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the generator panicked".into()),
    }
}

/// A forward pass on a zero image: warms libtorch's allocator and kernels, and proves a freshly
/// loaded generator actually runs before it serves anyone.
pub(crate) fn warm_up(t: &Translator) -> Result<(), String> {
    let c = t.config();
    let x = Tensor::zeros(
        [1, c.img_ch, c.img_size, c.img_size],
        (Kind::Float, tch::Device::Cpu),
    );
    let out = forward(t, &x)?;
    if out.size() != [1, 3, c.img_size, c.img_size] {
        return Err(format!("warm-up output has shape {:?}", out.size()));
    }
    let finite = out.isfinite().all().int64_value(&[]) == 1;
    if !finite {
        return Err("warm-up output is not finite".into());
    }
    Ok(())
}

impl Worker {
    fn run(self, mut translator: Translator) {
        match warm_up(&translator) {
            Ok(()) => self.ready.store(true, Ordering::SeqCst),
            Err(e) => {
                tracing::error!(style = %self.style, error = %e, "warm-up failed; style stays not ready")
            }
        }
        let mut version = self.model_version();
        loop {
            let first = match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(item) => item,
                Err(RecvTimeoutError::Timeout) => {
                    self.maybe_swap(&mut translator, &mut version);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            self.depth.fetch_sub(1, Ordering::SeqCst);
            let mut batch = vec![first];
            // Take what is queued already, then wait a little for a batch to fill.
            let deadline = Instant::now() + self.cfg.max_wait;
            while batch.len() < self.cfg.max_batch {
                let item = match self.rx.try_recv() {
                    Ok(item) => item,
                    Err(_) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match self.rx.recv_timeout(left) {
                            Ok(item) => item,
                            Err(_) => break,
                        }
                    }
                };
                self.depth.fetch_sub(1, Ordering::SeqCst);
                batch.push(item);
            }
            self.maybe_swap(&mut translator, &mut version);
            self.run_batch(&translator, &version, batch);
        }
    }

    fn model_version(&self) -> String {
        self.info
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .version
            .clone()
    }

    fn maybe_swap(&self, translator: &mut Translator, version: &mut String) {
        let next = self.swap.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = next {
            let info = ModelInfo::of(&t);
            tracing::info!(style = %self.style, version = %info.version, iteration = info.iteration, "now serving");
            self.metrics
                .model_loaded(&self.style, &info.version, info.iteration);
            *version = info.version.clone();
            *self.info.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(info);
            *translator = t;
            self.ready.store(true, Ordering::SeqCst);
        }
    }

    fn run_batch(&self, translator: &Translator, version: &str, batch: Vec<Item>) {
        // A client that gave up (timeout, disconnect) costs no inference.
        let live: Vec<Item> = batch.into_iter().filter(|i| !i.reply.is_closed()).collect();
        if live.is_empty() {
            return;
        }
        let c = translator.config();
        let want = [c.img_ch, c.img_size, c.img_size];
        let inputs: Vec<Tensor> = live
            .iter()
            .map(|i| {
                // Requests prepared just before a reload to a new size still fit the new model.
                if i.input.size() == want {
                    i.input.shallow_clone()
                } else {
                    i.input
                        .unsqueeze(0)
                        .upsample_bilinear2d([c.img_size, c.img_size], false, None, None)
                        .squeeze_dim(0)
                }
            })
            .collect();
        let waits: Vec<Duration> = live.iter().map(|i| i.enqueued.elapsed()).collect();
        let started = Instant::now();
        let result = forward(translator, &Tensor::stack(&inputs, 0));
        self.metrics
            .batch(&self.style, live.len(), started.elapsed(), &waits);
        match result {
            Ok(out) => {
                for (k, item) in live.into_iter().enumerate() {
                    let _ = item.reply.send(Ok(Inferred {
                        image: out.get(k as i64),
                        version: version.to_string(),
                    }));
                }
            }
            Err(e) => {
                tracing::error!(style = %self.style, error = %e, "forward pass failed");
                for item in live {
                    let _ = item.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
