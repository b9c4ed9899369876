//! Delivering queue messages to their consumer components.
//!
//! One dispatcher task per queue leases due messages up to the queue's
//! `concurrency` (times its `batch_size`) and hands each message, or each
//! batch, to the consumer: one call of its `nubo:platform/queue-handler`
//! export if it has one (every SDK consumer does), else `POST path` to its
//! HTTP handler (see [`crate::batch`]). Success (a 2xx answer)
//! acknowledges the message; anything else (a
//! failure status, a trap, a time-out) schedules a retry after
//! `backoff_ms · 2^(attempt-1)`, and after `max_attempts` deliveries the
//! message goes to the dead-letter queue. A delivery that never answers
//! (the node died) becomes due again when its visibility timeout ends, so
//! every stored message is delivered at least once.

use crate::QueueSpec;
use crate::{Message, QueueBackend, QueueError, QueueName, backoff_ms};
use nubo_gateway::PublishError;
use nubo_wasm::{HttpComponent, Invocation};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// Why a delivery failed every message of its batch.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    /// The consumer's export ran and answered that it failed them.
    #[error("{0}")]
    Consumer(String),
    /// The run itself failed (trap, time or memory limit, no instance).
    #[error(transparent)]
    Run(nubo_wasm::HandleError),
    /// The `POST` could not be made or its answer read.
    #[error(transparent)]
    Post(nubo_wasm::InternalError),
    #[error("HTTP {0}")]
    Status(u16),
    /// A batch's 2xx answer that says nothing readable.
    #[error(transparent)]
    Answer(crate::batch::UnreadableAnswer),
}

/// Largest answer of a consumer read, in bytes: a batch's failures.
const MAX_ANSWER: usize = 4 << 20;

pub struct Dispatcher {
    pub backend: Arc<dyn QueueBackend>,
    /// Apps whose deliveries wait (at a usage cap).
    pauses: Arc<nubo_wasm::Pauses>,
    wakers: Mutex<HashMap<QueueName, Arc<Notify>>>,
    tasks: Mutex<HashMap<String, Vec<tokio::task::JoinHandle<()>>>>,
    /// Each app's declared queues, consumer running or not.
    pub(crate) declared: Mutex<std::collections::BTreeMap<String, Vec<String>>>,
    /// Where messages published through `[[http]] queue` routes are
    /// counted, if the node counts usage.
    pub(crate) meter: std::sync::OnceLock<Arc<nubo_wasm::Meter>>,
}

impl Dispatcher {
    pub fn new(backend: Arc<dyn QueueBackend>, pauses: Arc<nubo_wasm::Pauses>) -> Arc<Self> {
        Arc::new(Self {
            backend,
            pauses,
            wakers: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            declared: Mutex::default(),
            meter: std::sync::OnceLock::new(),
        })
    }

    fn waker(&self, q: &QueueName) -> Arc<Notify> {
        let mut w = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        // Every publish asks: look up before cloning the key.
        if let Some(n) = w.get(q) {
            return n.clone();
        }
        w.entry(q.clone()).or_default().clone()
    }

    /// In a cluster: wakes this node's dispatchers when any node publishes.
    pub fn wake_on(self: &Arc<Self>, client: async_nats::Client) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut wakes = match client.subscribe("nubo.qwake.>").await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("queues will poll: cannot subscribe to wakes: {e}");
                    return;
                }
            };
            while let Some(m) = wakes.next().await {
                let Some(me) = me.upgrade() else { return };
                if let Some(q) = crate::nats::woken(m.subject.as_str()) {
                    me.notify(&q);
                }
            }
        });
    }

    /// Wakes the dispatcher of `q` (a message was just published).
    pub fn notify(&self, q: &QueueName) {
        self.waker(q).notify_one();
    }

    /// Starts delivering `q` to `consumer`.
    fn spawn(
        &self,
        q: QueueName,
        spec: QueueSpec,
        consumer: Arc<dyn Consumer>,
    ) -> tokio::task::JoinHandle<()> {
        let job = Queue {
            waker: self.waker(&q),
            finished: Notify::new(),
            retries: AtomicBool::new(true),
            q,
            spec,
            consumer,
            backend: self.backend.clone(),
            pauses: self.pauses.clone(),
        };
        tokio::spawn(job.run())
    }

    /// Replaces `app`'s dispatchers. Deliveries in progress finish and
    /// settle their messages themselves.
    pub fn set(
        self: &Arc<Self>,
        app: &str,
        queues: &std::collections::BTreeMap<String, QueueSpec>,
        component: impl Fn(&str) -> Option<HttpComponent>,
    ) {
        {
            let mut declared = self.declared.lock().unwrap_or_else(|p| p.into_inner());
            declared.remove(app);
            if !queues.is_empty() {
                declared.insert(app.to_string(), queues.keys().cloned().collect());
            }
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for t in tasks.remove(app).unwrap_or_default() {
            t.abort();
        }
        let mut new = Vec::new();
        for (name, spec) in queues {
            let q = QueueName {
                app: app.to_string(),
                queue: name.clone(),
            };
            let Some(consumer) = component(&spec.consumer) else {
                tracing::warn!(app, queue = %name, "consumer `{}` is stopped: messages wait", spec.consumer);
                continue;
            };
            new.push(self.spawn(q, spec.clone(), Arc::new(ComponentConsumer(consumer))));
        }
        if !new.is_empty() {
            tasks.insert(app.to_string(), new);
        }
    }
}

