//! Blobs as a capability of the node: the grant, the host binding, the
//! backend it opens, quotas per app, its control-API routes and what a
//! removed app leaves.

use crate::{BlobBackend, ContainerId, FileBlobs, NatsBlobs, api, host};
use std::sync::Arc;

/// What one component may reach: the containers `nubo.toml` grants it.
#[derive(Clone)]
pub struct BlobGrant {
    pub backend: Arc<dyn BlobBackend>,
    pub app: String,
    pub containers: Vec<String>,
}

impl BlobGrant {
    /// The grant as the runtime gives it to each instance.
    pub fn into_grant(self) -> Arc<dyn nubo_wasm::Grant> {
        Arc::new(host::Granted(Arc::new(self)))
    }
}

/// Blobs as a capability of the runtime: `wasi:blobstore` and
/// `nubo:platform/blob-ext`.
pub struct Blobs;

/// The key of a component's grant in `nubo.toml`.
pub(crate) const GRANT_KEY: &str = "blob_containers";

impl nubo_wasm::Capability for Blobs {
    fn name(&self) -> &'static str {
        "blobs"
    }

    fn grant_key(&self) -> Option<nubo_wasm::GrantKey> {
        Some(nubo_wasm::GrantKey {
            key: GRANT_KEY,
            noun: "blob container",
            names: nubo_wasm::Names::Own { example: "uploads" },
        })
    }

    fn grant(
        &self,
        to: &nubo_wasm::GrantTo<'_>,
        names: &[String],
    ) -> Result<Arc<dyn nubo_wasm::Grant>, nubo_wasm::GrantError> {
        let grant = BlobGrant {
            backend: to
                .services
                .need::<Arc<dyn BlobBackend>>(self.name())?
                .clone(),
            app: to.app.to_string(),
            containers: names.to_vec(),
        };
        Ok(grant.into_grant())
    }

    fn link(
        &self,
        linker: &mut wasmtime::component::Linker<nubo_wasm::Host>,
    ) -> wasmtime::Result<()> {
        host::add_to_linker(linker)
    }

    /// JetStream object stores in a cluster (spooling uploads under
    /// `blob-spool/`), else files under `blobs/` with `blobs.db`.
    fn open<'a>(
        &'a self,
        env: &'a nubo_wasm::OpenEnv<'a>,
        services: &'a mut nubo_wasm::Services,
    ) -> Option<nubo_wasm::BoxFuture<'a, Result<(), nubo_wasm::OpenError>>> {
        Some(Box::pin(async move {
            let failed = |e| nubo_wasm::OpenError::new("blobs", e);
            let blobs: Arc<dyn BlobBackend> = match services.get::<nubo_cluster::ClusterJoin>() {
                Some(c) => Arc::new(
                    NatsBlobs::open(
                        c.cluster.jetstream(),
                        c.cluster.replicas(),
                        env.state.join("blob-spool"),
                    )
                    .await
                    .map_err(failed)?,
                ),
                None => Arc::new(
                    FileBlobs::open(&env.state.join("blobs.db"), &env.state.join("blobs"))
                        .map_err(failed)?,
                ),
            };
            blobs.keep_free(env.disk_reserve);
            services.insert(blobs);
            Ok(())
        }))
    }

    fn configure(&self, services: &nubo_wasm::Services, app: &nubo_wasm::RunningApp<'_>) {
        if let (Some(blobs), Some(def)) = (services.get::<Arc<dyn BlobBackend>>(), app.def) {
            blobs.set_quota(app.name, def.settings.quotas.blob_bytes());
        }
    }

    fn routes(
        &self,
        services: &nubo_wasm::Services,
        apps: Arc<dyn nubo_api::Apps>,
    ) -> Option<nubo_api::Routes> {
        let blobs = services.get::<Arc<dyn BlobBackend>>()?.clone();
        Some(api::routes(blobs, apps))
    }

    /// Every container of the app; one that fails is reported after the
    /// others are deleted.
    fn purge_app<'a>(
        &'a self,
        services: &'a nubo_wasm::Services,
        app: &'a str,
    ) -> Option<nubo_wasm::BoxFuture<'a, Result<nubo_wasm::Deleted, nubo_wasm::PurgeError>>> {
        let blobs = services.get::<Arc<dyn BlobBackend>>()?;
        Some(Box::pin(async move {
            let failed = |e| nubo_wasm::PurgeError::new("blobs", e);
            let mut count = 0;
            let mut first_error = None;
            for c in blobs.containers(app).await.map_err(failed)? {
                let id = ContainerId {
                    app: app.to_string(),
                    container: c.name,
                };
                match blobs.delete_container(&id).await {
                    Ok(n) => count += n,
                    Err(e) => first_error = first_error.or(Some(e)),
                }
            }
            match first_error {
                Some(e) => Err(failed(e)),
                None => Ok(nubo_wasm::Deleted {
                    what: "blobs",
                    count,
                }),
            }
        }))
    }
}
