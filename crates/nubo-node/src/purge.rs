//! What a removed app leaves behind is deleted, unless kept: an app made
//! again under the same name must start empty, and never run old queued
//! messages or tasks against its new code. Each service's backend deletes
//! an app's data in one call (`purge_app`), on SQLite and on JetStream
//! alike; the node calls them all under its change lock.

use crate::Node;

/// What was deleted with a removed app.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Purged {
    pub keys: u64,
    pub blobs: u64,
    /// Queued and dead messages.
    pub messages: u64,
    pub tasks: u64,
    /// Services whose data could not be deleted (see the node's log).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

impl Node {
    /// Deletes what removed app `app` stored in every service. A service
    /// that fails is logged and counted as failed; the others go on.
    pub(crate) async fn purge(&self, app: &str) -> Purged {
        let mut p = Purged::default();
        let mut failed = |what: &str, e: String| {
            tracing::error!(app, "cannot delete the removed app's {what}: {e}");
            p.failed.push(what.to_string());
        };
        match self.queues.backend.purge_app(app).await {
            Ok(n) => p.messages = n,
            Err(e) => failed("queued messages", e.to_string()),
        }
        match self.kv.purge_app(app).await {
            Ok(n) => p.keys = n,
            Err(e) => failed("keys", e.to_string()),
        }
        match self.blobs.containers(app).await {
            Ok(containers) => {
                for c in containers {
                    let id = nubo_blob::ContainerId {
                        app: app.to_string(),
                        container: c.name.clone(),
                    };
                    match self.blobs.delete_container(&id).await {
                        Ok(n) => p.blobs += n,
                        Err(e) => failed("blobs", e.to_string()),
                    }
                }
            }
            Err(e) => failed("blobs", e.to_string()),
        }
        match self.tasks.purge(app).await {
            Ok(n) => p.tasks = n,
            Err(e) => failed("tasks", e.to_string()),
        }
        if let Err(e) = self.cron.forget(app) {
            failed("cron runs", e.to_string());
        }
        tracing::info!(
            app,
            keys = p.keys,
            blobs = p.blobs,
            messages = p.messages,
            tasks = p.tasks,
            "deleted the removed app's data"
        );
        p
    }
}
