//! One run of a task: `POST /FUNCTION` to a fresh instance of its
//! component, and what came of it.

use super::share::{FairShare, SharePermit};
use crate::{Caller, Task, TaskError, TaskRun, Wait, WaitHooks};
use nubo_wasm::{HandleError, HttpComponent, InternalError, InternalRequest, Invocation};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest task result kept, in bytes.
const MAX_RESULT: usize = 16 << 20;

/// How long a task's instance stays parked in a wait before it is
/// unloaded (see `crate::host`). Long enough that a fan-out of quick
/// tasks finishes in place; short enough that thousands of long waits
/// hold rows, not instances.
const UNLOAD_AFTER: Duration = Duration::from_millis(100);

pub(super) enum Outcome {
    Done(Vec<u8>),
    /// Failed for good.
    Final(TaskError),
    /// Trapped or timed out: worth another attempt.
    Retry(TaskError),
    /// Unloaded while waiting: run it again once the wait is over.
    Unloaded(Wait),
}

/// The run permits of a task: its app's and the node's. Given back while
/// the instance waits on other tasks, so parents never starve their
/// children.
pub(super) struct Permits {
    /// The app's own limit (`max_running`).
    pub app: Arc<Semaphore>,
    /// The node's permits, shared fairly between apps.
    pub node: Arc<FairShare>,
    pub name: Arc<str>,
    pub held: Option<(OwnedSemaphorePermit, SharePermit)>,
}

impl Permits {
    pub async fn acquire(app: Arc<Semaphore>, node: Arc<FairShare>, name: &str) -> Option<Self> {
        let mut p = Permits {
            app,
            node,
            name: name.into(),
            held: None,
        };
        p.take().await.then_some(p)
    }

    /// Both permits if both are free now.
    pub fn try_acquire(app: Arc<Semaphore>, node: Arc<FairShare>, name: &str) -> Option<Self> {
        let a = app.clone().try_acquire_owned().ok()?;
        let n = node.try_acquire(name)?;
        Some(Permits {
            app,
            node,
            name: name.into(),
            held: Some((a, n)),
        })
    }

    async fn take(&mut self) -> bool {
        // Always the app's first, then the node's: one order, no deadlock.
        let Ok(a) = self.app.clone().acquire_owned().await else {
            return false;
        };
        let Some(n) = self.node.acquire(&self.name).await else {
            return false;
        };
        self.held = Some((a, n));
        true
    }
}

struct Hooks {
    permits: tokio::sync::Mutex<Permits>,
    unloaded: Mutex<Option<Wait>>,
}

#[async_trait::async_trait]
impl WaitHooks for Hooks {
    async fn waiting(&self) {
        self.permits.lock().await.held = None;
    }

    async fn resumed(&self) {
        self.permits.lock().await.take().await;
    }

    fn unload_after(&self) -> Option<Duration> {
        Some(UNLOAD_AFTER)
    }

    fn unloaded(&self, wait: Wait) {
        *self.unloaded.lock().unwrap_or_else(|p| p.into_inner()) = Some(wait);
    }
}

pub(super) async fn invoke(c: &HttpComponent, t: &Task, permits: Permits) -> Outcome {
    let hooks = Arc::new(Hooks {
        permits: tokio::sync::Mutex::new(permits),
        unloaded: Mutex::new(None),
    });
    let caller = Caller {
        app: t.app.clone(),
        task: Some(t.id.clone()),
        depth: t.depth,
    };
    // Through the component's task export if it has one, else over HTTP.
    let run = TaskRun {
        caller: caller.clone(),
        hooks: hooks.clone(),
        by: t.by.clone(),
    };
    let answer = match crate::export::run(c, &t.function, &t.payload, run).await {
        Some(answer) => answer.map(|r| r.map_err(|message| (None, message))),
        None => over_http(c, t, caller, hooks.clone()).await,
    };
    if let Some(wait) = hooks
        .unloaded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        return Outcome::Unloaded(wait);
    }
    outcome(answer, t.attempts)
}

