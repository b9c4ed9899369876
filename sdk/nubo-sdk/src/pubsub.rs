//! Topics (`nubo:platform/pubsub`): a message to every browser subscribed
//! right now through a `[[websocket]]` or `[[sse]]` route. Not stored: use
//! a queue for what must arrive.
//!
//! ```ignore
//! nubo_sdk::pubsub::publish("chat", "hello, everyone")?;
//! ```

use crate::bindings::nubo::platform::pubsub;

/// Sends `message` to the topic's current subscribers. Fails if the
/// component is not granted the topic (`topics = [...]`) or the message is
/// over 64 KiB.
pub fn publish(topic: &str, message: impl AsRef<[u8]>) -> Result<(), String> {
    pubsub::publish(topic, message.as_ref())
}
