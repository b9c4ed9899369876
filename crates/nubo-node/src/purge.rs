//! What a removed app leaves behind is deleted, unless kept: an app made
//! again under the same name must start empty, and never run old queued
//! messages or tasks against its new code. Each capability that stores
//! anything deletes an app's data in one call
//! ([`nubo_wasm::Capability::purge_app`]), on SQLite and on JetStream
//! alike; the node calls them all under its change lock.

use crate::Node;
use std::collections::BTreeMap;

/// What was deleted with a removed app.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Purged {
    /// How many of what, by capability: `keys`, `blobs`, `messages`
    /// (queued and dead), `tasks`, `cron_runs`, `databases`.
    #[serde(flatten)]
    pub deleted: BTreeMap<&'static str, u64>,
    /// What could not be deleted (see the node's log).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

impl Node {
    /// Deletes what removed app `app` stored with every capability. One
    /// that fails is logged and named in `failed`; the
    /// others go on.
    pub(crate) async fn purge(&self, app: &str) -> Purged {
        let mut p = Purged::default();
        for c in self.runtime.capabilities() {
            let Some(purge) = c.purge_app(&self.services, app) else {
                continue;
            };
            match purge.await {
                Ok(d) => *p.deleted.entry(d.what).or_default() += d.count,
                Err(e) => {
                    tracing::error!(app, error = %e, source = %e.source, "purge failed");
                    p.deleted.entry(e.what).or_default();
                    p.failed.push(e.what.to_string());
                }
            }
        }
        tracing::info!(app, deleted = ?p.deleted, "deleted the removed app's data");
        p
    }
}
