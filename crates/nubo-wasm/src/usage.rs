//! Usage as it happens: what each run of a component and each request
//! costs, added up in memory per minute, app, component, route and user
//! until the usage capability takes it ([`Meter::drain`]) and stores it.
//!
//! Every run of a component counts what every run has: one run, its
//! guest CPU time, the peak of its memory and its memory over time
//! ([`RUNS`], [`CPU_US`], [`MEMORY_PEAK_BYTES`], [`MEMORY_MB_MS`]). A
//! capability counts its own work under names it owns (`kv.ops`) with
//! [`crate::Host::count`] from its host functions, or [`Meter::record`]
//! for work outside an instance. A run counts into its own [`Tally`],
//! which no other run touches; the tally goes into the node's [`Meter`]
//! once, when the run ends (or is dropped: a cancelled or timed-out run
//! is counted too).
//!
//! Guest CPU time is the time the run's future spends being polled: the
//! guest's code and the host calls it makes that complete at once,
//! measured by the monotonic clock around each poll. Time spent waiting
//! (for a timer, a socket, another task) is not in it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What is counted: a name, and whether a minute's figure is the sum of
/// what was counted (requests, bytes) or its peak (memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Metric {
    pub name: &'static str,
    pub peak: bool,
}

impl Metric {
    /// A figure that adds up.
    pub const fn sum(name: &'static str) -> Self {
        Self { name, peak: false }
    }

    /// A figure whose minute keeps its highest value.
    pub const fn peak(name: &'static str) -> Self {
        Self { name, peak: true }
    }
}

/// Runs of a component: requests, tasks, deliveries, cron runs.
pub const RUNS: Metric = Metric::sum("runs");
/// Guest CPU time, in microseconds.
pub const CPU_US: Metric = Metric::sum("cpu_us");
/// Of the runs, those of durable tasks, and their CPU time.
pub const TASK_RUNS: Metric = Metric::sum("task_runs");
pub const TASK_CPU_US: Metric = Metric::sum("task_cpu_us");
/// The most memory one instance held.
pub const MEMORY_PEAK_BYTES: Metric = Metric::peak("memory_peak_bytes");
/// Memory held over time: MiB times milliseconds, summed over runs.
pub const MEMORY_MB_MS: Metric = Metric::sum("memory_mb_ms");

/// Outbound HTTP requests the allow-list let out, and the bytes of
/// their bodies sent and received.
pub const OUTBOUND_REQUESTS: Metric = Metric::sum("outbound_requests");
pub const OUTBOUND_BYTES_SENT: Metric = Metric::sum("outbound_bytes_sent");
pub const OUTBOUND_BYTES_RECEIVED: Metric = Metric::sum("outbound_bytes_received");

/// Whose usage a figure is. An empty `route` or `user` is none.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Dims {
    pub app: Arc<str>,
    pub component: Arc<str>,
    pub route: Arc<str>,
    pub user: Arc<str>,
}

impl Dims {
    pub fn of(app: &str, component: &str) -> Self {
        Self {
            app: app.into(),
            component: component.into(),
            ..Self::default()
        }
    }
}

/// One figure of one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// Minutes since the Unix epoch.
    pub minute: u64,
    pub dims: Dims,
    pub metric: Metric,
    pub value: u64,
}

#[derive(PartialEq, Eq, Hash)]
struct Key {
    minute: u64,
    dims: Dims,
    metric: Metric,
}

/// The node's usage not yet stored.
pub struct Meter {
    points: Mutex<HashMap<Key, u64>>,
    /// Off, runs are not timed and nothing is counted (a node started
    /// with metering off, for comparison).
    on: bool,
}

impl Default for Meter {
    fn default() -> Self {
        Self::new(true)
    }
}

/// Minutes since the Unix epoch, now.
pub fn now_minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

impl Meter {
    pub fn new(on: bool) -> Self {
        Self {
            points: Mutex::default(),
            on,
        }
    }

