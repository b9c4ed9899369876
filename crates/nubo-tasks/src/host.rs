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

use crate::{Caller, NewTask, TaskCtx, TaskError, TaskGrant, TaskRun, Unloaded, Wait};
use std::future::Future;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nubo:platform/tasks-host",
        imports: { default: async | trappable },
    });
}

use generated::nubo::platform::tasks::{self, SpawnCall, TaskError as WitError};

/// What the binding borrows from the store's data for one call.
struct TaskView<'a> {
    /// `None` for a component without the grant.
    ctx: Option<&'a mut TaskCtx>,
    /// Who started the instance's work: the tasks it spawns carry it.
    by: Option<std::sync::Arc<nubo_wasm::Principal>>,
}

/// A component's task grant, as the runtime holds it.
pub(crate) struct Granted(pub Arc<TaskGrant>);

impl nubo_wasm::Grant for Granted {
    fn instantiate(&self, run: &nubo_wasm::Run<'_>, states: &mut nubo_wasm::States) {
        let (caller, hooks) = match run.context::<TaskRun>() {
            Some(t) => (t.caller.clone(), Some(t.hooks.clone())),
            None => (
                Caller {
                    app: run.app.to_string(),
                    task: None,
                    depth: 0,
                },
                None,
            ),
        };
        states.insert(TaskCtx {
            grant: self.0.clone(),
            caller,
            spawned: 0,
            clock: run.waits.clone(),
            hooks,
        });
    }
}

/// Calls a component made into nubo:platform/tasks: what the node's usage counts of
/// this capability ([`nubo_wasm::usage`]).
pub const TASK_CALLS: nubo_wasm::Metric = nubo_wasm::Metric::sum("task_calls");

fn view(host: &mut nubo_wasm::Host) -> TaskView<'_> {
    host.count(TASK_CALLS, 1);
    let by = host
        .state::<std::sync::Arc<nubo_wasm::Principal>>()
        .map(|p| p.clone());
    TaskView {
        ctx: host.state::<TaskCtx>(),
        by,
    }
}

struct HasTasks;

impl HasData for HasTasks {
    type Data<'a> = TaskView<'a>;
}

pub(crate) fn add_to_linker(linker: &mut Linker<nubo_wasm::Host>) -> wasmtime::Result<()> {
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
        let Some(ctx) = self.ctx.as_deref() else {
            return Ok(wait.await);
        };
        let (clock, hooks) = (ctx.clock.clone(), ctx.hooks.clone());
        clock.begin();
        if let Some(h) = &hooks {
            h.waiting().await;
        }
        let out = match hooks
            .as_ref()
            .and_then(|h| h.unload_after().map(|g| (h, g)))
        {
            None => wait.await,
            Some((h, grace)) => match tokio::time::timeout(grace, wait).await {
                Ok(out) => out,
                Err(_) => {
                    h.unloaded(on);
                    return Err(Unloaded.into());
                }
            },
        };
        if let Some(h) = &hooks {
            h.resumed().await;
        }
        clock.end();
        Ok(out)
    }
}

impl TaskView<'_> {
    /// The task a spawn call starts, or why it may not.
    fn task(
        &mut self,
        component: String,
        function: String,
        payload: Vec<u8>,
    ) -> Result<NewTask, WitError> {
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
        if payload.len() > crate::MAX_PAYLOAD {
            return Err(WitError::Refused(format!(
                "the task's payload is {} bytes; payloads may be at most {} (put large data in a blob and pass its name)",
                payload.len(),
                crate::MAX_PAYLOAD
            )));
        }
        Ok(NewTask {
            id,
            app: ctx.grant.app.clone(),
            component,
            function,
            payload,
            depth: ctx.caller.depth + u32::from(ctx.caller.task.is_some()),
            starts: false,
            by: self.by.as_deref().cloned(),
        })
    }

    async fn spawn_calls(&mut self, calls: Vec<SpawnCall>) -> Vec<Result<String, WitError>> {
        let mut out: Vec<Option<Result<String, WitError>>> = Vec::with_capacity(calls.len());
        let mut tasks = Vec::new();
        for c in calls {
            match self.task(c.component, c.function, c.payload) {
                Ok(t) => {
                    tasks.push(t);
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        // Without the grant, `task` refused every call already.
        let Some(ctx) = self.ctx.as_deref() else {
            return out.into_iter().flatten().collect();
        };
        let mut spawned = ctx.grant.service.spawn_all(tasks).await.into_iter();
        out.into_iter()
            .map(|o| match o {
                Some(refused) => refused,
                None => spawned
                    .next()
                    .unwrap_or_else(|| Err(TaskError::refused("no answer for a spawn")))
                    .map_err(wit),
            })
            .collect()
    }
}

impl tasks::Host for TaskView<'_> {
    async fn spawn(
        &mut self,
        component: String,
        function: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<String, WitError>> {
        let call = SpawnCall {
            component,
            function,
            payload,
        };
        Ok(self
            .spawn_calls(vec![call])
            .await
            .pop()
            .unwrap_or_else(|| Err(WitError::Refused("no answer for a spawn".into()))))
    }

    async fn spawn_all(
        &mut self,
        calls: Vec<SpawnCall>,
    ) -> wasmtime::Result<Vec<Result<String, WitError>>> {
        Ok(self.spawn_calls(calls).await)
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
        // A wait that is over when it begins (a re-run's, or one on quick
        // tasks) returns without counting as waiting at all.
        let watch = ctx.grant.service.watch(&ctx.grant.app, &ids).await;
        let pending = watch.pending();
        let outcomes = if pending.is_empty() {
            watch.all().await
        } else {
            self.waiting(Wait::All(pending), watch.all()).await?
        };
        Ok(outcomes.into_iter().map(|o| o.map_err(wit)).collect())
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
        let watch = ctx.grant.service.watch(&ctx.grant.app, &ids).await;
        let (i, o) = match watch.first_known() {
            Some(known) => known,
            None => self.waiting(Wait::Any(ids.clone()), watch.any()).await?,
        };
        Ok((i as u32, o.map_err(wit)))
    }

    async fn cancel(&mut self, id: String) -> wasmtime::Result<()> {
        if let Some(ctx) = self.ctx.as_deref_mut() {
            ctx.grant.service.cancel(&ctx.grant.app, &id).await;
        }
        Ok(())
    }
}
