//! Running durable tasks: the node's side of `nubo:platform/tasks`.
//!
//! A spawned task is a row in the task store and a tokio task here that
//! takes a run slot, marks the row running and sends `POST /FUNCTION` to
//! a fresh instance of its component. A 2xx answer is the result; another
//! answer is a failure (not retried); a trap or a time-out is retried
//! after `backoff_ms · 2^(attempt-1)` until `max_attempts`, then fails with
//! a typed error. Whoever waits on a task is woken when its row becomes
//! final.
//!
//! A task that waits on others gives up its run slot while it waits, so
//! parents never starve their children of slots. Its instance stays in
//! memory, parked on an async host call (no OS thread is held).

use nubo_tasks::{Caller, NewTask, SqliteTasks, Task, TaskError, TaskLimits, WaitHooks};
use nubo_wasm::{HandleError, HttpComponent};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Largest task result kept, in bytes.
const MAX_RESULT: usize = 16 << 20;

pub struct TaskRunner {
    pub(crate) store: SqliteTasks,
    components: Mutex<HashMap<String, HashMap<String, HttpComponent>>>,
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    slots: Arc<Semaphore>,
    limits: TaskLimits,
    me: Weak<TaskRunner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TaskRunner {
    /// `slots`: tasks running (not waiting) at once on this node.
    pub fn new(store: SqliteTasks, slots: usize, limits: TaskLimits) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            store,
            components: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(slots.max(1))),
            limits,
            me: me.clone(),
        })
    }

    /// The components `app` runs now (none: the app is gone).
    pub fn set(&self, app: &str, components: HashMap<String, HttpComponent>) {
        let mut all = lock(&self.components);
        if components.is_empty() {
            all.remove(app);
        } else {
            all.insert(app.to_string(), components);
        }
    }

    /// After a restart: runs every task left queued or running.
    pub async fn recover(&self) {
        match self.store.recover().await {
            Ok(tasks) => {
                if !tasks.is_empty() {
                    tracing::info!("resuming {} task(s) from before the restart", tasks.len());
                }
                for t in tasks {
                    self.launch(t.id, std::time::Duration::ZERO);
                }
            }
            Err(e) => tracing::error!("cannot resume tasks: {e}"),
        }
    }

    pub async fn get(&self, app: &str, id: &str) -> Option<Task> {
        self.store
            .get(id)
            .await
            .ok()
            .flatten()
            .filter(|t| t.app == app)
    }

    pub async fn list(&self, app: &str, limit: usize) -> Result<Vec<Task>, String> {
        self.store.list(app, limit).await.map_err(|e| e.to_string())
    }

    fn waiter(&self, id: &str) -> Arc<Notify> {
        lock(&self.waiters)
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    fn finished(&self, id: &str) {
        if let Some(n) = lock(&self.waiters).remove(id) {
            n.notify_waiters();
        }
    }

    fn launch(&self, id: String, after: std::time::Duration) {
        let Some(me) = self.me.upgrade() else { return };
        let key = id.clone();
        // Holding the map while spawning: the task's own removal at its end
        // cannot come before this insert.
        let mut running = lock(&self.running);
        let handle = tokio::spawn(async move {
            if !after.is_zero() {
                tokio::time::sleep(after).await;
            }
            me.run(&id).await;
            // A retry launched meanwhile has its own entry: keep it.
            let mut running = lock(&me.running);
            if running.get(&id).map(|h| h.id()) == tokio::task::try_id() {
                running.remove(&id);
            }
        });
        running.insert(key, handle.abort_handle());
    }

    async fn run(&self, id: &str) {
        let Ok(permit) = self.slots.clone().acquire_owned().await else {
            return;
        };
        let task = match self.store.start(id).await {
            Ok(Some(t)) => t,
            Ok(None) => return, // cancelled, or taken already
            Err(e) => {
                tracing::error!(task = id, "cannot start a task: {e}");
                return;
            }
        };
        let component = lock(&self.components)
            .get(&task.app)
            .and_then(|c| c.get(&task.component))
            .cloned();
        let outcome = match component {
            None => Err(Outcome::Final(TaskError::refused(format!(
                "component `{}` of app `{}` is not running",
                task.component, task.app
            )))),
            Some(c) => invoke(&c, &task, permit).await,
        };
        let outcome = match outcome {
            Ok(result) => Ok(result),
            Err(Outcome::Final(e)) => Err(e),
            Err(Outcome::Retry(e)) if task.attempts < self.limits.max_attempts => {
                let wait = nubo_queue::backoff_ms(self.limits.backoff_ms, task.attempts);
                tracing::info!(app = %task.app, task = id, attempt = task.attempts, "task failed, retrying in {wait} ms: {e}");
                match self.store.requeue(id).await {
                    Ok(true) => self.launch(id.to_string(), std::time::Duration::from_millis(wait)),
                    Ok(false) => {} // cancelled meanwhile
                    Err(e) => tracing::error!(task = id, "cannot requeue a task: {e}"),
                }
                return;
            }
            Err(Outcome::Retry(e)) => Err(e),
        };
        if let Err(e) = &outcome {
            tracing::warn!(app = %task.app, task = id, "task failed: {e}");
        }
        if let Err(e) = self.store.finish(id, outcome).await {
            tracing::error!(task = id, "cannot record a task's outcome: {e}");
        }
        self.finished(id);
    }
}

