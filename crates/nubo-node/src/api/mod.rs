//! The control API: HTTP + JSON under `/v1/`, every call behind the node's
//! bearer token.
//!
//! Handlers are thin: each verb becomes steps for [`crate::Node::change`],
//! so there is one code path that changes state. Errors are JSON
//! (`{"error": "...", "details": [...]}`) with the status a client can act
//! on: 400 malformed, 401 no or wrong token, 404 unknown app, 409 stale
//! revision or a clash with another app, 413 upload too large.

mod apps;
mod blobs;
mod extract;
mod kv;
mod logs;
mod nodes;
mod queues;
mod tasks;
mod uploads;

pub(crate) use extract::{JsonBody, json_object, page_limit};

#[cfg(test)]
mod doc_tests;

use crate::Node;
use crate::node::ChangeError;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Serialize;
use std::sync::Arc;

/// The OpenAPI 3.1 description of this API, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// JSON bodies (app definitions) may list many static files, but no more.
const MAX_JSON: usize = 8 << 20;

pub fn router(node: Arc<Node>) -> Router {
    let uploads = Router::new()
        .route(
            "/v1/components/{digest}",
            put(uploads::put_component).head(uploads::head),
        )
        .route(
            "/v1/files/{digest}",
            put(uploads::put_file).head(uploads::head),
        )
        .layer(DefaultBodyLimit::max(node.max_upload));
    // Blob bodies stream through in chunks, whatever their size.
    let blobs = Router::new()
        .route("/v1/apps/{app}/blobs", get(blobs::containers))
        .route("/v1/apps/{app}/blobs/{container}", get(blobs::list))
        .route(
            "/v1/apps/{app}/blobs/{container}/{*name}",
            get(blobs::get).put(blobs::put).delete(blobs::delete),
        )
        .layer(DefaultBodyLimit::disable());
    let api = Router::new()
        .route("/v1/node", get(apps::node_info))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/apps", get(apps::list))
        .route(
            "/v1/apps/{app}",
            get(apps::show).put(apps::put_app).delete(apps::remove),
        )
        .route("/v1/apps/{app}/changes", post(apps::changes))
        .route("/v1/apps/{app}/rollback", post(apps::rollback))
        .route("/v1/apps/{app}/revisions", get(apps::history))
        .route("/v1/apps/{app}/revisions/{revision}", get(apps::revision))
        .route(
            "/v1/apps/{app}/components/{component}/start",
            post(apps::start),
        )
        .route(
            "/v1/apps/{app}/components/{component}/stop",
            post(apps::stop),
        )
        .route("/v1/apps/{app}/variables/{name}", put(apps::set_variable))
        .route(
            "/v1/apps/{app}/components/{component}/config/{key}",
            put(apps::set_config),
        )
        .route("/v1/apps/{app}/logs", get(logs::logs))
        .route("/v1/apps/{app}/tasks", get(tasks::list))
        .route("/v1/apps/{app}/tasks/counts", get(tasks::counts))
        .route("/v1/apps/{app}/tasks/{id}", get(tasks::show))
        .route("/v1/apps/{app}/tasks/{id}/cancel", post(tasks::cancel))
        .route("/v1/apps/{app}/cron", get(apps::cron))
        .route("/v1/apps/{app}/queues", get(queues::list))
        .route(
            "/v1/apps/{app}/queues/{queue}/messages",
            get(queues::peek).delete(queues::purge),
        )
        .route("/v1/apps/{app}/kv/{store}", get(kv::list))
        .route(
            "/v1/apps/{app}/kv/{store}/{*key}",
            get(kv::get).put(kv::set).delete(kv::delete),
        )
        .layer(DefaultBodyLimit::max(MAX_JSON));
    api.merge(uploads)
        .merge(blobs)
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such API path; see GET /v1/openapi.json",
            )
        })
        .layer(middleware::from_fn_with_state(node.clone(), auth))
        .route("/healthz", get(nodes::healthz))
        .route("/readyz", get(nodes::readyz))
        .route("/metrics", get(nodes::metrics))
        .layer(middleware::map_response(mark))
        .with_state(node)
}

/// Header on every control API answer, so that the CLI can tell the
/// node's own "not found" from that of an app's port it was pointed at.
pub const MARKER: &str = "nubo-api";

