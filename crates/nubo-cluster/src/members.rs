//! Who is in the cluster: each node puts a heartbeat under its id every
//! [`HEARTBEAT_EVERY`](crate::HEARTBEAT_EVERY); the bucket's time-to-live
//! removes the heartbeat of a node that stopped. There is no membership
//! protocol to get wrong: the list of nodes is the list of keys.

use crate::{Cluster, ClusterError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a node says about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Heartbeat {
    pub id: String,
    /// Where it serves apps and its control API.
    pub http: String,
    pub control: String,
    pub version: String,
    /// Milliseconds since the Unix epoch.
    pub started_ms: u64,
    pub at_ms: u64,
    /// The revision of every app it serves.
    pub apps: BTreeMap<String, u64>,
    /// Apps whose desired revision it could not load, with why.
    #[serde(default)]
    pub failing: BTreeMap<String, String>,
}

/// A node as `nubo ps` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    #[serde(flatten)]
    pub heartbeat: Heartbeat,
    /// How old its last heartbeat is, in milliseconds.
    pub age_ms: u64,
    /// `ready`, or `late` when it missed two heartbeats.
    pub health: String,
}

impl Cluster {
    /// Writes this node's heartbeat.
    pub async fn beat(&self, hb: &Heartbeat) -> Result<(), ClusterError> {
        let body = serde_json::to_vec(hb).map_err(|e| ClusterError::nats("heartbeat", e))?;
        self.nodes
            .put(nubo_jetstream::token(&hb.id), body.into())
            .await
            .map_err(|e| ClusterError::nats("heartbeat", e))?;
        Ok(())
    }

    /// Removes this node's heartbeat at a clean stop, so that it leaves the
    /// list at once instead of after the time-to-live.
    pub async fn leave(&self, id: &str) -> Result<(), ClusterError> {
        self.nodes
            .purge(nubo_jetstream::token(id))
            .await
            .map_err(|e| ClusterError::nats("leave", e))
    }

    /// Every node with a live heartbeat, by id.
    pub async fn members(&self, now_ms: u64) -> Result<Vec<Member>, ClusterError> {
        let mut out = Vec::new();
        for key in nubo_jetstream::keys(&self.nodes, "").await? {
            let Some(value) = nubo_jetstream::retry(|| self.nodes.get(&key))
                .await
                .map_err(|e| ClusterError::nats("read a heartbeat", e))?
            else {
                continue;
            };
            let Ok(heartbeat) = serde_json::from_slice::<Heartbeat>(&value) else {
                tracing::warn!(key, "ignoring a heartbeat that does not parse");
                continue;
            };
            let age_ms = now_ms.saturating_sub(heartbeat.at_ms);
            let late = age_ms > 2 * crate::HEARTBEAT_EVERY.as_millis() as u64 + 500;
            out.push(Member {
                heartbeat,
                age_ms,
                health: if late { "late" } else { "ready" }.into(),
            });
        }
        out.sort_by(|a, b| a.heartbeat.id.cmp(&b.heartbeat.id));
        Ok(out)
    }
}
