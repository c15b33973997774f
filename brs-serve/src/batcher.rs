//! One inference worker per style: a dedicated OS thread that owns the generator and runs dynamic
//! batches (up to `max_batch`, waiting at most `max_wait` for a batch to fill), so no tokio thread
//! ever runs a forward pass. Two lanes feed it and interactive images always go before job images;
//! within a lane, clients take turns by deficit round-robin on the slot's owner (`fair`): each
//! image's share of its batch's forward pass is charged to its owner in the batcher's ledger, so
//! no client's backlog delays another's next image by more than one image per waiting client, and
//! a client that has used more of the generator's time waits more turns.
//! With ONNX Runtime's lanes, where images side by side were timed faster at load, the worker runs
//! one thread per lane instead, each taking the next image as it finishes its own (Flask's shape:
//! no batch waits for its slowest share, and decodes beside them slow one lane, not every core):
//! an image alone in the server, none other waiting or running, runs on every core.
//! How many images wait is bounded by admission (each holds a [`Slot`] until its batch is done),
//! not here. A hot-reloaded generator is handed over through a slot the worker checks between
//! batches, so a swap never interrupts a batch. A style whose model is not deployed yet starts
//! its worker without one; the worker waits for the first through the same slot.

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use brs_engine::{Batch, Engine, EngineError, LaneSessions, Regime, Timing};
use brs_image::resize::{Quality, resize_rgb};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::admission::Slot;
use crate::fair::{Drr, Ledger};
use crate::memory::Activity;
use crate::metrics::Metrics;

/// What /v1/models shows about the generator a style serves.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ModelInfo {
    pub(crate) version: String,
    pub(crate) iteration: u64,
    pub(crate) created: String,
    pub(crate) kind: String,
    pub(crate) direction: String,
    /// Whose network it is: `pytorch`, or `tensorflow` (an imported release of the authors'
    /// TensorFlow code).
    pub(crate) flavour: String,
    pub(crate) light: bool,
    pub(crate) img_size: i64,
    pub(crate) img_ch: i64,
    pub(crate) ch: i64,
    pub(crate) n_res: i64,
    /// The checkpoint directory's name (never a path on the server).
    pub(crate) checkpoint: String,
    /// The number format inference runs in: `f32` or `bf16`.
    pub(crate) precision: String,
    /// The engine running the generator: `torch` (libtorch) or `onnx` (ONNX Runtime).
    pub(crate) engine: String,
    /// With `engine = "auto"`: what each engine took for one image at load, the faster (the one
    /// running) first; empty when the engine was not timed.
    pub(crate) engine_timings: Vec<Timing>,
    /// With ONNX Runtime's lanes (`onnx_lanes`, `max_batch` of 2 or more): for each batch size
    /// timed at load, whether its images run side by side on single-thread sessions or together
    /// on every core, and what each took per image.
    pub(crate) engine_regimes: Vec<Regime>,
    /// How many single-thread lanes run waiting images side by side, each taking the next as it
    /// finishes its own (`onnx_lanes`); 0: images run in batches on every core.
    pub(crate) engine_lanes: usize,
    /// With `engine = "auto"`: why it chose without timing, or kept libtorch after a failure
    /// (ONNX Runtime missing, the model over the size auto times); else null.
    pub(crate) engine_note: Option<String>,
}

impl ModelInfo {
    pub(crate) fn of(t: &Engine) -> ModelInfo {
        let m = t.meta();
        ModelInfo {
            version: m.version_id(),
            iteration: m.iteration,
            created: m.created.clone(),
            kind: format!("{:?}", m.kind).to_lowercase(),
            direction: t.direction().to_string(),
            flavour: m.model.flavour.to_string(),
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
            precision: t.precision_name().into(),
            engine: t.kind().to_string(),
            engine_timings: t.timings().to_vec(),
            engine_regimes: t.regimes().to_vec(),
            engine_lanes: t.independent_lanes().map_or(0, |l| l.count()),
            engine_note: t.note().map(str::to_string),
        }
    }
}

