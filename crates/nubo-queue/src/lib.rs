//! Durable queues: components publish messages; the node delivers each to
//! the queue's consumer component, at least once, retrying with
//! exponential backoff and setting aside (dead-lettering) what keeps
//! failing.
//!
//! As with every Nubo capability: [`QueueBackend`] is the storage
//! contract, [`SqliteQueue`] the embedded backend and [`NatsQueue`] the
//! cluster's, on JetStream; [`Queues`] links the guest binding
//! (`nubo:platform/queue`, since WASI has no queue interface). The
//! [`Dispatcher`] delivers messages to their consumers, through the
//! consumer's export ([`export`]) or over HTTP; a queue route of the
//! gateway publishes through a [`RoutePublishers`], which the capability
//! puts in the node's services.

//!
//! The message types and the batch wire format ([`batch`]) build without
//! the `runtime` feature (on by default), so that the fuzz targets in
//! `fuzz/` compile them without the runtime, the stores and wasmtime.

pub mod batch;
mod section;

#[cfg(feature = "runtime")]
mod api;
#[cfg(feature = "runtime")]
mod backend;
#[cfg(feature = "runtime")]
mod capability;
#[cfg(feature = "runtime")]
mod dispatch;
#[cfg(feature = "runtime")]
pub mod export;
#[cfg(feature = "runtime")]
mod host;
#[cfg(feature = "runtime")]
mod metrics;
#[cfg(feature = "runtime")]
pub mod nats;
#[cfg(feature = "runtime")]
mod sqlite;

#[cfg(feature = "runtime")]
pub use backend::{QueueBackend, QueueQuota};
#[cfg(feature = "runtime")]
pub(crate) use backend::{Quotas, check_body};
#[cfg(feature = "runtime")]
pub use capability::{QueueGrant, Queues};
#[cfg(feature = "runtime")]
pub use dispatch::{Dispatcher, RoutePublisher, RoutePublishers};
#[cfg(feature = "runtime")]
pub use nats::NatsQueue;
#[cfg(feature = "runtime")]
pub use sqlite::SqliteQueue;

pub use section::{QueueSection, QueueSpec, QueueSpecs};

use serde::Serialize;

/// Largest message body accepted, in bytes.
pub const MAX_BODY: usize = 1 << 20;

/// A queue of one app.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueName {
    pub app: String,
    pub queue: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("{0}")]
    Invalid(String),
    /// The store underneath (SQLite, JetStream, the file system) failed.
    #[error("queue backend failed: {context}: {source}")]
    Backend {
        context: String,
        #[source]
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The app's queues already hold `quota` messages.
    #[error(
        "app `{app}` has {quota} messages waiting in its queues, its quota (`queue_messages` in [quotas]); the message was not published"
    )]
    OverQuota { app: String, quota: u64 },
    /// The node's disk has no room for the write, or is within the room
    /// the node keeps free; nothing was changed.
    #[error("the node's disk is full; nothing was written")]
    DiskFull,
}

impl QueueError {
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

/// A message handed out for delivery.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: u64,
    pub body: Vec<u8>,
    /// 1 on the first delivery.
    pub attempt: u32,
    /// Milliseconds since the Unix epoch.
    pub published_at: i64,
    /// Why the last delivery failed, if one did.
    pub last_error: Option<String>,
    /// Who published it, if a signed-in identity's request did: its
    /// delivery runs as started by them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<nubo_manifest::Principal>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Waiting for delivery (including retries not yet due).
    pub ready: u64,
    /// Handed out and not yet answered.
    pub in_flight: u64,
    /// Set aside after `max_attempts` failures.
    pub dead: u64,
}

pub use nubo_manifest::backoff_ms;
