//! Which route owns a path.
//!
//! Routes come validated from `nubo.toml` (no two match the same set of
//! paths), so matching is a linear scan in specificity order: exact routes
//! first, then prefixes from longest to shortest. Apps have a handful of
//! routes; a scan beats a trie at that size and is obviously correct.

use crate::static_files::StaticDir;
use nubo_manifest::{Access, RoutePattern};
use nubo_wasm::HttpComponent;
use std::sync::Arc;

/// Where a route's request bodies go when it names a queue: the node's
/// queue service, which the gateway does not know.
pub trait Publish: Send + Sync {
    fn queue(&self) -> &str;
    /// Publishes `body`, from a request of `by` (who signed in to it).
    fn publish(
        &self,
        body: bytes::Bytes,
        by: Option<nubo_wasm::Principal>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, PublishError>> + Send + '_>>;
}

/// Makes the publisher of each queue route. The queue capability puts
/// one in the node's services; the node finds it there for an app's
/// `[[http]] queue = "…"` routes.
pub trait Publishers: Send + Sync {
    fn publisher(&self, app: &str, queue: &str) -> std::sync::Arc<dyn Publish>;
}

/// Why a publish from a route failed; the client gets `507` for the
/// first, `500` for the second.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The app is at its queue quota, or the node's disk is full.
    #[error("{0}")]
    Full(String),
    #[error("{0}")]
    Failed(String),
}

#[derive(Clone)]
pub enum Target {
    Component(HttpComponent),
    Static(StaticDir),
    /// A stopped component: its routes answer 503 until it starts again.
    Stopped(String),
    /// `POST`/`PUT` bodies are published to a queue; answers 202.
    Queue(std::sync::Arc<dyn Publish>),
    /// Server-Sent Events of the feed's topics.
    Sse(std::sync::Arc<dyn crate::Feed>),
    /// A WebSocket on the feed.
    WebSocket(std::sync::Arc<dyn crate::Feed>),
}

/// One route of an app: its path, what answers it, and who may reach it.
#[derive(Clone)]
pub struct Route {
    pub pattern: RoutePattern,
    pub target: Target,
    pub access: Access,
    /// The pattern as `nubo.toml` writes it and the component it runs, if
    /// any: what its requests are counted under.
    pub(crate) label: Arc<str>,
    pub(crate) component: Arc<str>,
    /// Its series in `/metrics`, found on its first request.
    pub(crate) metrics: std::sync::OnceLock<crate::metrics::RouteMetrics>,
}

impl Route {
    pub fn new(pattern: RoutePattern, target: Target, access: Access) -> Self {
        let component = match &target {
            Target::Component(c) => c.name().into(),
            Target::Stopped(name) => name.as_str().into(),
            _ => Arc::from(""),
        };
        Self {
            label: pattern.to_string().into(),
            component,
            pattern,
            target,
            access,
            metrics: std::sync::OnceLock::new(),
        }
    }
}

#[derive(Clone, Default)]
pub struct Router {
    app: Arc<str>,
    routes: Vec<Route>,
}

impl Router {
    pub fn new(app: impl Into<Arc<str>>, mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.pattern.specificity()));
        Self {
            app: app.into(),
            routes,
        }
    }

    pub fn app(&self) -> &str {
        &self.app
    }

    pub(crate) fn app_name(&self) -> &Arc<str> {
        &self.app
    }

    /// The route for `path` and the part of the path below it.
    pub fn find<'p>(&self, path: &'p str) -> Option<(&Route, &'p str)> {
        self.routes
            .iter()
            .find_map(|r| r.pattern.matches(path).map(|rest| (r, rest)))
    }

    /// Routes in match order, for printing.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }
}
