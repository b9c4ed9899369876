//! The cluster backend: one JetStream key-value bucket, `nubo_kv`, for
//! every store of every app, replicated by NATS.
//!
//! A key is `APP.STORE.HEX`: the app and store as subject tokens, the
//! user's key hex-encoded, because JetStream keys allow few characters and
//! hex keeps byte order. A value is 8 bytes of expiry (milliseconds since
//! the Unix epoch, 0 for none) and then the user's bytes: NATS 2.9 has no
//! time-to-live per key, so expiry is checked on read, and an expired key
//! is deleted by the read that finds it.
//!
//! Increment and compare-and-swap read the key's stream revision and write
//! with it as the expected last revision ([`nubo_jetstream::write_if`]),
//! retrying when another node wrote in between. Batch calls are key by key (`wasi:keyvalue/batch` does not
//! promise atomicity; the embedded backend happens to give it).
//! Each app's bytes (keys and values) are a shared total
//! ([`nubo_jetstream::Usage`]): a write adds the difference between its
//! value and the one it replaces before it stores it, so the quota holds
//! across nodes. Two nodes overwriting the same key at once may both
//! count against the old value, which leaves the total off by that
//! value's size.
//! Listing reads the store's key names from the stream's subject index,
//! sorts them, and reads candidates until a page is full: fine for
//! thousands of keys per store, slow for millions.

use crate::{KvBackend, KvError, Namespace, check_key, check_value};
use async_nats::jetstream::kv;
use std::time::Duration;

const BUCKET: &str = "nubo_kv";

pub struct NatsKv {
    store: kv::Store,
    js: async_nats::jetstream::Context,
    usage: nubo_jetstream::Usage,
    quotas: nubo_sqlite::Quotas,
}

/// The total of the usage bucket that key-value bytes count in.
const USAGE: &str = "kv";

/// What a key holds: its live value, the stream revision it is at (0:
/// never written) and the bytes it counts for in the app's total (its
/// key and value while stored, expired or not; 0 once deleted).
struct Entry {
    value: Option<Vec<u8>>,
    revision: u64,
    counted: i64,
}

