//! Topics across a cluster, on plain NATS subjects
//! (`nubo.topic.APP.TOPIC`): at most once, like the embedded hub, with no
//! JetStream storage, so a publish costs one network message per node.

use crate::{Hub, Relay};
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::Arc;
use tokio::sync::mpsc;

const PREFIX: &str = "nubo.topic";

struct NatsRelay {
    out: mpsc::UnboundedSender<(String, Bytes)>,
}

impl Relay for NatsRelay {
    fn send(&self, app: &str, topic: &str, message: Bytes) {
        let subject = format!(
            "{PREFIX}.{}.{}",
            nubo_cluster::token(app),
            nubo_cluster::token(topic)
        );
        let _ = self.out.send((subject, message));
    }
}

/// Makes `hub` cluster-wide: its publishes go out on NATS, and what any
/// node publishes reaches this node's subscribers.
pub async fn bridge(hub: Arc<Hub>, client: async_nats::Client) -> Result<(), String> {
    let mut incoming = client
        .subscribe(format!("{PREFIX}.>"))
        .await
        .map_err(|e| format!("cannot subscribe to topics on NATS: {e}"))?;
    let (out, mut rx) = mpsc::unbounded_channel::<(String, Bytes)>();
    // One sender task keeps a node's publishes in order.
    let sender = client.clone();
    tokio::spawn(async move {
        while let Some((subject, message)) = rx.recv().await {
            if let Err(e) = sender.publish(subject, message).await {
                tracing::warn!("pub/sub message not sent to the cluster: {e}");
            }
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
                (nubo_cluster::untoken(app), nubo_cluster::untoken(topic))
            {
                hub.deliver(&app, &topic, m.payload);
            }
        }
    });
    hub.set_relay(Arc::new(NatsRelay { out }));
    Ok(())
}
