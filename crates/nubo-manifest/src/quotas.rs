//! `[quotas]`: how much of the node's disk one app's data may take.
//!
//! Every app stores what its guests write: key-value pairs, blobs, queue
//! messages waiting for delivery, and dead letters. Without a ceiling one
//! app (a bug, or a client that found an unthrottled write) fills the disk
//! that every other app on the node writes to. Each quota is per app, over
//! all of its stores, containers or queues; a write that would pass it
//! fails with an error the guest can read, and nothing else changes.

use crate::error::Reporter;
use crate::ranges;
use crate::raw::{RawQuotas, S};
use serde::{Deserialize, Serialize};

/// One mebibyte, the unit of the byte quotas.
pub const MB: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuotasSpec {
    /// Keys and values of all the app's key-value stores, in MiB.
    pub kv_mb: u64,
    /// Object bytes of all the app's blob containers, in MiB.
    pub blob_mb: u64,
    /// Messages waiting or being delivered, over all the app's queues;
    /// a publish beyond it is refused.
    pub queue_messages: u64,
    /// Dead letters kept over all the app's queues; beyond it the oldest
    /// is dropped (and counted in the log).
    pub dead_letters: u64,
}

impl Default for QuotasSpec {
    fn default() -> Self {
        Self {
            kv_mb: 1024,
            blob_mb: 10 * 1024,
            queue_messages: 1_000_000,
            dead_letters: 10_000,
        }
    }
}

impl QuotasSpec {
    /// The key-value quota in bytes.
    pub fn kv_bytes(&self) -> u64 {
        self.kv_mb.saturating_mul(MB)
    }

    /// The blob quota in bytes.
    pub fn blob_bytes(&self) -> u64 {
        self.blob_mb.saturating_mul(MB)
    }
}

pub(crate) fn quotas(raw: Option<&S<RawQuotas>>, r: &mut Reporter<'_>) -> QuotasSpec {
    let d = QuotasSpec::default();
    let Some(raw) = raw else { return d };
    let raw = raw.get_ref();
    let num = crate::validate::ranged;
    QuotasSpec {
        kv_mb: num(r, &raw.kv_mb, ranges::QUOTA_KV_MB, d.kv_mb),
        blob_mb: num(r, &raw.blob_mb, ranges::QUOTA_BLOB_MB, d.blob_mb),
        queue_messages: num(
            r,
            &raw.queue_messages,
            ranges::QUOTA_QUEUE_MESSAGES,
            d.queue_messages,
        ),
        dead_letters: num(
            r,
            &raw.dead_letters,
            ranges::QUOTA_DEAD_LETTERS,
            d.dead_letters,
        ),
    }
}
