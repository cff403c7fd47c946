//! Counters kept per origin, in Prometheus' text exposition format (and as JSON with the same families).
//!
//! Everything is counted here, in atomics, on the threads that do the work: a request costs the JavaScript
//! thread nothing for being counted. Names are prefixed `reqwest_dispatcher_`.

use crate::error::CoreError;
use crate::handler::{DispatchHandler, RawHeaders, ResponseHead};
use bytes::Bytes;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The `origin` label value of every origin beyond the first ones an agent counts by name (see
/// `policy/upstream.rs`): it cannot be a real origin, which always has a scheme.
pub(crate) const OTHER_ORIGIN: &str = "other";

/// Methods counted by name; everything else is `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];

/// How a request ended: its response's status class, an error, or an abort by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Status(u16),
    Error,
    Aborted,
}

const OUTCOMES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error", "aborted"];

impl Outcome {
    fn index(self) -> usize {
        match self {
            Outcome::Status(status) => usize::from((status / 100).clamp(1, 5)) - 1,
            Outcome::Error => 5,
            Outcome::Aborted => 6,
        }
    }
}

pub(crate) fn method_index(method: &str) -> usize {
    METHODS[..7]
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHODS.len() - 1)
}

/// Upper bounds (seconds) of the request duration histogram's buckets.
const DURATION_BOUNDS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One origin's counters.
#[derive(Default)]
pub(crate) struct OriginMetrics {
    requests: [[AtomicU64; OUTCOMES.len()]; METHODS.len()],
    /// Per bucket (not cumulative); the last slot counts durations above every bound.
    durations: [AtomicU64; DURATION_BOUNDS.len() + 1],
    duration_nanos: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    /// Shared with pulled request bodies, which count their chunks as hyper takes them.
    pub(crate) bytes_out: Arc<AtomicU64>,
    pub(crate) in_flight: AtomicI64,
    pub(crate) connections: AtomicI64,
    pub(crate) retries: AtomicU64,
    pub(crate) circuit_state: AtomicU8,
    pub(crate) circuit_trips: AtomicU64,
    pub(crate) rate_limit_waits: AtomicU64,
    pub(crate) rate_limit_rejections: AtomicU64,
}

impl OriginMetrics {
    /// Counts a finished request.
    pub(crate) fn finished(&self, method: usize, outcome: Outcome, took: Duration) {
        self.requests[method][outcome.index()].fetch_add(1, Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = DURATION_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DURATION_BOUNDS.len());
        self.durations[bucket].fetch_add(1, Relaxed);
        self.duration_nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }
}

/// Counts a request in its origin's metrics: in flight while it lasts, then by outcome and duration.
pub(crate) struct Metered<H> {
    inner: H,
    metrics: Arc<OriginMetrics>,
    method: usize,
    started: Instant,
    outcome: Outcome,
    finished: bool,
}

impl<H> Metered<H> {
    pub(crate) fn new(inner: H, metrics: &Arc<OriginMetrics>, method: &str) -> Self {
        metrics.in_flight.fetch_add(1, Relaxed);
        Metered {
            inner,
            metrics: Arc::clone(metrics),
            method: method_index(method),
            started: Instant::now(),
            // Until a response or an error says otherwise, the request was given up by its caller.
            outcome: Outcome::Aborted,
            finished: false,
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        let metrics = &self.metrics;
        metrics.in_flight.fetch_sub(1, Relaxed);
        metrics.finished(self.method, outcome, self.started.elapsed());
    }
}

impl<H> Drop for Metered<H> {
    fn drop(&mut self) {
        self.finish(Outcome::Aborted);
    }
}

impl<H: DispatchHandler> DispatchHandler for Metered<H> {
    fn on_response_start(&mut self, head: ResponseHead) {
        self.outcome = Outcome::Status(head.status);
        self.inner.on_response_start(head);
    }

    fn on_response_data(&mut self, chunk: Bytes) {
        // After an upgrade (the only data after the request finished) the bytes are no response body.
        if !self.finished {
            self.metrics.bytes_in.fetch_add(chunk.len() as u64, Relaxed);
        }
        self.inner.on_response_data(chunk);
    }

    fn on_response_end(&mut self, trailers: RawHeaders) {
        self.finish(self.outcome);
        self.inner.on_response_end(trailers);
    }

