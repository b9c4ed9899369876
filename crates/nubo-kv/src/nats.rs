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
//! with it as the expected last revision ([`nubo_cluster::write_if`]),
//! retrying when another node wrote in between. Batch calls are key by key (`wasi:keyvalue/batch` does not
//! promise atomicity; the embedded backend happens to give it).
//! Listing reads the store's key names from the stream's subject index,
//! sorts them, and reads candidates until a page is full: fine for
//! thousands of keys per store, slow for millions.

use crate::{KvBackend, KvError, Namespace, check_key, check_value};
use async_nats::jetstream::kv;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const BUCKET: &str = "nubo_kv";

pub struct NatsKv {
    store: kv::Store,
    js: async_nats::jetstream::Context,
}

fn nats_err(what: &str, e: impl std::fmt::Display) -> KvError {
    KvError::Backend(format!("{what}: {e}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn subject(ns: &Namespace) -> String {
    format!(
        "{}.{}",
        nubo_cluster::token(&ns.app),
        nubo_cluster::token(&ns.store)
    )
}

/// The user's key always hex-encoded (as a forced [`nubo_cluster::token`]),
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
    let expires = ttl.map_or(0, |t| now_ms().saturating_add(t.as_millis() as u64).max(1));
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expires.to_be_bytes());
    out.extend_from_slice(value);
    out.into()
}

/// The user's bytes if the value is live.
fn open_envelope(raw: &[u8]) -> Option<&[u8]> {
    let (head, value) = raw.split_at_checked(8)?;
    let expires = u64::from_be_bytes(head.try_into().ok()?);
    (expires == 0 || expires > now_ms()).then_some(value)
}

impl NatsKv {
    pub async fn open(
        js: &async_nats::jetstream::Context,
        replicas: usize,
    ) -> Result<Self, KvError> {
        let store = nubo_cluster::open_kv(
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
        .map_err(|e| KvError::Backend(e.to_string()))?;
        Ok(Self {
            store,
            js: js.clone(),
        })
    }

    /// The live value and the stream revision it is at (0: absent).
    async fn entry(&self, key: &str) -> Result<(Option<Vec<u8>>, u64), KvError> {
        let entry = nubo_cluster::retry(|| self.store.entry(key))
            .await
            .map_err(|e| nats_err("read", e))?;
        let Some(entry) = entry else {
            return Ok((None, 0));
        };
        if entry.operation != kv::Operation::Put {
            return Ok((None, entry.revision));
        }
        match open_envelope(&entry.value) {
            Some(v) => Ok((Some(v.to_vec()), entry.revision)),
            None => {
                // Expired: delete it unless someone rewrote it meanwhile.
                let _ = self
                    .store
                    .delete_expect_revision(key, Some(entry.revision))
                    .await;
                Ok((None, entry.revision))
            }
        }
    }

    /// Writes `value` if the key is still at `revision` (0: absent or
    /// never written); `false` if another writer came first.
    async fn write_if(
        &self,
        key: &str,
        value: bytes::Bytes,
        revision: u64,
    ) -> Result<bool, KvError> {
        nubo_cluster::write_if(&self.js, &self.store, key, value, revision)
            .await
            .map_err(|e| KvError::Backend(e.to_string()))
    }
}

#[async_trait::async_trait]
impl KvBackend for NatsKv {
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        Ok(self.entry(&full_key(ns, key)).await?.0)
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
        let (key, value) = (full_key(ns, key), envelope(value, ttl));
        nubo_cluster::retry(|| self.store.put(&key, value.clone()))
            .await
            .map_err(|e| nats_err("write", e))?;
        Ok(())
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), KvError> {
        check_key(key)?;
        let key = full_key(ns, key);
        nubo_cluster::retry(|| self.store.delete(&key))
            .await
            .map_err(|e| nats_err("delete", e))
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
        let mut keys: Vec<(String, String)> = nubo_cluster::keys(&self.store, &under)
            .await
            .map_err(|e| KvError::Backend(e.to_string()))?
            .into_iter()
            .filter_map(|full| {
                let key = nubo_cluster::untoken(full.strip_prefix(&under)?)?;
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
            if self.entry(&full).await?.0.is_none() {
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
            let (current, revision) = self.entry(&full).await?;
            let next = crate::incremented(key, current.as_deref(), delta)?;
            let value = envelope(next.to_string().as_bytes(), None);
            if self.write_if(&full, value, revision).await? {
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
            let (current, revision) = self.entry(&full).await?;
            if current.as_deref() != expected {
                return Ok(false);
            }
            if self.write_if(&full, envelope(new, None), revision).await? {
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
        let prefix = format!("{}.", nubo_cluster::token(app));
        nubo_cluster::purge_keys(&self.store, &prefix)
            .await
            .map_err(|e| nats_err("purge", e))
    }
}
