//! Key-value stores for components: the `wasi:keyvalue` interfaces
//! (0.2.0-draft2: store, atomics, batch) plus Nubo's `kv-ttl`.
//!
//! Three layers, like every Nubo capability. [`KvBackend`] is the storage
//! contract; [`SqliteKv`] is the embedded backend (one SQLite file in the
//! node's state dir, nothing to install) and [`NatsKv`] the cluster's, on
//! JetStream key-value buckets. The host binding ([`KeyValue`], linked
//! into the runtime) serves the WASI interfaces from a backend for one
//! guest instance, checking that the instance was granted the store it
//! opens ([`KvGrant`]). Guests never learn which backend runs.
//!
//! Stores are namespaced by app: `default` of app `a` and `default` of app
//! `b` are different stores.

mod api;
mod capability;
mod host;
mod nats;
mod sqlite;

pub use capability::{KeyValue, KvGrant};
pub use nats::NatsKv;
pub use sqlite::SqliteKv;

use std::time::Duration;

/// Longest key accepted, in bytes.
pub const MAX_KEY: usize = 1024;
/// Largest value accepted, in bytes: 1 MiB less 1 KiB, so that a value
/// with the JetStream backend's expiry envelope and the message's headers
/// fits in one NATS message of nats-server's default `max_payload` (1 MiB).
/// Both backends take exactly this much.
pub const MAX_VALUE: usize = (1 << 20) - 1024;
/// Most keys in one batch call.
pub const MAX_BATCH: usize = 1000;
/// Keys returned per `list-keys` page.
pub const PAGE: usize = 100;

/// A store of one app.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    pub app: String,
    pub store: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum KvError {
    #[error("{0}")]
    Invalid(String),
    /// The write would take the app past its key-value quota.
    #[error(
        "app `{app}` has used its key-value quota of {} MiB (`kv_mb` in [quotas]); delete keys or raise the quota",
        quota >> 20
    )]
    OverQuota { app: String, quota: u64 },
    /// The node's disk has no room for the write, or is within the room
    /// the node keeps free; nothing was changed.
    #[error("the node's disk is full; nothing was written")]
    DiskFull,
    /// The store underneath (SQLite, JetStream, the file system) failed.
    #[error("key-value backend failed: {context}: {source}")]
    Backend {
        context: String,
        #[source]
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl KvError {
    /// A failure of the store underneath: what was being done, and why
    /// it failed (an error, or a message for a condition without one).
    pub fn backend(
        context: impl Into<String>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            context: context.into(),
            source: std::sync::Arc::from(cause.into()),
        }
    }
}

/// Storage for key-value stores. Methods are async so that a networked
/// backend fits; the embedded one answers from a local file.
#[async_trait::async_trait]
pub trait KvBackend: Send + Sync + 'static {
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Sets a value; `ttl` makes it expire, `None` makes it permanent.
    async fn set(
        &self,
        ns: &Namespace,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), KvError>;
    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), KvError>;
    async fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, KvError>;
    /// Up to `limit` keys after `cursor` (exclusive) in byte order, optionally
    /// only those starting with `prefix`; the cursor for the next page.
    async fn list_keys(
        &self,
        ns: &Namespace,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), KvError>;
    /// Adds `delta` to a decimal integer value (absent: 0), atomically.
    async fn increment(&self, ns: &Namespace, key: &str, delta: i64) -> Result<i64, KvError>;
    /// Sets `key` to `new` if its value is `expected` (`None`: absent);
    /// `false` if it was not.
    async fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, KvError>;
    async fn get_many(
        &self,
        ns: &Namespace,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, KvError>;
    /// All or nothing.
    async fn set_many(&self, ns: &Namespace, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError>;
    async fn delete_many(&self, ns: &Namespace, keys: &[String]) -> Result<(), KvError>;
    /// Deletes every key of every store of `app` (the app was removed);
    /// how many.
    async fn purge_app(&self, app: &str) -> Result<u64, KvError>;
    /// How many bytes (keys and values) `app` may store over all its
    /// stores; an app never set has no limit.
    fn set_quota(&self, app: &str, bytes: u64);
    /// Writes that add data are refused while the disk of an embedded
    /// store has less than `bytes` free ([`nubo_sqlite::Disk`]); a
    /// networked store has its own limits.
    fn keep_free(&self, _bytes: u64) {}
}

/// Checks a key against Nubo's limits.
pub fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::Invalid("the key is empty".into()));
    }
    if key.len() > MAX_KEY {
        return Err(KvError::Invalid(format!(
            "the key is {} bytes; keys may be at most {MAX_KEY}",
            key.len()
        )));
    }
    Ok(())
}

/// `current` (absent: 0) plus `delta`, for atomic increments.
pub(crate) fn incremented(key: &str, current: Option<&[u8]>, delta: i64) -> Result<i64, KvError> {
    let current = match current {
        None => 0,
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                KvError::Invalid(format!(
                    "the value of `{key}` is not a decimal integer, so it cannot be incremented"
                ))
            })?,
    };
    current
        .checked_add(delta)
        .ok_or_else(|| KvError::Invalid(format!("incrementing `{key}` by {delta} overflows")))
}

pub fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE {
        return Err(KvError::Invalid(format!(
            "the value is {} bytes; values may be at most {MAX_VALUE} (use blobs for large data)",
            value.len()
        )));
    }
    Ok(())
}
