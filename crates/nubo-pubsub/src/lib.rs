//! Topics: a component publishes a message, every subscriber connected at
//! that moment (a browser on a WebSocket or Server-Sent Events route)
//! receives it. Nothing is stored: pub/sub is for "now", queues are for
//! "surely".
//!
//! [`Hub`] is the embedded backend, a broadcast channel per (app, topic).
//! A subscriber that falls more than [`BUFFER`] messages behind skips what
//! it missed (and is told how many) instead of slowing the publisher or
//! the other subscribers.
//!
//! In cluster mode a [`Relay`] carries every publish to all nodes (see
//! [`nats`]): the publishing node does not deliver locally, it sends, and
//! each node, itself included, delivers what arrives to its own
//! subscribers. A WebSocket client on node A hears what a component on
//! node B publishes, in the order B published it.
//!
//! [`PubSub`] links the guest binding (`nubo:platform/pubsub`); a
//! [`TopicFeed`] is what the gateway's SSE and WebSocket routes subscribe
//! to, and where a WebSocket's messages go to a component.

mod capability;
mod feed;
mod host;
pub mod nats;

pub use capability::{PubSub, PubSubGrant};
pub use feed::{TopicFeed, TopicFeeds};

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Largest message, in bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Messages a slow subscriber may lag behind before it skips.
pub const BUFFER: usize = 1024;

#[derive(Default)]
pub struct Hub {
    topics: Mutex<HashMap<(String, String), broadcast::Sender<Bytes>>>,
    relay: std::sync::OnceLock<Arc<dyn Relay>>,
}

/// Carries messages to every node of a cluster.
pub trait Relay: Send + Sync + 'static {
    fn send(&self, app: &str, topic: &str, message: Bytes);
}

impl Hub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn sender(&self, app: &str, topic: &str) -> broadcast::Sender<Bytes> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics
            .entry((app.to_string(), topic.to_string()))
            .or_insert_with(|| broadcast::channel(BUFFER).0)
            .clone()
    }

    /// From now on, publishes go through `relay`, which must hand what it
    /// carries back to [`Hub::deliver`] on every node.
    pub fn set_relay(&self, relay: Arc<dyn Relay>) {
        let _ = self.relay.set(relay);
    }

    /// Sends to the current subscribers (of every node, with a relay).
    pub fn publish(&self, app: &str, topic: &str, message: Bytes) -> Result<(), PublishError> {
        if message.len() > MAX_MESSAGE {
            return Err(PublishError::TooLarge(message.len()));
        }
        match self.relay.get() {
            Some(relay) => relay.send(app, topic, message),
            None => {
                self.deliver(app, topic, message);
            }
        }
        Ok(())
    }

    /// Sends to this node's subscribers; how many there were.
    pub fn deliver(&self, app: &str, topic: &str, message: Bytes) -> usize {
        self.sender(app, topic).send(message).unwrap_or(0)
    }

    pub fn subscribe(&self, app: &str, topic: &str) -> broadcast::Receiver<Bytes> {
        self.sender(app, topic).subscribe()
    }

    /// Subscribers of a topic right now.
    pub fn subscribers(&self, app: &str, topic: &str) -> usize {
        self.sender(app, topic).receiver_count()
    }
}

/// Why a message was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the message is {0} bytes; pub/sub messages may be at most {MAX_MESSAGE}")]
    TooLarge(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::TryRecvError;

    #[test]
    fn subscribers_get_their_own_app_and_topic_in_order() {
        let hub = Hub::new();
        let mut chat = hub.subscribe("a", "chat");
        let mut other_app = hub.subscribe("b", "chat");
        let mut other_topic = hub.subscribe("a", "news");
        assert_eq!(hub.subscribers("a", "chat"), 1);
        for m in ["1", "2"] {
            hub.publish("a", "chat", Bytes::from(m)).expect("published");
        }
        assert_eq!(chat.try_recv().ok(), Some(Bytes::from("1")));
        assert_eq!(chat.try_recv().ok(), Some(Bytes::from("2")));
        assert!(matches!(other_app.try_recv(), Err(TryRecvError::Empty)));
        assert!(matches!(other_topic.try_recv(), Err(TryRecvError::Empty)));
        // Nobody listening is fine; too large is refused.
        hub.publish("a", "nobody", Bytes::from("x"))
            .expect("published");
        let big = Bytes::from(vec![0; MAX_MESSAGE + 1]);
        assert!(matches!(
            hub.publish("a", "chat", big),
            Err(PublishError::TooLarge(_))
        ));
    }

    #[test]
    fn a_slow_subscriber_skips_ahead_without_holding_anyone_up() {
        let hub = Hub::new();
        let mut slow = hub.subscribe("a", "t");
        let mut fast = hub.subscribe("a", "t");
        for i in 0..BUFFER + 10 {
            hub.publish("a", "t", Bytes::from(i.to_string()))
                .expect("published");
            assert_eq!(fast.try_recv().ok(), Some(Bytes::from(i.to_string())));
        }
        assert!(matches!(slow.try_recv(), Err(TryRecvError::Lagged(10))));
        assert_eq!(slow.try_recv().ok(), Some(Bytes::from("10")));
    }

    /// Keeps what it is given, as NATS would carry it to every node.
    #[derive(Default)]
    struct Carried(Mutex<Vec<(String, String, Bytes)>>);

    impl Relay for Carried {
        fn send(&self, app: &str, topic: &str, message: Bytes) {
            let mut carried = self.0.lock().unwrap_or_else(|p| p.into_inner());
            carried.push((app.into(), topic.into(), message));
        }
    }

    #[test]
    fn with_a_relay_a_publish_reaches_subscribers_only_through_it() {
        let hub = Hub::new();
        let relay = Arc::new(Carried::default());
        hub.set_relay(relay.clone());
        let mut sub = hub.subscribe("a", "t");
        hub.publish("a", "t", Bytes::from("m")).expect("published");
        // Not delivered here directly: every node, this one included,
        // delivers what the relay brings back, in one order.
        assert!(matches!(sub.try_recv(), Err(TryRecvError::Empty)));
        let carried = std::mem::take(&mut *relay.0.lock().unwrap_or_else(|p| p.into_inner()));
        assert_eq!(carried.len(), 1);
        for (app, topic, m) in carried {
            assert_eq!(hub.deliver(&app, &topic, m), 1);
        }
        assert_eq!(sub.try_recv().ok(), Some(Bytes::from("m")));
    }
}
