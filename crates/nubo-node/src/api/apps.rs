//! `/v1/apps`: state, history, and the verbs that change an app.

use super::extract::{Path, Query};
use super::{JsonBody, error, no_app};
use crate::Node;
use crate::live::LiveApp;
use crate::node::ChangeError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nubo_plan::{AppDef, Step};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

type Node_ = State<Arc<Node>>;

#[derive(Serialize)]
pub(crate) struct AppStatus {
    name: String,
    revision: u64,
    hosts: Vec<String>,
    base: String,
    components: Vec<ComponentStatus>,
}

#[derive(Serialize)]
struct ComponentStatus {
    name: String,
    /// `running` or `stopped`.
    state: &'static str,
    /// Instances handling a request right now.
    instances: usize,
    max_instances: u32,
    digest: String,
}

fn status(app: &LiveApp) -> AppStatus {
    AppStatus {
        name: app.def.name.clone(),
        revision: app.revision,
        hosts: app.def.settings.hosts.clone(),
        base: app.def.settings.base.clone(),
        components: app
            .def
            .components
            .iter()
            .map(|(name, c)| {
                let http = app.components.get(name).and_then(|l| l.http.as_ref());
                ComponentStatus {
                    name: name.clone(),
                    state: if http.is_some() { "running" } else { "stopped" },
                    instances: http.map(|h| h.active()).unwrap_or(0),
                    max_instances: c.limits.max_instances,
                    digest: c.digest.clone(),
                }
            })
            .collect(),
    }
}

pub(crate) async fn node_info(State(node): Node_) -> Response {
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "apps": node.apps().await.len(),
        "max_upload": node.max_upload,
    }))
    .into_response()
}

pub(crate) async fn list(State(node): Node_) -> Response {
    let apps: Vec<AppStatus> = node.apps().await.iter().map(status).collect();
    Json(apps).into_response()
}

#[derive(Serialize)]
struct AppDetail {
    #[serde(flatten)]
    status: AppStatus,
    /// Secrets are shown as `sha256:…`.
    definition: AppDef,
}

pub(crate) async fn show(State(node): Node_, Path(app): Path<String>) -> Response {
    match node.app(&app).await {
        Some(live) => Json(AppDetail {
            status: status(&live),
            definition: live.def.redacted(),
        })
        .into_response(),
        None => no_app(&app),
    }
}

pub(crate) async fn history(State(node): Node_, Path(app): Path<String>) -> Response {
    match node.history(&app) {
        Ok(h) if h.is_empty() => no_app(&app),
        Ok(h) => Json(h).into_response(),
        Err(e) => ChangeError::Store(e).into_response(),
    }
}

pub(crate) async fn revision(
    State(node): Node_,
    Path((app, rev)): Path<(String, u64)>,
) -> Response {
    match node.stored_revision(&app, rev) {
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("app `{app}` has no revision {rev}"),
        ),
        Ok(Some(def)) => Json(serde_json::json!({
            "revision": rev,
            "definition": def.map(|d| d.redacted()),
        }))
        .into_response(),
        Err(e) => ChangeError::Store(e).into_response(),
    }
}

/// A list of steps, applied as one revision.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeRequest {
    /// The revision the steps were planned against; 0 for a new app.
    /// Absent: apply on top of whatever is current.
    #[serde(default)]
    expected_revision: Option<u64>,
    steps: Vec<Step>,
}

pub(crate) async fn changes(
    State(node): Node_,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<ChangeRequest>,
) -> Response {
    respond(node.change(&app, req.expected_revision, req.steps).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutApp {
    #[serde(default)]
    expected_revision: Option<u64>,
    definition: AppDef,
}

/// Puts a whole definition: the node plans it against what it runs.
pub(crate) async fn put_app(
    State(node): Node_,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<PutApp>,
) -> Response {
    if req.definition.name != app {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "the definition is for app `{}`, but the URL names `{app}`",
                req.definition.name
            ),
        );
    }
    let desired = req.definition;
    respond(
        node.change_with(&app, req.expected_revision, |cur| {
            Ok(nubo_plan::plan(cur, Some(&desired)))
        })
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Expect {
    #[serde(default)]
    expected_revision: Option<u64>,
}

/// Returns to the revision before the current one (a new revision with
/// the old definition, like `kubectl rollout undo`).
pub(crate) async fn rollback(
    State(node): Node_,
    Path(app): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let expect: Expect = if body.is_empty() {
        Expect::default()
    } else {
        match super::json_object(&body) {
            Ok(e) => e,
            Err(r) => return r.into_response(),
        }
    };
    let Some(live) = node.app(&app).await else {
        return no_app(&app);
    };
    let previous = match node.history(&app) {
        Ok(h) => h
            .iter()
            .rev()
            .find(|r| r.revision < live.revision && r.exists)
            .map(|r| r.revision),
        Err(e) => return ChangeError::Store(e).into_response(),
    };
    let Some(previous) = previous else {
        return error(
            StatusCode::CONFLICT,
            format!(
                "app `{app}` has no revision before {} to roll back to",
                live.revision
            ),
        );
    };
    let def = match node.stored_revision(&app, previous) {
        Ok(Some(Some(def))) => def,
        Ok(_) => return error(StatusCode::CONFLICT, format!("revision {previous} is gone")),
        Err(e) => return ChangeError::Store(e).into_response(),
    };
    let expected = expect.expected_revision.or(Some(live.revision));
    respond(
        node.change_with(&app, expected, |cur| Ok(nubo_plan::plan(cur, Some(&def))))
            .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoveQuery {
    /// Keep the app's keys, blobs, messages and tasks.
    #[serde(default)]
    keep_data: bool,
}

/// `DELETE /v1/apps/{app}[?keep_data=true]`: the app stops serving and,
/// unless kept, its data is deleted; the answer says how much.
pub(crate) async fn remove(
    State(node): Node_,
    Path(app): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Response {
    if node.app(&app).await.is_none() {
        return no_app(&app);
    }
    let step = Step::RemoveApp {
        keep_data: q.keep_data,
    };
    respond(node.change(&app, None, vec![step]).await)
}

pub(crate) async fn start(
    State(node): Node_,
    Path((app, component)): Path<(String, String)>,
) -> Response {
    respond(
        node.change(&app, None, vec![Step::StartComponent { name: component }])
            .await,
    )
}

pub(crate) async fn stop(
    State(node): Node_,
    Path((app, component)): Path<(String, String)>,
) -> Response {
    respond(
        node.change(&app, None, vec![Step::StopComponent { name: component }])
            .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Value {
    value: String,
    #[serde(default)]
    secret: bool,
    #[serde(default)]
    expected_revision: Option<u64>,
}

pub(crate) async fn set_variable(
    State(node): Node_,
    Path((app, name)): Path<(String, String)>,
    JsonBody(v): JsonBody<Value>,
) -> Response {
    let step = Step::SetVariable {
        name,
        value: v.value,
        secret: v.secret,
    };
    respond(node.change(&app, v.expected_revision, vec![step]).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigValue {
    value: String,
    #[serde(default)]
    expected_revision: Option<u64>,
}

pub(crate) async fn set_config(
    State(node): Node_,
    Path((app, component, key)): Path<(String, String, String)>,
    JsonBody(v): JsonBody<ConfigValue>,
) -> Response {
    let step = Step::SetConfig {
        component,
        key,
        value: v.value,
    };
    respond(node.change(&app, v.expected_revision, vec![step]).await)
}

fn respond(result: Result<crate::node::Changed, ChangeError>) -> Response {
    match result {
        Ok(changed) => Json(changed).into_response(),
        Err(e) => e.into_response(),
    }
}
