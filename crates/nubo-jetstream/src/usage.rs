//! Per-app totals shared by every node: how many bytes or messages an
//! app holds in one service, so that a quota holds across the cluster.
//!
//! A total is a decimal integer under `APP.KIND` in the bucket
//! `nubo_usage`. [`Usage::add`] changes it with compare-and-set on the
//! key's revision, so two nodes adding at once both count; a writer adds
//! its delta *before* it stores the data and takes it back if the store
//! fails. A node that dies in between leaves the total too high by that
//! one write, never too low: the quota errs towards refusing.

use crate::{JsError, open_kv, retry, token, write_if};
use async_nats::jetstream::{self, kv};

const BUCKET: &str = "nubo_usage";

/// The shared totals.
pub struct Usage {
    store: kv::Store,
    js: jetstream::Context,
}

fn key(app: &str, kind: &str) -> String {
    format!("{}.{}", token(app), token(kind))
}

impl Usage {
    pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<Self, JsError> {
        let store = open_kv(
            js,
            kv::Config {
                bucket: BUCKET.into(),
                history: 1,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self {
            store,
            js: js.clone(),
        })
    }

    /// The total and the revision it is at (0: never written).
    async fn read(&self, key: &str) -> Result<(i64, u64), JsError> {
        let entry = retry(|| self.store.entry(key))
            .await
            .map_err(|e| JsError::nats("read usage", e))?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let n = std::str::from_utf8(&e.value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                (n, e.revision)
            }
            Some(e) => (0, e.revision),
            None => (0, 0),
        })
    }

    /// The app's total of `kind`.
    pub async fn total(&self, app: &str, kind: &str) -> Result<i64, JsError> {
        Ok(self.read(&key(app, kind)).await?.0.max(0))
    }

    /// Adds `delta` to the app's total of `kind` unless that would take it
    /// over `limit`; `false` if it would. A delta of zero or less always
    /// applies: freeing space is never refused.
    pub async fn add(
        &self,
        app: &str,
        kind: &str,
        delta: i64,
        limit: u64,
    ) -> Result<bool, JsError> {
        if delta == 0 {
            return Ok(true);
        }
        let key = key(app, kind);
        loop {
            let (total, revision) = self.read(&key).await?;
            let next = total.saturating_add(delta).max(0);
            if delta > 0 && u64::try_from(next).unwrap_or(0) > limit {
                return Ok(false);
            }
            let value = bytes::Bytes::from(next.to_string());
            if write_if(&self.js, &self.store, &key, value, revision).await? {
                return Ok(true);
            }
        }
    }

    /// Forgets the app's total of `kind` (its data was removed).
    pub async fn forget(&self, app: &str, kind: &str) -> Result<(), JsError> {
        let key = key(app, kind);
        retry(|| self.store.purge(&key))
            .await
            .map_err(|e| JsError::nats("forget usage", e))
    }
}
