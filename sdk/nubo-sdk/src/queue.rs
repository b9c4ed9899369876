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
//!
//! A consumer is one function per message, whatever the queue's
//! `batch_size`; an `Err` retries that message alone:
//!
//! ```ignore
//! fn send(m: &nubo_sdk::queue::Message) -> Result<(), String> {
//!     let to = m.text().ok_or("not text")?;
//!     mailer::send(to)
//! }
//! nubo_sdk::queue_handler!(send);
//! ```
//!
//! Or one function per delivery, which sees the whole batch at once; an
//! `Err` retries every message of it:
//!
//! ```ignore
//! fn index(batch: &[nubo_sdk::queue::Message]) -> Result<(), String> {
//!     search::add_all(batch.iter().filter_map(|m| m.text()))
//! }
//! nubo_sdk::queue_batch_handler!(index);
//! ```
//!
//! Both macros export the component's HTTP handler (deliveries as `POST`)
//! and `nubo:platform/queue-handler`, through which the node delivers
//! without an HTTP request around each delivery.

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

/// One message of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u64,
    /// 1 on the first delivery; more on retries.
    pub attempt: u32,
    /// Milliseconds since the Unix epoch.
    pub published_at: i64,
    pub body: Vec<u8>,
}

impl Message {
    /// The body, if it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

#[derive(serde::Deserialize)]
struct Batch {
    messages: Vec<BatchMessage>,
}

#[derive(serde::Deserialize)]
struct BatchMessage {
    id: u64,
    attempt: u32,
    published_at: i64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
}

/// Whether `req` carries a batch (the queue's `batch_size` is over 1).
pub fn is_batch(req: &crate::Request) -> bool {
    req.headers().contains_key("nubo-batch")
}

/// The messages of a delivery: one, or a whole batch.
pub fn messages(req: &crate::Request) -> Result<Vec<Message>, String> {
    use base64::Engine;
    if !is_batch(req) {
        let d = Delivery::of(req).ok_or("not a queue delivery (no nubo-queue headers)")?;
        return Ok(vec![Message {
            id: d.message_id,
            attempt: d.attempt,
            published_at: 0,
            body: req.body().clone(),
        }]);
    }
    let b: Batch =
        serde_json::from_slice(req.body()).map_err(|e| format!("not a queue batch: {e}"))?;
    b.messages
        .into_iter()
        .map(|m| {
            let body = match (m.body, m.body_base64) {
                (Some(t), _) => t.into_bytes(),
                (None, Some(b)) => base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("message {}: bad body_base64: {e}", m.id))?,
                (None, None) => Vec::new(),
            };
            Ok(Message {
                id: m.id,
                attempt: m.attempt,
                published_at: m.published_at,
                body,
            })
        })
        .collect()
}

/// The answer to a batch: every message acknowledged but `failed`
/// (message id, why), which are retried.
pub fn settle(failed: &[(u64, String)]) -> crate::Response {
    let failed: Vec<_> = failed
        .iter()
        .map(|(id, error)| serde_json::json!({"id": id, "error": error}))
        .collect();
    let body = serde_json::json!({ "failed": failed }).to_string();
    crate::response(200, "application/json", body.into_bytes())
}

/// Runs `handle` on every message of the delivery `req` and answers for
/// each: what [`queue_handler!`](crate::queue_handler) exports.
pub fn serve<E: std::fmt::Display>(
    req: &crate::Request,
    handle: impl Fn(&Message) -> Result<(), E>,
) -> crate::Response {
    let batch = is_batch(req);
    let messages = match messages(req) {
        Ok(m) => m,
        Err(e) => return crate::text(400, e),
    };
    let mut failed = Vec::new();
    for m in &messages {
        if let Err(e) = handle(m) {
            eprintln!("message {} failed: {e}", m.id);
            failed.push((m.id, e.to_string()));
        }
    }
    match (batch, failed.first()) {
        (true, _) => settle(&failed),
        (false, None) => crate::text(200, "ok"),
        (false, Some((_, e))) => crate::text(500, e.clone()),
    }
}

/// Runs `handle` on the whole delivery `req`: what
/// [`queue_batch_handler!`](crate::queue_batch_handler) exports.
pub fn serve_batch<E: std::fmt::Display>(
    req: &crate::Request,
    handle: impl Fn(&[Message]) -> Result<(), E>,
) -> crate::Response {
    let messages = match messages(req) {
        Ok(m) => m,
        Err(e) => return crate::text(400, e),
    };
    match handle(&messages) {
        Ok(()) => crate::text(200, "ok"),
        Err(e) => {
            eprintln!("delivery of {} messages failed: {e}", messages.len());
            crate::text(500, e.to_string())
        }
    }
}

/// The `nubo:platform/queue-handler` export: the node delivers through it
/// without an HTTP request around each delivery.
/// [`queue_handler!`](crate::queue_handler) and
/// [`queue_batch_handler!`](crate::queue_batch_handler) export it with the
/// same function they serve over HTTP.
#[doc(hidden)]
pub mod export {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "nubo:platform/queue-consumer",
        pub_export_macro: true,
        default_bindings_module: "$crate::queue::export",
        export_macro_name: "_export_queue_consumer",
    });
    pub use self::exports::nubo::platform::queue_handler::{Failure, Guest, Message};

    /// The SDK's messages for the export's.
    pub fn messages(messages: Vec<Message>) -> Vec<super::Message> {
        messages
            .into_iter()
            .map(|m| super::Message {
                id: m.id,
                attempt: m.attempt,
                published_at: m.published_at,
                body: m.body,
            })
            .collect()
    }

    /// Runs `handle` on each message: the ones that failed, and why.
    pub fn each<E: std::fmt::Display>(
        messages: Vec<Message>,
        handle: impl Fn(&super::Message) -> Result<(), E>,
    ) -> Result<Vec<Failure>, String> {
        let mut failed = Vec::new();
        for m in self::messages(messages) {
            if let Err(e) = handle(&m) {
                eprintln!("message {} failed: {e}", m.id);
                failed.push(Failure {
                    id: m.id,
                    error: e.to_string(),
                });
            }
        }
        Ok(failed)
    }

    /// Runs `handle` on the whole delivery; its error fails every message.
    pub fn whole<E: std::fmt::Display>(
        messages: Vec<Message>,
        handle: impl Fn(&[super::Message]) -> Result<(), E>,
    ) -> Result<Vec<Failure>, String> {
        let messages = self::messages(messages);
        handle(&messages).map(|()| Vec::new()).map_err(|e| {
            eprintln!("delivery of {} messages failed: {e}", messages.len());
            e.to_string()
        })
    }
}
