//! `/v1/apps/{app}/tasks`: a job's status and result, and cancelling it.

use super::error;
use crate::Node;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nubo_tasks::Tasks;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<usize>,
}

#[derive(Serialize)]
struct Shown {
    #[serde(flatten)]
    task: nubo_tasks::Task,
    /// The result as text (invalid UTF-8 replaced), when done.
    result: Option<String>,
}

fn shown(t: nubo_tasks::Task) -> Shown {
    let result = t
        .result
        .as_ref()
        .map(|r| String::from_utf8_lossy(r).into_owned());
    Shown { task: t, result }
}

pub(crate) async fn list(
    State(node): State<Arc<Node>>,
    Path(app): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    match node.tasks.list(&app, q.limit.unwrap_or(100)).await {
        Ok(tasks) => Json(tasks.into_iter().map(shown).collect::<Vec<_>>()).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
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
    node.tasks.cancel(&app, &id).await;
    match node.tasks.get(&app, &id).await {
        Some(t) => Json(shown(t)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no task `{id}` in app `{app}`"),
        ),
    }
}
