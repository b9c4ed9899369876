//! Durable tasks: functions of an app's components, started like threads.
//!
//! A task is identified by where it was started, not by chance: the n-th
//! spawn of task `P` is task `P.n`. A task that runs again (a retry, or a
//! re-run after its node died) therefore spawns the same ids, and
//! [`SqliteTasks::spawn`] returns an existing task instead of starting a
//! new one: children that finished are never run again, their stored
//! results are returned. Tasks started outside any task (from an HTTP
//! handler, a queue delivery, cron) get a random root id.
//!
//! [`Tasks`] is what the guest binding calls; the node implements it,
//! since running a task means instantiating a component. [`TaskStore`]
//! keeps them: [`SqliteTasks`] on one machine, [`NatsTasks`] in a cluster.

mod api;
mod capability;
pub mod export;
mod host;
pub mod nats;
mod runner;
mod section;
mod sqlite;
mod store;

pub use capability::{DurableTasks, TaskGrant};
pub use nats::NatsTasks;
pub use nubo_sqlite::now_ms;
pub use runner::{ClusterTasks, TaskRunner};
pub use sqlite::SqliteTasks;
pub use store::{Start, StoreError, TaskStore, expired};

/// Largest task payload, in bytes: payloads are stored with the task (in
/// the node's SQLite file or in JetStream) until it is purged.
pub const MAX_PAYLOAD: usize = 4 << 20;

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Why a task has no result. Serialized as `{"kind": "...", "message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TaskError {
    /// The function answered with a failure; not retried.
    #[error("task failed: {message}")]
    Failed { message: String },
    /// It trapped on its last attempt.
    #[error("task trapped on attempt {attempts}: {message}")]
    Trapped { message: String, attempts: u32 },
    /// It ran past its component's time limit on its last attempt.
    #[error("task timed out on attempt {attempts}: {message}")]
    TimedOut { message: String, attempts: u32 },
    #[error("task cancelled")]
    Cancelled,
    /// Never started: not granted, unknown component, or over a limit.
    #[error("task refused: {message}")]
    Refused { message: String },
}

impl TaskError {
    pub fn refused(message: impl Into<String>) -> Self {
        TaskError::Refused {
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Queued,
    Running,
    /// Unloaded while it waits on other tasks; re-run when they finish.
    Waiting,
    Done,
    Failed,
    Cancelled,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Queued,
        State::Running,
        State::Waiting,
        State::Done,
        State::Failed,
        State::Cancelled,
    ];

    pub fn is_final(self) -> bool {
        matches!(self, State::Done | State::Failed | State::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Waiting => "waiting",
            State::Done => "done",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    /// The state named `s`; anything unknown reads as queued.
    pub fn parse(s: &str) -> State {
        match s {
            "running" => State::Running,
            "waiting" => State::Waiting,
            "done" => State::Done,
            "failed" => State::Failed,
            "cancelled" => State::Cancelled,
            _ => State::Queued,
        }
    }
}

/// A task as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub id: String,
    pub app: String,
    pub component: String,
    pub function: String,
    #[serde(skip)]
    pub payload: Vec<u8>,
    pub state: State,
    /// Runs started so far.
    pub attempts: u32,
    /// 0 for a root task.
    pub depth: u32,
    #[serde(skip)]
    pub result: Option<Vec<u8>>,
    pub error: Option<TaskError>,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    /// Who started it (or its root task), if a signed-in identity's
    /// request did: its runs are started by them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<nubo_wasm::Principal>,
}

impl Task {
    /// The outcome of a finished task; `None` while it is not.
    pub fn outcome(&self) -> Option<Result<Vec<u8>, TaskError>> {
        match self.state {
            State::Done => Some(Ok(self.result.clone().unwrap_or_default())),
            State::Failed => Some(Err(self.error.clone().unwrap_or(TaskError::Failed {
                message: "no error recorded".into(),
            }))),
            State::Cancelled => Some(Err(TaskError::Cancelled)),
            State::Queued | State::Running | State::Waiting => None,
        }
    }
}

/// A task to start.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub app: String,
    pub component: String,
    pub function: String,
    pub payload: Vec<u8>,
    pub depth: u32,
    /// It starts at once: the runner holds its run permits. The embedded
    /// store then records it running, its first attempt counted, in the
    /// spawn's own write. (The cluster's store, where a spawn queues for
    /// any node, never gets it.)
    pub starts: bool,
    /// Who started the run that spawns it.
    pub by: Option<nubo_wasm::Principal>,
}

impl NewTask {
    /// The task as it is when its first attempt starts, at `now_ms`.
    pub fn first_run(&self, now_ms: i64) -> Task {
        Task {
            id: self.id.clone(),
            app: self.app.clone(),
            component: self.component.clone(),
            function: self.function.clone(),
            payload: self.payload.clone(),
            state: State::Running,
            attempts: 1,
            depth: self.depth,
            result: None,
            error: None,
            created_ms: now_ms,
            finished_ms: None,
            by: self.by.clone(),
        }
    }
}

/// Per-app limits on tasks and their retry policy: `[tasks]` in nubo.toml.
pub use section::{TaskLimits, TasksSection};

/// Where a spawn comes from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub app: String,
    /// The task the instance runs; `None` in an HTTP request, queue
    /// delivery or cron run.
    pub task: Option<String>,
    pub depth: u32,
}

/// What a finished task came to.
pub type Outcome = Result<Vec<u8>, TaskError>;

/// The task service as a guest binding sees it.
#[async_trait::async_trait]
pub trait Tasks: Send + Sync + 'static {
    /// Starts (or finds, for a re-run) each task, in one write; each
    /// one's id or why it was refused.
    async fn spawn_all(&self, tasks: Vec<NewTask>) -> Vec<Result<String, TaskError>>;
    /// Starts watching `ids` of `app`: the outcomes of those finished now,
    /// and a way to wait for the others.
    async fn watch(&self, app: &str, ids: &[String]) -> Watch;
    /// Cancels `id` of `app` and its unfinished descendants; how many
    /// tasks that cancelled.
    async fn cancel(&self, app: &str, id: &str) -> usize;
}

/// Where a task's outcome is put when it finishes, for whoever waits.
#[derive(Default)]
pub struct Slot {
    notify: tokio::sync::Notify,
    outcome: std::sync::OnceLock<Outcome>,
}

impl Slot {
    /// Puts the outcome (the first one wins) and wakes the waiters.
    pub fn fill(&self, outcome: Outcome) {
        let _ = self.outcome.set(outcome);
        self.notify.notify_waiters();
    }

    pub async fn wait(&self) -> Outcome {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(o) = self.outcome.get() {
                return o.clone();
            }
            notified.await;
        }
    }
}

/// Tasks being waited on: the outcomes known when the watch began, and a
/// slot for each task that was not finished then.
pub struct Watch {
    ids: Vec<String>,
    known: Vec<Option<Outcome>>,
    slots: Vec<Option<std::sync::Arc<Slot>>>,
}

impl Watch {
    /// `known[i]` is task `ids[i]`'s outcome, or `None` and then
    /// `slots[i]` is where it will be put.
    pub fn new(
        ids: Vec<String>,
        known: Vec<Option<Outcome>>,
        slots: Vec<Option<std::sync::Arc<Slot>>>,
    ) -> Self {
        Self { ids, known, slots }
    }

    /// The ids not finished when the watch began.
    pub fn pending(&self) -> Vec<String> {
        self.ids
            .iter()
            .zip(&self.known)
            .filter(|(_, k)| k.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The first task finished when the watch began, if any.
    pub fn first_known(&self) -> Option<(usize, Outcome)> {
        self.known
            .iter()
            .enumerate()
            .find_map(|(i, k)| Some((i, k.clone()?)))
    }

    /// Every outcome, in order, once all are finished.
    pub async fn all(self) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(self.ids.len());
        for (known, slot) in self.known.into_iter().zip(self.slots) {
            out.push(match (known, slot) {
                (Some(o), _) => o,
                (None, Some(s)) => s.wait().await,
                (None, None) => Err(TaskError::refused("nothing to wait on")),
            });
        }
        out
    }

    /// The first task to finish: its index and outcome.
    pub async fn any(self) -> (usize, Outcome) {
        if let Some(k) = self.first_known() {
            return k;
        }
        let waits: Vec<_> = self
            .slots
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = s?;
                Some(Box::pin(async move { (i, s.wait().await) }))
            })
            .collect();
        if waits.is_empty() {
            return (0, Err(TaskError::refused("nothing to wait on")));
        }
        futures_util::future::select_all(waits).await.0
    }
}

/// Accounts for time an instance spends waiting on other tasks, which does
/// not count against its time limit, and lets the runner give up the
/// instance's run slot meanwhile, or the whole instance.
#[async_trait::async_trait]
pub trait WaitHooks: Send + Sync {
    async fn waiting(&self);
    async fn resumed(&self);
    /// How long the instance may stay parked in a wait before it is
    /// unloaded; `None`: never (it serves an HTTP request, not a task).
    fn unload_after(&self) -> Option<std::time::Duration> {
        None
    }
    /// The instance is being unloaded while it waits on `wait`; run its
    /// task again once `wait` is over.
    fn unloaded(&self, _wait: Wait) {}
}

/// What an unloaded task waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// `await-all`: every one of these finished.
    All(Vec<String>),
    /// `select`: any one of these finished.
    Any(Vec<String>),
}

/// The trap that ends an instance unloaded in a wait. Not a failure: the
/// runner sees it through [`WaitHooks::unloaded`] and re-runs the task.
pub use nubo_wasm::Unloaded;

/// One instance's task state.
pub struct TaskCtx {
    pub grant: Arc<TaskGrant>,
    pub caller: Caller,
    /// Spawns so far in this run: the next child's index.
    pub spawned: u32,
    /// Where the runtime counts the instance's waits (left out of a task's
    /// time limit).
    pub clock: Arc<nubo_wasm::WaitClock>,
    /// The runner's hooks, in a task's run.
    pub hooks: Option<Arc<dyn WaitHooks>>,
}

/// What a task's run passes to its instance ([`nubo_wasm::Invocation::task`]):
/// where spawns come from, and the runner's wait hooks.
pub struct TaskRun {
    pub caller: Caller,
    pub hooks: Arc<dyn WaitHooks>,
    /// Who started the task.
    pub by: Option<nubo_wasm::Principal>,
}

impl TaskCtx {
    /// The id of the next child: `PARENT.N` in a task, random at the root.
    pub fn next_id(&mut self) -> String {
        let n = self.spawned;
        self.spawned += 1;
        match &self.caller.task {
            Some(parent) => format!("{parent}.{n}"),
            None => random_id(),
        }
    }
}

/// A root task's id: `t`, the time in milliseconds (12 hex digits), then
/// 64 bits no one can predict (16 hex digits).
///
/// Time first, so ids sort by creation: the task table is keyed by id,
/// and random keys scattered every spawn, start and finish over the whole
/// table, each commit then writing pages all over it; time-ordered ones
/// land on its last few pages. The rest is SipHash, keyed once per process
/// from the OS's randomness, of a counter: distinct within a process,
/// unrelated across processes, and telling nothing about the ids before
/// or after it. So an id says when its task was made and nothing else, as
/// a UUIDv7 does; access is checked by app in any case.
pub fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEYED: OnceLock<(std::collections::hash_map::RandomState, AtomicU64)> = OnceLock::new();
    let (keys, counter) = KEYED.get_or_init(|| {
        let mut b = [0u8; 8];
        let start = match getrandom(&mut b) {
            Ok(()) => u64::from_le_bytes(b),
            Err(_) => 0,
        };
        (
            std::collections::hash_map::RandomState::new(),
            AtomicU64::new(start),
        )
    });
    let mut h = keys.build_hasher();
    h.write_u64(counter.fetch_add(1, Ordering::Relaxed));
    let ms = now_ms().max(0) as u64 & 0xffff_ffff_ffff;
    format!("t{ms:012x}{:016x}", h.finish())
}
fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_ids_are_unique_and_sort_by_creation() {
        let ids: Vec<String> = (0..10_000).map(|_| super::random_id()).collect();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(ids.iter().all(|id| id.len() == 29 && id.starts_with('t')));
        // Sorted by their time part.
        assert!(ids.windows(2).all(|w| w[0][..13] <= w[1][..13]));
        // Ids made in one millisecond share no visible sequence.
        let tails: std::collections::HashSet<&str> = ids.iter().map(|id| &id[13..]).collect();
        assert_eq!(tails.len(), ids.len());
        let prefixes: std::collections::HashSet<&str> = ids.iter().map(|id| &id[13..17]).collect();
        assert!(prefixes.len() > 1000, "{} distinct", prefixes.len());
    }
}
