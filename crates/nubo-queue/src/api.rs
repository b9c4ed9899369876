//! `/v1/apps/{app}/queues`: what `nubo queue` shows and does.

use crate::{Message, QueueBackend, QueueName};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nubo_api::extract::{Path, Query};
use nubo_api::{Apps, Declared, Routes, error};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What the routes work on.
#[derive(Clone)]
struct Api {
    queues: Arc<dyn QueueBackend>,
    apps: Arc<dyn Apps>,
}

const QUEUES: Declared = Declared {
    noun: "queue",
    declared_by: "[queue.NAME]",
    names: |def| {
        crate::QueueSection::of(&def.sections)
            .map(|q| q.into_keys().collect())
            .unwrap_or_default()
    },
};

/// `nubo queue`'s routes.
pub(crate) fn routes(queues: Arc<dyn QueueBackend>, apps: Arc<dyn Apps>) -> Routes {
    const MESSAGES: &str = "/v1/apps/{app}/queues/{queue}/messages";
    Routes::new()
        .get("/v1/apps/{app}/queues", list)
        .get(MESSAGES, peek)
        .delete(MESSAGES, purge)
        .with_state(Api { queues, apps })
}

#[derive(Serialize)]
struct QueueStatus {
    name: String,
    consumer: String,
    path: String,
    concurrency: u32,
    max_attempts: u32,
    batch_size: u32,
    #[serde(flatten)]
    stats: crate::Stats,
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
    /// Who published it, if a signed-in request did.
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<nubo_wasm::Principal>,
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
        by: m.by,
    }
}

fn failed(e: crate::QueueError) -> Response {
    use crate::QueueError;
    let status = match e {
        QueueError::Invalid(_) => StatusCode::BAD_REQUEST,
        QueueError::OverQuota { .. } | QueueError::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
        QueueError::Backend { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

async fn list(State(api): State<Api>, Path(app): Path<String>) -> Response {
    let def = match nubo_api::app(&*api.apps, &app).await {
        Ok(def) => def,
        Err(r) => return r,
    };
    let mut out = Vec::new();
    let queues = crate::QueueSection::of(&def.sections).unwrap_or_default();
    for (name, spec) in &queues {
        let q = QueueName {
            app: app.clone(),
            queue: name.clone(),
        };
        let stats = match api.queues.stats(&q).await {
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
struct Listing {
    n: Option<usize>,
    #[serde(default)]
    dead: bool,
}

fn name(app: String, queue: String) -> QueueName {
    QueueName { app, queue }
}

async fn peek(
    State(api): State<Api>,
    Path((app, queue)): Path<(String, String)>,
    Query(l): Query<Listing>,
) -> Response {
    if let Err(r) = nubo_api::declared(&*api.apps, &app, &QUEUES, &queue).await {
        return r;
    }
    let q = name(app, queue);
    let n = l.n.unwrap_or(10);
    let found = if l.dead {
        api.queues.dead(&q, n).await
    } else {
        api.queues.peek(&q, n).await
    };
    match found {
        Ok(ms) => Json(ms.into_iter().map(shown).collect::<Vec<_>>()).into_response(),
        Err(e) => failed(e),
    }
}

async fn purge(
    State(api): State<Api>,
    Path((app, queue)): Path<(String, String)>,
    Query(l): Query<Listing>,
) -> Response {
    if let Err(r) = nubo_api::declared(&*api.apps, &app, &QUEUES, &queue).await {
        return r;
    }
    match api.queues.purge(&name(app, queue), l.dead).await {
        Ok(n) => Json(serde_json::json!({ "purged": n })).into_response(),
        Err(e) => failed(e),
    }
}
