//! Running durable tasks: the node's side of `nubo:platform/tasks`.
//!
//! A spawned task is a row in the task store and a tokio task here that
//! takes a run permit (its app's `max_running`, then the node's), marks
//! the row running and sends `POST /FUNCTION` to a fresh instance of its
//! component ([`invoke`]). A 2xx answer is the result; another answer is a
//! failure (not retried); a trap or a time-out is retried after
//! `backoff_ms · 2^(attempt-1)` until `max_attempts`, then fails with a
//! typed error. Whoever waits on a task is woken when its row becomes
//! final.
//!
//! A task that waits on others gives up its run permits while it waits,
//! so parents never starve their children. If the wait lasts, its
//! instance is unloaded and the row marked waiting; a light tokio task
//! here waits in its place and runs it again when the wait is over.
//!
//! Tasks run on their own worker threads ([`TaskPool`]), one per core,
//! not on the threads that serve HTTP: a job that keeps every core busy
//! then shares the CPU with the gateway through the OS scheduler, and
//! requests and control calls keep being answered at once. (On one shared
//! runtime, requests queued behind guests that yield only every few tens
//! of milliseconds.)
//!
//! The one exception is a single task awaited before any task thread
//! took it: its awaiter runs it ([`TaskRunner::run_awaited`]).

mod cluster;
mod expire;
mod invoke;
mod metrics;
mod share;

use crate::{
    NewTask, Outcome as TaskOutcome, Slot, Start, Task, TaskError, TaskLimits, TaskStore, Wait,
    Watch,
};
pub use cluster::ClusterTasks;
use invoke::{Outcome, Permits};
use nubo_wasm::HttpComponent;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Semaphore;

pub struct TaskRunner {
    pub(crate) store: Arc<dyn TaskStore>,
    /// In a cluster: where tasks queue for every node, and how the nodes
    /// tell each other of outcomes and cancels.
    cluster: Option<ClusterTasks>,
    /// In a cluster: each app's loop that takes queued tasks.
    pullers: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    pool: TaskPool,
    apps: Mutex<HashMap<String, AppTasks>>,
    /// Where the outcome of each task someone waits on is put when it
    /// finishes, so that waiters need not read it back from the store.
    /// By (app, task id): one app's ids never reach another's slots,
    /// whatever id it names.
    slots: Mutex<HashMap<(String, String), Arc<Slot>>>,
    /// The tokio task of every task in progress here (running, waiting
    /// for a permit, for a retry, or for the tasks it awaits): what a
    /// cancel aborts.
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// Tasks just spawned here whose run has not begun, with the run
    /// permits they got at their spawn if there were free ones then:
    /// whichever comes first takes one, a task thread or the one instance
    /// that awaits it (see [`TaskRunner::run_awaited`]).
    unclaimed: Mutex<HashMap<String, Unclaimed>>,
    permits: Arc<share::FairShare>,
    /// How many permits there are in all.
    capacity: usize,
    /// Apps whose tasks wait to start (at a usage cap).
    pauses: Arc<nubo_wasm::Pauses>,
    metrics: metrics::TaskMetrics,
    me: Weak<TaskRunner>,
}

/// What the runner knows of one app.
#[derive(Clone)]
struct AppTasks {
    components: HashMap<String, HttpComponent>,
    limits: TaskLimits,
    running: Arc<Semaphore>,
}

/// A task just spawned, and the run permits taken for it then, if any.
type Unclaimed = (Box<Task>, Option<Permits>);

/// What a launched task does before it runs.
enum Before {
    Nothing,
    /// Nothing: it was just spawned, and waits in `unclaimed` unless its
    /// awaiter took it first.
    Unclaimed,
    /// Nothing: it was just spawned, and this is it.
    Spawned(Box<Task>),
    /// Nothing: it is stored running and holds its permits (taken from
    /// the cluster's queue, or given run slots at its spawn).
    Claimed(Box<Task>, Permits),
    Sleep(Duration),
    Wait(Wait),
}

/// The worker threads tasks run on. A runtime may not be dropped from
/// async code, so it is shut down in the background.
struct TaskPool(Option<tokio::runtime::Runtime>);