/// The publishers of queue routes, over one dispatcher.
pub struct RoutePublishers(pub Arc<Dispatcher>);

impl nubo_gateway::Publishers for RoutePublishers {
    fn publisher(&self, app: &str, queue: &str) -> Arc<dyn nubo_gateway::Publish> {
        Arc::new(RoutePublisher {
            q: QueueName {
                app: app.to_string(),
                queue: queue.to_string(),
            },
            dispatcher: self.0.clone(),
        })
    }
}

/// An `[[http]] queue = "..."` route: request bodies become messages.
pub struct RoutePublisher {
    pub q: QueueName,
    pub dispatcher: Arc<Dispatcher>,
}

impl nubo_gateway::Publish for RoutePublisher {
    fn queue(&self) -> &str {
        &self.q.queue
    }

    fn publish(
        &self,
        body: bytes::Bytes,
        by: Option<nubo_wasm::Principal>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, PublishError>> + Send + '_>>
    {
        Box::pin(async move {
            let id = self
                .dispatcher
                .backend
                .publish(&self.q, &body, by.as_ref())
                .await
                .map_err(|e| match e {
                    QueueError::OverQuota { .. } | QueueError::DiskFull => {
                        PublishError::Full(e.to_string())
                    }
                    e => PublishError::Failed(e.to_string()),
                })?;
            if let Some(meter) = self.dispatcher.meter.get() {
                let dims = nubo_wasm::Dims {
                    user: by
                        .as_ref()
                        .map_or_else(|| "".into(), |p| p.id.as_str().into()),
                    ..nubo_wasm::Dims::of(&self.q.app, "")
                };
                meter.record(
                    &dims,
                    &[
                        (crate::host::QUEUE_MESSAGES, 1),
                        (crate::host::QUEUE_BYTES, body.len() as u64),
                    ],
                );
            }
            self.dispatcher.notify(&self.q);
            Ok(id)
        })
    }
}

/// Where a queue's deliveries go: the consumer component, or a stand-in
/// in the dispatcher's tests.
pub(crate) trait Consumer: Send + Sync + 'static {
    /// Delivers `batch` of `q`; the messages the consumer failed, with
    /// why. An error fails every message of the batch.
    fn deliver<'a>(
        &'a self,
        q: &'a QueueName,
        spec: &'a QueueSpec,
        batch: &'a [Message],
    ) -> nubo_wasm::BoxFuture<'a, Result<Vec<(u64, String)>, DeliveryError>>;
}

struct Queue {
    q: QueueName,
    spec: QueueSpec,
    consumer: Arc<dyn Consumer>,
    backend: Arc<dyn QueueBackend>,
    pauses: Arc<nubo_wasm::Pauses>,
    /// Woken by a publish.
    waker: Arc<Notify>,
    /// Woken when a delivery ends.
    finished: Notify,
    /// Messages may be due later (a retry, or a lease from before a
    /// restart): the loop asks the backend when. Off until a delivery
    /// fails, so a queue that never fails skips that query.
    retries: AtomicBool,
}

