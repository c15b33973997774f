//! Prometheus metrics, written in the text exposition format by hand: a handful of counters and
//! histograms behind one mutex is all this server needs, and it keeps the names in one place.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

pub(crate) const HTTP_REQUESTS: &str = "brs_http_requests_total";
pub(crate) const HTTP_DURATION: &str = "brs_http_request_duration_seconds";
pub(crate) const QUEUE_DEPTH: &str = "brs_queue_depth";
pub(crate) const BATCH_SIZE: &str = "brs_batch_size";
pub(crate) const INFERENCE: &str = "brs_inference_seconds";
pub(crate) const QUEUE_WAIT: &str = "brs_queue_wait_seconds";
pub(crate) const IMAGES: &str = "brs_images_translated_total";
pub(crate) const CACHE: &str = "brs_result_cache_total";
pub(crate) const RELOADS: &str = "brs_model_reloads_total";
pub(crate) const PRUNED: &str = "brs_results_pruned_total";
pub(crate) const MODEL_INFO: &str = "brs_model_info";
pub(crate) const IN_FLIGHT: &str = "brs_in_flight_requests";
pub(crate) const PENDING_JOBS: &str = "brs_pending_job_images";
pub(crate) const DRAINING: &str = "brs_draining";

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    durations: BTreeMap<String, Histogram>,
    batch: BTreeMap<String, Histogram>,
    inference: BTreeMap<String, Histogram>,
    queue_wait: BTreeMap<String, Histogram>,
    images: BTreeMap<String, u64>,
    cache: BTreeMap<&'static str, u64>,
    reloads: BTreeMap<(String, &'static str), u64>,
    models: BTreeMap<String, (String, u64)>,
    pruned: u64,
}

/// Gauges read at scrape time from the live state.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pub(crate) queue_depth: Vec<(String, usize)>,
    pub(crate) in_flight: usize,
    pub(crate) pending_jobs: usize,
    pub(crate) draining: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    inner: Mutex<Inner>,
}

