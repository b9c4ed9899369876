//! The desired state: each app's current revision in `nubo_apps`, and the
//! bytes it names in `nubo_content`.
//!
//! A removed app keeps its key, with no definition, so that a node that
//! was away while it was removed still learns of it and a later revision
//! number never goes backwards.

use crate::{Cluster, ClusterError};
use async_nats::jetstream::kv;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

/// One app at one revision, as every node should serve it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppRecord {
    pub app: String,
    pub revision: u64,
    /// The definition; `None` once the app was removed.
    pub def: Option<serde_json::Value>,
    /// What the change did (secrets redacted), for each node's history.
    pub steps: serde_json::Value,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

/// Changes to the desired state, starting with every app's current record.
pub struct Watch {
    inner: kv::Watch,
    key: std::sync::Arc<crate::ClusterKey>,
}

/// What an app record's MAC is bound to: its kind and its key.
fn record_context(key: &str) -> String {
    format!("app record {key}")
}

impl Watch {
    /// The next record and its stream revision; `None` when the watch
    /// ended (the connection was lost for good): open a new one.
    pub async fn next(&mut self) -> Option<Result<(u64, AppRecord), ClusterError>> {
        loop {
            let entry = match self.inner.next().await? {
                Ok(e) => e,
                Err(e) => return Some(Err(ClusterError::nats("watch apps", e))),
            };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            let body = match self.key.open(&record_context(&entry.key), &entry.value) {
                Ok(b) => b,
                Err(e) => return Some(Err(e.into())),
            };
            return Some(match serde_json::from_slice(body) {
                Ok(record) => Ok((entry.revision, record)),
                Err(e) => Err(ClusterError::nats(
                    &format!("app record `{}` does not parse", entry.key),
                    e,
                )),
            });
        }
    }
}

impl Cluster {
    /// The app's current record and its stream revision (for
    /// [`Cluster::publish`]), if it ever existed.
    pub async fn app(&self, app: &str) -> Result<Option<(u64, AppRecord)>, ClusterError> {
        let key = nubo_jetstream::token(app);
        let Some(entry) = nubo_jetstream::retry(|| self.apps.entry(key.clone()))
            .await
            .map_err(|e| ClusterError::nats("read the desired state", e))?
        else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        let body = self.key.open(&record_context(&key), &entry.value)?;
        let record = serde_json::from_slice(body)
            .map_err(|e| ClusterError::nats("app record does not parse", e))?;
        Ok(Some((entry.revision, record)))
    }

    /// Makes `record` the app's desired state if the key is still at
    /// `expected` (`None`: the app was never in the cluster).
    pub async fn publish(
        &self,
        record: &AppRecord,
        expected: Option<u64>,
    ) -> Result<(), ClusterError> {
        let key = nubo_jetstream::token(&record.app);
        let json = serde_json::to_vec(record)
            .map_err(|e| ClusterError::nats("encode the app record", e))?;
        let body: bytes::Bytes = self.key.seal(&record_context(&key), &json).into();
        if nubo_jetstream::write_if(&self.js, &self.apps, &key, body, expected.unwrap_or(0)).await?
        {
            Ok(())
        } else {
            Err(ClusterError::Conflict(record.app.clone()))
        }
    }

    /// Every app that has a record (removed ones too).
    pub async fn app_names(&self) -> Result<Vec<String>, ClusterError> {
        Ok(nubo_jetstream::keys(&self.apps, "")
            .await?
            .iter()
            .filter_map(|k| nubo_jetstream::untoken(k))
            .collect())
    }

    /// Every app's record, then each change as it is made.
    pub async fn watch_apps(&self) -> Result<Watch, ClusterError> {
        let inner = self
            .apps
            .watch_with_history(">")
            .await
            .map_err(|e| ClusterError::nats("watch the desired state", e))?;
        Ok(Watch {
            inner,
            key: self.key.clone(),
        })
    }

    /// True if `digest` is in the shared content store.
    pub async fn has_content(&self, digest: &str) -> Result<bool, ClusterError> {
        use async_nats::jetstream::object_store::InfoErrorKind;
        match nubo_jetstream::retry(|| self.content.info(digest)).await {
            Ok(info) => Ok(!info.deleted),
            Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(false),
            Err(e) => Err(ClusterError::nats("look up content", e)),
        }
    }

    /// Shares uploaded bytes (already checked against `digest`).
    pub async fn put_content(&self, digest: &str, bytes: &[u8]) -> Result<(), ClusterError> {
        if self.has_content(digest).await? {
            return Ok(());
        }
        nubo_jetstream::retry(|| async {
            let mut reader = bytes;
            self.content.put(digest, &mut reader).await
        })
        .await
        .map_err(|e| ClusterError::nats("share content", e))?;
        Ok(())
    }

    /// The bytes of `digest`, from whichever node uploaded them.
    pub async fn get_content(&self, digest: &str) -> Result<Vec<u8>, ClusterError> {
        use async_nats::jetstream::object_store::GetErrorKind;
        let mut object = match nubo_jetstream::retry(|| self.content.get(digest)).await {
            Ok(o) => o,
            Err(e) if e.kind() == GetErrorKind::NotFound => {
                return Err(ClusterError::MissingContent(digest.to_string()));
            }
            Err(e) => return Err(ClusterError::nats("fetch content", e)),
        };
        let mut out = Vec::new();
        object
            .read_to_end(&mut out)
            .await
            .map_err(|e| ClusterError::nats("fetch content", e))?;
        Ok(out)
    }
}
