//! The control API: HTTP + JSON under `/v1/`, every call behind the node's
//! bearer token.
//!
//! Handlers are thin: each verb becomes steps for [`crate::Node::change`],
//! so there is one code path that changes state. Errors are JSON
//! (`{"error": "...", "details": [...]}`) with the status a client can act
//! on: 400 malformed, 401 no or wrong token, 404 unknown app, 409 stale
//! revision or a clash with another app, 413 upload too large.

mod apps;
mod logs;
mod metrics;
mod nodes;
mod uploads;

pub(crate) use nubo_api::extract;
pub(crate) use nubo_api::extract::{JsonBody, json_object};
pub(crate) use nubo_api::{ErrorCode, coded, error, no_app};

#[cfg(test)]
mod doc_tests;

use crate::Node;
use crate::node::ChangeError;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use nubo_api::Routes;
use std::sync::Arc;

/// The OpenAPI 3.1 description of this API, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// JSON bodies (app definitions) may list many static files, but no more.
const MAX_JSON: usize = 8 << 20;

pub fn router(node: Arc<Node>) -> Router {
    let api = routes(&node).into_router();
    api.fallback(|| async {
        error(
            StatusCode::NOT_FOUND,
            "no such API path; see GET /v1/openapi.json",
        )
    })
    .layer(middleware::from_fn_with_state(node.clone(), auth))
    .merge(open().into_router())
    .layer(middleware::map_response(mark))
    .with_state(node)
}

/// The routes that need no token: probes and metrics.
fn open() -> Routes<Arc<Node>> {
    Routes::new()
        .get("/healthz", nodes::healthz)
        .get("/readyz", nodes::readyz)
        .get("/metrics", metrics::metrics)
}

/// Every route behind the token: the node's own, and each capability's.
fn routes(node: &Arc<Node>) -> Routes<Arc<Node>> {
    let uploads = Routes::new()
        .put("/v1/components/{digest}", uploads::put_component)
        .head("/v1/components/{digest}", uploads::head)
        .put("/v1/files/{digest}", uploads::put_file)
        .head("/v1/files/{digest}", uploads::head)
        .map(|r| r.layer(DefaultBodyLimit::max(node.max_upload)));
    const APP: &str = "/v1/apps/{app}";
    let apps: Arc<dyn nubo_api::Apps> = Arc::new(NodeApps(node.clone()));
    let mut capabilities = Routes::new();
    for c in node.runtime.capabilities() {
        if let Some(r) = c.routes(&node.services, apps.clone()) {
            capabilities = capabilities.merge(r);
        }
    }
    Routes::new()
        .get("/v1/node", apps::node_info)
        .get("/v1/nodes", nodes::list)
        .get("/v1/openapi.json", openapi)
        .get("/v1/apps", apps::list)
        .get(APP, apps::show)
        .put(APP, apps::put_app)
        .delete(APP, apps::remove)
        .post("/v1/apps/{app}/changes", apps::changes)
        .post("/v1/apps/{app}/rollback", apps::rollback)
        .get("/v1/apps/{app}/revisions", apps::history)
        .get("/v1/apps/{app}/revisions/{revision}", apps::revision)
        .post("/v1/apps/{app}/components/{component}/start", apps::start)
        .post("/v1/apps/{app}/components/{component}/stop", apps::stop)
        .put("/v1/apps/{app}/variables/{name}", apps::set_variable)
        .put(
            "/v1/apps/{app}/components/{component}/config/{key}",
            apps::set_config,
        )
        .get("/v1/apps/{app}/logs", logs::logs)
        .merge(capabilities.with_state(()))
        // A capability's own limit (blobs stream any size) is the inner
        // layer, so it wins over this one.
        .map(|r| r.layer(DefaultBodyLimit::max(MAX_JSON)))
        .merge(uploads)
}

/// The apps of this node, as capabilities' routes see them.
struct NodeApps(Arc<Node>);

impl nubo_api::Apps for NodeApps {
    fn definition<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Option<nubo_plan::AppDef>> {
        Box::pin(async move { self.0.apps.lock().await.get(app).map(|l| l.def.clone()) })
    }
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

impl IntoResponse for ChangeError {
    fn into_response(self) -> Response {
        let (status, code, details) = match &self {
            ChangeError::Invalid(_) => (StatusCode::BAD_REQUEST, None, Vec::new()),
            ChangeError::Rejected(d) => (StatusCode::BAD_REQUEST, None, d.clone()),
            ChangeError::Conflict(_) => (StatusCode::CONFLICT, None, Vec::new()),
            ChangeError::Stale(_) => (StatusCode::CONFLICT, Some(ErrorCode::Stale), Vec::new()),
            ChangeError::NotFound(_) => (StatusCode::NOT_FOUND, Some(ErrorCode::NoApp), Vec::new()),
            ChangeError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(ErrorCode::ClusterUnavailable),
                Vec::new(),
            ),
            ChangeError::Store(e) => {
                tracing::error!("state store: {e}");
                (StatusCode::INTERNAL_SERVER_ERROR, None, Vec::new())
            }
        };
        let error = match &self {
            ChangeError::Rejected(_) => "the resulting definition is invalid".to_string(),
            other => other.to_string(),
        };
        nubo_api::answer(status, code, error, details)
    }
}
