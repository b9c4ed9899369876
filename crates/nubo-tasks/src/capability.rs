//! Durable tasks as a capability of the node: the grant, the host
//! binding, the store and runner it opens, its part in a cluster's
//! heartbeats, its control-API routes and what a removed app leaves.

use crate::{
    ClusterTasks, NatsTasks, SqliteTasks, TaskRunner, TaskStore, Tasks, api, host, runner,
};
use std::sync::Arc;

/// The key of a component's grant in `nubo.toml`.
const GRANT_KEY: &str = "tasks";

/// What one component may do with tasks: start them on the components
/// its `tasks = [...]` lists.
#[derive(Clone)]
pub struct TaskGrant {
    pub service: Arc<dyn Tasks>,
    pub app: String,
    pub components: Vec<String>,
    pub component: String,
}

impl TaskGrant {
    /// The grant as the runtime gives it to each instance.
    pub fn into_grant(self) -> Arc<dyn nubo_wasm::Grant> {
        Arc::new(host::Granted(Arc::new(self)))
    }
}

/// Durable tasks as a capability of the runtime: `nubo:platform/tasks`.
pub struct DurableTasks;

impl nubo_wasm::Capability for DurableTasks {
    fn name(&self) -> &'static str {
        "tasks"
    }

    fn section(&self) -> Option<&'static dyn nubo_wasm::Section> {
        Some(&crate::TasksSection)
    }

    fn grant_key(&self) -> Option<nubo_wasm::GrantKey> {
        Some(nubo_wasm::GrantKey {
            key: GRANT_KEY,
            noun: "task target",
            names: nubo_wasm::Names::Components,
        })
    }

    fn grant(
        &self,
        to: &nubo_wasm::GrantTo<'_>,
        names: &[String],
    ) -> Result<Arc<dyn nubo_wasm::Grant>, nubo_wasm::GrantError> {
        let grant = TaskGrant {
            service: to
                .services
                .need::<Arc<runner::TaskRunner>>(self.name())?
                .clone(),
            app: to.app.to_string(),
            components: names.to_vec(),
            component: to.component.to_string(),
        };
        Ok(grant.into_grant())
    }

    fn link(
        &self,
        linker: &mut wasmtime::component::Linker<nubo_wasm::Host>,
    ) -> wasmtime::Result<()> {
        host::add_to_linker(linker)
    }

    /// A JetStream store shared with the other nodes in a cluster, else
    /// `tasks.db`; and the runner, a few run slots per core.
    fn open<'a>(
        &'a self,
        env: &'a nubo_wasm::OpenEnv<'a>,
        services: &'a mut nubo_wasm::Services,
    ) -> Option<nubo_wasm::BoxFuture<'a, Result<(), nubo_wasm::OpenError>>> {
        Some(Box::pin(async move {
            let failed = |e| nubo_wasm::OpenError::new("tasks", e);
            let (store, cluster): (Arc<dyn TaskStore>, _) =
                match services.get::<nubo_cluster::ClusterJoin>() {
                    Some(c) => {
                        let nats = Arc::new(
                            NatsTasks::open(
                                c.cluster.jetstream(),
                                c.cluster.replicas(),
                                &c.id,
                                c.cluster.key().clone(),
                            )
                            .await
                            .map_err(failed)?,
                        );
                        let link = ClusterTasks {
                            nats: nats.clone(),
                            client: c.cluster.client().clone(),
                            key: c.cluster.key().clone(),
                            fenced: std::sync::atomic::AtomicBool::new(false),
                        };
                        (nats, Some(link))
                    }
                    None => (
                        Arc::new(SqliteTasks::open(&env.state.join("tasks.db")).map_err(failed)?),
                        None,
                    ),
                };
            store.keep_free(env.disk_reserve);
            // Tasks are CPU work: a few per core keeps every core busy
            // while some wait on I/O.
            let pauses = services
                .get::<Arc<nubo_wasm::Pauses>>()
                .cloned()
                .unwrap_or_default();
            let runner = TaskRunner::new(store, cluster, env.cores * 4, env.cores, pauses)
                .map_err(|e| nubo_wasm::OpenError::new("tasks", e))?;
            if let Some(m) = services.get::<Arc<nubo_wasm::metrics::Metrics>>() {
                runner.register_metrics(m);
            }
            runner.listen();
            runner.expire_finished();
            services.insert(runner);
            Ok(())
        }))
    }

    /// Gives the runner the app's running components and `[tasks]` limits.
    fn configure(&self, services: &nubo_wasm::Services, app: &nubo_wasm::RunningApp<'_>) {
        let Some(runner) = services.get::<Arc<TaskRunner>>() else {
            return;
        };
        match app.def {
            Some(def) => {
                let running = app
                    .components
                    .iter()
                    .map(|(name, c)| (name.clone(), c.clone()))
                    .collect();
                let spawns = def
                    .components
                    .values()
                    .any(|c| !c.granted(GRANT_KEY).is_empty());
                let limits = crate::TasksSection::of(&def.sections).unwrap_or_else(|e| {
                    tracing::error!(app = app.name, error = %e, "stored [tasks] unreadable");
                    Default::default()
                });
                runner.set(app.name, running, limits, spawns);
            }
            None => runner.set(app.name, Default::default(), Default::default(), false),
        }
    }

    /// Takes up the tasks that were running when the node stopped.
    fn restored<'a>(
        &'a self,
        services: &'a nubo_wasm::Services,
    ) -> Option<nubo_wasm::BoxFuture<'a, ()>> {
        let runner = services.get::<Arc<TaskRunner>>()?;
        Some(Box::pin(runner.recover()))
    }

    /// Takes tasks again if fenced, and takes over the tasks of nodes
    /// whose heartbeat expired.
    fn heartbeat<'a>(
        &'a self,
        services: &'a nubo_wasm::Services,
        members: Option<&'a std::collections::HashSet<String>>,
    ) -> Option<nubo_wasm::BoxFuture<'a, ()>> {
        let runner = services.get::<Arc<TaskRunner>>()?;
        Some(Box::pin(async move {
            runner.unfence().await;
            if let Some(members) = members {
                runner.sweep(members).await;
            }
        }))
    }

    fn fence(&self, services: &nubo_wasm::Services) -> Option<usize> {
        services.get::<Arc<TaskRunner>>()?.fence()
    }

    /// `nubo_task_slots_busy` over `nubo_task_slots` is how much of the
    /// node's task capacity is in use; `nubo_tasks` counts each app's
    /// tasks by state.
    fn readings<'a>(
        &'a self,
        services: &'a nubo_wasm::Services,
    ) -> nubo_wasm::BoxFuture<'a, Vec<nubo_wasm::metrics::Reading>> {
        Box::pin(async move {
            match services.get::<Arc<TaskRunner>>() {
                Some(runner) => runner.readings().await,
                None => Vec::new(),
            }
        })
    }

    fn routes(
        &self,
        services: &nubo_wasm::Services,
        apps: Arc<dyn nubo_api::Apps>,
    ) -> Option<nubo_api::Routes> {
        let tasks = services.get::<Arc<runner::TaskRunner>>()?.clone();
        Some(api::routes(tasks, apps))
    }

    /// Every task of the app, finished or not; what runs of them here stops.
    fn purge_app<'a>(
        &'a self,
        services: &'a nubo_wasm::Services,
        app: &'a str,
    ) -> Option<nubo_wasm::BoxFuture<'a, Result<nubo_wasm::Deleted, nubo_wasm::PurgeError>>> {
        let tasks = services.get::<Arc<runner::TaskRunner>>()?;
        Some(Box::pin(async move {
            let count = tasks
                .purge(app)
                .await
                .map_err(|e| nubo_wasm::PurgeError::new("tasks", e))?;
            Ok(nubo_wasm::Deleted {
                what: "tasks",
                count,
            })
        }))
    }
}