fn nats_err(what: &str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> KvError {
    KvError::backend(what, e)
}

fn subject(ns: &Namespace) -> String {
    format!(
        "{}.{}",
        nubo_jetstream::token(&ns.app),
        nubo_jetstream::token(&ns.store)
    )
}

/// The user's key always hex-encoded (as a forced [`nubo_jetstream::token`]),
/// so that sorting the encoded keys sorts the keys.
fn full_key(ns: &Namespace, key: &str) -> String {
    let mut out = subject(ns);
    out.push_str("._");
    for b in key.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn envelope(value: &[u8], ttl: Option<Duration>) -> bytes::Bytes {
    let expires = ttl.map_or(0, |t| {
        (nubo_sqlite::now_ms() as u64)
            .saturating_add(t.as_millis() as u64)
            .max(1)
    });
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expires.to_be_bytes());
    out.extend_from_slice(value);
    out.into()
}

/// The user's bytes if the value is live.
fn open_envelope(raw: &[u8]) -> Option<&[u8]> {
    let (head, value) = raw.split_at_checked(8)?;
    let expires = u64::from_be_bytes(head.try_into().ok()?);
    (expires == 0 || expires > nubo_sqlite::now_ms() as u64).then_some(value)
}

impl NatsKv {
    pub async fn open(
        js: &async_nats::jetstream::Context,
        replicas: usize,
    ) -> Result<Self, KvError> {
        let store = nubo_jetstream::open_kv(
            js,
            kv::Config {
                bucket: BUCKET.into(),
                history: 1,
                max_value_size: (crate::MAX_VALUE + 8) as i32,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| KvError::backend("JetStream", e))?;
        let usage = nubo_jetstream::Usage::open(js, replicas)
            .await
            .map_err(|e| KvError::backend("JetStream", e))?;
        Ok(Self {
            store,
            js: js.clone(),
            usage,
            quotas: Default::default(),
        })
    }

    /// What `full` (the key `key` of `app`) holds. An expired value is
    /// deleted, unless someone rewrote it meanwhile, and read as absent.
    async fn entry(&self, app: &str, key: &str, full: &str) -> Result<Entry, KvError> {
        let entry = nubo_jetstream::retry(|| self.store.entry(full))
            .await
            .map_err(|e| nats_err("read", e))?;
        let Some(entry) = entry else {
            return Ok(Entry {
                value: None,
                revision: 0,
                counted: 0,
            });
        };
        let mut out = Entry {
            value: None,
            revision: entry.revision,
            counted: 0,
        };
        if entry.operation != kv::Operation::Put {
            return Ok(out);
        }
        out.counted = (key.len() + entry.value.len().saturating_sub(8)) as i64;
        match open_envelope(&entry.value) {
            Some(v) => out.value = Some(v.to_vec()),
            None => {
                let deleted = self
                    .store
                    .delete_expect_revision(full, Some(entry.revision))
                    .await;
                if deleted.is_ok() {
                    self.count(app, -out.counted).await?;
                    out.counted = 0;
                }
            }
        }
        Ok(out)
    }

    /// Adds `delta` bytes to the app's total; refused if that takes it
    /// past its quota.
    async fn count(&self, app: &str, delta: i64) -> Result<(), KvError> {
        let quota = self.quotas.of(app);
        match self.usage.add(app, USAGE, delta, quota).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(KvError::OverQuota {
                app: app.to_owned(),
                quota,
            }),
            Err(e) => Err(nats_err("usage", e)),
        }
    }

    /// Counts a write of `delta` bytes, runs it, and takes the count back
    /// if it did not store (an error, or `Ok(false)` from a conditional
    /// write).
    async fn counted<F, Fut>(&self, app: &str, delta: i64, write: F) -> Result<bool, KvError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<bool, KvError>>,
    {
        self.count(app, delta).await?;
        let out = write().await;
        if !matches!(out, Ok(true)) {
            self.count(app, -delta).await?;
        }
        out
    }

    /// Writes `value` if the key is still at `revision` (0: absent or
    /// never written); `false` if another writer came first.
    async fn write_if(
        &self,
        key: &str,
        value: bytes::Bytes,
        revision: u64,
    ) -> Result<bool, KvError> {
        nubo_jetstream::write_if(&self.js, &self.store, key, value, revision)
            .await
            .map_err(|e| KvError::backend("JetStream", e))
    }
}

#[async_trait::async_trait]
impl KvBackend for NatsKv {
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        Ok(self.entry(&ns.app, key, &full_key(ns, key)).await?.value)
    }

    async fn set(
        &self,
        ns: &Namespace,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        check_key(key)?;
        check_value(value)?;
        let full = full_key(ns, key);
        let old = self.entry(&ns.app, key, &full).await?.counted;
        let delta = (key.len() + value.len()) as i64 - old;
        let value = envelope(value, ttl);
        self.counted(&ns.app, delta, || async {
            nubo_jetstream::retry(|| self.store.put(&full, value.clone()))
                .await
                .map(|_| true)
                .map_err(|e| nats_err("write", e))
        })
        .await
        .map(|_| ())
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), KvError> {
        check_key(key)?;
        let full = full_key(ns, key);
        let old = self.entry(&ns.app, key, &full).await?.counted;
        nubo_jetstream::retry(|| self.store.delete(&full))
            .await
            .map_err(|e| nats_err("delete", e))?;
        self.count(&ns.app, -old).await
    }

    async fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, KvError> {
        Ok(self.get(ns, key).await?.is_some())
    }

    async fn list_keys(
        &self,
        ns: &Namespace,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), KvError> {
        let limit = limit.clamp(1, 10_000);
        let under = format!("{}.", subject(ns));
        let mut keys: Vec<(String, String)> = nubo_jetstream::keys(&self.store, &under)
            .await
            .map_err(|e| KvError::backend("JetStream", e))?
            .into_iter()
            .filter_map(|full| {
                let key = nubo_jetstream::untoken(full.strip_prefix(&under)?)?;
                (key.starts_with(prefix) && cursor.is_none_or(|c| key.as_str() > c))
                    .then_some((key, full))
            })
            .collect();
        keys.sort_unstable();
        // The subject index also lists deleted and expired keys: read
        // each candidate until the page is full.
        let mut page = Vec::new();
        let mut more = false;
        for (key, full) in keys {
            if self.entry(&ns.app, &key, &full).await?.value.is_none() {
                continue;
            }
            if page.len() == limit {
                more = true;
                break;
            }
            page.push(key);
        }
        let next = more.then(|| page.last().cloned()).flatten();
        Ok((page, next))
    }

    async fn increment(&self, ns: &Namespace, key: &str, delta: i64) -> Result<i64, KvError> {
        check_key(key)?;
        let full = full_key(ns, key);
        loop {
            let e = self.entry(&ns.app, key, &full).await?;
            let next = crate::incremented(key, e.value.as_deref(), delta)?;
            let text = next.to_string();
            let grow = (key.len() + text.len()) as i64 - e.counted;
            let value = envelope(text.as_bytes(), None);
            let write = || self.write_if(&full, value, e.revision);
            if self.counted(&ns.app, grow, write).await? {
                return Ok(next);
            }
        }
    }

    async fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, KvError> {
        check_key(key)?;
        check_value(new)?;
        let full = full_key(ns, key);
        loop {
            let e = self.entry(&ns.app, key, &full).await?;
            if e.value.as_deref() != expected {
                return Ok(false);
            }
            let grow = (key.len() + new.len()) as i64 - e.counted;
            let write = || self.write_if(&full, envelope(new, None), e.revision);
            if self.counted(&ns.app, grow, write).await? {
                return Ok(true);
            }
        }
    }

    async fn get_many(
        &self,
        ns: &Namespace,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        let reads = keys.iter().map(|k| self.get(ns, k));
        futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect()
    }

    async fn set_many(&self, ns: &Namespace, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        for (k, v) in pairs {
            check_key(k)?;
            check_value(v)?;
        }
        let writes = pairs.iter().map(|(k, v)| self.set(ns, k, v, None));
        futures_util::future::join_all(writes)
            .await
            .into_iter()
            .collect()
    }

    async fn delete_many(&self, ns: &Namespace, keys: &[String]) -> Result<(), KvError> {
        let deletes = keys.iter().map(|k| self.delete(ns, k));
        futures_util::future::join_all(deletes)
            .await
            .into_iter()
            .collect()
    }

    async fn purge_app(&self, app: &str) -> Result<u64, KvError> {
        let prefix = format!("{}.", nubo_jetstream::token(app));
        let purged = nubo_jetstream::purge_keys(&self.store, &prefix)
            .await
            .map_err(|e| nats_err("purge", e))?;
        self.usage
            .forget(app, USAGE)
            .await
            .map_err(|e| nats_err("usage", e))?;
        Ok(purged)
    }

    fn set_quota(&self, app: &str, bytes: u64) {
        self.quotas.set(app, bytes);
    }
}
