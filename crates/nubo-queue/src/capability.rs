//! Queues as a capability of the runtime: the grant a component gets and
//! the host binding it calls.

use crate::{Dispatcher, NatsQueue, QueueBackend, QueueName, QueueQuota, SqliteQueue, host};
use std::sync::Arc;

/// What one component may publish to: its app's queues that `nubo.toml`
/// grants, and a way to wake their dispatchers.
#[derive(Clone)]
pub struct QueueGrant {
    pub backend: Arc<dyn QueueBackend>,
    pub app: String,
    pub queues: Vec<String>,
    pub notify: Arc<dyn Fn(&QueueName) + Send + Sync>,
}

impl QueueGrant {
    /// The grant as the runtime gives it to each instance.
    pub fn into_grant(self) -> Arc<dyn nubo_wasm::Grant> {
        Arc::new(nubo_wasm::Shared(Arc::new(self)))
    }
}

/// Queues as a capability of the runtime: `nubo:platform/queue` (publish).
pub struct Queues;

impl nubo_wasm::Capability for Queues {
    fn name(&self) -> &'static str {
        "queues"
    }

    fn grant_key(&self) -> Option<nubo_wasm::GrantKey> {
        Some(nubo_wasm::GrantKey {
            key: "queues",
            noun: "queue",
            names: nubo_wasm::Names::Declared { section: "queue" },
        })
    }

    fn section(&self) -> Option<&'static dyn nubo_wasm::Section> {
        Some(&crate::QueueSection)
    }

    fn grant(
        &self,
        to: &nubo_wasm::GrantTo<'_>,
        names: &[String],
    ) -> Result<Arc<dyn nubo_wasm::Grant>, nubo_wasm::GrantError> {
        let dispatcher = to.services.need::<Arc<Dispatcher>>(self.name())?.clone();
        let grant = QueueGrant {
            backend: dispatcher.backend.clone(),
            app: to.app.to_string(),
            queues: names.to_vec(),
            notify: Arc::new(move |q| dispatcher.notify(q)),
        };
        Ok(grant.into_grant())
    }

    fn link(
        &self,
        linker: &mut wasmtime::component::Linker<nubo_wasm::Host>,
    ) -> wasmtime::Result<()> {
        host::add_to_linker(linker)
    }

    /// A JetStream stream in a cluster (woken by other nodes' publishes),
    /// else `queues.db`; and the dispatcher that delivers from it.
    fn open<'a>(
        &'a self,
        env: &'a nubo_wasm::OpenEnv<'a>,
        services: &'a mut nubo_wasm::Services,
    ) -> Option<nubo_wasm::BoxFuture<'a, Result<(), nubo_wasm::OpenError>>> {
        Some(Box::pin(async move {
            let failed = |e| nubo_wasm::OpenError::new("queues", e);
            let cluster = services.get::<nubo_cluster::ClusterJoin>().cloned();
            let backend: Arc<dyn QueueBackend> = match &cluster {
                Some(c) => Arc::new(
                    NatsQueue::open(c.cluster.jetstream(), c.cluster.replicas())
                        .await
                        .map_err(failed)?,
                ),
                None => Arc::new(SqliteQueue::open(&env.state.join("queues.db")).map_err(failed)?),
            };
            backend.keep_free(env.disk_reserve);
            let pauses = services
                .get::<Arc<nubo_wasm::Pauses>>()
                .cloned()
                .unwrap_or_default();
            let dispatcher = Dispatcher::new(backend, pauses);
            if let Some(meter) = services.get::<Arc<nubo_wasm::Meter>>()
                && meter.is_on()
            {
                let _ = dispatcher.meter.set(meter.clone());
            }
            if let Some(c) = cluster {
                dispatcher.wake_on(c.cluster.client().clone());
            }
            let publishers: Arc<dyn nubo_gateway::Publishers> =
                Arc::new(crate::dispatch::RoutePublishers(dispatcher.clone()));
            services.insert(publishers);
            services.insert(dispatcher);
            Ok(())
        }))
    }

    /// Each declared queue's depth, in flight, dead letters and oldest age.
    fn readings<'a>(
        &'a self,
        services: &'a nubo_wasm::Services,
    ) -> nubo_wasm::BoxFuture<'a, Vec<nubo_wasm::metrics::Reading>> {
        Box::pin(async move {
            match services.get::<Arc<Dispatcher>>() {
                Some(d) => d.readings().await,
                None => Vec::new(),
            }
        })
    }

    /// Sets the app's quotas and (re)starts a consumer per queue.
    fn configure(&self, services: &nubo_wasm::Services, app: &nubo_wasm::RunningApp<'_>) {
        let Some(dispatcher) = services.get::<Arc<Dispatcher>>() else {
            return;
        };
        match app.def {
            Some(def) => {
                let q = &def.settings.quotas;
                let quota = QueueQuota {
                    messages: q.queue_messages,
                    dead_letters: q.dead_letters,
                };
                dispatcher.backend.set_quota(app.name, quota);
                let queues = crate::QueueSection::of(&def.sections).unwrap_or_else(|e| {
                    tracing::error!(app = app.name, error = %e, "stored queues unreadable");
                    Default::default()
                });
                dispatcher.set(app.name, &queues, |c| app.component(c));
            }
            None => dispatcher.set(app.name, &Default::default(), |_| None),
        }
    }

    fn routes(
        &self,
        services: &nubo_wasm::Services,
        apps: Arc<dyn nubo_api::Apps>,
    ) -> Option<nubo_api::Routes> {
        let dispatcher = services.get::<Arc<Dispatcher>>()?;
        Some(crate::api::routes(dispatcher.backend.clone(), apps))
    }

    /// Waiting and dead messages of every queue of the app.
    fn purge_app<'a>(
        &'a self,
        services: &'a nubo_wasm::Services,
        app: &'a str,
    ) -> Option<nubo_wasm::BoxFuture<'a, Result<nubo_wasm::Deleted, nubo_wasm::PurgeError>>> {
        let dispatcher = services.get::<Arc<Dispatcher>>()?;
        Some(Box::pin(async move {
            let count = dispatcher
                .backend
                .purge_app(app)
                .await
                .map_err(|e| nubo_wasm::PurgeError::new("messages", e))?;
            Ok(nubo_wasm::Deleted {
                what: "messages",
                count,
            })
        }))
    }
}