enum Outcome {
    /// Failed for good.
    Final(TaskError),
    /// Trapped or timed out: worth another attempt.
    Retry(TaskError),
}

/// Gives the run slot back while the instance waits on other tasks.
struct SlotHooks {
    slots: Arc<Semaphore>,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

#[async_trait::async_trait]
impl WaitHooks for SlotHooks {
    async fn waiting(&self) {
        lock(&self.permit).take();
    }

    async fn resumed(&self) {
        if let Ok(p) = self.slots.clone().acquire_owned().await {
            *lock(&self.permit) = Some(p);
        }
    }
}

async fn invoke(
    c: &HttpComponent,
    t: &Task,
    permit: OwnedSemaphorePermit,
) -> Result<Vec<u8>, Outcome> {
    use http_body_util::BodyExt;
    let req = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!(
            "http://{}.task.nubo.internal/{}",
            t.app, t.function
        ))
        .header("x-request-id", &t.id)
        .header("nubo-task-id", &t.id)
        .header("nubo-task-function", &t.function)
        .header("nubo-task-attempt", t.attempts.to_string())
        .body(http_body_util::Full::new(bytes::Bytes::from(
            t.payload.clone(),
        )))
        .map_err(|e| Outcome::Final(TaskError::refused(format!("bad task request: {e}"))))?;
    let hooks = Arc::new(SlotHooks {
        slots: permit.semaphore().clone(),
        permit: Mutex::new(Some(permit)),
    });
    let caller = Caller {
        app: t.app.clone(),
        task: Some(t.id.clone()),
        depth: t.depth,
    };
    let attempts = t.attempts;
    match c.handle_task(req, caller, hooks).await {
        Ok(resp) => {
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), MAX_RESULT)
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .map_err(|e| {
                    Outcome::Retry(TaskError::Trapped {
                        message: format!("while sending its result: {e}"),
                        attempts,
                    })
                })?;
            if status.is_success() {
                Ok(body)
            } else {
                let text = String::from_utf8_lossy(&body).trim().to_string();
                Err(Outcome::Final(TaskError::Failed {
                    message: if text.is_empty() {
                        format!("HTTP {}", status.as_u16())
                    } else {
                        text
                    },
                }))
            }
        }
        Err(HandleError::Timeout(ms)) => Err(Outcome::Retry(TaskError::TimedOut {
            message: format!("ran longer than timeout_ms = {ms}"),
            attempts,
        })),
        Err(e) => Err(Outcome::Retry(TaskError::Trapped {
            message: e.to_string(),
            attempts,
        })),
    }
}

#[async_trait::async_trait]
impl nubo_tasks::Tasks for TaskRunner {
    async fn spawn(&self, t: NewTask) -> Result<String, TaskError> {
        if t.depth > self.limits.max_depth {
            tracing::warn!(app = %t.app, task = %t.id, "spawn refused: deeper than max_task_depth");
            return Err(TaskError::refused(format!(
                "task `{}` would be {} deep; the limit (max_task_depth) is {}",
                t.id, t.depth, self.limits.max_depth
            )));
        }
        let id = t.id.clone();
        let app = t.app.clone();
        match self.store.spawn(t, self.limits.max_active).await {
            Ok((_, true)) => {
                self.launch(id.clone(), std::time::Duration::ZERO);
                Ok(id)
            }
            Ok((_, false)) => Ok(id),
            Err(nubo_tasks::StoreError::Task(e)) => {
                tracing::warn!(app = %app, task = %id, "spawn refused: {e}");
                Err(e)
            }
            Err(e) => Err(TaskError::refused(e.to_string())),
        }
    }

    async fn wait(&self, app: &str, id: &str) -> Result<Vec<u8>, TaskError> {
        loop {
            let notify = self.waiter(id);
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.store.get(id).await {
                Ok(Some(t)) if t.app == app => {
                    if let Some(outcome) = t.outcome() {
                        return outcome;
                    }
                }
                Ok(_) => return Err(TaskError::refused(format!("no task `{id}` in app `{app}`"))),
                Err(e) => return Err(TaskError::refused(e.to_string())),
            }
            notified.await;
        }
    }

    async fn cancel(&self, app: &str, id: &str) {
        match self.store.cancel(app, id).await {
            Ok(ids) => {
                for t in ids {
                    if let Some(h) = lock(&self.running).remove(&t) {
                        h.abort();
                    }
                    self.finished(&t);
                }
            }
            Err(e) => tracing::error!(task = id, "cannot cancel: {e}"),
        }
    }
}