/// Escapes a label value as the exposition format asks.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic while holding the lock leaves plain numbers behind: still fine to use.
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    pub(crate) fn request(&self, route: &str, status: u16, elapsed: Duration) {
        self.with(|m| {
            *m.requests.entry((route.to_string(), status)).or_default() += 1;
            m.durations
                .entry(route.to_string())
                .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
                .observe(elapsed.as_secs_f64());
        });
    }

    pub(crate) fn batch(&self, style: &str, size: usize, forward: Duration, waits: &[Duration]) {
        self.with(|m| {
            m.batch
                .entry(style.to_string())
                .or_insert_with(|| Histogram::new(BATCH_BUCKETS))
                .observe(size as f64);
            m.inference
                .entry(style.to_string())
                .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
                .observe(forward.as_secs_f64());
            let h = m
                .queue_wait
                .entry(style.to_string())
                .or_insert_with(|| Histogram::new(LATENCY_BUCKETS));
            for w in waits {
                h.observe(w.as_secs_f64());
            }
            *m.images.entry(style.to_string()).or_default() += size as u64;
        });
    }

    pub(crate) fn cache(&self, hit: bool) {
        self.with(|m| *m.cache.entry(if hit { "hit" } else { "miss" }).or_default() += 1);
    }

    pub(crate) fn pruned(&self, files: u64) {
        self.with(|m| m.pruned += files);
    }

    pub(crate) fn reload(&self, style: &str, ok: bool) {
        self.with(|m| {
            *m.reloads
                .entry((style.to_string(), if ok { "ok" } else { "failed" }))
                .or_default() += 1
        });
    }

    pub(crate) fn model_loaded(&self, style: &str, version: &str, iteration: u64) {
        self.with(|m| {
            m.models
                .insert(style.to_string(), (version.to_string(), iteration))
        });
    }

    pub(crate) fn render(&self, g: &Gauges) -> String {
        let mut o = String::new();
        self.with(|m| {
            let _ = writeln!(
                o,
                "# HELP {HTTP_REQUESTS} HTTP requests by matched route and status."
            );
            let _ = writeln!(o, "# TYPE {HTTP_REQUESTS} counter");
            for ((route, status), n) in &m.requests {
                let _ = writeln!(
                    o,
                    "{HTTP_REQUESTS}{{route=\"{}\",status=\"{status}\"}} {n}",
                    esc(route)
                );
            }
            let _ = writeln!(
                o,
                "# HELP {HTTP_DURATION} HTTP request latency by matched route."
            );
            let _ = writeln!(o, "# TYPE {HTTP_DURATION} histogram");
            for (route, h) in &m.durations {
                h.render(&mut o, HTTP_DURATION, &format!("route=\"{}\"", esc(route)));
            }
            for (name, help, map) in [
                (BATCH_SIZE, "Images per generator forward pass.", &m.batch),
                (
                    INFERENCE,
                    "Seconds per generator forward pass (one batch).",
                    &m.inference,
                ),
                (
                    QUEUE_WAIT,
                    "Seconds an image waited in the queue before its batch ran.",
                    &m.queue_wait,
                ),
            ] {
                let _ = writeln!(o, "# HELP {name} {help}");
                let _ = writeln!(o, "# TYPE {name} histogram");
                for (style, h) in map {
                    h.render(&mut o, name, &format!("style=\"{}\"", esc(style)));
                }
            }
            let _ = writeln!(o, "# HELP {IMAGES} Images the generator translated.");
            let _ = writeln!(o, "# TYPE {IMAGES} counter");
            for (style, n) in &m.images {
                let _ = writeln!(o, "{IMAGES}{{style=\"{}\"}} {n}", esc(style));
            }
            let _ = writeln!(o, "# HELP {CACHE} Result store lookups by outcome.");
            let _ = writeln!(o, "# TYPE {CACHE} counter");
            for (outcome, n) in &m.cache {
                let _ = writeln!(o, "{CACHE}{{outcome=\"{outcome}\"}} {n}");
            }
            let _ = writeln!(
                o,
                "# HELP {PRUNED} Result and job files this instance deleted as expired."
            );
            let _ = writeln!(o, "# TYPE {PRUNED} counter");
            let _ = writeln!(o, "{PRUNED} {}", m.pruned);
            let _ = writeln!(
                o,
                "# HELP {RELOADS} Hot reloads of a style's checkpoint by outcome."
            );
            let _ = writeln!(o, "# TYPE {RELOADS} counter");
            for ((style, outcome), n) in &m.reloads {
                let _ = writeln!(
                    o,
                    "{RELOADS}{{style=\"{}\",outcome=\"{outcome}\"}} {n}",
                    esc(style)
                );
            }
            let _ = writeln!(
                o,
                "# HELP {MODEL_INFO} The checkpoint each style serves (value 1)."
            );
            let _ = writeln!(o, "# TYPE {MODEL_INFO} gauge");
            for (style, (version, it)) in &m.models {
                let _ = writeln!(
                    o,
                    "{MODEL_INFO}{{style=\"{}\",version=\"{}\",iteration=\"{it}\"}} 1",
                    esc(style),
                    esc(version)
                );
            }
        });
        let _ = writeln!(o, "# HELP {QUEUE_DEPTH} Images waiting for inference.");
        let _ = writeln!(o, "# TYPE {QUEUE_DEPTH} gauge");
        for (style, d) in &g.queue_depth {
            let _ = writeln!(o, "{QUEUE_DEPTH}{{style=\"{}\"}} {d}", esc(style));
        }
        for (name, help, v) in [
            (IN_FLIGHT, "HTTP work requests being served.", g.in_flight),
            (PENDING_JOBS, "Job images not finished yet.", g.pending_jobs),
            (
                DRAINING,
                "1 while the server drains for shutdown.",
                usize::from(g.draining),
            ),
        ] {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.request("/v1/translate", 200, Duration::from_millis(3));
        m.request("/v1/translate", 200, Duration::from_millis(300));
        m.request("/v1/translate", 503, Duration::from_millis(1));
        let text = m.render(&Gauges::default());
        assert!(text.contains("brs_http_requests_total{route=\"/v1/translate\",status=\"200\"} 2"));
        assert!(text.contains("brs_http_requests_total{route=\"/v1/translate\",status=\"503\"} 1"));
        assert!(text.contains(
            "brs_http_request_duration_seconds_bucket{route=\"/v1/translate\",le=\"0.005\"} 2"
        ));
        assert!(text.contains(
            "brs_http_request_duration_seconds_bucket{route=\"/v1/translate\",le=\"+Inf\"} 3"
        ));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
