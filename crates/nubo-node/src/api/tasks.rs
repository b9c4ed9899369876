//! `/v1/apps/{app}/tasks`: a job's status and result, counts by state,
//! and cancelling a task with everything it started.

use super::extract::{Path, Query};
use super::{error, live_app};
use crate::Node;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nubo_tasks::Tasks;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<usize>,
    state: Option<String>,
}

#[derive(Serialize)]
struct Shown {
    #[serde(flatten)]
    task: nubo_tasks::Task,
    /// The result as text (invalid UTF-8 replaced), when done.
    result: Option<String>,
    /// After a cancel: how many tasks it cancelled (this one and its
    /// unfinished descendants).
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled: Option<usize>,
}

fn shown(t: nubo_tasks::Task) -> Shown {
    let result = t
        .result
        .as_ref()
        .map(|r| String::from_utf8_lossy(r).into_owned());
    Shown {
        task: t,
        result,
        cancelled: None,
    }
}

pub(crate) async fn list(
    State(node): State<Arc<Node>>,
    Path(app): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(r) = live_app(&node, &app).await {
        return r;
    }
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => match nubo_tasks::State::ALL.into_iter().find(|x| x.as_str() == s) {
            Some(x) => Some(x),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown task state `{s}`: use queued, running, waiting, done, failed or cancelled"
                    ),
                );
            }
        },
    };
    let limit = match super::page_limit(q.limit, 100) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    match node.tasks.list(&app, state, limit).await {
        Ok(tasks) => Json(tasks.into_iter().map(shown).collect::<Vec<_>>()).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub(crate) async fn show(
    State(node): State<Arc<Node>>,
    Path((app, id)): Path<(String, String)>,
) -> Response {
    match node.tasks.get(&app, &id).await {
        Some(t) => Json(shown(t)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no task `{id}` in app `{app}`"),
        ),
    }
}

pub(crate) async fn cancel(
    State(node): State<Arc<Node>>,
    Path((app, id)): Path<(String, String)>,
) -> Response {
    if node.tasks.get(&app, &id).await.is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("no task `{id}` in app `{app}`"),
        );
    }
    let n = node.tasks.cancel(&app, &id).await;
    match node.tasks.get(&app, &id).await {
        Some(t) => Json(Shown {
            cancelled: Some(n),
            ..shown(t)
        })
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no task `{id}` in app `{app}`"),
        ),
    }
}

/// `{"queued": 3, "running": 8, "waiting": 10000, ...}`, every state named.
pub(crate) async fn counts(State(node): State<Arc<Node>>, Path(app): Path<String>) -> Response {
    if let Err(r) = live_app(&node, &app).await {
        return r;
    }
    match node.tasks.counts(&app).await {
        Ok(counts) => {
            let mut out = serde_json::Map::new();
            for s in nubo_tasks::State::ALL {
                let n = counts.iter().find(|(x, _)| *x == s).map_or(0, |(_, n)| *n);
                out.insert(s.as_str().to_string(), n.into());
            }
            Json(out).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
