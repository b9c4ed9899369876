//! The queues' part of `/metrics` ([`nubo_wasm::metrics`]): each declared
//! queue's depth, deliveries in flight, dead letters and the age of its
//! oldest waiting message, read from the store when scraped (on a
//! cluster, JetStream's figures, the same on every node).

use crate::QueueName;
use crate::dispatch::Dispatcher;
use nubo_wasm::metrics::Reading;

impl Dispatcher {
    pub(crate) async fn readings(&self) -> Vec<Reading> {
        let declared: Vec<QueueName> = self
            .declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flat_map(|(app, queues)| {
                queues.iter().map(|q| QueueName {
                    app: app.clone(),
                    queue: q.clone(),
                })
            })
            .collect();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut out = Vec::new();
        for q in declared {
            let labels = vec![("app", q.app.clone()), ("queue", q.queue.clone())];
            let gauge =
                |name, help, v: u64| Reading::gauge(name, help, v as f64).with(labels.clone());
            match self.backend.stats(&q).await {
                Ok(s) => out.extend([
                    gauge(
                        "nubo_queue_ready",
                        "messages waiting for delivery, retries not yet due included",
                        s.ready,
                    ),
                    gauge(
                        "nubo_queue_in_flight",
                        "messages handed to a consumer and not yet answered",
                        s.in_flight,
                    ),
                    gauge("nubo_queue_dead", "dead letters", s.dead),
                ]),
                Err(e) => tracing::debug!(app = q.app, queue = q.queue, "queue stats unread: {e}"),
            }
            if let Ok(oldest) = self.backend.peek(&q, 1).await {
                let age_ms = oldest
                    .first()
                    .map_or(0, |m| (now_ms - m.published_at).max(0));
                out.push(
                    Reading::gauge(
                        "nubo_queue_oldest_age_seconds",
                        "age of the oldest waiting message; 0 when none waits",
                        age_ms as f64 / 1000.0,
                    )
                    .with(labels.clone()),
                );
            }
        }
        out
    }
}
