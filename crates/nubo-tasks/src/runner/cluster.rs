//! Tasks across a cluster: every node takes queued tasks of its apps from
//! the shared queue as it has run permits free, tells the others when a
//! task finishes or is cancelled (so that a parent waiting on node A
//! wakes when its child finishes on node B), and takes back the tasks of
//! nodes whose heartbeat stopped.
//!
//! The announcements are a shortcut, not the truth: a node can die after
//! it stored an outcome and before it announced it. So every
//! [`RECHECK_EVERY`] a node also reads from the store the outcomes of the
//! tasks anyone here still waits on.

use super::invoke::Permits;
use super::{Before, TaskRunner, lock};
use crate::nats::Claim;
use crate::{NatsTasks, Outcome, Start, TaskError};
use futures_util::StreamExt;
use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The runner's link to the cluster.
pub struct ClusterTasks {
    pub nats: Arc<NatsTasks>,
    pub client: async_nats::Client,
    /// Cancels are signed with it: a node stops tasks only for a peer.
    pub key: Arc<nubo_cluster::ClusterKey>,
    /// Set while this node cannot vouch for its heartbeat: it runs and
    /// takes no task (see [`TaskRunner::fence`]).
    pub fenced: std::sync::atomic::AtomicBool,
}

/// How often the outcomes waited on here are read from the store.
const RECHECK_EVERY: Duration = Duration::from_secs(2);

/// Most tasks one node takes from the queue in one pull.
const PULL_MAX: usize = 64;
/// A queued message whose row is missing (the task's app was removed, or
/// the bucket purged by hand) is dropped after this.
const ORPHAN_AFTER: Duration = Duration::from_secs(60);

fn done_subject(app: &str) -> String {
    format!("nubo.tdone.{}", nubo_jetstream::token(app))
}

fn cancel_subject(app: &str) -> String {
    format!("nubo.tcancel.{}", nubo_jetstream::token(app))
}

impl TaskRunner {
    /// In a cluster, makes sure a loop takes `app`'s queued tasks.
    pub(super) fn pull(&self, app: &str) {
        if self.cluster.is_none() {
            return;
        }
        let mut pullers = lock(&self.pullers);
        if pullers.get(app).is_some_and(|h| !h.is_finished()) {
            return;
        }
        let handle = tokio::spawn(pull_loop(self.me.clone(), app.to_string()));
        pullers.insert(app.to_string(), handle.abort_handle());
    }

    /// Tells every node that `id` finished (they read the outcome from
    /// the store: it may be larger than a NATS message).
    pub(super) async fn announce(&self, app: &str, id: &str, _outcome: &Outcome) {
        if let Some(c) = &self.cluster
            && let Err(e) = c
                .client
                .publish(done_subject(app), id.to_string().into())
                .await
        {
            tracing::warn!(task = id, "other nodes not told of the outcome: {e}");
        }
    }

    pub(super) async fn announce_cancel(&self, app: &str, ids: &[String]) {
        if let Some(c) = &self.cluster
            && let Ok(body) = serde_json::to_vec(ids)
            && let Err(e) = c
                .client
                .publish(
                    cancel_subject(app),
                    c.key.seal(&cancel_subject(app), &body).into(),
                )
                .await
        {
            tracing::warn!("other nodes not told of a cancel: {e}");
        }
    }

    /// Deletes every task of removed app `app` and stops what runs of them
    /// here; how many there were.
    pub async fn purge(&self, app: &str) -> Result<u64, crate::StoreError> {
        let (n, unfinished) = self.store.purge_app(app).await?;
        self.stop(app, &unfinished).await;
        Ok(n)
    }

    /// Stops what runs here of `ids` (cancelled) and wakes their waiters.
    pub(super) async fn stop(&self, app: &str, ids: &[String]) {
        for t in ids {
            lock(&self.unclaimed).remove(t);
            let handle = lock(&self.running).remove(t);
            if let Some(h) = handle {
                h.abort();
                if let Some(c) = &self.cluster {
                    c.nats.release(app, t).await;
                }
            }
            self.finished(app, t, Err(TaskError::Cancelled));
        }
    }

