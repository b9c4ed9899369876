//! Where each key's TAT is kept: in the node's memory on one node
//! ([`MemoryCells`]), in a JetStream bucket on a cluster ([`NatsCells`]),
//! where every node's requests count against one TAT per key.
//!
//! On a cluster a request reads the key's TAT and writes the new one on
//! the condition that nobody wrote in between (the entry's revision,
//! [`nubo_jetstream::write_if`]); a node that loses the race reads again.
//! So the limit is exact across the cluster, at the price of a round trip
//! to NATS per limited request. A key that is over its limit is refused
//! from the node's memory until its known TAT allows a request again: a
//! TAT only grows, so such a refusal is always right, and a client
//! hammering a limit costs the cluster no round trips.

use crate::gcra::{Decision, Rate};
use async_nats::jetstream::{self, kv};
use nubo_wasm::BoxFuture;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Keys kept in memory before the ones whose burst is whole again are
/// dropped.
const KEEP: usize = 50_000;

/// The TAT of each key.
pub trait Cells: Send + Sync {
    /// Decides one request of `client` under the limit `scope` (an app,
    /// as a subject token, and the limit's index: `shop.0`) at `now_us`,
    /// and records it.
    fn decide<'a>(
        &'a self,
        scope: &'a str,
        client: &'a str,
        rate: Rate,
        now_us: u64,
    ) -> BoxFuture<'a, Result<Decision, String>>;
}

/// One map of TATs, dropping keys whose whole burst is back.
#[derive(Default)]
struct Tats(Mutex<HashMap<String, u64>>);

impl Tats {
    fn get(&self, key: &str) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
    }

    fn put(&self, key: &str, tat: u64, now_us: u64) {
        insert(
            &mut self.0.lock().unwrap_or_else(|p| p.into_inner()),
            key.to_string(),
            tat,
            now_us,
        );
    }

    fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

fn insert(m: &mut HashMap<String, u64>, key: String, tat: u64, now_us: u64) {
    if m.len() >= KEEP && !m.contains_key(&key) {
        m.retain(|_, t| *t > now_us);
    }
    m.insert(key, tat);
}

/// One node's TATs.
#[derive(Default)]
pub struct MemoryCells(Tats);

impl Cells for MemoryCells {
    /// Reads and writes the key under one lock: exact on the node.
    fn decide<'a>(
        &'a self,
        scope: &'a str,
        client: &'a str,
        rate: Rate,
        now_us: u64,
    ) -> BoxFuture<'a, Result<Decision, String>> {
        let mut key = String::with_capacity(scope.len() + 1 + client.len());
        key.push_str(scope);
        key.push(' ');
        key.push_str(client);
        let mut m = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
        let d = rate.decide(m.get(&key).copied(), now_us);
        if d.allowed {
            match m.get_mut(&key) {
                Some(tat) => *tat = d.tat_us,
                None => insert(&mut m, key, d.tat_us, now_us),
            }
        }
        Box::pin(std::future::ready(Ok(d)))
    }
}

const BUCKET: &str = "nubo_ratelimit";

/// The cluster's TATs, in the `nubo_ratelimit` bucket (keys expire after
/// a day, the longest a burst may take to come back).
pub struct NatsCells {
    js: jetstream::Context,
    store: kv::Store,
    /// Keys known to be over their limit, with the TAT that says so.
    refused: Tats,
}

impl NatsCells {
    pub async fn open(
        js: jetstream::Context,
        replicas: usize,
    ) -> Result<Self, nubo_jetstream::JsError> {
        let store = nubo_jetstream::open_kv(
            &js,
            kv::Config {
                bucket: BUCKET.into(),
                history: 1,
                max_age: std::time::Duration::from_secs(crate::section::MAX_WINDOW_S),
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self {
            js,
            store,
            refused: Tats::default(),
        })
    }

    async fn decide_shared(&self, key: &str, rate: Rate, now_us: u64) -> Result<Decision, String> {
        if let Some(tat) = self.refused.get(key) {
            let d = rate.decide(Some(tat), now_us);
            if !d.allowed {
                return Ok(d);
            }
            self.refused.forget(key);
        }
        for _ in 0..16 {
            let entry = self.store.entry(key).await.map_err(|e| e.to_string())?;
            let (tat, revision) = match entry {
                Some(e) if e.operation == kv::Operation::Put => {
                    let tat = std::str::from_utf8(&e.value)
                        .ok()
                        .and_then(|t| t.parse().ok());
                    (tat, e.revision)
                }
                Some(e) => (None, e.revision),
                None => (None, 0),
            };
            let d = rate.decide(tat, now_us);
            if !d.allowed {
                self.refused.put(key, d.tat_us, now_us);
                return Ok(d);
            }
            let value = bytes::Bytes::from(d.tat_us.to_string());
            if nubo_jetstream::write_if(&self.js, &self.store, key, value, revision)
                .await
                .map_err(|e| e.to_string())?
            {
                return Ok(d);
            }
        }
        Err("too many nodes wrote the same key at once".into())
    }
}

impl Cells for NatsCells {
    /// The key is the scope and a digest of the client key: a subject
    /// token whatever the client sent.
    fn decide<'a>(
        &'a self,
        scope: &'a str,
        client: &'a str,
        rate: Rate,
        now_us: u64,
    ) -> BoxFuture<'a, Result<Decision, String>> {
        Box::pin(async move {
            let key = format!("{scope}.{}", hex::encode(Sha256::digest(client.as_bytes())));
            self.decide_shared(&key, rate, now_us).await
        })
    }
}