async fn mark(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(MARKER, header::HeaderValue::from_static("v1"));
    resp
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn auth(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    match given {
        Some(t) if crate::token::matches(t.trim(), &node.token) => next.run(req).await,
        Some(_) => unauthorized("wrong token"),
        None => unauthorized("missing `Authorization: Bearer TOKEN`"),
    }
}

fn unauthorized(why: &str) -> Response {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        format!("{why}; the token is in the node's state dir, file `token`"),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
    /// A stable name of the error, for clients to act on; the message is
    /// for people and may change.
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<String>,
}

/// The errors a client may act on without reading the message.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorCode {
    /// The change was planned against an older revision: plan again.
    Stale,
    /// No such app on this node.
    NoApp,
    /// An upload is a core WebAssembly module, not a component.
    CoreModule,
    /// A component imports an interface the node does not provide.
    UnsupportedImport,
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    coded(status, None, message)
}

/// [`error`] with a [`ErrorCode`].
pub(crate) fn coded(
    status: StatusCode,
    code: Option<ErrorCode>,
    message: impl Into<String>,
) -> Response {
    (
        status,
        axum::Json(ErrorBody {
            error: message.into(),
            code,
            details: Vec::new(),
        }),
    )
        .into_response()
}

impl IntoResponse for ChangeError {
    fn into_response(self) -> Response {
        let (status, code, details) = match &self {
            ChangeError::Invalid(_) => (StatusCode::BAD_REQUEST, None, Vec::new()),
            ChangeError::Rejected(d) => (StatusCode::BAD_REQUEST, None, d.clone()),
            ChangeError::Conflict(_) => (StatusCode::CONFLICT, None, Vec::new()),
            ChangeError::Stale(_) => (StatusCode::CONFLICT, Some(ErrorCode::Stale), Vec::new()),
            ChangeError::NotFound(_) => (StatusCode::NOT_FOUND, Some(ErrorCode::NoApp), Vec::new()),
            ChangeError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, None, Vec::new()),
            ChangeError::Store(e) => {
                tracing::error!("state store: {e}");
                (StatusCode::INTERNAL_SERVER_ERROR, None, Vec::new())
            }
        };
        let error = match &self {
            ChangeError::Rejected(_) => "the resulting definition is invalid".to_string(),
            other => other.to_string(),
        };
        let body = ErrorBody {
            error,
            code,
            details,
        };
        (status, axum::Json(body)).into_response()
    }
}

/// The app `app` on this node, or a 404 that names it.
pub(crate) async fn live_app(node: &Node, app: &str) -> Result<crate::live::LiveApp, Response> {
    node.app(app).await.ok_or_else(|| no_app(app))
}

/// The 404 for an app this node does not have.
pub(crate) fn no_app(app: &str) -> Response {
    coded(
        StatusCode::NOT_FOUND,
        Some(ErrorCode::NoApp),
        format!("no app `{app}` on this node"),
    )
}

/// What a service call can name in an app's definition.
#[derive(Clone, Copy)]
pub(crate) enum Declared {
    Store,
    Container,
    Queue,
}

/// Checks that `app` is on this node and that its definition declares
/// `name` (granted to one of its components, or a `[queue.NAME]`). A
/// typo is then an error that lists what there is, not a new, empty
/// namespace that `nubo kv set` or `nubo blob put` fills quietly.
pub(crate) async fn declared(
    node: &Node,
    app: &str,
    kind: Declared,
    name: &str,
) -> Result<(), Response> {
    let live = live_app(node, app).await?;
    let def = &live.def;
    let mut known: Vec<&str> = match kind {
        Declared::Store => def
            .components
            .values()
            .flat_map(|c| c.granted("key_value_stores").iter().map(String::as_str))
            .collect(),
        Declared::Container => def
            .components
            .values()
            .flat_map(|c| c.granted("blob_containers").iter().map(String::as_str))
            .collect(),
        Declared::Queue => def.queues.keys().map(String::as_str).collect(),
    };
    if known.contains(&name) {
        return Ok(());
    }
    known.sort_unstable();
    known.dedup();
    let (what, grant) = match kind {
        Declared::Store => ("key-value store", "key_value_stores"),
        Declared::Container => ("blob container", "blob_containers"),
        Declared::Queue => ("queue", "[queue.NAME]"),
    };
    let has = if known.is_empty() {
        format!("it declares none (`{grant}` in nubo.toml)")
    } else {
        let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
        format!("it has {}", list.join(", "))
    };
    Err(error(
        StatusCode::NOT_FOUND,
        format!("app `{app}` has no {what} `{name}`: {has}"),
    ))
}
