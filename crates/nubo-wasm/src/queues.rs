//! Delivering queue messages through the component's
//! `nubo:platform/queue-handler` export, when it has one (every Rust SDK
//! consumer does).
//!
//! Why not always `POST` to the queue's path: the request and response
//! resources, a body stream each way, the batch's JSON and the guest's
//! conversions to and from all of them cost more than the consumer's own
//! work for small messages, and with one message per delivery they are
//! paid for every message. A direct call passes the messages as a list and
//! gets the failures back. Components without the export (any plain
//! `wasi:http` one) still consume over HTTP, so the export is an
//! optimisation, never a requirement.

use crate::error::HandleError;
use crate::http::HttpComponent;
use std::sync::Arc;

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nubo:platform/queue-consumer",
        exports: { default: async },
    });
}

pub(crate) use generated::QueueConsumerIndices;
use generated::exports::nubo::platform::queue_handler;

/// Where a component's queue export is, found once when it is loaded.
pub(crate) fn find(
    pre: &wasmtime::component::InstancePre<crate::host::Host>,
) -> Option<Arc<QueueConsumerIndices>> {
    QueueConsumerIndices::new(pre).ok().map(Arc::new)
}

impl HttpComponent {
    /// Delivers `messages` of `queue` in a fresh instance, under the same
    /// limits as a request (`request_id` tags its logs). `None`: the
    /// component has no queue export (deliver over HTTP);
    /// `Some(Ok(Ok(failed)))`: every message but `failed` (id, why) was
    /// handled; `Some(Ok(Err(why)))`: the consumer failed them all.
    pub async fn deliver(
        &self,
        queue: &str,
        messages: &[nubo_queue::Message],
        request_id: &str,
    ) -> Option<Result<Result<Vec<(u64, String)>, String>, HandleError>> {
        let export = self.queue_export.clone()?;
        let run = async {
            let _permit = self.slot(false).await?;
            let charge = self.node_slot(request_id)?;
            let (mut store, wall) = self.store(request_id, None, charge);
            let messages: Vec<queue_handler::Message> = messages
                .iter()
                .map(|m| queue_handler::Message {
                    id: m.id,
                    attempt: m.attempt,
                    published_at: m.published_at,
                    body: m.body.clone(),
                })
                .collect();
            // The same limits as a request: CPU by the epoch deadline,
            // everything else by the wall-clock limit.
            let run = async {
                let instance = self.instance_pre().instantiate_async(&mut store).await?;
                let consumer = export.load(&mut store, &instance)?;
                consumer
                    .nubo_platform_queue_handler()
                    .call_handle(&mut store, queue, &messages)
                    .await
            };
            let result = wall.bound(run).await;
            let answer = result.map_err(|e| self.failed(&e, request_id))?;
            Ok(answer.map(|failed| failed.into_iter().map(|f| (f.id, f.error)).collect()))
        };
        Some(run.await)
    }
}