impl TaskPool {
    fn new(threads: usize) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("nubo-task")
            .enable_all()
            .build()?;
        Ok(Self(Some(rt)))
    }

    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(rt) => rt.handle().clone(),
            // Only during drop.
            None => tokio::runtime::Handle::current(),
        }
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The slot task `id` of `app` puts its outcome in, made if need be.
fn slot_in(slots: &mut HashMap<(String, String), Arc<Slot>>, app: &str, id: &str) -> Arc<Slot> {
    slots
        .entry((app.to_string(), id.to_string()))
        .or_default()
        .clone()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TaskRunner {
    /// `slots`: tasks running (not waiting) at once on this node, on
    /// `threads` worker threads of their own.
    pub fn new(
        store: Arc<dyn TaskStore>,
        cluster: Option<ClusterTasks>,
        slots: usize,
        threads: usize,
        pauses: Arc<nubo_wasm::Pauses>,
    ) -> std::io::Result<Arc<Self>> {
        let pool = TaskPool::new(threads)?;
        Ok(Arc::new_cyclic(|me| Self {
            store,
            cluster,
            pullers: Mutex::new(HashMap::new()),
            pool,
            apps: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            unclaimed: Mutex::new(HashMap::new()),
            permits: share::FairShare::new(slots.max(1)),
            capacity: slots.max(1),
            pauses,
            metrics: metrics::TaskMetrics::default(),
            me: me.clone(),
        }))
    }

    /// The components `app` runs now and its limits (no components: the
    /// app is gone).
    /// `spawns`: some component of the app may start tasks (it counts for
    /// the node's reserve of run permits, see [`share`]).
    pub fn set(
        &self,
        app: &str,
        components: HashMap<String, HttpComponent>,
        limits: TaskLimits,
        spawns: bool,
    ) {
        self.permits.register(app, spawns && !components.is_empty());
        let mut all = lock(&self.apps);
        if components.is_empty() {
            all.remove(app);
            if let Some(p) = lock(&self.pullers).remove(app) {
                p.abort();
            }
            return;
        }
        self.pull(app);
        let running = match all.get(app) {
            Some(a) if a.limits.max_running == limits.max_running => a.running.clone(),
            _ => Arc::new(Semaphore::new(limits.max_running.max(1) as usize)),
        };
        all.insert(
            app.to_string(),
            AppTasks {
                components,
                limits,
                running,
            },
        );
    }

    /// Run slots of this node: (in use, in all).
    pub fn slots(&self) -> (usize, usize) {
        let free = self.permits.available().min(self.capacity);
        (self.capacity - free, self.capacity)
    }

    fn limits(&self, app: &str) -> TaskLimits {
        lock(&self.apps)
            .get(app)
            .map(|a| a.limits)
            .unwrap_or_default()
    }

    /// After a restart: runs every task left queued, running or waiting.
    pub async fn recover(&self) {
        match self.store.recover().await {
            Ok(tasks) => {
                if !tasks.is_empty() {
                    tracing::info!("resuming {} task(s) from before the restart", tasks.len());
                }
                for t in tasks {
                    let how = if t.state == crate::State::Waiting {
                        Start::Resume
                    } else {
                        Start::Attempt
                    };
                    self.launch(t.id, t.app, Before::Nothing, how);
                }
            }
            Err(e) => tracing::error!("cannot resume tasks: {e}"),
        }
    }

    pub async fn get(&self, app: &str, id: &str) -> Option<Task> {
        self.store.get(app, id).await.ok().flatten()
    }

    pub async fn list(
        &self,
        app: &str,
        state: Option<crate::State>,
        limit: usize,
    ) -> Result<Vec<Task>, crate::StoreError> {
        self.store.list(app, state, limit).await
    }

    pub async fn counts(&self, app: &str) -> Result<Vec<(crate::State, u64)>, crate::StoreError> {
        self.store.counts(app).await
    }

    /// A finished task's outcome to whoever waits on it. Called after the
    /// outcome is committed: a waiter that arrives in between finds it in
    /// the store, or shares this slot.
    fn finished(&self, app: &str, id: &str, outcome: TaskOutcome) {
        if let Some(slot) = lock(&self.slots).remove(&(app.to_string(), id.to_string())) {
            slot.fill(outcome);
        }
    }

    /// Awaiting one task that no task thread has taken yet: runs it here,
    /// on the awaiter's own thread, like the second half of a fork-join.
    ///
    /// Why: a spawn+await of one quick task is otherwise two hand-offs
    /// between threads (to a task thread, and back to the awaiter with the
    /// outcome), and on an idle machine each is a sleeping CPU woken up,
    /// a good part of the round trip. Spawned on the current runtime from
    /// its own worker, the run goes to that worker's next-task slot and
    /// starts as soon as the awaiter parks; its outcome wakes the awaiter
    /// on the same worker. The task still takes its run permits, is
    /// recorded as running, and can be cancelled like any other.
    ///
    /// `None`: not a task of `app` waiting here to be taken.
    fn run_awaited(&self, app: &str, id: &str) -> Option<Watch> {
        let rt = tokio::runtime::Handle::try_current().ok()?;
        let (task, permits) = {
            let mut unclaimed = lock(&self.unclaimed);
            match unclaimed.remove(id) {
                Some(t) if t.0.app == app => t,
                Some(t) => {
                    unclaimed.insert(id.to_string(), t);
                    return None;
                }
                None => return None,
            }
        };
        // Not begun, so not finished: no need to read the store, but the
        // slot must be there before the run can fill it.
        let slot = slot_in(&mut lock(&self.slots), app, id);
        self.launch_on(
            &rt,
            id.to_string(),
            app.to_string(),
            match permits {
                Some(p) => Before::Claimed(task, p),
                None => Before::Spawned(task),
            },
            Start::Attempt,
        );
        Some(Watch::new(
            vec![id.to_string()],
            vec![None],
            vec![Some(slot)],
        ))
    }

    /// Runs task `id` of `app` on this node's task threads.
    fn launch(&self, id: String, app: String, before: Before, how: Start) {
        self.launch_on(&self.pool.handle(), id, app, before, how);
    }

    fn launch_on(
        &self,
        rt: &tokio::runtime::Handle,
        id: String,
        app: String,
        before: Before,
        how: Start,
    ) {
        let Some(me) = self.me.upgrade() else { return };
        let key = id.clone();
        // Holding the map while spawning: the task's own removal at its end
        // cannot come before this insert.
        let mut running = lock(&self.running);
        let handle = rt.spawn(async move {
            let mut spawned = None;
            let mut claimed = None;
            // A paused app's tasks stay stored until it resumes, but one an
            // instance awaits and runs itself (`Spawned`, `Claimed`) goes
            // on, so that the instance can finish. A task spawned before the
            // pause keeps the permits it got then; one spawned while paused
            // got none and is stored queued.
            if !matches!(before, Before::Spawned(_) | Before::Claimed(..)) {
                me.pauses.until_resumed(&app).await;
            }
            match before {
                Before::Nothing => {}
                Before::Spawned(t) => spawned = Some(t),
                Before::Unclaimed => match lock(&me.unclaimed).remove(&id) {
                    Some((t, Some(p))) => claimed = Some((t, p)),
                    Some((t, None)) => spawned = Some(t),
                    // Its awaiter runs it (and took its place in `running`).
                    None => return,
                },
                Before::Claimed(t, p) => claimed = Some((t, p)),
                Before::Sleep(d) => tokio::time::sleep(d).await,
                Before::Wait(w) => me.wait_over(&app, w).await,
            }
            me.run(&id, &app, how, spawned, claimed).await;
            // A relaunch meanwhile has its own entry: keep it.
            let mut running = lock(&me.running);
            if running.get(&id).map(|h| h.id()) == tokio::task::try_id() {
                running.remove(&id);
            }
        });
        running.insert(key, handle.abort_handle());
    }

    async fn wait_over(&self, app: &str, wait: Wait) {
        use crate::Tasks;
        match wait {
            Wait::All(ids) => {
                self.watch(app, &ids).await.all().await;
            }
            Wait::Any(ids) => {
                let _ = self.watch(app, &ids).await.any().await;
            }
        }
    }

    async fn run(
        &self,
        id: &str,
        app: &str,
        how: Start,
        spawned: Option<Box<Task>>,
        claimed: Option<(Box<Task>, Permits)>,
    ) {
        let Some((app_slots, component_of)) = lock(&self.apps)
            .get(app)
            .map(|a| (a.running.clone(), a.components.clone()))
        else {
            // Not running here (yet): it stays stored and runs when the
            // app is back, at the next start.
            tracing::warn!(
                app,
                task = id,
                "the task's app is not running; the task waits"
            );
            return;
        };
        let (permits, claimed) = match claimed {
            Some((t, p)) => (p, Some(t)),
            None => match Permits::acquire(app_slots, self.permits.clone(), app).await {
                Some(p) => (p, None),
                None => return,
            },
        };
        let task = match (claimed, spawned) {
            (Some(t), _) => *t,
            (None, Some(t)) => {
                self.store.started(id);
                *t
            }
            (None, None) => match self.store.start(id, app, how).await {
                Ok(Some(t)) => t,
                Ok(None) => return, // cancelled, or taken already
                Err(e) => {
                    tracing::error!(task = id, "cannot start a task: {e}");
                    return;
                }
            },
        };
        let outcome = match component_of.get(&task.component) {
            None => Outcome::Final(TaskError::refused(format!(
                "component `{}` of app `{}` is not running",
                task.component, task.app
            ))),
            Some(c) => {
                let started = std::time::Instant::now();
                let outcome = invoke::invoke(c, &task, permits).await;
                let took = started.elapsed();
                self.metrics.observe(app, &task.component, &outcome, took);
                outcome
            }
        };
        let limits = self.limits(app);
        let outcome = match outcome {
            Outcome::Done(result) => Ok(result),
            Outcome::Final(e) => Err(e),
            Outcome::Unloaded(wait) => {
                match self.store.unload(id, app).await {
                    Ok(true) => self.launch(
                        id.to_string(),
                        app.to_string(),
                        Before::Wait(wait),
                        Start::Resume,
                    ),
                    Ok(false) => {} // cancelled meanwhile
                    Err(e) => tracing::error!(task = id, "cannot unload a task: {e}"),
                }
                return;
            }
            Outcome::Retry(e) if task.attempts < limits.max_attempts => {
                let wait = nubo_manifest::backoff_ms(limits.backoff_ms, task.attempts);
                tracing::info!(
                    app,
                    task = id,
                    attempt = task.attempts,
                    "task failed, retrying in {wait} ms: {e}"
                );
                match self.store.requeue(id, app).await {
                    Ok(true) => self.launch(
                        id.to_string(),
                        app.to_string(),
                        Before::Sleep(Duration::from_millis(wait)),
                        Start::Attempt,
                    ),
                    Ok(false) => {} // cancelled meanwhile
                    Err(e) => tracing::error!(task = id, "cannot requeue a task: {e}"),
                }
                return;
            }
            Outcome::Retry(e) => Err(e),
        };
        match &outcome {
            Ok(_) => tracing::debug!(app, task = id, attempt = task.attempts, "task done"),
            Err(e) => tracing::warn!(app, task = id, "task failed: {e}"),
        }
        if let Err(e) = self.store.finish(id, app, outcome.clone()).await {
            tracing::error!(task = id, "cannot record a task's outcome: {e}");
            return;
        }
        self.announce(app, id, &outcome).await;
        self.finished(app, id, outcome);
    }
}

#[async_trait::async_trait]
impl crate::Tasks for TaskRunner {
    async fn spawn_all(&self, tasks: Vec<NewTask>) -> Vec<Result<String, TaskError>> {
        let Some(app) = tasks.first().map(|t| t.app.clone()) else {
            return Vec::new();
        };
        let limits = self.limits(&app);
        // Too deep: refused before the store sees them.
        let mut out: Vec<Option<Result<String, TaskError>>> = Vec::with_capacity(tasks.len());
        let mut admitted = Vec::new();
        for t in tasks {
            if t.depth > limits.max_depth {
                tracing::warn!(app = %t.app, task = %t.id, "spawn refused: deeper than max_depth");
                out.push(Some(Err(TaskError::refused(format!(
                    "task `{}` would be {} deep; the app's limit (max_depth in [tasks]) is {}",
                    t.id, t.depth, limits.max_depth
                )))));
            } else {
                out.push(None);
                admitted.push(t);
            }
        }
        // Run slots free now go to these tasks at once: they are stored
        // running, and need no second write to start. (In a cluster, a
        // fresh task waits in the shared queue for whichever node takes it;
        // a paused app's tasks are stored queued.)
        let app_slots = lock(&self.apps).get(&app).map(|a| a.running.clone());
        let paused = self.pauses.why(&app).is_some();
        let permits: Vec<Option<Permits>> = admitted
            .iter_mut()
            .map(|t| {
                let p = match (&app_slots, &self.cluster) {
                    (Some(s), None) if !paused => {
                        Permits::try_acquire(s.clone(), self.permits.clone(), &app)
                    }
                    _ => None,
                };
                t.starts = p.is_some();
                p
            })
            .collect();
        // What a fresh one needs to run, kept so it starts without a read.
        let now = crate::now_ms();
        let ready: Vec<Task> = admitted.iter().map(|t| t.first_run(now)).collect();
        let stored = match self.store.spawn_all(admitted, limits.max_queued).await {
            Ok(r) => r,
            Err(e) => ready
                .iter()
                .map(|_| Err(TaskError::refused(e.to_string())))
                .collect(),
        };
        let mut answers = ready
            .into_iter()
            .zip(stored)
            .zip(permits)
            .map(|((t, r), p)| match r {
                Ok(fresh) => {
                    let id = t.id.clone();
                    if fresh && self.cluster.is_none() {
                        lock(&self.unclaimed).insert(id.clone(), (Box::new(t), p));
                        self.launch(id.clone(), app.clone(), Before::Unclaimed, Start::Attempt);
                    }
                    Ok(id)
                }
                Err(e) => {
                    tracing::warn!(app = %app, task = %t.id, "spawn refused: {e}");
                    Err(e)
                }
            });
        out.into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    answers
                        .next()
                        .unwrap_or_else(|| Err(TaskError::refused("no answer for a spawn")))
                })
            })
            .collect()
    }

    async fn watch(&self, app: &str, ids: &[String]) -> Watch {
        if let [id] = ids
            && let Some(watch) = self.run_awaited(app, id)
        {
            return watch;
        }
        // Slots first, then the store: a task that finishes in between
        // fills a slot already there.
        let slots: Vec<Arc<Slot>> = {
            let mut all = lock(&self.slots);
            ids.iter().map(|id| slot_in(&mut all, app, id)).collect()
        };
        let known = match self.store.outcomes(app, ids.to_vec()).await {
            Ok(k) => k,
            Err(e) => ids
                .iter()
                .map(|_| Some(Err(TaskError::refused(e.to_string()))))
                .collect(),
        };
        let mut pending = Vec::with_capacity(ids.len());
        for ((id, k), slot) in ids.iter().zip(&known).zip(slots) {
            match k {
                Some(o) => {
                    // Finished already: whoever shares the slot gets it too.
                    slot.fill(o.clone());
                    let mut all = lock(&self.slots);
                    let key = (app.to_string(), id.clone());
                    if all.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                        all.remove(&key);
                    }
                    pending.push(None);
                }
                None => pending.push(Some(slot)),
            }
        }
        Watch::new(ids.to_vec(), known, pending)
    }

    async fn cancel(&self, app: &str, id: &str) -> usize {
        match self.store.cancel(app, id).await {
            Ok(ids) => {
                if !ids.is_empty() {
                    tracing::info!(app, task = id, "cancelled {} task(s)", ids.len());
                }
                let n = ids.len();
                self.announce_cancel(app, &ids).await;
                self.stop(app, &ids).await;
                n
            }
            Err(e) => {
                tracing::error!(task = id, "cannot cancel: {e}");
                0
            }
        }
    }
}