/// What to do with a task after a run: a failure that running it again
/// can cure (a trap, a time or memory limit, no free instance) is retried
/// while attempts are left; one that would only repeat (the function
/// reported an error, the component answered without a result or cannot
/// run the function at all) fails the task at once.
fn outcome(answer: Answer, attempts: u32) -> Outcome {
    match answer {
        Ok(Ok(result)) if result.len() > MAX_RESULT => Outcome::Retry(TaskError::Trapped {
            message: format!("its result is over {MAX_RESULT} bytes"),
            attempts,
        }),
        Ok(Ok(result)) => Outcome::Done(result),
        Ok(Err((status, text))) => Outcome::Final(TaskError::Failed {
            message: match status {
                Some(code) if text.is_empty() => format!("HTTP {code}"),
                _ => text,
            },
        }),
        Err(HandleError::Timeout(ms)) => Outcome::Retry(TaskError::TimedOut {
            message: format!("ran longer than timeout_ms = {ms}"),
            attempts,
        }),
        Err(e @ (HandleError::GuestError(_) | HandleError::Host(_))) => {
            Outcome::Final(TaskError::Failed {
                message: e.to_string(),
            })
        }
        Err(
            e @ (HandleError::Trapped(_)
            | HandleError::MemoryLimit(_)
            | HandleError::CpuLimit(_)
            | HandleError::Busy),
        ) => Outcome::Retry(TaskError::Trapped {
            message: e.to_string(),
            attempts,
        }),
    }
}

/// What a run came to: the result, or a failure the function reported
/// (with the HTTP status it answered, over HTTP) and its message.
type Answer = Result<Result<Vec<u8>, (Option<u16>, String)>, HandleError>;

/// A task as `POST /FUNCTION` to the component's HTTP handler, for
/// components without a task export.
async fn over_http(c: &HttpComponent, t: &Task, caller: Caller, hooks: Arc<Hooks>) -> Answer {
    let headers = [
        ("nubo-task-id", t.id.clone()),
        ("nubo-task-function", t.function.clone()),
        ("nubo-task-attempt", t.attempts.to_string()),
    ];
    let path = format!("/{}", t.function);
    let req = InternalRequest {
        app: &t.app,
        kind: "task",
        path: &path,
        headers: &headers,
        body: t.payload.clone(),
        max_answer: MAX_RESULT,
    };
    let run = TaskRun {
        caller,
        hooks,
        by: t.by.clone(),
    };
    let by = t.by.clone();
    let answer = match c
        .post_internal(req, Invocation::task(t.id.clone(), Arc::new(run)).by(by))
        .await
    {
        Ok(a) => a,
        Err(InternalError::Run(e)) => return Err(e),
        Err(InternalError::Request(e)) => return Ok(Err((None, format!("bad task request: {e}")))),
        Err(e) => {
            return Err(HandleError::GuestError(format!(
                "while sending its result: {e}"
            )));
        }
    };
    if answer.is_success() {
        Ok(Ok(answer.body.to_vec()))
    } else {
        let text = String::from_utf8_lossy(&answer.body).trim().to_string();
        Ok(Err((Some(answer.status), text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(o: &Outcome) -> &'static str {
        match o {
            Outcome::Done(_) => "done",
            Outcome::Final(_) => "final",
            Outcome::Retry(_) => "retry",
            Outcome::Unloaded(_) => "unloaded",
        }
    }

    #[test]
    fn failures_that_another_run_can_cure_are_retried_and_no_others() {
        let cases: [(Answer, &str); 9] = [
            (Ok(Ok(b"1".to_vec())), "done"),
            (Ok(Ok(vec![0; MAX_RESULT + 1])), "retry"),
            (Ok(Err((Some(500), "boom".into()))), "final"),
            (Err(HandleError::Timeout(10)), "retry"),
            (Err(HandleError::Trapped("panic".into())), "retry"),
            (Err(HandleError::MemoryLimit(64)), "retry"),
            (Err(HandleError::Busy), "retry"),
            (Err(HandleError::GuestError("no answer".into())), "final"),
            (Err(HandleError::Host("no export".into())), "final"),
        ];
        for (answer, want) in cases {
            let shown = format!("{answer:?}").chars().take(60).collect::<String>();
            assert_eq!(kind(&outcome(answer, 1)), want, "{shown}");
        }
    }
}
