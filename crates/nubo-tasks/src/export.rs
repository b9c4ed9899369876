//! Running a task through the component's `nubo:platform/task-handler`
//! export, when it has one (every Rust SDK component with tasks does).
//!
//! Why not always `POST /FUNCTION`: wrapping each task in an HTTP request
//! builds request and response resources, a body stream each way and the
//! guest's conversions to and from them. For a trivial task that was most
//! of its instance's cost, several times the instantiation itself. A direct
//! call passes the function's name and payload and gets the result back.
//! Components without the export (any plain `wasi:http` one) still run
//! tasks over HTTP, so the export is an optimisation, never a requirement.

use crate::TaskRun;
use nubo_wasm::{Component, HandleError, Invocation};
use std::sync::Arc;

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nubo:platform/task-runner",
        exports: { default: async },
    });
}

use generated::TaskRunnerIndices;

/// Runs task function `function` on `payload` in a fresh instance of
/// `component`, as task `run.caller.task`. `None`: the component has no
/// task export (run it over HTTP); `Some(Ok(Err(message)))`: the function
/// failed and said why.
pub async fn run(
    component: &Component,
    function: &str,
    payload: &[u8],
    run: TaskRun,
) -> Option<Result<Result<Vec<u8>, String>, HandleError>> {
    let export = component.export(|pre| TaskRunnerIndices::new(pre).ok())?;
    let id = run.caller.task.clone().unwrap_or_default();
    let by = run.by.clone();
    let answer = component
        .invoke(
            Invocation::task(id, Arc::new(run)).by(by),
            |mut store, instance| async move {
                let runner = export.load(&mut store, &instance)?;
                runner
                    .nubo_platform_task_handler()
                    .call_run(&mut store, function, payload)
                    .await
            },
        )
        .await;
    Some(answer)
}
