//! What every part of the control API shares, so that a capability serves
//! its own routes (`nubo kv`, `nubo blob`, `nubo queue`, `nubo tasks`)
//! from its own crate, with the same errors and checks as the node's.
//!
//! - [`error`] and [`coded`]: every error is JSON, `{"error": …}`, with
//!   a stable [`ErrorCode`] where a client acts on it.
//! - [`extract`]: extractors whose rejections are those errors.
//! - [`Apps`]: what the node tells a capability about the apps it runs,
//!   and [`declared`], the check that a name a call uses is declared.
//! - [`Routes`]: routes with the list of what they serve, which a test
//!   compares with the OpenAPI document.
//!
//! The node merges every capability's routes under its token check.

pub mod extract;
mod routes;

pub use routes::Routes;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use nubo_plan::AppDef;
use serde::Serialize;

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
pub enum ErrorCode {
    /// The change was planned against an older revision: plan again.
    Stale,
    /// No such app on this node.
    NoApp,
    /// An upload is a core WebAssembly module, not a component.
    CoreModule,
    /// A component imports an interface the node does not provide.
    UnsupportedImport,
    /// The node cannot reach its cluster's NATS servers: nothing changed.
    ClusterUnavailable,
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    answer(status, None, message, Vec::new())
}

/// [`error`] with an [`ErrorCode`].
pub fn coded(status: StatusCode, code: Option<ErrorCode>, message: impl Into<String>) -> Response {
    answer(status, code, message, Vec::new())
}

/// [`coded`] with details (one line each, such as every problem of a
/// definition).
pub fn answer(
    status: StatusCode,
    code: Option<ErrorCode>,
    message: impl Into<String>,
    details: Vec<String>,
) -> Response {
    let body = ErrorBody {
        error: message.into(),
        code,
        details,
    };
    (status, axum::Json(body)).into_response()
}

/// The apps a node runs, as its capabilities' routes see them.
pub trait Apps: Send + Sync + 'static {
    /// App `app`'s definition at its running revision; `None` when the
    /// node has no such app.
    fn definition<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Option<AppDef>>;
}

/// The 404 for an app this node does not have.
pub fn no_app(app: &str) -> Response {
    coded(
        StatusCode::NOT_FOUND,
        Some(ErrorCode::NoApp),
        format!("no app `{app}` on this node"),
    )
}

/// App `app`'s definition, or the 404 that names it.
pub async fn app(apps: &dyn Apps, app: &str) -> Result<AppDef, Response> {
    apps.definition(app).await.ok_or_else(|| no_app(app))
}

/// A kind of name an app declares, which a control call may use.
pub struct Declared {
    /// What one is called in an error (`key-value store`).
    pub noun: &'static str,
    /// Where `nubo.toml` declares them (`key_value_stores`, `[queue.NAME]`).
    pub declared_by: &'static str,
    /// Every name the app declares.
    pub names: fn(&AppDef) -> Vec<String>,
}

impl Declared {
    /// The names that a grant key lists over all the app's components.
    pub fn granted(def: &AppDef, key: &str) -> Vec<String> {
        def.components
            .values()
            .flat_map(|c| c.granted(key).iter().cloned())
            .collect()
    }
}

/// Checks that `app` is on this node and declares `name` as a `kind`. A
/// typo is then an error that lists what there is, not a new, empty
/// namespace that `nubo kv set` or `nubo blob put` fills quietly.
pub async fn declared(
    apps: &dyn Apps,
    app_name: &str,
    kind: &Declared,
    name: &str,
) -> Result<(), Response> {
    let def = app(apps, app_name).await?;
    let mut known = (kind.names)(&def);
    if known.iter().any(|k| k == name) {
        return Ok(());
    }
    known.sort_unstable();
    known.dedup();
    let has = if known.is_empty() {
        format!("it declares none (`{}` in nubo.toml)", kind.declared_by)
    } else {
        let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
        format!("it has {}", list.join(", "))
    };
    Err(error(
        StatusCode::NOT_FOUND,
        format!("app `{app_name}` has no {} `{name}`: {has}", kind.noun),
    ))
}