    /// Whether it counts anything.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Counts `values` of `dims` in the current minute.
    pub fn record(&self, dims: &Dims, values: &[(Metric, u64)]) {
        if !self.on {
            return;
        }
        let minute = now_minute();
        let mut m = self.points.lock().unwrap_or_else(|p| p.into_inner());
        for &(metric, value) in values {
            if value == 0 {
                continue;
            }
            let key = Key {
                minute,
                dims: dims.clone(),
                metric,
            };
            let v = m.entry(key).or_insert(0);
            *v = if metric.peak {
                (*v).max(value)
            } else {
                v.saturating_add(value)
            };
        }
    }

    /// Everything counted since the last drain.
    pub fn drain(&self) -> Vec<Point> {
        let taken = std::mem::take(&mut *self.points.lock().unwrap_or_else(|p| p.into_inner()));
        taken
            .into_iter()
            .map(|(k, value)| Point {
                minute: k.minute,
                dims: k.dims,
                metric: k.metric,
                value,
            })
            .collect()
    }

    /// Puts back points a store could not take, to be stored with the
    /// next drain.
    pub fn restore(&self, points: Vec<Point>) {
        let mut m = self.points.lock().unwrap_or_else(|p| p.into_inner());
        for p in points {
            let v = m
                .entry(Key {
                    minute: p.minute,
                    dims: p.dims,
                    metric: p.metric,
                })
                .or_insert(0);
            *v = if p.metric.peak {
                (*v).max(p.value)
            } else {
                v.saturating_add(p.value)
            };
        }
    }
}

/// What one run used, counted as it runs.
pub struct Tally {
    started: Instant,
    cpu_ns: AtomicU64,
    /// When the poll under way began, in nanoseconds after `started`,
    /// plus one; 0 between polls.
    polling: AtomicU64,
    peak_bytes: AtomicU64,
    counted: Mutex<Vec<(Metric, u64)>>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            cpu_ns: AtomicU64::new(0),
            polling: AtomicU64::new(0),
            peak_bytes: AtomicU64::new(0),
            counted: Mutex::default(),
        }
    }
}

