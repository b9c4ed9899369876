//! The cluster task store: task rows in a JetStream key-value bucket, the
//! tasks waiting to start in a work-queue stream that every node pulls
//! from, and claims that let the survivors take over a dead node's tasks.
//!
//! - `nubo_tasks`: one key per task, `APP.ID` (ids are `tHEX.N.N…`, so a
//!   task's descendants are exactly the keys under `APP.ID.`). Every state
//!   change is a compare-and-swap on the key ([`nubo_jetstream::write_if`]).
//! - `nubo_task_queue`: a message per task to start, under `nubo.t.APP`.
//!   A spawn writes the row, then the message (its id is the task's, so
//!   the stream drops a second one within two minutes). A spawner that
//!   dies in between leaves a queued row without a message: its re-run
//!   spawns the same id and sends it then. (A root task spawned from an
//!   HTTP handler has no re-run; its caller was never given the id.) The
//!   message is acknowledged only once the row says running and a claim
//!   exists.
//! - `nubo_task_claims`: `NODE.APP.ID` while a node runs, waits on, or is
//!   about to retry a task. When a node's heartbeat expires, the others
//!   put its claimed tasks back in the queue ([`NatsTasks::sweep`]); a
//!   restarted node does the same for its own ([`TaskStore::recover`]).
//!
//! Rows are sealed with the cluster key ([`nubo_cluster::ClusterKey`]),
//! bound to their key: a row that anyone else wrote into the bucket (a
//! forged outcome, say) is refused, logged, and read as no task. The
//! messages on the queue and the `nubo.tdone` notices carry only ids, so a
//! forged one makes a node read a row, which must be sealed.
//!
//! `max_queued` counts the tasks waiting to start (the queue's messages),
//! not those running or waiting on others as the embedded store does.

mod claims;

pub use claims::Claim;

use crate::store::{Start, StoreError, TaskStore, diverged, over_limit};
use crate::{NewTask, State, Task, TaskError};
use async_nats::jetstream::{self, consumer, kv, stream};
use base64::Engine;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

const ROWS: &str = "nubo_tasks";
const CLAIMS: &str = "nubo_task_claims";
const QUEUE: &str = "nubo_task_queue";

fn err(what: &str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::backend(what, e)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s)
        .unwrap_or_default()
}

/// Task ids are the host's own (`tHEX` and `.N` parts); anything else a
/// guest hands back is no task.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 512
        && id
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn row_key(app: &str, id: &str) -> String {
    format!("{}.{id}", nubo_jetstream::token(app))
}

/// What a row's seal is bound to: its key, so that a row cannot be moved
/// to another task or app.
fn seal_context(key: &str) -> String {
    format!("task row {key}")
}

fn queue_subject(app: &str) -> String {
    format!("nubo.t.{}", nubo_jetstream::token(app))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    app: String,
    component: String,
    function: String,
    payload: String,
    state: State,
    attempts: u32,
    depth: u32,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    error: Option<TaskError>,
    created_ms: i64,
    #[serde(default)]
    finished_ms: Option<i64>,
    /// The node running, waiting on or retrying it.
    #[serde(default)]
    owner: Option<String>,
    /// Who started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    by: Option<nubo_wasm::Principal>,
}

impl Row {
    fn task(&self, id: &str) -> Task {
        Task {
            id: id.to_string(),
            app: self.app.clone(),
            component: self.component.clone(),
            function: self.function.clone(),
            payload: unb64(&self.payload),
            state: self.state,
            attempts: self.attempts,
            depth: self.depth,
            result: self.result.as_deref().map(unb64),
            error: self.error.clone(),
            created_ms: self.created_ms,
            finished_ms: self.finished_ms,
            by: self.by.clone(),
        }
    }
}

pub struct NatsTasks {
    js: jetstream::Context,
    key: std::sync::Arc<nubo_cluster::ClusterKey>,
    rows: kv::Store,
    claims: kv::Store,
    queue: stream::Stream,
    node: String,
    consumers: tokio::sync::Mutex<HashMap<String, consumer::PullConsumer>>,
}

