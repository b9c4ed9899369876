//! The node's metrics, as `/metrics` serves them to Prometheus in the
//! OpenMetrics text format ([`Metrics::encode`]).
//!
//! Two kinds, by when they are known:
//! - counted as the work happens (requests and their latency, task runs):
//!   counters and histograms that the gateway or a capability registers
//!   once in the node's [`Metrics`] (from its services) and updates in
//!   place, with no lock on the hot path when it keeps the handles it
//!   resolved for a route or a component;
//! - read when scraped (instances in use, queue depths, tasks by state,
//!   usage against caps): the [`Reading`]s each capability gives from
//!   [`crate::Capability::readings`].
//!
//! Labels have bounded cardinality: app, component, route pattern, status
//! class, queue, task state, cap. Never a path, a user or a request id:
//! those are in the usage store ([`crate::usage`]) and the logs.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::Mutex;

pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Unit;

/// Label names and values of one series.
pub type Labels = Vec<(&'static str, String)>;

/// A figure read when `/metrics` is scraped.
#[derive(Debug, Clone)]
pub struct Reading {
    pub name: &'static str,
    pub help: &'static str,
    /// A counter's name is given without `_total`.
    pub counter: bool,
    pub labels: Labels,
    pub value: f64,
}

impl Reading {
    /// A gauge without labels.
    pub fn gauge(name: &'static str, help: &'static str, value: f64) -> Self {
        Self {
            name,
            help,
            counter: false,
            labels: Vec::new(),
            value,
        }
    }

    /// A counter read from elsewhere (the kernel's count of CPU time).
    pub fn counter(name: &'static str, help: &'static str, value: f64) -> Self {
        Self {
            counter: true,
            ..Self::gauge(name, help, value)
        }
    }

    /// The same figure, for the series of `labels`.
    pub fn with(mut self, labels: Labels) -> Self {
        self.labels = labels;
        self
    }
}

impl Reading {
    /// A whole number is written as one (`3`, not `3.0`).
    fn encode(&self, to: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let v = self.value;
        let whole = v.fract() == 0.0 && v.abs() < 9.0e15;
        match (self.counter, whole) {
            (true, true) => ConstCounter::new(v as u64).encode(to),
            (true, false) => ConstCounter::new(v).encode(to),
            (false, true) => ConstGauge::new(v as i64).encode(to),
            (false, false) => ConstGauge::new(v).encode(to),
        }
    }
}

/// Upper bounds, in seconds, of the latency histograms' buckets: from a
/// millisecond (a cached answer) to a minute (a long task).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0,
];

/// A histogram of latencies with [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A family of latency histograms, one per label set.
pub type LatencyFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// A new, unregistered [`LatencyFamily`].
pub fn latency_family() -> LatencyFamily {
    Family::new_with_constructor(latency_histogram)
}

/// The node's registry of counted metrics.
#[derive(Default)]
pub struct Metrics {
    registry: Mutex<Registry>,
}

impl Metrics {
    /// Adds `metric` under `name` (a counter's name without `_total`; the
    /// unit, if any, is appended as `_seconds`, `_bytes`).
    pub fn register(
        &self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        metric: impl prometheus_client::registry::Metric,
    ) {
        let mut r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        match unit {
            Some(u) => r.register_with_unit(name, help, u, metric),
            None => r.register(name, help, metric),
        }
    }

    /// Everything registered, then `readings`, in the OpenMetrics text
    /// format.
    pub fn encode(&self, readings: Vec<Reading>) -> String {
        let mut out = String::new();
        let mut read = Registry::default();
        read.register_collector(Box::new(Read(readings)));
        let r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &r);
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &read);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

/// The gauges read for one scrape, grouped by name in the order given.
#[derive(Debug)]
struct Read(Vec<Reading>);

impl Collector for Read {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut done: Vec<&str> = Vec::new();
        for g in &self.0 {
            if done.contains(&g.name) {
                continue;
            }
            done.push(g.name);
            let kind = if g.counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut family = encoder.encode_descriptor(g.name, g.help, None, kind)?;
            let series: Vec<&Reading> = self.0.iter().filter(|s| s.name == g.name).collect();
            if let [one] = series[..]
                && one.labels.is_empty()
            {
                one.encode(family)?;
                continue;
            }
            for s in series {
                s.encode(family.encode_family(&s.labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_and_read_metrics_come_out_in_one_exposition() {
        let m = Metrics::default();
        let requests: Family<Labels, Counter> = Family::default();
        m.register("nubo_things", "things done", None, requests.clone());
        requests.get_or_create(&vec![("app", "a".into())]).inc();
        let latency = latency_family();
        m.register("nubo_wait", "waits", Some(Unit::Seconds), latency.clone());
        latency
            .get_or_create(&vec![("app", "a".into())])
            .observe(0.003);
        let text = m.encode(vec![
            Reading::gauge("nubo_depth", "depth", 2.0).with(vec![("queue", "q1".into())]),
            Reading::gauge("nubo_depth", "depth", 5.0).with(vec![("queue", "q2".into())]),
            Reading::gauge("nubo_up", "up", 1.0),
            Reading::counter("nubo_cpu_seconds", "cpu", 1.5),
        ]);
        for line in [
            "nubo_things_total{app=\"a\"} 1",
            "# TYPE nubo_wait_seconds histogram",
            "nubo_wait_seconds_bucket{le=\"0.005\",app=\"a\"} 1",
            "nubo_wait_seconds_count{app=\"a\"} 1",
            "nubo_depth{queue=\"q1\"} 2",
            "nubo_depth{queue=\"q2\"} 5",
            "nubo_up 1",
            "nubo_cpu_seconds_total 1.5",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert_eq!(text.matches("# TYPE nubo_depth gauge").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
