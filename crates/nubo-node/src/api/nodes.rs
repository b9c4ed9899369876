//! `/v1/nodes` (the cluster, as `nubo ps` shows it) and what orchestrators
//! call without a token: `/healthz` (the process answers), `/readyz` (it
//! serves what it should, so send it traffic); `/metrics` is in
//! [`super::metrics`].

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
