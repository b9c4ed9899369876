//! Durable tasks (`nubo:platform/tasks`): start functions like threads,
//! on any core, and wait for their results.
//!
//! ```ignore
//! fn count_words(chunk: String) -> usize {
//!     chunk.split_whitespace().count()
//! }
//!
//! fn handle(req: Request) -> Result<String, nubo_sdk::tasks::TaskError> {
//!     let chunks: Vec<String> = split(req.body());
//!     let counts = nubo_sdk::tasks::parallel_map(count_words, chunks)?;
//!     Ok(counts.iter().sum::<usize>().to_string())
//! }
//!
//! nubo_sdk::http_handler!(handle, tasks: [count_words]);
//! ```
//!
//! A task function is a named `fn(A) -> R` with `A` and `R` JSON
//! (serde); it is listed in the component's `http_handler!(…, tasks: [...])`
//! or `task_handler!(...)`, and the component is granted in `nubo.toml`
//! (`tasks = ["this-component"]`). A panic traps the task, which is then
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

/// The name a task function is known by: its last path segment.
pub fn name_of<F>(_: &F) -> &'static str {
    short(std::any::type_name::<F>())
}

fn short(path: &'static str) -> &'static str {
    path.rsplit("::").next().unwrap_or(path)
}

/// Starts `f(arg)` as a task of this component.
pub fn spawn<F, A, R>(f: F, arg: A) -> Result<Task<R>, TaskError>
where
    F: Fn(A) -> R,
    A: Serialize,
{
    let payload =
        serde_json::to_vec(&arg).map_err(|e| TaskError::Refused(format!("payload: {e}")))?;
    let id = wit::spawn("", name_of(&f), &payload)?;
    Ok(Task {
        id,
        _result: PhantomData,
    })
}

/// Starts `f(arg)` for every item as its own task, stored in one write:
/// much faster than `spawn` in a loop for many tasks. Fails if any spawn
/// is refused (those before it are started).
pub fn spawn_all<F, A, R>(
    f: F,
    items: impl IntoIterator<Item = A>,
) -> Result<Vec<Task<R>>, TaskError>
where
    F: Fn(A) -> R,
    A: Serialize,
{
    let function = name_of(&f);
    let calls = items
        .into_iter()
        .map(|a| {
            Ok(wit::SpawnCall {
                component: String::new(),
                function: function.to_string(),
                payload: serde_json::to_vec(&a)
                    .map_err(|e| TaskError::Refused(format!("payload: {e}")))?,
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
pub fn parallel_map<F, A, R>(f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>, TaskError>
where
    F: Fn(A) -> R + Copy,
    A: Serialize,
    R: DeserializeOwned,
{
    join_all(spawn_all(f, items)?)
}

/// The task function a request asks for, if it is a task.
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

/// Runs task function `f` on a JSON payload: its JSON result, or why not.
pub fn call<F, A, R>(payload: &[u8], f: F) -> Result<Vec<u8>, CallError>
where
    F: Fn(A) -> R,
    A: DeserializeOwned,
    R: Serialize,
{
    let arg: A = serde_json::from_slice(payload).map_err(|e| CallError::BadPayload {
        function: name_of(&f),
        why: e.to_string(),
    })?;
    serde_json::to_vec(&f(arg)).map_err(|e| CallError::BadResult(e.to_string()))
}

/// Runs task function `f` on the request's JSON payload.
pub fn run<F, A, R>(req: &crate::Request, f: F) -> crate::Response
where
    F: Fn(A) -> R,
    A: DeserializeOwned,
    R: Serialize,
{
    match call(req.body(), f) {
        Ok(body) => crate::response(200, "application/json", body),
        Err(e @ CallError::BadPayload { .. }) => crate::text(400, e.to_string()),
        Err(e @ CallError::BadResult(_)) => crate::text(500, e.to_string()),
    }
}

/// Why a task function the component lacks cannot run.
pub fn unknown_message(function: &str) -> String {
    format!("no task function `{function}` here (list it in http_handler!(…, tasks: [...]))")
}

/// The answer to a task request for a function the component lacks.
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
