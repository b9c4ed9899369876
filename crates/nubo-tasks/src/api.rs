//! `/v1/apps/{app}/tasks`: a job's status and result, counts by state,
//! and cancelling a task with everything it started.

use crate::{TaskRunner, Tasks};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nubo_api::extract::{Path, Query};
use nubo_api::{Apps, Routes, error};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What the routes work on.
#[derive(Clone)]
struct Api {
    tasks: Arc<TaskRunner>,
    apps: Arc<dyn Apps>,
}

/// `nubo tasks`'s routes.
pub(crate) fn routes(tasks: Arc<TaskRunner>, apps: Arc<dyn Apps>) -> Routes {
    Routes::new()
        .get("/v1/apps/{app}/tasks", list)
        .get("/v1/apps/{app}/tasks/counts", counts)
        .get("/v1/apps/{app}/tasks/{id}", show)
        .post("/v1/apps/{app}/tasks/{id}/cancel", cancel)
        .with_state(Api { tasks, apps })
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    state: Option<String>,
}

#[derive(Serialize)]
struct Shown {
    #[serde(flatten)]
    task: crate::Task,
    /// The result as text (invalid UTF-8 replaced), when done.
    result: Option<String>,
    /// After a cancel: how many tasks it cancelled (this one and its
    /// unfinished descendants).
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled: Option<usize>,
}

fn shown(t: crate::Task) -> Shown {
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

async fn list(
    State(api): State<Api>,
    Path(app): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(r) = nubo_api::app(&*api.apps, &app).await {
        return r;
    }
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => match crate::State::ALL.into_iter().find(|x| x.as_str() == s) {
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
    let limit = match nubo_api::extract::page_limit(q.limit, 100) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    match api.tasks.list(&app, state, limit).await {
        Ok(tasks) => Json(tasks.into_iter().map(shown).collect::<Vec<_>>()).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn show(State(api): State<Api>, Path((app, id)): Path<(String, String)>) -> Response {
    match api.tasks.get(&app, &id).await {
        Some(t) => Json(shown(t)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no task `{id}` in app `{app}`"),
        ),
    }
}

async fn cancel(State(api): State<Api>, Path((app, id)): Path<(String, String)>) -> Response {
    if api.tasks.get(&app, &id).await.is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("no task `{id}` in app `{app}`"),
        );
    }
    let n = api.tasks.cancel(&app, &id).await;
    match api.tasks.get(&app, &id).await {
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
async fn counts(State(api): State<Api>, Path(app): Path<String>) -> Response {
    if let Err(r) = nubo_api::app(&*api.apps, &app).await {
        return r;
    }
    match api.tasks.counts(&app).await {
        Ok(counts) => {
            let mut out = serde_json::Map::new();
            for s in crate::State::ALL {
                let n = counts.iter().find(|(x, _)| *x == s).map_or(0, |(_, n)| *n);
                out.insert(s.as_str().to_string(), n.into());
            }
            Json(out).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