impl Tally {
    fn since_start(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// The run's CPU time so far, the poll under way included: what
    /// `limits.cpu_ms` holds it to.
    pub(crate) fn cpu(&self) -> std::time::Duration {
        let mut ns = self.cpu_ns.load(Ordering::Relaxed);
        let polling = self.polling.load(Ordering::Relaxed);
        if polling != 0 {
            ns += self.since_start().saturating_sub(polling - 1);
        }
        std::time::Duration::from_nanos(ns)
    }

    pub(crate) fn count(&self, metric: Metric, n: u64) {
        let mut c = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        match c.iter_mut().find(|(m, _)| *m == metric) {
            Some((_, v)) if metric.peak => *v = (*v).max(n),
            Some((_, v)) => *v = v.saturating_add(n),
            None => c.push((metric, n)),
        }
    }

    /// The instance's memory is now `bytes`.
    pub(crate) fn memory(&self, bytes: u64) {
        self.peak_bytes.fetch_max(bytes, Ordering::Relaxed);
    }
}

/// Where a capability counts a run's usage from places that do not hold
/// the instance's [`crate::Host`] (a stream, a body): a handle to the
/// run's [`Tally`] ([`crate::Host::usage`]).
#[derive(Clone)]
pub struct RunUsage(pub(crate) Arc<Tally>);

impl RunUsage {
    /// Counts `n` of `metric` as the run's usage.
    pub fn count(&self, metric: Metric, n: u64) {
        if n > 0 {
            self.0.count(metric, n);
        }
    }
}

/// A body whose data counts as `metric` of a run as it passes.
pub(crate) struct CountedBody<B> {
    pub(crate) inner: B,
    pub(crate) usage: RunUsage,
    pub(crate) metric: Metric,
}

impl<B: hyper::body::Body<Data = bytes::Bytes> + Unpin> hyper::body::Body for CountedBody<B> {
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.usage.count(self.metric, data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Records a run's [`Tally`] into the meter when dropped: when the run
/// ends, however it ends.
pub(crate) struct RunMeter {
    meter: Arc<Meter>,
    dims: Dims,
    pub(crate) tally: Arc<Tally>,
    task: bool,
    /// Whether its polls are timed: for the meter, or for a CPU limit.
    timed: bool,
}

impl RunMeter {
    /// The meter of one run of `dims`; `task` if it is a durable task's;
    /// `cpu_limited` if its CPU time must be known as it runs even with
    /// the meter off.
    pub(crate) fn new(meter: Arc<Meter>, dims: Dims, task: bool, cpu_limited: bool) -> Self {
        Self {
            timed: meter.on || cpu_limited,
            meter,
            dims,
            tally: Arc::default(),
            task,
        }
    }

    /// Runs `fut`, adding the time each poll of it takes to the run's CPU.
    pub(crate) async fn polled<F: Future>(&self, fut: F) -> F::Output {
        if !self.timed {
            return fut.await;
        }
        let mut fut = std::pin::pin!(fut);
        let t = &self.tally;
        std::future::poll_fn(|cx| {
            let start = t.since_start();
            t.polling.store(start + 1, Ordering::Relaxed);
            let out = fut.as_mut().poll(cx);
            let took = t.since_start().saturating_sub(start);
            t.polling.store(0, Ordering::Relaxed);
            t.cpu_ns.fetch_add(took, Ordering::Relaxed);
            out
        })
        .await
    }
}

impl Drop for RunMeter {
    fn drop(&mut self) {
        if !self.meter.on {
            return;
        }
        let t = &self.tally;
        let peak = t.peak_bytes.load(Ordering::Relaxed);
        let ms = t.started.elapsed().as_millis() as u64;
        let cpu_us = t.cpu_ns.load(Ordering::Relaxed) / 1000;
        let mut values = vec![
            (RUNS, 1),
            (CPU_US, cpu_us),
            (MEMORY_PEAK_BYTES, peak),
            (MEMORY_MB_MS, (peak >> 20).saturating_mul(ms.max(1))),
        ];
        if self.task {
            values.extend([(TASK_RUNS, 1), (TASK_CPU_US, cpu_us)]);
        }
        values.extend(
            t.counted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..),
        );
        self.meter.record(&self.dims, &values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_add_and_peaks_keep_the_highest() {
        let m = Meter::default();
        let d = Dims::of("a", "c");
        m.record(&d, &[(RUNS, 1), (MEMORY_PEAK_BYTES, 10)]);
        m.record(&d, &[(RUNS, 2), (MEMORY_PEAK_BYTES, 4)]);
        let mut p = m.drain();
        p.sort_by_key(|p| p.metric.name);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].metric, p[0].value), (MEMORY_PEAK_BYTES, 10));
        assert_eq!((p[1].metric, p[1].value), (RUNS, 3));
        assert!(m.drain().is_empty(), "a drain takes everything");
        m.restore(p);
        assert_eq!(m.drain().len(), 2, "restored points are drained again");
    }

    #[test]
    fn cpu_counts_the_poll_under_way() {
        let run = RunMeter::new(Arc::new(Meter::new(false)), Dims::default(), false, true);
        let tally = run.tally.clone();
        let seen = block_on(run.polled(async {
            let until = Instant::now() + std::time::Duration::from_millis(30);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            tally.cpu()
        }));
        assert!(seen >= std::time::Duration::from_millis(30), "{seen:?}");
        assert!(run.tally.cpu() >= seen, "a finished poll stays counted");
    }

    /// Polls `fut` to its end on this thread.
    fn block_on<F: Future>(fut: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map(|rt| rt.block_on(fut))
            .unwrap_or_else(|e| panic!("no runtime: {e}"))
    }

    #[test]
    fn a_run_is_recorded_when_it_ends() {
        let m = Arc::new(Meter::default());
        {
            let run = RunMeter::new(m.clone(), Dims::of("a", "c"), false, false);
            run.tally.count(Metric::sum("kv.ops"), 2);
            run.tally.count(Metric::sum("kv.ops"), 3);
            run.tally.memory(3 << 20);
        }
        let p = m.drain();
        let get = |name: &str| p.iter().find(|p| p.metric.name == name).map(|p| p.value);
        assert_eq!(get("runs"), Some(1));
        assert_eq!(get("kv.ops"), Some(5));
        assert_eq!(get("memory_peak_bytes"), Some(3 << 20));
        assert!(get("memory_mb_ms").is_some_and(|v| v >= 3));
    }
}
