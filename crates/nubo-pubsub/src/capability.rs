//! Pub/sub as a capability of the node: the grant, the host binding and
//! the hub it opens.

use crate::{Hub, host};
use std::sync::Arc;

/// What one component may publish to.
#[derive(Clone)]
pub struct PubSubGrant {
    pub hub: Arc<Hub>,
    pub app: String,
    pub topics: Vec<String>,
}

impl PubSubGrant {
    /// The grant as the runtime gives it to each instance.
    pub fn into_grant(self) -> Arc<dyn nubo_wasm::Grant> {
        Arc::new(nubo_wasm::Shared(Arc::new(self)))
    }
}

/// Pub/sub as a capability of the runtime: `nubo:platform/pubsub` (publish).
pub struct PubSub;

impl nubo_wasm::Capability for PubSub {
    fn name(&self) -> &'static str {
        "pub/sub"
    }

    fn grant_key(&self) -> Option<nubo_wasm::GrantKey> {
        Some(nubo_wasm::GrantKey {
            key: "topics",
            noun: "topic",
            names: nubo_wasm::Names::Own { example: "chat" },
        })
    }

    fn grant(
        &self,
        to: &nubo_wasm::GrantTo<'_>,
        names: &[String],
    ) -> Result<Arc<dyn nubo_wasm::Grant>, nubo_wasm::GrantError> {
        let grant = PubSubGrant {
            hub: to.services.need::<Arc<Hub>>(self.name())?.clone(),
            app: to.app.to_string(),
            topics: names.to_vec(),
        };
        Ok(grant.into_grant())
    }

    /// The hub of this node; in a cluster, bridged to NATS so that a
    /// message published on one node reaches subscribers on every node.
    fn open<'a>(
        &'a self,
        _env: &'a nubo_wasm::OpenEnv<'a>,
        services: &'a mut nubo_wasm::Services,
    ) -> Option<nubo_wasm::BoxFuture<'a, Result<(), nubo_wasm::OpenError>>> {
        Some(Box::pin(async move {
            let hub = Hub::new();
            if let Some(c) = services.get::<nubo_cluster::ClusterJoin>() {
                crate::nats::bridge(hub.clone(), c.cluster.client().clone())
                    .await
                    .map_err(|e| nubo_wasm::OpenError::new("pub/sub", e))?;
            }
            let feeds: Arc<dyn nubo_gateway::Feeds> =
                Arc::new(crate::feed::TopicFeeds(hub.clone()));
            services.insert(feeds);
            services.insert(hub);
            Ok(())
        }))
    }

    fn link(
        &self,
        linker: &mut wasmtime::component::Linker<nubo_wasm::Host>,
    ) -> wasmtime::Result<()> {
        host::add_to_linker(linker)
    }
}