impl Queue {
    async fn run(self) {
        let slots = Arc::new(Semaphore::new(self.spec.concurrency as usize));
        let size = self.spec.batch_size.max(1) as usize;
        // A delivery of fewer than `size` messages is running. Until it
        // ends, nothing more is leased: what arrives meanwhile fills the
        // next batch instead of taking a slot of its own (as Nagle's
        // algorithm holds back a second small segment). Each delivery costs
        // an instance, a lease and an acknowledgement whatever its size, so
        // under load this turns many tiny deliveries into a few full ones;
        // a backlog of full batches still uses every slot.
        let partial = Arc::new(AtomicBool::new(false));
        let held = |p: &AtomicBool| size > 1 && p.load(Ordering::Acquire);
        let this = Arc::new(self);
        loop {
            // A paused app's messages stay stored until it resumes.
            this.pauses.until_resumed(&this.q.app).await;
            // Fill every free slot with due messages, leased in one call.
            let free = slots.available_permits();
            let can_lease = free > 0 && !held(&partial);
            // With every slot busy, or a partial batch out, a finished
            // delivery wakes this loop.
            let mut all_due_taken = can_lease;
            if can_lease {
                match this
                    .backend
                    .lease(&this.q, free * size, this.spec.visibility_timeout_ms)
                    .await
                {
                    Ok(leased) => {
                        all_due_taken = leased.len() < free * size;
                        for batch in crate::batch::split(leased, size) {
                            // Only this loop takes permits; it waits for one
                            // only when the byte limit made extra batches.
                            let Ok(permit) = slots.clone().acquire_owned().await else {
                                break;
                            };
                            let small = size > 1 && batch.len() < size;
                            if small {
                                partial.store(true, Ordering::Release);
                            }
                            let (me, partial) = (this.clone(), partial.clone());
                            tokio::spawn(async move {
                                me.deliver(batch).await;
                                drop(permit);
                                if small {
                                    partial.store(false, Ordering::Release);
                                }
                                me.finished.notify_one();
                            });
                        }
                    }
                    Err(e) => {
                        tracing::error!(app = %this.q.app, queue = %this.q.queue, "cannot lease: {e}");
                    }
                }
            }
            // Sleep until a publish, a finished delivery, or the next retry
            // is due (checked at least every second). With messages still
            // waiting, a finished delivery is what comes next.
            // Cleared before asking, so a failure settled meanwhile (it
            // sets the flag once stored) is asked about next time.
            let due = if all_due_taken && this.retries.swap(false, Ordering::AcqRel) {
                match this.backend.next_due_in(&this.q).await {
                    // Nothing waits at all: only a new failure sets it again.
                    Ok(None) => 1000,
                    Ok(Some(ms)) => {
                        this.retries.store(true, Ordering::Release);
                        ms.clamp(1, 1000)
                    }
                    Err(_) => {
                        this.retries.store(true, Ordering::Release);
                        1000
                    }
                }
            } else {
                1000
            };
            // A publish matters only to a loop that can lease: one waiting
            // for a slot or for its partial batch sleeps through them (its
            // stored wake-up is taken once it can).
            let can_lease = slots.available_permits() > 0 && !held(&partial);
            let published = async {
                if can_lease {
                    this.waker.notified().await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                () = published => {}
                () = this.finished.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(due)) => {}
            }
        }
    }

