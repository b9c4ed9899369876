//! `GET /metrics`: the node's metrics in the OpenMetrics text format, for
//! Prometheus ([`nubo_wasm::metrics`] says which kinds there are). Every
//! metric is listed in `docs/metrics.md`.

use crate::Node;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use nubo_wasm::metrics::Reading;
use std::sync::Arc;

/// The counted metrics, then the figures read now: the node's own, its
/// process's, and each capability's.
pub(crate) async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let mut readings = node_readings(&node).await;
    readings.extend(process_readings(node.started_ms));
    for c in node.runtime.capabilities() {
        readings.extend(c.readings(&node.services).await);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.runtime.metrics().encode(readings),
    )
        .into_response()
}

async fn node_readings(node: &Node) -> Vec<Reading> {
    let apps = node.apps.lock().await;
    let mut out = vec![
        Reading::gauge(
            "nubo_ready",
            "1 when the node serves what it should",
            f64::from(u8::from(node.ready())),
        ),
        Reading::gauge("nubo_apps", "apps this node serves", apps.len() as f64),
    ];
    let mut busy = 0;
    for (app, live) in apps.iter() {
        for (name, c) in &live.components {
            let Some(h) = &c.http else { continue };
            busy += h.active();
            out.push(
                Reading::gauge(
                    "nubo_component_instances_busy",
                    "instances of a component handling a request now",
                    h.active() as f64,
                )
                .with(vec![("app", app.clone()), ("component", name.clone())]),
            );
        }
    }
    out.push(Reading::gauge(
        "nubo_instances_busy",
        "component instances handling a request now, in all",
        busy as f64,
    ));
    out.push(Reading::gauge(
        "nubo_websocket_connections",
        "WebSocket connections open now",
        node.gateway.sockets_open() as f64,
    ));
    out
}

/// The process's CPU time, resident memory, open files and start time,
/// under the names every Prometheus client library gives them.
fn process_readings(started_ms: u64) -> Vec<Reading> {
    let mut out = Vec::new();
    // SAFETY: getrusage writes into the struct it is given and reads
    // nothing else.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_SELF, &mut u) == 0).then_some(u)
    };
    if let Some(u) = usage {
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        out.push(Reading::counter(
            "process_cpu_seconds",
            "user and system CPU time of the node's process",
            secs(u.ru_utime) + secs(u.ru_stime),
        ));
    }
    // SAFETY: sysconf reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as f64;
    let resident = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok());
    if let Some(pages) = resident {
        out.push(Reading::gauge(
            "process_resident_memory_bytes",
            "resident memory of the node's process",
            pages * page,
        ));
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.push(Reading::gauge(
            "process_open_fds",
            "open file descriptors of the node's process",
            fds.count() as f64,
        ));
    }
    out.push(Reading::gauge(
        "process_start_time_seconds",
        "when the node started, in seconds since the Unix epoch",
        started_ms as f64 / 1000.0,
    ));
    out
}
