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

use crate::Message;
use nubo_wasm::{Component, HandleError, Invocation};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nubo:platform/queue-consumer",
        exports: { default: async },
    });
}

use generated::QueueConsumerIndices;
use generated::exports::nubo::platform::queue_handler;

/// What a delivery through the export came to: `Ok(failed)`, every message
/// but `failed` (id, why) was handled; `Err(why)`, the consumer failed them
/// all.
pub type Delivered = Result<Vec<(u64, String)>, String>;

/// Delivers `messages` of `queue` to `component` in a fresh instance, as
/// `run`, under the same limits as a request.
/// `None`: the component has no queue export (deliver over HTTP).
pub async fn deliver(
    component: &Component,
    queue: &str,
    messages: &[Message],
    run: Invocation,
) -> Option<Result<Delivered, HandleError>> {
    let export = component.export(|pre| QueueConsumerIndices::new(pre).ok())?;
    let messages: Vec<queue_handler::Message> = messages
        .iter()
        .map(|m| queue_handler::Message {
            id: m.id,
            attempt: m.attempt,
            published_at: m.published_at,
            body: m.body.clone(),
        })
        .collect();
    let run = component.invoke(run, |mut store, instance| async move {
        let consumer = export.load(&mut store, &instance)?;
        consumer
            .nubo_platform_queue_handler()
            .call_handle(&mut store, queue, &messages)
            .await
    });
    let answer = run.await;
    Some(answer.map(|r| r.map(|failed| failed.into_iter().map(|f| (f.id, f.error)).collect())))
}