    fn on_error(&mut self, error: CoreError) {
        self.finish(Outcome::Error);
        self.inner.on_error(error);
    }

    fn on_retry(&mut self, retry: u32) {
        self.inner.on_retry(retry);
    }

    /// The request is over at its switch, with the switch's status; the connection lives on unmetered.
    fn on_upgrade(&mut self, head: ResponseHead) {
        self.finish(Outcome::Status(head.status));
        self.inner.on_upgrade(head);
    }

    fn on_upgrade_read_end(&mut self) {
        self.inner.on_upgrade_read_end();
    }

    fn on_upgrade_written(&mut self) {
        self.inner.on_upgrade_written();
    }
}

struct Sample {
    /// Appended to the family's name (`_bucket`, `_sum`, `_count` for histograms).
    suffix: &'static str,
    labels: Vec<(&'static str, String)>,
    value: f64,
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<Sample>,
}

fn family(name: &'static str, kind: &'static str, help: &'static str) -> Family {
    Family {
        name,
        help,
        kind,
        samples: Vec::new(),
    }
}

fn families(origins: &[(String, Arc<OriginMetrics>)]) -> Vec<Family> {
    let mut requests = family(
        "reqwest_dispatcher_requests_total",
        "counter",
        "Requests finished, by origin, method and outcome (status class, error, or aborted by the caller).",
    );
    let mut duration = family(
        "reqwest_dispatcher_request_duration_seconds",
        "histogram",
        "Time from dispatch to the end of the response (or the error), retries included.",
    );
    let mut bytes_out = family(
        "reqwest_dispatcher_request_body_bytes_total",
        "counter",
        "Request body bytes sent (every attempt).",
    );
    let mut bytes_in = family(
        "reqwest_dispatcher_response_body_bytes_total",
        "counter",
        "Response body bytes received and delivered.",
    );
    let mut in_flight = family(
        "reqwest_dispatcher_requests_in_flight",
        "gauge",
        "Requests dispatched and not finished.",
    );
    let mut connections = family(
        "reqwest_dispatcher_open_connections",
        "gauge",
        "Connections open (not counted through a proxy).",
    );
    let mut retries = family(
        "reqwest_dispatcher_retries_total",
        "counter",
        "Attempts repeated by the retry policy.",
    );
    let mut circuit = family(
        "reqwest_dispatcher_circuit_state",
        "gauge",
        "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
    );
    let mut trips = family(
        "reqwest_dispatcher_circuit_trips_total",
        "counter",
        "Times the circuit breaker opened.",
    );
    let mut waits = family(
        "reqwest_dispatcher_rate_limit_waits_total",
        "counter",
        "Requests that waited for the rate limiter.",
    );
    let mut rejections = family(
        "reqwest_dispatcher_rate_limit_rejections_total",
        "counter",
        "Requests the rate limiter refused (the wait would have exceeded maxWait).",
    );

    for (origin, m) in origins {
        let by_origin = || vec![("origin", origin.clone())];
        for (method, row) in m.requests.iter().enumerate() {
            for (outcome, count) in row.iter().enumerate() {
                let count = count.load(Relaxed);
                if count == 0 {
                    continue;
                }
                requests.samples.push(Sample {
                    suffix: "",
                    labels: vec![
                        ("origin", origin.clone()),
                        ("method", METHODS[method].to_string()),
                        ("status_class", OUTCOMES[outcome].to_string()),
                    ],
                    value: count as f64,
                });
            }
        }
        let mut cumulative = 0u64;
        for (i, count) in m.durations.iter().enumerate() {
            cumulative += count.load(Relaxed);
            let le = DURATION_BOUNDS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            duration.samples.push(Sample {
                suffix: "_bucket",
                labels: vec![("origin", origin.clone()), ("le", le)],
                value: cumulative as f64,
            });
        }
        duration.samples.push(Sample {
            suffix: "_sum",
            labels: by_origin(),
            value: m.duration_nanos.load(Relaxed) as f64 / 1e9,
        });
        duration.samples.push(Sample {
            suffix: "_count",
            labels: by_origin(),
            value: cumulative as f64,
        });
        // Origins folded into one label value have no one circuit state.
        if origin != OTHER_ORIGIN {
            circuit.samples.push(Sample {
                suffix: "",
                labels: by_origin(),
                value: f64::from(m.circuit_state.load(Relaxed)),
            });
        }
        let simple: [(&mut Family, f64); 8] = [
            (&mut bytes_out, m.bytes_out.load(Relaxed) as f64),
            (&mut bytes_in, m.bytes_in.load(Relaxed) as f64),
            (&mut in_flight, m.in_flight.load(Relaxed).max(0) as f64),
            (&mut connections, m.connections.load(Relaxed).max(0) as f64),
            (&mut retries, m.retries.load(Relaxed) as f64),
            (&mut trips, m.circuit_trips.load(Relaxed) as f64),
            (&mut waits, m.rate_limit_waits.load(Relaxed) as f64),
            (
                &mut rejections,
                m.rate_limit_rejections.load(Relaxed) as f64,
            ),
        ];
        for (family, value) in simple {
            family.samples.push(Sample {
                suffix: "",
                labels: by_origin(),
                value,
            });
        }
    }
    vec![
        requests,
        duration,
        bytes_out,
        bytes_in,
        in_flight,
        connections,
        retries,
        circuit,
        trips,
        waits,
        rejections,
    ]
}

/// A label value as the text format wants it: backslash, double quote and line feed escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        value.to_string()
    }
}

