//! Key-value as a capability of the node: the grant, the host binding,
//! the backend it opens, quotas per app, its control-API routes and
//! what a removed app leaves.

use crate::{KvBackend, NatsKv, SqliteKv, api, host};
use nubo_wasm::{
    BoxFuture, Capability, Deleted, Grant, GrantError, GrantKey, GrantTo, Names, OpenEnv,
    OpenError, PurgeError, RunningApp, Services,
};
use std::sync::{Arc, Weak};

/// What one component may reach: its app's stores that `nubo.toml` grants.
#[derive(Clone)]
pub struct KvGrant {
    pub backend: Arc<dyn KvBackend>,
    pub app: String,
    pub stores: Vec<String>,
}

impl KvGrant {
    /// The grant as the runtime gives it to each instance.
    pub fn into_grant(self) -> Arc<dyn Grant> {
        Arc::new(host::Granted(Arc::new(self)))
    }
}

/// Key-value as a capability of the runtime: `wasi:keyvalue` (store,
/// atomics, batch) and `nubo:platform/kv-ttl`.
pub struct KeyValue;

/// The key of a component's grant in `nubo.toml`.
pub(crate) const GRANT_KEY: &str = "key_value_stores";

impl Capability for KeyValue {
    fn name(&self) -> &'static str {
        "key-value"
    }

    fn grant_key(&self) -> Option<GrantKey> {
        Some(GrantKey {
            key: GRANT_KEY,
            noun: "key-value store",
            names: Names::Own { example: "default" },
        })
    }

    fn grant(&self, to: &GrantTo<'_>, names: &[String]) -> Result<Arc<dyn Grant>, GrantError> {
        let grant = KvGrant {
            backend: to.services.need::<Arc<dyn KvBackend>>(self.name())?.clone(),
            app: to.app.to_string(),
            stores: names.to_vec(),
        };
        Ok(grant.into_grant())
    }

    fn link(
        &self,
        linker: &mut wasmtime::component::Linker<nubo_wasm::Host>,
    ) -> wasmtime::Result<()> {
        host::add_to_linker(linker)
    }

    /// JetStream key-value buckets in a cluster, else `kv.db` in the
    /// state dir.
    fn open<'a>(
        &'a self,
        env: &'a OpenEnv<'a>,
        services: &'a mut Services,
    ) -> Option<BoxFuture<'a, Result<(), OpenError>>> {
        Some(Box::pin(async move {
            let failed = |e| OpenError::new("key-value", e);
            let kv: Arc<dyn KvBackend> = match services.get::<nubo_cluster::ClusterJoin>() {
                Some(c) => Arc::new(
                    NatsKv::open(c.cluster.jetstream(), c.cluster.replicas())
                        .await
                        .map_err(failed)?,
                ),
                None => {
                    let kv = Arc::new(SqliteKv::open(&env.state.join("kv.db")).map_err(failed)?);
                    sweep_expired(Arc::downgrade(&kv));
                    kv
                }
            };
            kv.keep_free(env.disk_reserve);
            services.insert(kv);
            Ok(())
        }))
    }

    fn configure(&self, services: &Services, app: &RunningApp<'_>) {
        if let (Some(kv), Some(def)) = (services.get::<Arc<dyn KvBackend>>(), app.def) {
            kv.set_quota(app.name, def.settings.quotas.kv_bytes());
        }
    }

    fn routes(
        &self,
        services: &Services,
        apps: Arc<dyn nubo_api::Apps>,
    ) -> Option<nubo_api::Routes> {
        let kv = services.get::<Arc<dyn KvBackend>>()?.clone();
        Some(api::routes(kv, apps))
    }

    fn purge_app<'a>(
        &'a self,
        services: &'a Services,
        app: &'a str,
    ) -> Option<BoxFuture<'a, Result<Deleted, PurgeError>>> {
        let kv = services.get::<Arc<dyn KvBackend>>()?;
        Some(Box::pin(async move {
            let count = kv
                .purge_app(app)
                .await
                .map_err(|e| PurgeError::new("keys", e))?;
            Ok(Deleted {
                what: "keys",
                count,
            })
        }))
    }
}

/// Expired keys read as absent at once; this reclaims their space.
fn sweep_expired(kv: Weak<SqliteKv>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Some(kv) = kv.upgrade() else { return };
            if let Err(e) = kv.sweep().await {
                tracing::warn!("key-value sweep: {e}");
            }
        }
    });
}