    /// Listens for outcomes and cancels from the other nodes, and checks
    /// the store for the outcomes nobody announced.
    pub fn listen(self: &Arc<Self>) {
        let Some(c) = &self.cluster else { return };
        tokio::spawn(recheck(Arc::downgrade(self)));
        let client = c.client.clone();
        let key = c.key.clone();
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let subscribe = |s: &'static str| client.subscribe(s);
            let (done, cancel) = match (
                subscribe("nubo.tdone.>").await,
                subscribe("nubo.tcancel.>").await,
            ) {
                (Ok(d), Ok(c)) => (d, c),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!("cannot hear task outcomes from other nodes: {e}");
                    return;
                }
            };
            let mut events =
                futures_util::stream::select(done.map(|m| (true, m)), cancel.map(|m| (false, m)));
            while let Some((is_done, m)) = events.next().await {
                let Some(runner) = me.upgrade() else { return };
                let Some(app) = m
                    .subject
                    .as_str()
                    .rsplit('.')
                    .next()
                    .and_then(nubo_jetstream::untoken)
                else {
                    continue;
                };
                if is_done {
                    // Only a hint to read the store, which has the truth.
                    let id = String::from_utf8_lossy(&m.payload).to_string();
                    runner.heard_done(&app, id).await;
                    continue;
                }
                match key.open(m.subject.as_str(), &m.payload) {
                    Ok(body) => {
                        if let Ok(ids) = serde_json::from_slice::<Vec<String>>(body) {
                            runner.stop(&app, &ids).await;
                        }
                    }
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        });
    }

    /// Another node finished `id`: fill its slot if anyone here waits.
    async fn heard_done(&self, app: &str, id: String) {
        if !lock(&self.slots).contains_key(&(app.to_string(), id.clone())) {
            return;
        }
        match self.store.outcomes(app, vec![id.clone()]).await {
            Ok(mut o) => {
                if let Some(Some(outcome)) = o.pop() {
                    self.finished(app, &id, outcome);
                }
            }
            Err(e) => tracing::warn!(task = %id, "cannot read an outcome: {e}"),
        }
    }

    /// This node has written no heartbeat for [`nubo_cluster::FENCE_AFTER`]:
    /// the others may soon take its tasks over, so it stops every task it
    /// runs (no outcome is written; each runs again, from its start, on
    /// whichever node takes it) and takes no new one until
    /// [`TaskRunner::unfence`]. How many it stopped; `None` if it was
    /// fenced already.
    pub fn fence(&self) -> Option<usize> {
        let c = self.cluster.as_ref()?;
        if c.fenced.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return None;
        }
        let stopped: Vec<_> = lock(&self.running).drain().collect();
        for (_, h) in &stopped {
            h.abort();
        }
        Some(stopped.len())
    }

    /// A heartbeat was written again: first put back in the queue what
    /// this node held (unless the others already took it), then take tasks
    /// again.
    pub async fn unfence(&self) {
        let Some(c) = &self.cluster else { return };
        if !c.fenced.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.store.recover().await {
            tracing::warn!("cannot put back the tasks held before NATS was lost: {e}");
            return;
        }
        c.fenced.store(false, std::sync::atomic::Ordering::Release);
        tracing::info!("heartbeat written again: taking tasks again");
    }

    fn fenced(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.fenced.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Takes back the tasks of nodes not in `live`.
    pub async fn sweep(&self, live: &HashSet<String>) {
        let Some(c) = &self.cluster else { return };
        match c.nats.sweep(live).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("{n} task(s) of lost nodes back in the queue"),
            Err(e) => tracing::warn!("cannot take back the tasks of lost nodes: {e}"),
        }
    }
}

/// Fills the slots of tasks that finished without a word reaching here.
async fn recheck(me: Weak<TaskRunner>) {
    let mut tick = tokio::time::interval(RECHECK_EVERY);
    loop {
        tick.tick().await;
        let Some(runner) = me.upgrade() else { return };
        let mut by_app: std::collections::HashMap<String, Vec<String>> = Default::default();
        for (app, id) in lock(&runner.slots).keys() {
            by_app.entry(app.clone()).or_default().push(id.clone());
        }
        for (app, ids) in by_app {
            match runner.store.outcomes(&app, ids.clone()).await {
                Ok(outcomes) => {
                    for (id, o) in ids.iter().zip(outcomes) {
                        if let Some(o) = o {
                            runner.finished(&app, id, o);
                        }
                    }
                }
                Err(e) => tracing::warn!(app, "cannot check awaited tasks: {e}"),
            }
        }
    }
}

/// Takes `app`'s queued tasks while this node has run permits free.
async fn pull_loop(me: Weak<TaskRunner>, app: String) {
    loop {
        let Some(runner) = me.upgrade() else { return };
        let Some(c) = &runner.cluster else { return };
        let Some(app_slots) = lock(&runner.apps).get(&app).map(|a| a.running.clone()) else {
            return;
        };
        if runner.fenced() {
            drop(runner);
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let consumer = match c.nats.consumer(&app).await {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::warn!(app, "cannot take tasks from the queue: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // One run slot, waited for; then as many as are free now.
        let Some(first) = Permits::acquire(app_slots.clone(), runner.permits.clone(), &app).await
        else {
            return;
        };
        let mut held = vec![first];
        while held.len() < PULL_MAX {
            match Permits::try_acquire(app_slots.clone(), runner.permits.clone(), &app) {
                Some(p) => held.push(p),
                None => break,
            }
        }
        let batch = consumer
            .batch()
            .max_messages(held.len())
            .expires(Duration::from_secs(1))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(app, "cannot take tasks from the queue: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Some(m) = batch.next().await {
            let (Ok(m), Some(permits)) = (m, held.pop()) else {
                break;
            };
            let runner = runner.clone();
            let app = app.clone();
            tokio::spawn(async move { take(runner, app, m, permits).await });
        }
    }
}

/// Claims one queued task and runs it here.
async fn take(runner: Arc<TaskRunner>, app: String, m: async_nats::jetstream::Message, p: Permits) {
    let Some(c) = &runner.cluster else { return };
    let id = String::from_utf8_lossy(&m.payload).to_string();
    use async_nats::jetstream::AckKind;
    if runner.fenced() {
        let _ = m.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
        return;
    }
    match c.nats.claim(&app, &id).await {
        Ok(Claim::Claimed(task)) => {
            // Durable as running and claimed: the queue may forget it.
            if let Err(e) = m.ack().await {
                tracing::warn!(task = %id, "queue message not acknowledged: {e}");
            }
            runner.launch(id, app, Before::Claimed(task, p), Start::Attempt);
        }
        Ok(Claim::Gone) => {
            let _ = m.ack().await;
        }
        Ok(Claim::NotYet) => {
            let age = m
                .info()
                .map(|i| {
                    let published = i.published.unix_timestamp_nanos() / 1_000_000;
                    (i128::from(crate::now_ms()) - published).max(0) as u64
                })
                .unwrap_or(0);
            let _ = if age > ORPHAN_AFTER.as_millis() as u64 {
                m.ack().await
            } else {
                m.ack_with(AckKind::Nak(Some(Duration::from_millis(100))))
                    .await
            };
        }
        Err(e) => {
            tracing::warn!(task = %id, "cannot claim a task: {e}");
            let _ = m.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
        }
    }
}