/// One translated image and the model that made it.
#[derive(Debug)]
pub(crate) struct Inferred {
    /// One image [1, 3, S, S] in [-1, 1].
    pub(crate) image: Batch,
    pub(crate) version: String,
}

/// Which lane an image waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    Interactive,
    Job,
}

type Reply = oneshot::Sender<Result<Inferred, String>>;

struct Item {
    input: Batch,
    reply: Reply,
    enqueued: Instant,
    slot: Slot,
}

struct Lanes {
    interactive: Drr<Item>,
    jobs: Drr<Item>,
    /// The generator time each owner's images used, by which both lanes take turns.
    ledger: Ledger,
    closed: bool,
    /// Images running on lanes (independent lanes only).
    running: usize,
    /// Whether an image runs on every core: no lane starts until it ends.
    whole: bool,
}

impl Lanes {
    fn pop(&mut self) -> Option<Item> {
        let Lanes {
            interactive,
            jobs,
            ledger,
            ..
        } = self;
        interactive.pop(ledger).or_else(|| jobs.pop(ledger))
    }

    fn is_empty(&self) -> bool {
        self.interactive.is_empty() && self.jobs.is_empty()
    }
}

struct Queue {
    lanes: Mutex<Lanes>,
    ready: Condvar,
}

/// How long a waiting worker sleeps before it looks again for what no notification announced
/// (a generator offered between its check and its wait).
const RECHECK: Duration = Duration::from_millis(100);

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Releases `lanes` until notified or `timeout` passes, and takes them back.
    fn wait<'a>(&self, lanes: MutexGuard<'a, Lanes>, timeout: Duration) -> MutexGuard<'a, Lanes> {
        self.ready
            .wait_timeout(lanes, timeout)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }
}

/// Batching knobs.
#[derive(Debug, Clone)]
pub(crate) struct BatchConfig {
    pub(crate) max_batch: usize,
    /// Where forward passes are marked, so freed memory goes back only when none runs.
    pub(crate) activity: Arc<Activity>,
    pub(crate) max_wait: Duration,
    /// What a turn passed over repays of a client's generator time (`clients.turn_quantum`).
    pub(crate) turn_quantum: Duration,
}

/// What a batcher serves: `None` until a style that started without a model gets its first.
type Info = Arc<RwLock<Option<Arc<ModelInfo>>>>;

/// The handle the pipeline uses; dropping it stops the worker once its lanes are empty.
pub(crate) struct Batcher {
    queue: Arc<Queue>,
    swap: Arc<Mutex<Option<Engine>>>,
    info: Info,
    ready: Arc<AtomicBool>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("model", &self.loaded().map(|m| m.version.clone()))
            .finish()
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.ready.notify_all();
    }
}

struct Worker {
    style: String,
    queue: Arc<Queue>,
    swap: Arc<Mutex<Option<Engine>>>,
    info: Info,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    cfg: BatchConfig,
}

