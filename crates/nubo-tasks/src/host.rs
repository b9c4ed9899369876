//! `nubo:platform/tasks` for one guest instance.
//!
//! Waiting (`await-all`, `select`) is an async host call: the guest's
//! fiber is parked and holds no OS thread, and the [`WaitHooks`] tell the
//! runner the instance is idle, so its time limit and run slot do not
//! count the wait.
//!
//! [`WaitHooks`]: crate::WaitHooks

use crate::{NewTask, TaskCtx, TaskError};
use wasmtime::component::{HasData, Linker};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nubo:platform/tasks-host",
        imports: { default: async },
    });
}

use generated::nubo::platform::tasks::{self, TaskError as WitError};

/// What the binding borrows from the store's data for one call.
pub struct TaskView<'a> {
    pub ctx: Option<&'a mut TaskCtx>,
}

struct HasTasks;

impl HasData for HasTasks {
    type Data<'a> = TaskView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> TaskView<'_>,
) -> wasmtime::Result<()> {
    tasks::add_to_linker::<_, HasTasks>(linker, view)
}

fn wit(e: TaskError) -> WitError {
    match e {
        TaskError::Failed { message } => WitError::Failed(message),
        TaskError::Trapped { message, attempts } => {
            WitError::Trapped(format!("{message} (attempt {attempts})"))
        }
        TaskError::TimedOut { message, attempts } => {
            WitError::TimedOut(format!("{message} (attempt {attempts})"))
        }
        TaskError::Cancelled => WitError::Cancelled,
        TaskError::Refused { message } => WitError::Refused(message),
    }
}

const NOT_GRANTED: &str = "access denied: this component may not start tasks (add `tasks = [\"COMPONENT\"]` to it in nubo.toml)";

impl TaskView<'_> {
    async fn wait_all(&mut self, ids: &[String]) -> Vec<Result<Vec<u8>, TaskError>> {
        let Some(ctx) = self.ctx.as_deref_mut() else {
            return ids
                .iter()
                .map(|_| Err(TaskError::refused(NOT_GRANTED)))
                .collect();
        };
        let (service, app) = (ctx.grant.service.clone(), ctx.grant.app.clone());
        if let Some(h) = &ctx.hooks {
            h.waiting().await;
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(service.wait(&app, id).await);
        }
        if let Some(h) = &ctx.hooks {
            h.resumed().await;
        }
        out
    }
}

impl tasks::Host for TaskView<'_> {
    async fn spawn(
        &mut self,
        component: String,
        function: String,
        payload: Vec<u8>,
    ) -> Result<String, WitError> {
        let Some(ctx) = self.ctx.as_deref_mut() else {
            return Err(WitError::Refused(NOT_GRANTED.into()));
        };
        let component = if component.is_empty() {
            ctx.grant.component.clone()
        } else {
            component
        };
        if !ctx.grant.components.contains(&component) {
            tracing::warn!(component = %component, "component started a task it is not granted (tasks in nubo.toml)");
            return Err(WitError::Refused(format!(
                "access denied: component `{component}` is not in this component's `tasks` in nubo.toml"
            )));
        }
        // The id is taken even if the spawn is refused, so a re-run's
        // later spawns keep their ids.
        let id = ctx.next_id();
        let task = NewTask {
            id,
            app: ctx.grant.app.clone(),
            component,
            function,
            payload,
            depth: ctx.caller.depth + u32::from(ctx.caller.task.is_some()),
        };
        ctx.grant.service.spawn(task).await.map_err(wit)
    }

    async fn await_all(&mut self, ids: Vec<String>) -> Vec<Result<Vec<u8>, WitError>> {
        self.wait_all(&ids)
            .await
            .into_iter()
            .map(|r| r.map_err(wit))
            .collect()
    }

    async fn select(&mut self, ids: Vec<String>) -> (u32, Result<Vec<u8>, WitError>) {
        let Some(ctx) = self.ctx.as_deref_mut() else {
            return (0, Err(WitError::Refused(NOT_GRANTED.into())));
        };
        if ids.is_empty() {
            return (0, Err(WitError::Refused("select of no tasks".into())));
        }
        let (service, app) = (ctx.grant.service.clone(), ctx.grant.app.clone());
        if let Some(h) = &ctx.hooks {
            h.waiting().await;
        }
        let waits = ids.iter().enumerate().map(|(i, id)| {
            let (service, app) = (service.clone(), app.clone());
            let id = id.clone();
            Box::pin(async move { (i as u32, service.wait(&app, &id).await) })
        });
        let ((i, r), _, _) = futures_util::future::select_all(waits).await;
        if let Some(h) = &ctx.hooks {
            h.resumed().await;
        }
        (i, r.map_err(wit))
    }

    async fn cancel(&mut self, id: String) {
        if let Some(ctx) = self.ctx.as_deref_mut() {
            ctx.grant.service.cancel(&ctx.grant.app, &id).await;
        }
    }
}
