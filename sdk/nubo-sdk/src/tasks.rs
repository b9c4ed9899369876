//! Durable tasks (`nubo:platform/tasks`): start functions like threads,
//! on any core, and wait for their results.
//!
//! ```ignore
//! use nubo_sdk::tasks::{self, TaskFn};
//!
//! fn count_words(chunk: String) -> usize {
//!     chunk.split_whitespace().count()
//! }
//! const COUNT_WORDS: TaskFn<String, usize> = TaskFn::new("count-words", count_words);
//!
//! fn handle(req: Request) -> Result<String, tasks::TaskError> {
//!     let chunks: Vec<String> = split(req.body());
//!     let counts = tasks::parallel_map(COUNT_WORDS, chunks)?;
//!     Ok(counts.iter().sum::<usize>().to_string())
//! }
//!
//! nubo_sdk::http_handler!(handle, tasks: [COUNT_WORDS]);
//! ```
//!
//! A task function is a `fn(A) -> R` with `A` and `R` JSON (serde), given
//! its name in a [`TaskFn`]. It is listed in the component's
//! `http_handler!(…, tasks: [...])` or `task_handler!(...)`, and the
//! component is granted in `nubo.toml` (`tasks = ["this-component"]`). A panic traps the task, which is then
//! retried; the awaiter gets [`TaskError`] only when no attempt is left.
//! A task runs again from the start when retried or when its node died,
//! so make what it does before its last `join` safe to repeat; children
//! it already started and that finished are not run again.

use crate::bindings::nubo::platform::tasks as wit;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

pub use wit::TaskError;

