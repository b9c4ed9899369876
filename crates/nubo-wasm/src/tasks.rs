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

use crate::error::HandleError;
use crate::http::HttpComponent;
use std::sync::Arc;

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nubo:platform/task-runner",
        exports: { default: async },
    });
}

pub(crate) use generated::TaskRunnerIndices;

/// Where a component's task export is, found once when it is loaded.
pub(crate) fn find(
    pre: &wasmtime::component::InstancePre<crate::host::Host>,
) -> Option<Arc<TaskRunnerIndices>> {
    TaskRunnerIndices::new(pre).ok().map(Arc::new)
}

impl HttpComponent {
    /// Runs task function `function` on `payload` in a fresh instance,
    /// under the same limits and hooks as [`HttpComponent::handle_task`].
    /// `None`: the component has no task export (run it over HTTP);
    /// `Some(Ok(Err(message)))`: the function failed and said why.
    pub async fn run_task(
        &self,
        function: &str,
        payload: &[u8],
        caller: nubo_tasks::Caller,
        hooks: Arc<dyn nubo_tasks::WaitHooks>,
    ) -> Option<Result<Result<Vec<u8>, String>, HandleError>> {
        let export = self.task_export.clone()?;
        let run = async {
            let _permit = self.slot(true).await?;
            let id = caller.task.clone().unwrap_or_default();
            let charge = self.node_slot_waiting(&id).await;
            let (mut store, wall) = self.store(&id, Some((caller, hooks)), charge);
            let result = wall
                .bound(async {
                    let instance = self.instance_pre().instantiate_async(&mut store).await?;
                    let runner = export.load(&mut store, &instance)?;
                    runner
                        .nubo_platform_task_handler()
                        .call_run(&mut store, function, payload)
                        .await
                })
                .await;
            result.map_err(|e| self.failed(&e, &id))
        };
        Some(run.await)
    }
}