/// The Prometheus text exposition (format 0.0.4) of `origins`' counters.
pub(crate) fn render_text(origins: &[(String, Arc<OriginMetrics>)]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for family in families(origins) {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        for sample in family.samples {
            out.push_str(family.name);
            out.push_str(sample.suffix);
            if !sample.labels.is_empty() {
                out.push('{');
                for (i, (name, value)) in sample.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"{}\"", escape(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(sample.value));
        }
    }
    out
}

/// The same families as JSON: `{ name: { type, help, samples: [{ name, labels, value }] } }`.
pub(crate) fn render_json(origins: &[(String, Arc<OriginMetrics>)]) -> String {
    let mut root = serde_json::Map::new();
    for family in families(origins) {
        let samples: Vec<serde_json::Value> = family
            .samples
            .into_iter()
            .map(|s| {
                let labels: serde_json::Map<String, serde_json::Value> = s
                    .labels
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
                    .collect();
                serde_json::json!({
                    "name": format!("{}{}", family.name, s.suffix),
                    "labels": labels,
                    "value": s.value,
                })
            })
            .collect();
        root.insert(
            family.name.to_string(),
            serde_json::json!({ "type": family.kind, "help": family.help, "samples": samples }),
        );
    }
    serde_json::Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lists_counts_with_escaped_labels_and_a_cumulative_histogram() {
        let m = Arc::new(OriginMetrics::default());
        m.finished(
            method_index("GET"),
            Outcome::Status(204),
            Duration::from_millis(3),
        );
        m.finished(
            method_index("BREW"),
            Outcome::Error,
            Duration::from_secs(20),
        );
        let text = render_text(&[("http://a.test:81\"\\\n".to_string(), m)]);
        let origin = "origin=\"http://a.test:81\\\"\\\\\\n\"";
        assert!(text.contains(&format!(
            "reqwest_dispatcher_requests_total{{{origin},method=\"GET\",status_class=\"2xx\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "reqwest_dispatcher_requests_total{{{origin},method=\"OTHER\",status_class=\"error\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "reqwest_dispatcher_request_duration_seconds_bucket{{{origin},le=\"0.001\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "reqwest_dispatcher_request_duration_seconds_bucket{{{origin},le=\"0.005\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "reqwest_dispatcher_request_duration_seconds_bucket{{{origin},le=\"+Inf\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "reqwest_dispatcher_request_duration_seconds_count{{{origin}}} 2\n"
        )));
        assert!(text.contains("# TYPE reqwest_dispatcher_request_duration_seconds histogram\n"));
    }

    #[test]
    fn json_has_the_same_families() {
        let m = Arc::new(OriginMetrics::default());
        m.retries.fetch_add(2, Relaxed);
        let json: serde_json::Value =
            serde_json::from_str(&render_json(&[("http://a.test".to_string(), m)])).unwrap();
        let retries = &json["reqwest_dispatcher_retries_total"];
        assert_eq!(retries["type"], "counter");
        assert_eq!(retries["samples"][0]["value"], 2.0);
        assert_eq!(retries["samples"][0]["labels"]["origin"], "http://a.test");
    }
}
