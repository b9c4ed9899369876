//! `/v1/nodes` (the cluster, as `nubo ps` shows it) and what orchestrators
//! call without a token: `/healthz` (the process answers), `/readyz` (it
//! serves what it should, so send it traffic) and `/metrics` (Prometheus
//! text, for dashboards and autoscalers; it names no app).

use super::error;
use crate::Node;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub(crate) async fn list(State(node): State<Arc<Node>>) -> Response {
    match node.members().await {
        Some(Ok(nodes)) => {
            Json(serde_json::json!({ "cluster": true, "nodes": nodes })).into_response()
        }
        Some(Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the cluster is unavailable: {e}"),
        ),
        None => Json(serde_json::json!({
            "cluster": false,
            "nodes": [node.alone().await],
        }))
        .into_response(),
    }
}

pub(crate) async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

pub(crate) async fn readyz(State(node): State<Arc<Node>>) -> Response {
    if node.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: not connected to the cluster, or still catching up\n",
        )
            .into_response()
    }
}

/// Gauges an autoscaler can act on: the node's own, and each
/// capability's (`nubo_task_slots_busy` over `nubo_task_slots` is how
/// much of the node's task capacity is in use).
pub(crate) async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let apps = node.apps().await;
    let busy: usize = apps
        .iter()
        .flat_map(|a| a.components.values())
        .filter_map(|c| c.http.as_ref())
        .map(|h| h.active())
        .sum();
    let mut gauges = vec![
        (
            "nubo_ready",
            "1 when the node serves what it should",
            usize::from(node.ready()),
        ),
        ("nubo_apps", "apps this node serves", apps.len()),
        (
            "nubo_instances_busy",
            "component instances handling a request now",
            busy,
        ),
    ];
    for c in node.runtime.capabilities() {
        for g in c.gauges(&node.services) {
            gauges.push((g.name, g.help, g.value as usize));
        }
    }
    let mut out = String::new();
    for (name, help, value) in gauges {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response()
}
