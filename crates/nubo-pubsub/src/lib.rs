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

mod feed;
mod host;
pub mod nats;

pub use feed::TopicFeed;

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

    fn link(
        &self,
        linker: &mut wasmtime::component::Linker<nubo_wasm::Host>,
    ) -> wasmtime::Result<()> {
        host::add_to_linker(linker)
    }
}
