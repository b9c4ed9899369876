//! The storage contract every queue backend keeps, and the per-app
//! limits the node sets on it.

use crate::{MAX_BODY, Message, QueueError, QueueName, Stats};
use nubo_wasm::Principal;

#[async_trait::async_trait]
pub trait QueueBackend: Send + Sync + 'static {
    /// Stores a message, published by `by`; once this returns, it will
    /// be delivered.
    async fn publish(
        &self,
        q: &QueueName,
        body: &[u8],
        by: Option<&Principal>,
    ) -> Result<u64, QueueError>;
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

pub(crate) fn check_body(body: &[u8]) -> Result<(), QueueError> {
    if body.len() > MAX_BODY {
        return Err(QueueError::Invalid(format!(
            "the message is {} bytes; messages may be at most {MAX_BODY} (put large data in a blob and send its name)",
            body.len(),
        )));
    }
    Ok(())
}
