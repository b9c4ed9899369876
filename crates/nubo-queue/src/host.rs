//! `nubo:platform/queue` for one guest instance: publish to a granted queue.

use crate::{QueueGrant, QueueName};
use wasmtime::component::{HasData, Linker};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nubo:platform/queue-host",
        imports: { default: async },
    });
}

use generated::nubo::platform::queue;

/// What the binding borrows from the store's data for one call.
struct QueueView<'a> {
    grant: Option<&'a QueueGrant>,
    /// Who started the instance's work: the messages carry it.
    by: Option<std::sync::Arc<nubo_wasm::Principal>>,
    usage: nubo_wasm::usage::RunUsage,
}

struct HasQueue;

impl HasData for HasQueue {
    type Data<'a> = QueueView<'a>;
}

/// Calls a component made into nubo:platform/queue: what the node's usage counts of
/// this capability ([`nubo_wasm::usage`]).
pub const QUEUE_CALLS: nubo_wasm::Metric = nubo_wasm::Metric::sum("queue_calls");
/// Messages a component published, and their bytes.
pub const QUEUE_MESSAGES: nubo_wasm::Metric = nubo_wasm::Metric::sum("queue_messages");
pub const QUEUE_BYTES: nubo_wasm::Metric = nubo_wasm::Metric::sum("queue_bytes");

fn view(host: &mut nubo_wasm::Host) -> QueueView<'_> {
    host.count(QUEUE_CALLS, 1);
    let by = host
        .state::<std::sync::Arc<nubo_wasm::Principal>>()
        .map(|p| p.clone());
    let usage = host.usage();
    QueueView {
        grant: host.state::<std::sync::Arc<QueueGrant>>().map(|g| &**g),
        by,
        usage,
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<nubo_wasm::Host>) -> wasmtime::Result<()> {
    queue::add_to_linker::<_, HasQueue>(linker, view)
}

impl queue::Host for QueueView<'_> {
    async fn publish(&mut self, name: String, body: Vec<u8>) -> Result<u64, String> {
        let Some(grant) = self.grant.filter(|g| g.queues.contains(&name)) else {
            tracing::warn!(queue = %name, "component published to a queue it is not granted (queues in nubo.toml)");
            return Err(format!(
                "access denied: queue `{name}` is not in this component's `queues` in nubo.toml"
            ));
        };
        let q = QueueName {
            app: grant.app.clone(),
            queue: name,
        };
        let id = grant
            .backend
            .publish(&q, &body, self.by.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        self.usage.count(QUEUE_MESSAGES, 1);
        self.usage.count(QUEUE_BYTES, body.len() as u64);
        (grant.notify)(&q);
        Ok(id)
    }
}
