//! `nubo:platform/tasks` for one guest instance.
//!
//! Waiting (`await-all`, `select`) is an async host call: the guest's
//! fiber is parked and holds no OS thread, and the [`WaitHooks`] tell the
//! runner the instance is idle, so its time limit and run slot do not
//! count the wait.
//!
//! A parked instance still holds its memory. A task whose wait outlasts
//! [`WaitHooks::unload_after`] is therefore unloaded: the call traps with
//! [`Unloaded`], the instance is dropped, and the runner runs the task
//! again from the start once the wait is over. Its spawns get the same
//! ids and find the tasks they started, so the re-run reaches the same
//! wait and finds it over. Short waits (the common fan-out of quick
//! tasks) never pay for a re-run; ten thousand long ones cost a row each.
//!
//! [`WaitHooks`]: crate::WaitHooks
//! [`WaitHooks::unload_after`]: crate::WaitHooks::unload_after

use crate::{NewTask, TaskCtx, TaskError, Unloaded, Wait};
use std::future::Future;
use wasmtime::component::{HasData, Linker};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nubo:platform/tasks-host",
        imports: { default: async | trappable },
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
    /// Runs `wait` as the instance's wait: its run slot and time limit are
    /// let go meanwhile, and a task is unloaded if it lasts too long.
    async fn waiting<T>(&mut self, on: Wait, wait: impl Future<Output = T>) -> wasmtime::Result<T> {
        let hooks = self.ctx.as_deref().and_then(|c| c.hooks.clone());
        let Some(h) = hooks else {
            return Ok(wait.await);
        };
        h.waiting().await;
        let out = match h.unload_after() {
            None => wait.await,
            Some(grace) => match tokio::time::timeout(grace, wait).await {
                Ok(out) => out,
                Err(_) => {
                    h.unloaded(on);
                    return Err(Unloaded.into());
                }
            },
        };
        h.resumed().await;
        Ok(out)
    }
}

impl tasks::Host for TaskView<'_> {
    async fn spawn(
        &mut self,
        component: String,
        function: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<String, WitError>> {
        let Some(ctx) = self.ctx.as_deref_mut() else {
            return Ok(Err(WitError::Refused(NOT_GRANTED.into())));
        };
        let component = if component.is_empty() {
            ctx.grant.component.clone()
        } else {
            component
        };
        if !ctx.grant.components.contains(&component) {
            tracing::warn!(component = %component, "component started a task it is not granted (tasks in nubo.toml)");
            return Ok(Err(WitError::Refused(format!(
                "access denied: component `{component}` is not in this component's `tasks` in nubo.toml"
            ))));
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
        Ok(ctx.grant.service.spawn(task).await.map_err(wit))
    }

    async fn await_all(
        &mut self,
        ids: Vec<String>,
    ) -> wasmtime::Result<Vec<Result<Vec<u8>, WitError>>> {
        let Some(ctx) = self.ctx.as_deref() else {
            return Ok(ids
                .iter()
                .map(|_| Err(WitError::Refused(NOT_GRANTED.into())))
                .collect());
        };
        let (service, app) = (ctx.grant.service.clone(), ctx.grant.app.clone());
        // One read first: a wait that is over (a re-run's, or one on quick
        // tasks) returns without counting as waiting at all.
        let now = service.outcomes(&app, &ids).await;
        let pending: Vec<String> = ids
            .iter()
            .zip(&now)
            .filter(|(_, o)| o.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let outcomes = if pending.is_empty() {
            now
        } else {
            let wait = async {
                for id in &pending {
                    let _ = service.wait(&app, id).await;
                }
                service.outcomes(&app, &ids).await
            };
            self.waiting(Wait::All(pending.clone()), wait).await?
        };
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Err(TaskError::refused("the task vanished")))
                    .map_err(wit)
            })
            .collect())
    }

    async fn select(
        &mut self,
        ids: Vec<String>,
    ) -> wasmtime::Result<(u32, Result<Vec<u8>, WitError>)> {
        let Some(ctx) = self.ctx.as_deref() else {
            return Ok((0, Err(WitError::Refused(NOT_GRANTED.into()))));
        };
        if ids.is_empty() {
            return Ok((0, Err(WitError::Refused("select of no tasks".into()))));
        }
        let (service, app) = (ctx.grant.service.clone(), ctx.grant.app.clone());
        let now = service.outcomes(&app, &ids).await;
        if let Some((i, Some(o))) = now.into_iter().enumerate().find(|(_, o)| o.is_some()) {
            return Ok((i as u32, o.map_err(wit)));
        }
        let waits = ids.iter().enumerate().map(|(i, id)| {
            let (service, app) = (service.clone(), app.clone());
            let id = id.clone();
            Box::pin(async move { (i as u32, service.wait(&app, &id).await) })
        });
        let wait = async {
            let ((i, r), _, _) = futures_util::future::select_all(waits).await;
            (i, r.map_err(wit))
        };
        self.waiting(Wait::Any(ids.clone()), wait).await
    }

    async fn cancel(&mut self, id: String) -> wasmtime::Result<()> {
        if let Some(ctx) = self.ctx.as_deref_mut() {
            ctx.grant.service.cancel(&ctx.grant.app, &id).await;
        }
        Ok(())
    }
}