    /// Delivers `batch` and settles each message: acknowledged, or failed
    /// with why (then retried later or dead-lettered).
    async fn deliver(&self, batch: Vec<Message>) {
        let failed: Vec<(u64, String)> =
            match self.consumer.deliver(&self.q, &self.spec, &batch).await {
                Ok(failed) => failed,
                Err(e) => {
                    // Kept with each message: what `nubo queues dead` shows.
                    let why = e.to_string();
                    batch.iter().map(|m| (m.id, why.clone())).collect()
                }
            };
        let q = &self.q;
        let done: Vec<u64> = batch
            .iter()
            .map(|m| m.id)
            .filter(|id| !failed.iter().any(|(f, _)| f == id))
            .collect();
        let mut results = Vec::new();
        if !done.is_empty() {
            results.push(self.backend.ack(q, &done).await);
        }
        for m in &batch {
            let Some((_, why)) = failed.iter().find(|(f, _)| *f == m.id) else {
                continue;
            };
            let dead = m.attempt >= self.spec.max_attempts;
            let retry = backoff_ms(self.spec.backoff_ms, m.attempt);
            let stored = self.backend.fail(q, m.id, why, retry, dead).await;
            // Said once it is so: whoever reads the log finds the message
            // dead or due again.
            match (&stored, dead) {
                (Err(_), _) => {}
                (Ok(()), true) => {
                    tracing::warn!(app = %q.app, queue = %q.queue, id = m.id, attempts = m.attempt, "dead-lettered: {why}");
                }
                (Ok(()), false) => {
                    tracing::info!(app = %q.app, queue = %q.queue, id = m.id, attempt = m.attempt, "delivery failed, will retry: {why}");
                }
            }
            results.push(stored);
        }
        if !failed.is_empty() || results.iter().any(Result::is_err) {
            // A retry is scheduled, or a lease runs out later.
            self.retries.store(true, Ordering::Release);
        }
        for e in results.into_iter().filter_map(Result::err) {
            // The messages stay leased and come back after their visibility
            // timeout: delivered again, never lost.
            tracing::error!(app = %q.app, queue = %q.queue, "cannot settle a delivery: {e}");
        }
    }
}

/// A consumer component: one call of its queue export if it has one,
/// else one `POST` of the queue's path to its HTTP handler.
struct ComponentConsumer(HttpComponent);

impl Consumer for ComponentConsumer {
    fn deliver<'a>(
        &'a self,
        q: &'a QueueName,
        spec: &'a QueueSpec,
        batch: &'a [Message],
    ) -> nubo_wasm::BoxFuture<'a, Result<Vec<(u64, String)>, DeliveryError>> {
        Box::pin(self.post(q, spec, batch))
    }
}

impl ComponentConsumer {
    /// One `POST` of the queue's path to the consumer: its answer if 2xx.
    async fn post_http(
        &self,
        app: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        run: Invocation,
    ) -> Result<nubo_wasm::Answer, DeliveryError> {
        let req = nubo_wasm::InternalRequest {
            app,
            kind: "queue",
            path,
            headers,
            body,
            max_answer: MAX_ANSWER,
        };
        match self.0.post_internal(req, run).await {
            Ok(a) if a.is_success() => Ok(a),
            Ok(a) => Err(DeliveryError::Status(a.status)),
            Err(e) => Err(DeliveryError::Post(e)),
        }
    }

    /// One call of the consumer's queue export, or else one `POST`, for
    /// the batch; the messages the consumer failed.
    async fn post(
        &self,
        q: &QueueName,
        spec: &QueueSpec,
        batch: &[Message],
    ) -> Result<Vec<(u64, String)>, DeliveryError> {
        let first = batch.first().map(|m| (m.id, m.attempt)).unwrap_or_default();
        let id = match batch.len() {
            1 => format!("queue-{}-{}", first.0, first.1),
            n => format!("queue-{}-{}+{}", first.0, first.1, n - 1),
        };
        // A batch holds one publisher's messages (`batch::split`): its
        // run is started by them.
        let by = batch.first().and_then(|m| m.by.clone());
        let run = || Invocation::request(id.clone()).by(by.clone());
        if let Some(outcome) = crate::export::deliver(&self.0, &q.queue, batch, run()).await {
            return match outcome {
                Ok(answer) => answer.map_err(DeliveryError::Consumer),
                Err(e) => Err(DeliveryError::Run(e)),
            };
        }
        let (app, path) = (&q.app, &spec.path);
        let queue = ("nubo-queue", q.queue.clone());
        match batch {
            // `batch_size = 1`: the body is the message's own.
            [m] if spec.batch_size <= 1 => {
                let headers = [
                    queue,
                    ("nubo-message-id", m.id.to_string()),
                    ("nubo-attempt", m.attempt.to_string()),
                ];
                self.post_http(app, path, &headers, m.body.clone(), run())
                    .await
                    .map(|_| Vec::new())
            }
            _ => {
                let headers = [
                    queue,
                    ("nubo-batch", batch.len().to_string()),
                    ("content-type", "application/json".to_string()),
                ];
                let body = crate::batch::encode(batch);
                let a = self.post_http(app, path, &headers, body, run()).await?;
                crate::batch::failures(a.json, &a.body).map_err(DeliveryError::Answer)
            }
        }
    }
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
