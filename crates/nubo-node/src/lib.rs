//! A long-lived Nubo node: hosts many apps, keeps their revisions, and
//! offers the control API that `nubo plan`, `nubo apply` and the other
//! commands talk to.
//!
//! The state dir holds everything that must survive a restart: `nubo.db`
//! (SQLite: each app's current definition and history), `content/`
//! (uploads by sha256), `sites/` (static sites laid out from content),
//! `cache/` (compiled components) and `token`. On start the node serves
//! every app at its last committed revision.

mod api;
mod capabilities;
#[cfg(test)]
mod change_tests;
mod cluster;
mod content;
mod live;
mod logs;
mod node;
mod purge;
mod secrets;
mod store;
pub mod token;

pub use api::{MARKER as API_MARKER, OPENAPI, router as control_router};
pub use capabilities::{capabilities, schema};
pub use cluster::{ClusterJoin, JoinError};
pub use logs::LogLine;
pub use node::{ChangeError, Changed, Node, NodeError, NodeOptions};
pub use nubo_cluster::{Cluster, ClusterKey, ClusterOptions, NatsAuth};
pub use store::{RevisionInfo, StoreError};

/// Default upload limit: 64 MiB.
pub const DEFAULT_MAX_UPLOAD: usize = 64 << 20;

/// Serves the control API on `listener` until `shutdown` resolves, under
/// the same connection limits as the app listener.
pub async fn serve_control(
    listener: tokio::net::TcpListener,
    node: std::sync::Arc<Node>,
    limits: nubo_gateway::ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use tower::ServiceExt;
    let router = control_router(node);
    let service = move |req: nubo_gateway::TimedRequest| {
        let router = router.clone();
        async move {
            match router.oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    };
    nubo_gateway::serve_connections(listener, limits, None, service, shutdown).await
}
