//! The gateway's counted metrics ([`nubo_wasm::metrics`]): every request
//! by app, component, route pattern and status class, and how long it
//! took to its response head.
//!
//! A route resolves its series once, on its first request, and keeps the
//! handles ([`RouteMetrics`]), so counting a request is two atomic adds
//! and a bucket search; requests no route took (an unknown path, the
//! sign-in routes) find theirs in the families each time.

use http::StatusCode;
use nubo_wasm::metrics::{Counter, Family, Histogram, Labels, LatencyFamily, Metrics, Unit};

pub(crate) struct HttpMetrics {
    requests: Family<Labels, Counter>,
    duration: LatencyFamily,
}

/// One route's series: a counter per status class, and its latencies.
#[derive(Clone)]
pub(crate) struct RouteMetrics {
    requests: [Counter; 5],
    duration: Histogram,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl HttpMetrics {
    pub(crate) fn register(m: &Metrics) -> Self {
        let this = Self {
            requests: Family::default(),
            duration: nubo_wasm::metrics::latency_family(),
        };
        m.register(
            "nubo_http_requests",
            "HTTP requests answered, by app, component, route and status class",
            None,
            this.requests.clone(),
        );
        m.register(
            "nubo_http_request_duration",
            "time from a request's arrival to its response head",
            Some(Unit::Seconds),
            this.duration.clone(),
        );
        this
    }

    /// The series of `route` (a pattern as `nubo.toml` writes it, or `""`)
    /// of `component` of `app`.
    pub(crate) fn route(&self, app: &str, component: &str, route: &str) -> RouteMetrics {
        let labels = |class: Option<&str>| {
            let mut l: Labels = vec![
                ("app", app.to_string()),
                ("component", component.to_string()),
                ("route", route.to_string()),
            ];
            l.extend(class.map(|c| ("status", c.to_string())));
            l
        };
        RouteMetrics {
            requests: CLASSES.map(|c| self.requests.get_or_create(&labels(Some(c))).clone()),
            duration: self.duration.get_or_create(&labels(None)).clone(),
        }
    }
}

impl RouteMetrics {
    /// Counts one answer of `status` that took `seconds`.
    pub(crate) fn observe(&self, status: StatusCode, seconds: f64) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.requests[class].inc();
        self.duration.observe(seconds);
    }
}

impl crate::Gateway {
    /// Registers the gateway's metrics in the node's; set once.
    pub fn set_metrics(&self, metrics: &Metrics) {
        let _ = self.metrics.set(HttpMetrics::register(metrics));
    }

    /// WebSocket connections open now.
    pub fn sockets_open(&self) -> usize {
        self.sockets.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts `response`, which `route` (if any) of `router` gave to a
    /// request that arrived at `started`.
    pub(crate) fn observe(
        &self,
        router: &crate::Router,
        route: Option<&crate::Route>,
        response: &http::Response<crate::Body>,
        started: std::time::Instant,
    ) {
        let Some(m) = self.metrics.get() else {
            return;
        };
        let seconds = started.elapsed().as_secs_f64();
        match route {
            Some(r) => r
                .metrics
                .get_or_init(|| m.route(router.app(), &r.component, &r.label))
                .observe(response.status(), seconds),
            None => m
                .route(router.app(), "", "")
                .observe(response.status(), seconds),
        }
    }
}