impl Batcher {
    /// Starts the worker thread; it warms the generator up before reporting ready. Without a
    /// generator the worker waits for the first one [`offer`](Self::offer)ed.
    pub(crate) fn start(
        style: &str,
        translator: Option<Engine>,
        cfg: BatchConfig,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Batcher> {
        let info = translator.as_ref().map(|t| {
            let info = ModelInfo::of(t);
            metrics.model_loaded(style, None, &info);
            Arc::new(info)
        });
        let b = Batcher {
            queue: Arc::new(Queue {
                lanes: Mutex::new(Lanes {
                    interactive: Drr::default(),
                    jobs: Drr::default(),
                    ledger: Ledger::new(cfg.turn_quantum),
                    closed: false,
                    running: 0,
                    whole: false,
                }),
                ready: Condvar::new(),
            }),
            swap: Arc::new(Mutex::new(None)),
            info: Arc::new(RwLock::new(info)),
            ready: Arc::new(AtomicBool::new(false)),
        };
        let w = Worker {
            style: style.to_string(),
            queue: b.queue.clone(),
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

    /// Queues one image [1, 3, S, S] in `lane`; `slot` is held until its batch is done.
    pub(crate) fn submit(
        &self,
        input: Batch,
        lane: Lane,
        slot: Slot,
    ) -> oneshot::Receiver<Result<Inferred, String>> {
        let (reply, rx) = oneshot::channel();
        let owner = slot.owner().clone();
        let item = Item {
            input,
            reply,
            enqueued: Instant::now(),
            slot,
        };
        let mut lanes = self.queue.lock();
        match lane {
            Lane::Interactive => lanes.interactive.push(&owner, item),
            Lane::Job => lanes.jobs.push(&owner, item),
        }
        drop(lanes);
        self.queue.ready.notify_one();
        rx
    }

    /// Hands a loaded, verified generator to the worker, which starts using it at its next batch.
    pub(crate) fn offer(&self, t: Engine) {
        {
            let mut info = self.info.write().unwrap_or_else(|e| e.into_inner());
            // A first model is described at once: work admitted from now on is keyed (result
            // deduplication) by the model that will run it, not by a placeholder.
            if info.is_none() {
                *info = Some(Arc::new(ModelInfo::of(&t)));
            }
        }
        *self.swap.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        self.queue.ready.notify_one();
    }

    /// The model served; before a style's first, a placeholder with an empty version and size 0
    /// (work for such a style is refused before it reads this).
    pub(crate) fn model(&self) -> Arc<ModelInfo> {
        self.loaded().unwrap_or_default()
    }

    /// The model served, or `None` before a style's first.
    pub(crate) fn loaded(&self) -> Option<Arc<ModelInfo>> {
        self.info.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// Runs a forward pass, turning a panic (libtorch raises C++ errors as panics) into an error so
/// the worker survives it.
pub(crate) fn forward(t: &Engine, batch: &Batch) -> Result<Batch, String> {
    guarded(|| t.translate_batch(batch))
}

fn guarded(run: impl FnOnce() -> Result<Batch, EngineError>) -> Result<Batch, String> {
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the generator panicked".into()),
    }
}

/// A forward pass on a zero image: warms the engine's allocator and kernels, and proves a freshly
/// loaded generator actually runs before it serves anyone.
pub(crate) fn warm_up(t: &Engine) -> Result<(), String> {
    let c = t.config();
    let x = Batch::from_fn(&[1, c.img_ch, c.img_size, c.img_size], |_, _| 0.0)
        .map_err(|e| e.to_string())?;
    let out = forward(t, &x)?;
    if out.dims() != [1, 3, c.img_size, c.img_size] {
        return Err(format!("warm-up output has shape {:?}", out.shape()));
    }
    if !out.values().iter().all(|v| v.is_finite()) {
        return Err("warm-up output is not finite".into());
    }
    Ok(())
}

/// An image prepared for the model of `side` pixels: as it is, or resized when a reload to a model
/// of another size came between its preparation and its batch. The image came from 8-bit RGB,
/// which its values give back exactly, so it is resized with the pipeline's resizer (from the
/// prepared image, not the original photo).
fn fit(image: &Batch, side: i64) -> Cow<'_, Batch> {
    let [_, _, h, w] = image.shape();
    let side = u32::try_from(side).unwrap_or(0);
    if (h, w) == (side as usize, side as usize) {
        return Cow::Borrowed(image);
    }
    match image.rgb(0) {
        Ok(rgb) => Cow::Owned(Batch::from_rgb(&resize_rgb(
            &rgb,
            side,
            side,
            Quality::Fast,
        ))),
        // Not an RGB image: the model's check refuses it with the shape it has.
        Err(_) => Cow::Borrowed(image),
    }
}

impl Worker {
    fn run(self, first: Option<Engine>) {
        let Some(mut translator) = first.or_else(|| self.first_model()) else {
            return;
        };
        match warm_up(&translator) {
            Ok(()) => self.ready.store(true, Ordering::SeqCst),
            Err(e) => {
                tracing::error!(style = %self.style, error = %e, "warm-up failed; style stays not ready")
            }
        }
        let mut info = Arc::new(ModelInfo::of(&translator));
        *self.info.write().unwrap_or_else(|e| e.into_inner()) = Some(info.clone());
        loop {
            if let Some(lanes) = translator.independent_lanes() {
                if !self.serve_lanes(lanes, &info) {
                    return;
                }
                self.maybe_swap(&mut translator, &mut info);
                continue;
            }
            match self.next_batch(&mut translator, &mut info) {
                Some(batch) => self.run_batch(&info, batch, |x| translator.translate_batch(x)),
                None => return,
            }
        }
    }

    /// Serves with one thread per lane until a new generator is offered (`true`: the caller swaps
    /// it in) or the batcher is dropped and its lanes are empty (`false`).
    fn serve_lanes(&self, onnx: LaneSessions<'_>, info: &ModelInfo) -> bool {
        std::thread::scope(|scope| {
            // Lane 0 on this thread: the style is served even if no other thread starts.
            for k in 1..onnx.count() {
                let spawned = std::thread::Builder::new()
                    .name(format!("infer-{}-{k}", self.style))
                    .spawn_scoped(scope, move || self.lane(onnx, info, k));
                if let Err(e) = spawned {
                    tracing::error!(style = %self.style, lane = k, error = %e, "could not start a lane thread");
                }
            }
            self.lane(onnx, info, 0);
        });
        let lanes = self.queue.lock();
        !(lanes.closed && lanes.is_empty())
    }

    /// One lane's loop: the next image, on this lane's single-thread session, or on every core
    /// when nothing else waits or runs. Returns when a new generator waits to be swapped in, or
    /// the batcher is closed and empty.
    fn lane(&self, onnx: LaneSessions<'_>, info: &ModelInfo, k: usize) {
        loop {
            let mut lanes = self.queue.lock();
            let item = loop {
                if self.swap_pending() || (lanes.closed && lanes.is_empty()) {
                    return;
                }
                if !lanes.whole
                    && let Some(item) = lanes.pop()
                {
                    break item;
                }
                lanes = self.queue.wait(lanes, RECHECK);
            };
            let alone = lanes.is_empty() && lanes.running == 0;
            lanes.running += 1;
            lanes.whole = alone;
            drop(lanes);
            self.run_batch(info, vec![item], |x| {
                if alone {
                    onnx.translate_on_all(x)
                } else {
                    onnx.translate_on_lane(k, x)
                }
            });
            let mut lanes = self.queue.lock();
            lanes.running -= 1;
            if alone {
                lanes.whole = false;
            }
            drop(lanes);
            self.queue.ready.notify_all();
        }
    }

    fn swap_pending(&self) -> bool {
        self.swap
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Waits for a style's first generator; `None`: the batcher was dropped first. Nothing is
    /// queued meanwhile (a style without a model is refused at admission, and is never ready);
    /// should anything be, it waits for the model like any batch.
    fn first_model(&self) -> Option<Engine> {
        loop {
            if let Some(t) = self.swap.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let info = ModelInfo::of(&t);
                tracing::info!(style = %self.style, version = %info.version, iteration = info.iteration, "now serving");
                self.metrics.model_loaded(&self.style, None, &info);
                return Some(t);
            }
            let lanes = self.queue.lock();
            if lanes.closed {
                return None;
            }
            // `offer` notifies without this lock: the timeout covers one that lands between the
            // check above and this wait.
            drop(self.queue.wait(lanes, RECHECK));
        }
    }

    /// Waits for work (swapping in a new generator while idle), then takes what is queued, up
    /// to `max_batch`, interactive first, waiting up to `max_wait` for more. `None`: shut down.
    fn next_batch(&self, translator: &mut Engine, info: &mut Arc<ModelInfo>) -> Option<Vec<Item>> {
        let mut lanes = self.queue.lock();
        loop {
            if !lanes.is_empty() {
                break;
            }
            if lanes.closed {
                return None;
            }
            drop(lanes);
            self.maybe_swap(translator, info);
            lanes = self.queue.lock();
            if lanes.is_empty() && !lanes.closed {
                lanes = self.queue.wait(lanes, RECHECK);
            }
        }
        let deadline = Instant::now() + self.cfg.max_wait;
        let mut batch = Vec::new();
        // Without waiting for more, as many of those waiting as the engine runs without a core
        // idling (ONNX Runtime's lanes take even shares: the odd one goes next). With
        // `max_wait` the batch grows as images come, up to `max_batch`.
        let take = if self.cfg.max_wait.is_zero() {
            let waiting = lanes.interactive.len() + lanes.jobs.len();
            translator.fitting_batch(waiting.clamp(1, self.cfg.max_batch.max(1)))
        } else {
            self.cfg.max_batch
        };
        while batch.len() < take {
            if let Some(item) = lanes.pop() {
                batch.push(item);
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || lanes.closed {
                break;
            }
            lanes = self.queue.wait(lanes, left);
        }
        drop(lanes);
        self.maybe_swap(translator, info);
        Some(batch)
    }

    fn maybe_swap(&self, translator: &mut Engine, info: &mut Arc<ModelInfo>) {
        let next = self.swap.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = next {
            let new = Arc::new(ModelInfo::of(&t));
            tracing::info!(style = %self.style, version = %new.version, iteration = new.iteration, "now serving");
            self.metrics.model_loaded(&self.style, Some(info), &new);
            *self.info.write().unwrap_or_else(|e| e.into_inner()) = Some(new.clone());
            *info = new;
            *translator = t;
            self.ready.store(true, Ordering::SeqCst);
        }
    }

    /// Runs `batch` through `run` (the generator `info` describes), charges its owners and
    /// answers them.
    fn run_batch(
        &self,
        info: &ModelInfo,
        batch: Vec<Item>,
        run: impl FnOnce(&Batch) -> Result<Batch, EngineError>,
    ) {
        // A client that gave up (timeout, disconnect) costs no inference.
        let live: Vec<Item> = batch.into_iter().filter(|i| !i.reply.is_closed()).collect();
        if live.is_empty() {
            return;
        }
        let side = info.img_size;
        let inputs: Vec<Cow<'_, Batch>> = live.iter().map(|i| fit(&i.input, side)).collect();
        let waits: Vec<Duration> = live.iter().map(|i| i.enqueued.elapsed()).collect();
        let started = Instant::now();
        let busy = self.cfg.activity.begin();
        let result = Batch::concat(inputs.iter().map(AsRef::as_ref))
            .map_err(|e| e.to_string())
            .and_then(|batch| guarded(|| run(&batch)));
        let took = started.elapsed();
        drop(busy);
        self.metrics.batch(&self.style, live.len(), took, &waits);
        // Each image used an equal share of the pass (a CPU batch costs the sum of its images).
        let share = took / u32::try_from(live.len()).unwrap_or(u32::MAX);
        {
            let mut lanes = self.queue.lock();
            for item in &live {
                lanes.ledger.charge(item.slot.owner(), share);
            }
        }
        let result = result.and_then(|out| {
            if out.len() == live.len() {
                Ok(out)
            } else {
                Err(format!(
                    "the generator gave {} images for {}",
                    out.len(),
                    live.len()
                ))
            }
        });
        match result {
            Ok(out) => {
                for (item, image) in live.into_iter().zip(out.split(out.len())) {
                    let _ = item.reply.send(Ok(Inferred {
                        image,
                        version: info.version.clone(),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An image prepared for a model of one size fits a model of another (a reload between its
    /// preparation and its batch) as the pipeline would have prepared it; one of the right size
    /// goes in as it is.
    #[test]
    fn prepared_images_fit_the_model_that_runs_them() {
        let rgb =
            image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, 9]));
        let prepared = Batch::from_rgb(&rgb);
        assert!(matches!(fit(&prepared, 8), Cow::Borrowed(b) if b == &prepared));
        let resized = fit(&prepared, 4);
        assert_eq!(resized.shape(), [1, 3, 4, 4]);
        let want = Batch::from_rgb(&resize_rgb(&rgb, 4, 4, Quality::Fast));
        assert_eq!(resized.as_ref(), &want);
    }
}