impl NatsTasks {
    /// `node`: this node's id, which its claims carry.
    pub async fn open(
        js: &jetstream::Context,
        replicas: usize,
        node: &str,
        key: std::sync::Arc<nubo_cluster::ClusterKey>,
    ) -> Result<Self, StoreError> {
        let bucket = |name: &str| kv::Config {
            bucket: name.into(),
            history: 1,
            num_replicas: replicas,
            ..Default::default()
        };
        let rows = nubo_jetstream::open_kv(js, bucket(ROWS))
            .await
            .map_err(|e| StoreError::backend("JetStream", e))?;
        let claims = nubo_jetstream::open_kv(js, bucket(CLAIMS))
            .await
            .map_err(|e| StoreError::backend("JetStream", e))?;
        let config = stream::Config {
            name: QUEUE.into(),
            subjects: vec!["nubo.t.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: replicas.max(1),
            ..Default::default()
        };
        let queue = nubo_jetstream::open_stream(js, config)
            .await
            .map_err(|e| StoreError::backend("JetStream", e))?;
        Ok(Self {
            js: js.clone(),
            key,
            rows,
            claims,
            queue,
            node: node.to_string(),
            consumers: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    async fn read(&self, app: &str, id: &str) -> Result<Option<(u64, Row)>, StoreError> {
        if !valid_id(id) {
            return Ok(None);
        }
        let key = row_key(app, id);
        let entry = nubo_jetstream::retry(|| self.rows.entry(key.clone()))
            .await
            .map_err(|e| err("read a task", e))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let body = match self.key.open(&seal_context(&key), &e.value) {
                    Ok(body) => body,
                    Err(refused) => {
                        tracing::warn!("{refused}");
                        return Ok(None);
                    }
                };
                let row = serde_json::from_slice(body).map_err(|e| err("a task row", e))?;
                Ok(Some((e.revision, row)))
            }
            _ => Ok(None),
        }
    }

    /// `row` as written under `key`: JSON, sealed.
    fn sealed(&self, key: &str, row: &Row) -> Result<bytes::Bytes, StoreError> {
        let body = serde_json::to_vec(row).map_err(|e| err("a task row", e))?;
        Ok(self.key.seal(&seal_context(key), &body).into())
    }

    /// Changes a task with `change` (which says whether to write) under
    /// compare-and-swap; the row as written, `None` if `change` declined
    /// or there is no such task.
    async fn update(
        &self,
        app: &str,
        id: &str,
        mut change: impl FnMut(&mut Row) -> bool,
    ) -> Result<Option<Row>, StoreError> {
        loop {
            let Some((rev, mut row)) = self.read(app, id).await? else {
                return Ok(None);
            };
            if !change(&mut row) {
                return Ok(None);
            }
            let key = row_key(app, id);
            let body = self.sealed(&key, &row)?;
            if nubo_jetstream::write_if(&self.js, &self.rows, &key, body, rev)
                .await
                .map_err(|e| StoreError::backend("JetStream", e))?
            {
                return Ok(Some(row));
            }
        }
    }

    async fn enqueue(&self, app: &str, id: &str, msg_id: String) -> Result<(), StoreError> {
        let message = jetstream::message::PublishMessage::build()
            .payload(id.to_string().into())
            .message_id(msg_id);
        self.js
            .send_publish(queue_subject(app), message)
            .await
            .map_err(|e| err("queue a task", e))?
            .await
            .map_err(|e| err("queue a task", e))?;
        Ok(())
    }

    /// Tasks waiting to start in `app`.
    async fn queued(&self, app: &str) -> Result<u64, StoreError> {
        let mut subjects = self
            .queue
            .info_with_subjects(queue_subject(app))
            .await
            .map_err(|e| err("count queued tasks", e))?;
        let mut n = 0;
        while let Some(Ok((_, count))) = subjects.next().await {
            n += count as u64;
        }
        Ok(n)
    }

    /// The app's pull consumer, shared by every node.
    pub async fn consumer(&self, app: &str) -> Result<consumer::PullConsumer, StoreError> {
        let mut all = self.consumers.lock().await;
        if let Some(c) = all.get(app) {
            return Ok(c.clone());
        }
        let name = format!("t_{}", nubo_jetstream::token(app).replace('.', "_"));
        let config = consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: queue_subject(app),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_deliver: -1,
            max_ack_pending: 100_000,
            ..Default::default()
        };
        let c = match self.queue.get_consumer(&name).await {
            Ok(c) => c,
            Err(_) => nubo_jetstream::retry(|| self.queue.create_consumer(config.clone()))
                .await
                .map_err(|e| err("create the task consumer", e))?,
        };
        all.insert(app.to_string(), c.clone());
        Ok(c)
    }

    /// Moves a running task to `to`; `false` if it was not running.
    async fn leave_running(&self, id: &str, app: &str, to: State) -> Result<bool, StoreError> {
        let row = self
            .update(app, id, |r| {
                let ok = r.state == State::Running;
                if ok {
                    r.state = to;
                }
                ok
            })
            .await?;
        Ok(row.is_some())
    }

    /// Every task of `app`, each read once.
    async fn all(&self, app: &str) -> Result<Vec<Task>, StoreError> {
        let under = format!("{}.", nubo_jetstream::token(app));
        let keys = nubo_jetstream::keys(&self.rows, &under)
            .await
            .map_err(|e| StoreError::backend("JetStream", e))?;
        let reads =
            futures_util::stream::iter(keys)
                .map(|k| {
                    let id = k.strip_prefix(&under).unwrap_or_default().to_string();
                    async move {
                        Ok::<_, StoreError>(self.read(app, &id).await?.map(|(_, r)| r.task(&id)))
                    }
                })
                .buffer_unordered(64)
                .collect::<Vec<_>>()
                .await;
        let mut out = Vec::new();
        for r in reads {
            out.extend(r?);
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl TaskStore for NatsTasks {
    async fn spawn_all(
        &self,
        tasks: Vec<NewTask>,
        max_queued: u32,
    ) -> Result<Vec<Result<bool, TaskError>>, StoreError> {
        let app = match tasks.first() {
            Some(t) => t.app.clone(),
            None => return Ok(Vec::new()),
        };
        let mut room = u64::from(max_queued).saturating_sub(self.queued(&app).await?);
        let mut admitted = Vec::with_capacity(tasks.len());
        for t in tasks {
            let fits = room > 0;
            room = room.saturating_sub(1);
            admitted.push((t, fits));
        }
        let spawns = admitted.into_iter().map(|(t, fits)| async move {
            let key = row_key(&t.app, &t.id);
            if let Some((_, row)) = self.read(&t.app, &t.id).await? {
                if row.component != t.component || row.function != t.function {
                    return Ok(Err(diverged(&t, &row.component, &row.function)));
                }
                // A re-run spawning again: if the first spawner died
                // between the row and the message, this sends it (the
                // stream drops it as a duplicate otherwise).
                if row.state == State::Queued && row.attempts == 0 {
                    self.enqueue(&t.app, &t.id, key).await?;
                }
                return Ok(Ok(false));
            }
            if !fits {
                return Ok(Err(over_limit(&t.app, u64::from(max_queued))));
            }
            let row = Row {
                app: t.app.clone(),
                component: t.component.clone(),
                function: t.function.clone(),
                payload: b64(&t.payload),
                state: State::Queued,
                attempts: 0,
                depth: t.depth,
                result: None,
                error: None,
                created_ms: crate::now_ms(),
                finished_ms: None,
                owner: None,
                by: t.by.clone(),
            };
            let body = self.sealed(&key, &row)?;
            if !nubo_jetstream::write_if(&self.js, &self.rows, &key, body, 0)
                .await
                .map_err(|e| StoreError::backend("JetStream", e))?
            {
                // Another run spawned it at the same moment, and queues it.
                return Ok(Ok(false));
            }
            // The row first, so a node that takes the message finds it.
            self.enqueue(&t.app, &t.id, key).await?;
            Ok(Ok(true))
        });
        futures_util::future::join_all(spawns)
            .await
            .into_iter()
            .collect()
    }

    async fn start(&self, id: &str, app: &str, how: Start) -> Result<Option<Task>, StoreError> {
        // The claim first: if this node dies right after the row says it
        // runs the task, the claim is there for the others to find.
        let key = self.claim_key(&self.node, app, id);
        nubo_jetstream::retry(|| self.claims.put(&key, bytes::Bytes::new()))
            .await
            .map_err(|e| err("claim a task", e))?;
        let me = self.node.clone();
        let row = self
            .update(app, id, |r| {
                let ok = match how {
                    Start::Attempt => r.state == State::Queued,
                    Start::Resume => r.state == State::Waiting,
                };
                if ok {
                    if how == Start::Attempt {
                        r.attempts += 1;
                    }
                    r.state = State::Running;
                    r.owner = Some(me.clone());
                }
                ok
            })
            .await;
        match row {
            Ok(Some(row)) => Ok(Some(row.task(id))),
            Ok(None) => {
                // Not ours to run: drop the claim unless the task is ours
                // anyway (waiting here, say).
                let ours = self
                    .read(app, id)
                    .await?
                    .is_some_and(|(_, r)| r.owner.as_deref() == Some(&self.node));
                if !ours {
                    self.unclaim(app, id).await;
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn started(&self, id: &str) {
        // Cluster spawns start through the queue, never this way.
        tracing::debug!(task = id, "ignored: tasks start through the queue");
    }

    async fn finish(
        &self,
        id: &str,
        app: &str,
        outcome: Result<Vec<u8>, TaskError>,
    ) -> Result<(), StoreError> {
        self.update(app, id, |r| {
            if r.state != State::Running {
                return false;
            }
            match &outcome {
                Ok(v) => {
                    r.state = State::Done;
                    r.result = Some(b64(v));
                }
                Err(e) => {
                    r.state = State::Failed;
                    r.error = Some(e.clone());
                }
            }
            r.finished_ms = Some(crate::now_ms());
            r.owner = None;
            true
        })
        .await?;
        self.unclaim(app, id).await;
        Ok(())
    }

    async fn unload(&self, id: &str, app: &str) -> Result<bool, StoreError> {
        self.leave_running(id, app, State::Waiting).await
    }

    async fn requeue(&self, id: &str, app: &str) -> Result<bool, StoreError> {
        self.leave_running(id, app, State::Queued).await
    }

    async fn cancel(&self, app: &str, id: &str) -> Result<Vec<String>, StoreError> {
        if !valid_id(id) {
            return Ok(Vec::new());
        }
        let under = format!("{}.", row_key(app, id));
        let mut ids = vec![id.to_string()];
        for k in nubo_jetstream::keys(&self.rows, &under)
            .await
            .map_err(|e| StoreError::backend("JetStream", e))?
        {
            ids.push(format!(
                "{id}.{}",
                k.strip_prefix(&under).unwrap_or_default()
            ));
        }
        let now = crate::now_ms();
        let mut cancelled = Vec::new();
        for t in ids {
            let changed = self
                .update(app, &t, |r| {
                    let ok = !r.state.is_final();
                    if ok {
                        r.state = State::Cancelled;
                        r.finished_ms = Some(now);
                    }
                    ok
                })
                .await?;
            if changed.is_some() {
                cancelled.push(t);
            }
        }
        Ok(cancelled)
    }

    async fn outcomes(
        &self,
        app: &str,
        ids: Vec<String>,
    ) -> Result<Vec<Option<Result<Vec<u8>, TaskError>>>, StoreError> {
        let reads = ids.iter().map(|id| async move {
            Ok::<_, StoreError>(match self.read(app, id).await? {
                Some((_, r)) => r.task(id).outcome(),
                None => Some(Err(TaskError::refused(format!(
                    "no task `{id}` in app `{app}`"
                )))),
            })
        });
        futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect()
    }

    async fn get(&self, app: &str, id: &str) -> Result<Option<Task>, StoreError> {
        Ok(self.read(app, id).await?.map(|(_, r)| r.task(id)))
    }

    async fn list(
        &self,
        app: &str,
        state: Option<State>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let mut all = self.all(app).await?;
        all.retain(|t| state.is_none_or(|s| t.state == s));
        all.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.id.cmp(&b.id)));
        all.truncate(limit.min(10_000));
        Ok(all)
    }

    async fn counts(&self, app: &str) -> Result<Vec<(State, u64)>, StoreError> {
        let mut counts: HashMap<State, u64> = HashMap::new();
        for t in self.all(app).await? {
            *counts.entry(t.state).or_default() += 1;
        }
        Ok(State::ALL
            .iter()
            .filter_map(|s| Some((*s, *counts.get(s)?)))
            .collect())
    }

    async fn purge_app(&self, app: &str) -> Result<(u64, Vec<String>), StoreError> {
        let t = nubo_jetstream::token(app);
        // What there is, to say how many went and which this node's runner
        // must stop; other nodes stop theirs when their run cannot finish.
        let tasks = self.all(app).await?;
        let unfinished = tasks
            .iter()
            .filter(|t| !t.state.is_final())
            .map(|t| t.id.clone())
            .collect();
        // The queue first, so no node starts one of them meanwhile.
        self.queue
            .purge()
            .filter(queue_subject(app))
            .await
            .map_err(|e| err("purge the task queue", e))?;
        nubo_jetstream::purge_keys(&self.rows, &format!("{t}."))
            .await
            .map_err(|e| err("purge task rows", e))?;
        nubo_jetstream::purge_keys(&self.claims, &format!("*.{t}."))
            .await
            .map_err(|e| err("purge task claims", e))?;
        Ok((tasks.len() as u64, unfinished))
    }

    async fn expire(&self, app: &str, before_ms: i64) -> Result<u64, StoreError> {
        let all = self.all(app).await?;
        let decide = all.iter().map(|t| (t.id.as_str(), t.state, t.finished_ms));
        let gone = crate::store::expired(decide, before_ms);
        for id in &gone {
            let key = row_key(app, id);
            nubo_jetstream::retry(|| self.rows.purge(&key))
                .await
                .map_err(|e| err("expire a task row", e))?;
        }
        Ok(gone.len() as u64)
    }

    async fn recover(&self) -> Result<Vec<Task>, StoreError> {
        // What this node held before it restarted goes back to the queue,
        // for any node to run.
        self.take_back_own().await?;
        Ok(Vec::new())
    }
}
