//! Durable queues (`nubo:platform/queue`): publish from any component that
//! is granted the queue (`queues = ["jobs"]`); the node delivers each
//! message as `POST` to the queue's consumer, at least once.
//!
//! ```ignore
//! let id = nubo_sdk::queue::publish("emails", br#"{"to":"ada@example.com"}"#)?;
//! ```
//!
//! Publishing inside an HTTP handler is how to do work after the response:
//! the message is stored when `publish` returns, and the consumer runs it
//! whenever it can, with retries.

use crate::bindings::nubo::platform::queue;

/// Stores `body` on queue `name`; its message id. Fails if the component
/// is not granted the queue or the body is over 1 MiB.
pub fn publish(name: &str, body: impl AsRef<[u8]>) -> Result<u64, String> {
    queue::publish(name, body.as_ref())
}

/// The delivery a consumer is handling, from its request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub queue: String,
    pub message_id: u64,
    /// 1 on the first delivery; more on retries.
    pub attempt: u32,
}

impl Delivery {
    /// `None` if the request is not a queue delivery.
    pub fn of(req: &crate::Request) -> Option<Delivery> {
        let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
        Some(Delivery {
            queue: h("nubo-queue")?.to_string(),
            message_id: h("nubo-message-id")?.parse().ok()?,
            attempt: h("nubo-attempt")?.parse().ok()?,
        })
    }
}
