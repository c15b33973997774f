//! Prometheus metrics through the `metrics` crate and its Prometheus exporter. Each server owns its
//! recorder (no global one), so several servers in one process (tests, a Lambda) keep their own
//! counts; the names are the constants below, in one place.

use std::time::Duration;

use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

pub(crate) const HTTP_REQUESTS: &str = "brs_http_requests_total";
pub(crate) const HTTP_DURATION: &str = "brs_http_request_duration_seconds";
pub(crate) const QUEUE_DEPTH: &str = "brs_queue_depth";
pub(crate) const BATCH_SIZE: &str = "brs_batch_size";
pub(crate) const INFERENCE: &str = "brs_inference_seconds";
pub(crate) const QUEUE_WAIT: &str = "brs_queue_wait_seconds";
pub(crate) const IMAGES: &str = "brs_images_translated_total";
pub(crate) const CACHE: &str = "brs_result_cache_total";
pub(crate) const RELOADS: &str = "brs_model_reloads_total";
pub(crate) const PRUNED: &str = "brs_store_pruned_total";
pub(crate) const MODEL_INFO: &str = "brs_model_info";
pub(crate) const IN_FLIGHT: &str = "brs_in_flight_requests";
pub(crate) const PENDING_JOBS: &str = "brs_pending_job_images";
pub(crate) const DRAINING: &str = "brs_draining";
pub(crate) const REJECTED: &str = "brs_rejected_requests_total";
pub(crate) const STORE_ERRORS: &str = "brs_store_errors_total";
pub(crate) const UNSTORED: &str = "brs_results_not_stored_total";
pub(crate) const JOB_ITEMS: &str = "brs_job_items_total";
pub(crate) const QUEUE_ERRORS: &str = "brs_queue_errors_total";
pub(crate) const STORE_HEALTHY: &str = "brs_store_healthy";
pub(crate) const STORE_OP: &str = "brs_store_op_seconds";
pub(crate) const QUEUE_OP: &str = "brs_queue_op_seconds";
pub(crate) const JOB_IMAGE: &str = "brs_job_image_seconds";
pub(crate) const MEMORY_RELEASES: &str = "brs_memory_releases_total";
pub(crate) const BANS: &str = "brs_client_bans_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// The histograms of seconds, on `LATENCY_BUCKETS`.
const TIMINGS: [&str; 6] = [
    HTTP_DURATION,
    INFERENCE,
    QUEUE_WAIT,
    STORE_OP,
    QUEUE_OP,
    JOB_IMAGE,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Gauges read at scrape time from the live state.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pub(crate) queue_depth: Vec<(String, usize)>,
    pub(crate) in_flight: usize,
    pub(crate) pending_jobs: usize,
    pub(crate) draining: bool,
    pub(crate) store_healthy: bool,
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.to_string()))
            .collect::<Vec<_>>(),
    )
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let builder = PrometheusBuilder::new();
        let built = TIMINGS
            .into_iter()
            .try_fold(builder, |b, name| {
                b.set_buckets_for_metric(Matcher::Full(name.into()), LATENCY_BUCKETS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), BATCH_BUCKETS)
            });
        // Buckets are constants and never empty: the builder cannot refuse them, but a metrics
        // failure must never stop a server, so fall back to the exporter's defaults.
        let recorder = built
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        Metrics { recorder, handle }
    }

    fn add(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        self.recorder
            .register_counter(&key(name, labels), &META)
            .increment(n);
    }

    fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], v: f64) {
        self.recorder
            .register_histogram(&key(name, labels), &META)
            .record(v);
    }

    fn set(&self, name: &'static str, labels: &[(&'static str, &str)], v: f64) {
        self.recorder
            .register_gauge(&key(name, labels), &META)
            .set(v);
    }

    pub(crate) fn request(&self, route: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        self.add(HTTP_REQUESTS, &[("route", route), ("status", &status)], 1);
        self.observe(HTTP_DURATION, &[("route", route)], elapsed.as_secs_f64());
    }

    pub(crate) fn batch(&self, style: &str, size: usize, forward: Duration, waits: &[Duration]) {
        let l = [("style", style)];
        self.observe(BATCH_SIZE, &l, size as f64);
        self.observe(INFERENCE, &l, forward.as_secs_f64());
        for w in waits {
            self.observe(QUEUE_WAIT, &l, w.as_secs_f64());
        }
        self.add(IMAGES, &l, size as u64);
    }

    /// An idle spell's release of freed memory (`memory`): whether glibc gave anything back.
    pub(crate) fn memory_released(&self, released: bool) {
        let outcome = if released { "released" } else { "nothing" };
        self.add(MEMORY_RELEASES, &[("outcome", outcome)], 1);
    }

    pub(crate) fn cache(&self, hit: bool) {
        self.add(CACHE, &[("outcome", if hit { "hit" } else { "miss" })], 1);
    }

    pub(crate) fn pruned(&self, objects: u64) {
        self.add(PRUNED, &[], objects);
    }

    /// A hot reload's outcome: `ok`, or the failure's kind (`invalid`, `too_large`, `panic`, ...).
    pub(crate) fn reload(&self, style: &str, outcome: &str) {
        self.add(RELOADS, &[("style", style), ("outcome", outcome)], 1);
    }

    /// The model a style serves now, and the one it replaced: `brs_model_info` is 1 for the
    /// first, 0 for the second.
    pub(crate) fn model_loaded(
        &self,
        style: &str,
        previous: Option<&crate::batcher::ModelInfo>,
        now: &crate::batcher::ModelInfo,
    ) {
        let set = |m: &crate::batcher::ModelInfo, value: f64| {
            let it = m.iteration.to_string();
            self.set(
                MODEL_INFO,
                &[
                    ("style", style),
                    ("version", &m.version),
                    ("iteration", &it),
                    ("engine", &m.engine),
                    ("precision", &m.precision),
                ],
                value,
            );
        };
        match previous {
            Some(m) => set(m, 0.0),
            // The reload counter exists from the first load, so dashboards and alerts see 0
            // rather than no series.
            None => self.add(RELOADS, &[("style", style), ("outcome", "ok")], 0),
        }
        set(now, 1.0);
    }

    /// A request turned away before any work: `rate_limited`, `too_many_concurrent`, `queue_full`,
    /// `overloaded`, `unauthorized`, `body_timeout`...
    pub(crate) fn rejected(&self, reason: &str) {
        self.add(REJECTED, &[("reason", reason)], 1);
    }

    /// A client turned away for a while after repeated refusals for its limits (`bans`).
    pub(crate) fn banned(&self) {
        self.add(BANS, &[], 1);
    }

    pub(crate) fn store_error(&self, op: &str) {
        self.add(STORE_ERRORS, &[("op", op)], 1);
    }

    /// A translation answered to its client although the store would not keep it.
    pub(crate) fn unstored(&self) {
        self.add(UNSTORED, &[], 1);
    }

    /// A job image's outcome: `done`, `failed`, `retried`, `skipped_done`, `orphaned`.
    pub(crate) fn job_item(&self, outcome: &str) {
        self.add(JOB_ITEMS, &[("outcome", outcome)], 1);
    }

    pub(crate) fn queue_error(&self, op: &str) {
        self.add(QUEUE_ERRORS, &[("op", op)], 1);
    }

    /// One store call's time, failures included: `get`, `put`, `put_if_absent`, `delete`, `list`,
    /// `children`.
    pub(crate) fn store_op(&self, op: &str, elapsed: Duration) {
        self.observe(STORE_OP, &[("op", op)], elapsed.as_secs_f64());
    }

    /// One queue call's time, failures included: `receive` (the long poll's wait for messages
    /// included), `delete`, `release` (back for a retry) and `extend` (visibility).
    pub(crate) fn queue_op(&self, op: &str, elapsed: Duration) {
        self.observe(QUEUE_OP, &[("op", op)], elapsed.as_secs_f64());
    }

    /// A job image's time in a consumer: `total` from its message's receipt until the message is
    /// settled, and within it `translate`: its wait for a job slot, decode, wait for a batch,
    /// forward pass and encode (the rest of `total` is store and queue calls and the dedup hash).
    pub(crate) fn job_image(&self, stage: &str, elapsed: Duration) {
        self.observe(JOB_IMAGE, &[("stage", stage)], elapsed.as_secs_f64());
    }

    /// The exposition text, gauges read from `g` now.
    pub(crate) fn render(&self, g: &Gauges) -> String {
        for (style, depth) in &g.queue_depth {
            self.set(QUEUE_DEPTH, &[("style", style)], *depth as f64);
        }
        self.set(IN_FLIGHT, &[], g.in_flight as f64);
        self.set(PENDING_JOBS, &[], g.pending_jobs as f64);
        self.set(DRAINING, &[], f64::from(u8::from(g.draining)));
        self.set(STORE_HEALTHY, &[], f64::from(u8::from(g.store_healthy)));
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_have_buckets_and_labels() {
        let m = Metrics::new();
        m.request("/v1/translate", 200, Duration::from_millis(3));
        m.request("/v1/translate", 200, Duration::from_millis(300));
        m.request("/v1/translate", 503, Duration::from_millis(1));
        m.rejected("rate_limited");
        let text = m.render(&Gauges::default());
        assert!(
            text.contains("brs_http_requests_total{route=\"/v1/translate\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("brs_http_requests_total{route=\"/v1/translate\",status=\"503\"} 1"));
        assert!(
            text.contains(
                "brs_http_request_duration_seconds_bucket{route=\"/v1/translate\",le=\"0.005\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("brs_rejected_requests_total{reason=\"rate_limited\"} 1"));
        assert!(text.contains("brs_draining 0"));
    }

    #[test]
    fn job_images_split_into_store_queue_and_translation() {
        let m = Metrics::new();
        m.store_op("get", Duration::from_millis(3));
        m.store_op("put", Duration::from_millis(20));
        m.queue_op("delete", Duration::from_millis(4));
        m.job_image("translate", Duration::from_millis(400));
        m.job_image("total", Duration::from_millis(450));
        let text = m.render(&Gauges::default());
        for series in [
            "brs_store_op_seconds_bucket{op=\"get\",le=\"0.005\"} 1",
            "brs_store_op_seconds_bucket{op=\"put\",le=\"0.025\"} 1",
            "brs_queue_op_seconds_count{op=\"delete\"} 1",
            "brs_job_image_seconds_bucket{stage=\"translate\",le=\"0.5\"} 1",
            "brs_job_image_seconds_sum{stage=\"total\"} 0.45",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }

    #[test]
    fn each_server_counts_alone() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.cache(true);
        assert!(
            a.render(&Gauges::default())
                .contains("brs_result_cache_total{outcome=\"hit\"} 1")
        );
        assert!(
            !b.render(&Gauges::default())
                .contains("brs_result_cache_total")
        );
    }
}
