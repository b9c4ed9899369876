//! `nubo:platform/pubsub` for one guest instance.

use crate::PubSubGrant;
use wasmtime::component::{HasData, Linker};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nubo:platform/pubsub-host",
        imports: { default: async },
    });
}

use generated::nubo::platform::pubsub;

struct PubSubView<'a> {
    grant: Option<&'a PubSubGrant>,
}

struct HasPubSub;

impl HasData for HasPubSub {
    type Data<'a> = PubSubView<'a>;
}

/// Calls a component made into nubo:platform/pubsub: what the node's usage counts of
/// this capability ([`nubo_wasm::usage`]).
pub const PUBSUB_CALLS: nubo_wasm::Metric = nubo_wasm::Metric::sum("pubsub_calls");

fn view(host: &mut nubo_wasm::Host) -> PubSubView<'_> {
    host.count(PUBSUB_CALLS, 1);
    PubSubView {
        grant: host.state::<std::sync::Arc<PubSubGrant>>().map(|g| &**g),
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<nubo_wasm::Host>) -> wasmtime::Result<()> {
    pubsub::add_to_linker::<_, HasPubSub>(linker, view)
}

impl pubsub::Host for PubSubView<'_> {
    async fn publish(&mut self, topic: String, message: Vec<u8>) -> Result<(), String> {
        let Some(grant) = self.grant.filter(|g| g.topics.contains(&topic)) else {
            tracing::warn!(topic = %topic, "component published to a topic it is not granted (topics in nubo.toml)");
            return Err(format!(
                "access denied: topic `{topic}` is not in this component's `topics` in nubo.toml"
            ));
        };
        // The guest's interface reports errors as text.
        grant
            .hub
            .publish(&grant.app, &topic, message.into())
            .map_err(|e| e.to_string())
    }
}
