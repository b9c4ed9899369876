//! Topics across a cluster, on plain NATS subjects
//! (`nubo.topic.APP.TOPIC`): at most once, like the embedded hub, with no
//! JetStream storage, so a publish costs one network message per node.
//!
//! While NATS is slow or down, publishes wait in this node's memory up to
//! [`PENDING_BYTES`]; past that a publish is dropped, counted and logged
//! (the delivery promise is at most once), so an outage cannot make the
//! node's memory grow without end.

use crate::{Hub, Relay};
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::mpsc;

const PREFIX: &str = "nubo.topic";

/// Bytes of publishes a node holds while NATS does not take them.
pub const PENDING_BYTES: usize = 16 << 20;

struct NatsRelay {
    out: mpsc::UnboundedSender<(String, Bytes)>,
    /// Bytes sent to `out` and not yet handed to NATS.
    pending: Arc<AtomicUsize>,
    dropped: AtomicU64,
}

impl NatsRelay {
    fn new(out: mpsc::UnboundedSender<(String, Bytes)>, pending: Arc<AtomicUsize>) -> Self {
        Self {
            out,
            pending,
            dropped: AtomicU64::new(0),
        }
    }
}

impl Relay for NatsRelay {
    fn send(&self, app: &str, topic: &str, message: Bytes) {
        let size = message.len().max(1);
        let held = self.pending.fetch_add(size, Ordering::AcqRel);
        if held + size > PENDING_BYTES {
            self.pending.fetch_sub(size, Ordering::AcqRel);
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // The 1st, 2nd, 4th, 8th, … drop: a line per doubling.
            if n.is_power_of_two() {
                tracing::warn!(
                    app,
                    dropped = n,
                    "pub/sub messages dropped: NATS is not taking them and {PENDING_BYTES} bytes are waiting"
                );
            }
            return;
        }
        let subject = format!(
            "{PREFIX}.{}.{}",
            nubo_jetstream::token(app),
            nubo_jetstream::token(topic)
        );
        if self.out.send((subject, message)).is_err() {
            self.pending.fetch_sub(size, Ordering::AcqRel);
        }
    }
}

/// Makes `hub` cluster-wide: its publishes go out on NATS, and what any
/// node publishes reaches this node's subscribers.
pub async fn bridge(
    hub: Arc<Hub>,
    client: async_nats::Client,
) -> Result<(), async_nats::SubscribeError> {
    let mut incoming = client.subscribe(format!("{PREFIX}.>")).await?;
    let (out, mut rx) = mpsc::unbounded_channel::<(String, Bytes)>();
    let pending = Arc::new(AtomicUsize::new(0));
    // One sender task keeps a node's publishes in order.
    let sender = client.clone();
    let sent = pending.clone();
    tokio::spawn(async move {
        while let Some((subject, message)) = rx.recv().await {
            let size = message.len().max(1);
            if let Err(e) = sender.publish(subject, message).await {
                tracing::warn!("pub/sub message not sent to the cluster: {e}");
            }
            sent.fetch_sub(size, Ordering::AcqRel);
        }
    });
    let local = Arc::downgrade(&hub);
    tokio::spawn(async move {
        while let Some(m) = incoming.next().await {
            let Some(hub) = local.upgrade() else { return };
            let mut parts = m.subject.as_str().splitn(4, '.').skip(2);
            let (Some(app), Some(topic)) = (parts.next(), parts.next()) else {
                continue;
            };
            if let (Some(app), Some(topic)) =
                (nubo_jetstream::untoken(app), nubo_jetstream::untoken(topic))
            {
                hub.deliver(&app, &topic, m.payload);
            }
        }
    });
    hub.set_relay(Arc::new(NatsRelay::new(out, pending)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With nothing taking publishes (NATS down), the relay holds at most
    /// `PENDING_BYTES` and drops the rest; what is taken makes room again.
    #[test]
    fn publishes_wait_in_bounded_memory() {
        let (out, mut rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let relay = NatsRelay::new(out, pending.clone());
        let message = Bytes::from(vec![7u8; 64 << 10]);
        let fit = PENDING_BYTES / message.len();
        for _ in 0..fit + 10 {
            relay.send("app", "topic", message.clone());
        }
        assert_eq!(pending.load(Ordering::Acquire), fit * message.len());
        assert_eq!(relay.dropped.load(Ordering::Relaxed), 10);
        let mut queued = 0;
        while let Ok((subject, _)) = rx.try_recv() {
            assert_eq!(subject, "nubo.topic.app.topic");
            queued += 1;
            pending.fetch_sub(message.len(), Ordering::AcqRel);
        }
        assert_eq!(queued, fit);
        relay.send("app", "topic", message);
        assert_eq!(rx.try_recv().map(|_| ()), Ok(()));
    }
}
