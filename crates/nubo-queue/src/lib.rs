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
//! gateway publishes through a [`RoutePublisher`].

pub mod batch;
mod dispatch;
pub mod export;
mod host;
pub mod nats;
mod sqlite;

pub use dispatch::{Dispatcher, RoutePublisher};

pub use nats::NatsQueue;
pub use sqlite::SqliteQueue;

use serde::Serialize;
use std::sync::Arc;

/// Largest message body accepted, in bytes.
pub const MAX_BODY: usize = 1 << 20;

/// A queue of one app.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueName {
    pub app: String,
    pub queue: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("{0}")]
    Invalid(String),
    #[error("queue backend failed: {0}")]
    Backend(String),
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

#[async_trait::async_trait]
pub trait QueueBackend: Send + Sync + 'static {
    /// Stores a message; once this returns, it will be delivered.
    async fn publish(&self, q: &QueueName, body: &[u8]) -> Result<u64, QueueError>;
    /// Hands out up to `max` of the oldest due messages, each hidden from other leases for
    /// `visibility_ms` (then it is due again: a delivery that never
    /// answered is retried). JetStream hides a message for at least a
    /// second whatever `visibility_ms` says.
    async fn lease(
        &self,
        q: &QueueName,
        max: usize,
        visibility_ms: u64,
    ) -> Result<Vec<Message>, QueueError>;
    /// Delivered: forget them.
    async fn ack(&self, q: &QueueName, ids: &[u64]) -> Result<(), QueueError>;
    /// Failed: due again after `retry_in_ms`, or dead if `dead`.
    async fn fail(
        &self,
        q: &QueueName,
        id: u64,
        error: &str,
        retry_in_ms: u64,
        dead: bool,
    ) -> Result<(), QueueError>;
    /// When the dispatcher should lease again: `Some(ms)` while messages
    /// wait (0: one may be due now; a backend that cannot tell gives its
    /// polling interval), `None` when nothing waits until a publish or a
    /// failure wakes it.
    async fn next_due_in(&self, q: &QueueName) -> Result<Option<u64>, QueueError>;
    async fn stats(&self, q: &QueueName) -> Result<Stats, QueueError>;
    /// Up to `n` waiting messages, oldest first, without leasing them.
    async fn peek(&self, q: &QueueName, n: usize) -> Result<Vec<Message>, QueueError>;
    /// Up to `n` dead messages.
    async fn dead(&self, q: &QueueName, n: usize) -> Result<Vec<Message>, QueueError>;
    /// Deletes waiting messages (`dead`: the dead ones instead); how many.
    async fn purge(&self, q: &QueueName, dead: bool) -> Result<u64, QueueError>;
    /// Deletes every message of every queue of `app`, waiting and dead
    /// (the app was removed); how many.
    async fn purge_app(&self, app: &str) -> Result<u64, QueueError>;
    /// How many messages `app` may have waiting or in delivery over all
    /// its queues (a publish beyond is refused), and how many dead
    /// letters it keeps (beyond, the oldest are dropped). An app never
    /// set has no limits.
    fn set_quota(&self, app: &str, quota: QueueQuota);
    /// Writes that add data are refused while the disk of an embedded
    /// store has less than `bytes` free ([`nubo_sqlite::Disk`]); a
    /// networked store has its own limits.
    fn keep_free(&self, _bytes: u64) {}
}

/// An app's limits on what its queues store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueQuota {
    pub messages: u64,
    pub dead_letters: u64,
}

/// Each app's [`QueueQuota`], as the node last set it.
#[derive(Default)]
pub(crate) struct Quotas {
    messages: nubo_sqlite::Quotas,
    dead: nubo_sqlite::Quotas,
}

impl Quotas {
    pub(crate) fn set(&self, app: &str, q: QueueQuota) {
        self.messages.set(app, q.messages);
        self.dead.set(app, q.dead_letters);
    }

    pub(crate) fn messages(&self, app: &str) -> u64 {
        self.messages.of(app)
    }

    pub(crate) fn dead_letters(&self, app: &str) -> u64 {
        self.dead.of(app)
    }
}

/// What one component may publish to: its app's queues that `nubo.toml`
/// grants, and a way to wake their dispatchers.
#[derive(Clone)]
pub struct QueueGrant {
    pub backend: Arc<dyn QueueBackend>,
    pub app: String,
    pub queues: Vec<String>,
    pub notify: Arc<dyn Fn(&QueueName) + Send + Sync>,
}

impl QueueGrant {
    /// The grant as the runtime gives it to each instance.
    pub fn into_grant(self) -> Arc<dyn nubo_wasm::Grant> {
        Arc::new(nubo_wasm::Shared(Arc::new(self)))
    }
}

/// Queues as a capability of the runtime: `nubo:platform/queue` (publish).
pub struct Queues;

impl nubo_wasm::Capability for Queues {
    fn name(&self) -> &'static str {
        "queues"
    }

    fn grant_key(&self) -> Option<nubo_wasm::GrantKey> {
        Some(nubo_wasm::GrantKey {
            key: "queues",
            noun: "queue",
            names: nubo_wasm::Names::Declared { section: "queue" },
        })
    }

    fn grant(
        &self,
        to: &nubo_wasm::GrantTo<'_>,
        names: &[String],
    ) -> Result<Arc<dyn nubo_wasm::Grant>, nubo_wasm::GrantError> {
        let dispatcher = to.services.need::<Arc<Dispatcher>>(self.name())?.clone();
        let grant = QueueGrant {
            backend: dispatcher.backend.clone(),
            app: to.app.to_string(),
            queues: names.to_vec(),
            notify: Arc::new(move |q| dispatcher.notify(q)),
        };
        Ok(grant.into_grant())
    }

    fn link(
        &self,
        linker: &mut wasmtime::component::Linker<nubo_wasm::Host>,
    ) -> wasmtime::Result<()> {
        host::add_to_linker(linker)
    }
}

pub(crate) fn check_body(body: &[u8]) -> Result<(), QueueError> {
    if body.len() > MAX_BODY {
        return Err(QueueError::Invalid(format!(
            "the message is {} bytes; messages may be at most {MAX_BODY} (put large data in a blob and send its name)",
            body.len(),
        )));
    }
    Ok(())
}

pub use nubo_manifest::backoff_ms;