/// A started task whose result is an `R`.
pub struct Task<R> {
    id: String,
    _result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Task<R> {
    /// Its id (for `nubo tasks show ID`, or to `cancel` it).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits for its result.
    pub fn join(self) -> Result<R, TaskError> {
        join_all(vec![self])?
            .pop()
            .ok_or_else(|| TaskError::Failed("no result".into()))
    }
}

/// A task function and the name tasks of it are stored under.
///
/// A stored task names its function, and runs it after a restart or on
/// another node, so the name is written out here once and never derived
/// from the function's path: renaming or moving the Rust function keeps
/// the tasks already stored working. Two `TaskFn`s of a component must
/// have different names.
pub struct TaskFn<A, R> {
    name: &'static str,
    f: fn(A) -> R,
}

impl<A, R> Clone for TaskFn<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, R> Copy for TaskFn<A, R> {}

impl<A, R> TaskFn<A, R> {
    /// `f`, stored as `name` (what `nubo tasks` shows, and what
    /// [`spawn_on`] takes).
    pub const fn new(name: &'static str, f: fn(A) -> R) -> Self {
        Self { name, f }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl<A: DeserializeOwned, R: Serialize> TaskFn<A, R> {
    /// Runs it on a JSON payload: its JSON result, or why not.
    pub fn call(&self, payload: &[u8]) -> Result<Vec<u8>, CallError> {
        let arg: A = serde_json::from_slice(payload).map_err(|e| CallError::BadPayload {
            function: self.name,
            why: e.to_string(),
        })?;
        serde_json::to_vec(&(self.f)(arg)).map_err(|e| CallError::BadResult(e.to_string()))
    }

    /// Runs it on the request's JSON payload.
    #[doc(hidden)]
    pub fn serve(&self, req: &crate::Request) -> crate::Response {
        match self.call(req.body()) {
            Ok(body) => crate::response(200, "application/json", body),
            Err(e @ CallError::BadPayload { .. }) => crate::text(400, e.to_string()),
            Err(e @ CallError::BadResult(_)) => crate::text(500, e.to_string()),
        }
    }
}

fn payload<A: Serialize>(arg: &A) -> Result<Vec<u8>, TaskError> {
    serde_json::to_vec(arg).map_err(|e| TaskError::Refused(format!("payload: {e}")))
}

/// Starts `f(arg)` as a task of this component.
pub fn spawn<A: Serialize, R>(f: TaskFn<A, R>, arg: A) -> Result<Task<R>, TaskError> {
    let id = wit::spawn("", f.name, &payload(&arg)?)?;
    Ok(Task {
        id,
        _result: PhantomData,
    })
}

/// Starts `f(arg)` for every item as its own task, stored in one write:
/// much faster than `spawn` in a loop for many tasks. Fails if any spawn
/// is refused (those before it are started).
pub fn spawn_all<A: Serialize, R>(
    f: TaskFn<A, R>,
    items: impl IntoIterator<Item = A>,
) -> Result<Vec<Task<R>>, TaskError> {
    let calls = items
        .into_iter()
        .map(|a| {
            Ok(wit::SpawnCall {
                component: String::new(),
                function: f.name.to_string(),
                payload: payload(&a)?,
            })
        })
        .collect::<Result<Vec<_>, TaskError>>()?;
    wit::spawn_all(&calls)
        .into_iter()
        .map(|r| {
            r.map(|id| Task {
                id,
                _result: PhantomData,
            })
        })
        .collect()
}

/// Starts `function` of the app's component `component` with a raw
/// payload; its id. For the result, [`join_raw`].
pub fn spawn_on(component: &str, function: &str, payload: &[u8]) -> Result<String, TaskError> {
    wit::spawn(component, function, payload)
}

/// Waits for the tasks `ids`; their raw results, in order.
pub fn join_raw(ids: &[String]) -> Vec<Result<Vec<u8>, TaskError>> {
    wit::await_all(ids)
}

/// Waits for every task; their results in order, or the first error.
pub fn join_all<R: DeserializeOwned>(tasks: Vec<Task<R>>) -> Result<Vec<R>, TaskError> {
    let ids: Vec<String> = tasks.into_iter().map(|t| t.id).collect();
    wit::await_all(&ids)
        .into_iter()
        .map(|r| {
            let bytes = r?;
            serde_json::from_slice(&bytes)
                .map_err(|e| TaskError::Failed(format!("unreadable result: {e}")))
        })
        .collect()
}

/// Waits for the first of `tasks` to finish: its index and result.
pub fn select<R: DeserializeOwned>(tasks: &[Task<R>]) -> (usize, Result<R, TaskError>) {
    let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
    let (i, r) = wit::select(&ids);
    let r = r.and_then(|b| {
        serde_json::from_slice(&b).map_err(|e| TaskError::Failed(format!("unreadable result: {e}")))
    });
    (i as usize, r)
}

/// Cancels a task and everything it started.
pub fn cancel(id: &str) {
    wit::cancel(id)
}

/// `f` over every item, each as its own task, all at once; the results in
/// order.
pub fn parallel_map<A: Serialize, R: DeserializeOwned>(
    f: TaskFn<A, R>,
    items: impl IntoIterator<Item = A>,
) -> Result<Vec<R>, TaskError> {
    join_all(spawn_all(f, items)?)
}

/// The task function a request asks for, if it is a task.
#[doc(hidden)]
pub fn requested(req: &crate::Request) -> Option<&str> {
    req.headers()
        .get("nubo-task-function")
        .and_then(|v| v.to_str().ok())
}

/// Why a task function could not run on its payload.
#[derive(Debug)]
pub enum CallError {
    /// The payload is not the function's argument as JSON (the caller's
    /// mistake: `400` over HTTP).
    BadPayload { function: &'static str, why: String },
    /// The function's result cannot be written as JSON (`500`).
    BadResult(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::BadPayload { function, why } => {
                write!(f, "bad payload for {function}: {why}")
            }
            CallError::BadResult(why) => write!(f, "unserializable result: {why}"),
        }
    }
}

/// Why a task function the component lacks cannot run.
#[doc(hidden)]
pub fn unknown_message(function: &str) -> String {
    format!("no task function `{function}` here (list it in http_handler!(…, tasks: [...]))")
}

/// The answer to a task request for a function the component lacks.
#[doc(hidden)]
pub fn unknown(function: &str) -> crate::Response {
    crate::text(404, unknown_message(function))
}

/// The `nubo:platform/task-handler` export: Nubo runs tasks through it
/// without an HTTP request around each (a third of a trivial task's cost
/// in its instance). [`http_handler!`](crate::http_handler) exports it
/// with the same functions it serves at `POST /FUNCTION`.
#[doc(hidden)]
pub mod export {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "nubo:platform/task-runner",
        pub_export_macro: true,
        default_bindings_module: "$crate::tasks::export",
        export_macro_name: "_export_task_runner",
    });
    pub use self::exports::nubo::platform::task_handler::Guest;
}
