//! Who runs what: a claim `NODE.APP.ID` in `nubo_task_claims` for every
//! task a node runs, waits on or is about to retry, and the taking back of
//! a lost node's claimed tasks.

use super::{NatsTasks, row_key};
use crate::store::{Start, StoreError, TaskStore};
use crate::{State, Task};
use std::collections::HashSet;

/// What fetching a queued task's message came to.
pub enum Claim {
    /// This node now runs it.
    Claimed(Box<Task>),
    /// Nothing to run: finished, cancelled, or running elsewhere.
    Gone,
    /// Its row is not written yet: try again shortly.
    NotYet,
}

impl NatsTasks {
    pub(super) fn claim_key(&self, node: &str, app: &str, id: &str) -> String {
        format!(
            "{}.{}.{id}",
            nubo_jetstream::token(node),
            nubo_jetstream::token(app)
        )
    }

    /// Drops this node's claim on a task it no longer runs (cancelled).
    pub async fn release(&self, app: &str, id: &str) {
        self.unclaim(app, id).await;
    }

    pub(super) async fn unclaim(&self, app: &str, id: &str) {
        let key = self.claim_key(&self.node, app, id);
        if let Err(e) = self.claims.purge(&key).await {
            tracing::debug!(task = id, "claim not removed: {e}");
        }
    }

    /// Takes a queued task for this node: running, claimed.
    pub async fn claim(&self, app: &str, id: &str) -> Result<Claim, StoreError> {
        if self.read(app, id).await?.is_none() {
            return Ok(Claim::NotYet);
        }
        match self.start(id, app, Start::Attempt).await? {
            Some(t) => Ok(Claim::Claimed(Box::new(t))),
            None => Ok(Claim::Gone),
        }
    }

    /// Puts the tasks that nodes outside `live` had claimed back in the
    /// queue. Any node may run this; the row's compare-and-swap makes one
    /// of them win each task.
    pub async fn sweep(&self, live: &HashSet<String>) -> Result<usize, StoreError> {
        let keys = nubo_jetstream::keys(&self.claims, "")
            .await
            .map_err(|e| StoreError::backend("JetStream", e))?;
        let live: HashSet<String> = live.iter().map(|n| nubo_jetstream::token(n)).collect();
        let mut n = 0;
        for key in keys {
            if self.take_back_claim(&key, Some(&live)).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Takes back the task of claim `key` unless its node is in `live`.
    async fn take_back_claim(
        &self,
        key: &str,
        live: Option<&HashSet<String>>,
    ) -> Result<bool, StoreError> {
        let mut parts = key.splitn(3, '.');
        let (Some(node), Some(app), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Ok(false);
        };
        if live.is_some_and(|l| l.contains(node)) {
            return Ok(false);
        }
        let (Some(node), Some(app)) = (nubo_jetstream::untoken(node), nubo_jetstream::untoken(app))
        else {
            return Ok(false);
        };
        let taken = self.take_back(&node, &app, id).await?;
        let _ = self.claims.purge(key).await;
        Ok(taken)
    }

    /// Requeues a task `node` held, if it still does.
    async fn take_back(&self, node: &str, app: &str, id: &str) -> Result<bool, StoreError> {
        let row = self
            .update(app, id, |r| {
                let held = matches!(r.state, State::Running | State::Waiting | State::Queued)
                    && r.owner.as_deref() == Some(node);
                if held {
                    r.state = State::Queued;
                    r.owner = None;
                }
                held
            })
            .await?;
        let Some(row) = row else { return Ok(false) };
        tracing::info!(
            app,
            task = id,
            node,
            "task of a lost node back in the queue"
        );
        self.enqueue(app, id, format!("{}@{}", row_key(app, id), row.attempts))
            .await?;
        Ok(true)
    }

    /// Puts back in the queue what this node held before it restarted.
    pub(super) async fn take_back_own(&self) -> Result<usize, StoreError> {
        let under = format!("{}.", nubo_jetstream::token(&self.node));
        let keys = nubo_jetstream::keys(&self.claims, &under)
            .await
            .map_err(|e| StoreError::backend("JetStream", e))?;
        let mut n = 0;
        for key in keys {
            if self.take_back_claim(&key, None).await? {
                n += 1;
            }
        }
        if n > 0 {
            tracing::info!(
                "{n} task(s) this node held before it restarted or lost NATS are back in the queue"
            );
        }
        Ok(n)
    }
}
