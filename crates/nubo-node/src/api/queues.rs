//! `/v1/apps/{app}/queues`: what `nubo queue` shows and does.

use super::extract::{Path, Query};
use super::{Declared, declared, error};
use crate::Node;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nubo_queue::{Message, QueueName};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Serialize)]
struct QueueStatus {
    name: String,
    consumer: String,
    path: String,
    concurrency: u32,
    max_attempts: u32,
    batch_size: u32,
    #[serde(flatten)]
    stats: nubo_queue::Stats,
}

#[derive(Serialize)]
struct Shown {
    id: u64,
    attempts: u32,
    published_at: i64,
    last_error: Option<String>,
    size: usize,
    /// The body as text (invalid UTF-8 replaced), at most 1 KiB of it.
    body: String,
}

fn shown(m: Message) -> Shown {
    let text = String::from_utf8_lossy(&m.body[..m.body.len().min(1024)]).into_owned();
    Shown {
        id: m.id,
        // Listed (not leased) rows count the deliveries made so far.
        attempts: m.attempt,
        published_at: m.published_at,
        last_error: m.last_error,
        size: m.body.len(),
        body: text,
    }
}

fn failed(e: nubo_queue::QueueError) -> Response {
    use nubo_queue::QueueError;
    let status = match e {
        QueueError::Invalid(_) => StatusCode::BAD_REQUEST,
        QueueError::OverQuota { .. } | QueueError::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
        QueueError::Backend(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

pub(crate) async fn list(State(node): State<Arc<Node>>, Path(app): Path<String>) -> Response {
    let Some(live) = node.app(&app).await else {
        return super::no_app(&app);
    };
    let mut out = Vec::new();
    for (name, spec) in &live.def.queues {
        let q = QueueName {
            app: app.clone(),
            queue: name.clone(),
        };
        let stats = match node.queues.backend.stats(&q).await {
            Ok(s) => s,
            Err(e) => return failed(e),
        };
        out.push(QueueStatus {
            name: name.clone(),
            consumer: spec.consumer.clone(),
            path: spec.path.clone(),
            concurrency: spec.concurrency,
            max_attempts: spec.max_attempts,
            batch_size: spec.batch_size,
            stats,
        });
    }
    Json(out).into_response()
}

#[derive(Deserialize)]
pub(crate) struct Listing {
    n: Option<usize>,
    #[serde(default)]
    dead: bool,
}

fn name(app: String, queue: String) -> QueueName {
    QueueName { app, queue }
}

pub(crate) async fn peek(
    State(node): State<Arc<Node>>,
    Path((app, queue)): Path<(String, String)>,
    Query(l): Query<Listing>,
) -> Response {
    if let Err(r) = declared(&node, &app, Declared::Queue, &queue).await {
        return r;
    }
    let q = name(app, queue);
    let n = l.n.unwrap_or(10);
    let found = if l.dead {
        node.queues.backend.dead(&q, n).await
    } else {
        node.queues.backend.peek(&q, n).await
    };
    match found {
        Ok(ms) => Json(ms.into_iter().map(shown).collect::<Vec<_>>()).into_response(),
        Err(e) => failed(e),
    }
}

pub(crate) async fn purge(
    State(node): State<Arc<Node>>,
    Path((app, queue)): Path<(String, String)>,
    Query(l): Query<Listing>,
) -> Response {
    if let Err(r) = declared(&node, &app, Declared::Queue, &queue).await {
        return r;
    }
    match node.queues.backend.purge(&name(app, queue), l.dead).await {
        Ok(n) => Json(serde_json::json!({ "purged": n })).into_response(),
        Err(e) => failed(e),
    }
}
