//! The cluster backend: queues on JetStream, so that any node delivers
//! what any node published, and a node that dies mid-delivery only delays
//! its messages.
//!
//! - Messages live in the stream `nubo_queues` (work-queue retention:
//!   a message is gone once acknowledged) under `nubo.q.APP.QUEUE`.
//! - Each queue has one durable pull consumer, shared by every node: JetStream
//!   hands each message to one of them and redelivers it when its ack wait
//!   (the queue's visibility timeout) passes without an answer.
//! - A failed delivery is a NAK with the backoff as its delay; after the
//!   last attempt the message is copied to `nubo_dead` (limits retention)
//!   with why, then acknowledged.
//! - A publish also sends a core NATS "wake" to every node, so that the
//!   dispatchers of other nodes do not wait for their next poll.
//!
//! - Quotas: a publish counts the app's messages in the stream (its
//!   subjects' counts, one request) unless a count under a second old
//!   showed the app under half its quota; dead letters beyond the app's
//!   quota are purged oldest first (`keep` on the app's subjects).
//!
//! A message's id is its stream sequence; what a node has leased it keeps
//! in memory until it settles them (JetStream acks go to the message's own
//! reply subject). The last error of a failed delivery is known only to
//! the node that saw it.

use crate::{Message, QueueBackend, QueueError, QueueName, QueueQuota, Quotas, Stats};
use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures_util::StreamExt;
use nubo_wasm::Principal;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const STREAM: &str = "nubo_queues";
const DEAD: &str = "nubo_dead";

fn err(what: &str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> QueueError {
    QueueError::backend(what, e)
}

fn tokens(q: &QueueName) -> String {
    format!(
        "{}.{}",
        nubo_jetstream::token(&q.app),
        nubo_jetstream::token(&q.queue)
    )
}

fn subject(q: &QueueName) -> String {
    format!("nubo.q.{}", tokens(q))
}

fn dead_subject(q: &QueueName) -> String {
    format!("nubo.dead.{}", tokens(q))
}

/// Core NATS subject that wakes every node's dispatcher of `q`.
pub fn wake_subject(q: &QueueName) -> String {
    format!("nubo.qwake.{}", tokens(q))
}

/// The queue a wake names.
pub fn woken(subject: &str) -> Option<QueueName> {
    let mut parts = subject.strip_prefix("nubo.qwake.")?.split('.');
    let (app, queue) = (parts.next()?, parts.next()?);
    Some(QueueName {
        app: nubo_jetstream::untoken(app)?,
        queue: nubo_jetstream::untoken(queue)?,
    })
}

struct Leased {
    message: jetstream::Message,
    at: Instant,
}

pub struct NatsQueue {
    js: jetstream::Context,
    queues: stream::Stream,
    dead: stream::Stream,
    consumers: tokio::sync::Mutex<HashMap<QueueName, (u64, consumer::PullConsumer)>>,
    leased: Mutex<HashMap<(QueueName, u64), Leased>>,
    errors: Mutex<HashMap<(QueueName, u64), String>>,
    quotas: Quotas,
    /// Each app's last count of messages: when, and how many since.
    counted: Mutex<HashMap<String, (Instant, u64)>>,
}

/// How long a count of an app's messages that showed it under half its
/// quota spares the next publishes a count.
const COUNT_FOR: Duration = Duration::from_secs(1);

/// Messages under `filter` in `stream`.
async fn count(stream: &stream::Stream, filter: String) -> Result<u64, QueueError> {
    let mut subjects = stream
        .clone()
        .info_with_subjects(filter)
        .await
        .map_err(|e| err("count", e))?;
    let mut n = 0;
    while let Some(Ok((_, c))) = subjects.next().await {
        n += c as u64;
    }
    Ok(n)
}

impl NatsQueue {
    pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<Self, QueueError> {
        let make = |name: &str, subjects: &str, retention| stream::Config {
            name: name.to_string(),
            subjects: vec![subjects.to_string()],
            retention,
            storage: stream::StorageType::File,
            num_replicas: replicas.max(1),
            max_message_size: (crate::MAX_BODY + 4096) as i32,
            allow_direct: true,
            ..Default::default()
        };
        let open = |config| async move {
            nubo_jetstream::open_stream(js, config)
                .await
                .map_err(|e| QueueError::backend("JetStream", e))
        };
        let queues = open(make(STREAM, "nubo.q.>", stream::RetentionPolicy::WorkQueue)).await?;
        let dead = open(make(DEAD, "nubo.dead.>", stream::RetentionPolicy::Limits)).await?;
        Ok(Self {
            js: js.clone(),
            queues,
            dead,
            consumers: tokio::sync::Mutex::new(HashMap::new()),
            leased: Mutex::new(HashMap::new()),
            errors: Mutex::new(HashMap::new()),
            quotas: Quotas::default(),
            counted: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `app` may publish one more message under its quota.
    async fn room(&self, app: &str) -> Result<bool, QueueError> {
        let quota = self.quotas.messages(app);
        if quota == u64::MAX {
            return Ok(true);
        }
        {
            let mut counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, n)) = counted.get_mut(app)
                && at.elapsed() < COUNT_FOR
                && *n < quota / 2
            {
                *n += 1;
                return Ok(true);
            }
        }
        let filter = format!("nubo.q.{}.>", nubo_jetstream::token(app));
        let n = count(&self.queues, filter).await?;
        self.counted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(app.to_owned(), (Instant::now(), n + 1));
        Ok(n < quota)
    }

    /// Drops `app`'s oldest dead letters beyond its quota.
    async fn trim_dead(&self, app: &str) -> Result<(), QueueError> {
        let keep = self.quotas.dead_letters(app);
        if keep == u64::MAX {
            return Ok(());
        }
        let filter = format!("nubo.dead.{}.>", nubo_jetstream::token(app));
        let dropped = if keep == 0 {
            self.dead.purge().filter(filter).await
        } else {
            self.dead.purge().filter(filter).keep(keep).await
        }
        .map_err(|e| err("trim dead letters", e))?
        .purged;
        if dropped > 0 {
            tracing::warn!(
                app,
                dropped,
                keep,
                "dropped the oldest dead letters: the app keeps at most `dead_letters` (in [quotas])"
            );
        }
        Ok(())
    }

    /// The queue's shared consumer, (re)configured for `visibility_ms`.
    async fn consumer(
        &self,
        q: &QueueName,
        visibility_ms: u64,
    ) -> Result<consumer::PullConsumer, QueueError> {
        let mut consumers = self.consumers.lock().await;
        if let Some((vis, c)) = consumers.get(q)
            && *vis == visibility_ms
        {
            return Ok(c.clone());
        }
        let name = format!("q_{}", tokens(q).replace('.', "_"));
        let config = consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: subject(q),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_millis(visibility_ms.max(1000)),
            // Attempts are counted by the dispatcher, which dead-letters.
            max_deliver: -1,
            max_ack_pending: 100_000,
            ..Default::default()
        };
        let c = match self.queues.get_consumer(&name).await {
            Ok(c) => {
                let c: consumer::PullConsumer = c;
                if c.cached_info().config.ack_wait == config.ack_wait {
                    c
                } else {
                    // A changed visibility timeout: NATS updates a durable
                    // consumer created again with a new ack wait.
                    match self.queues.create_consumer(config).await {
                        Ok(updated) => updated,
                        Err(e) => {
                            tracing::warn!(queue = %q.queue, "visibility timeout not changed: {e}");
                            c
                        }
                    }
                }
            }
            Err(_) => nubo_jetstream::retry(|| self.queues.create_consumer(config.clone()))
                .await
                .map_err(|e| err("create the queue's consumer", e))?,
        };
        consumers.insert(q.clone(), (visibility_ms, c.clone()));
        Ok(c)
    }

    fn take(&self, q: &QueueName, id: u64) -> Option<jetstream::Message> {
        let mut leased = self.leased.lock().unwrap_or_else(|p| p.into_inner());
        leased.remove(&(q.clone(), id)).map(|l| l.message)
    }

    async fn read(
        &self,
        stream: &stream::Stream,
        subject: String,
        n: usize,
    ) -> Result<Vec<Message>, QueueError> {
        let mut out = Vec::new();
        let mut from = 1;
        while out.len() < n {
            let m = match stream
                .direct_get_next_for_subject(&subject, Some(from))
                .await
            {
                Ok(m) => m,
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => break,
                Err(e) => return Err(err("read", e)),
            };
            from = m.sequence + 1;
            let header = |name: &str| m.headers.get(name).map(|v| v.as_str().to_string());
            out.push(Message {
                id: header("Nubo-Id")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(m.sequence),
                body: m.payload.to_vec(),
                attempt: header("Nubo-Attempts")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                published_at: m.time.unix_timestamp_nanos() as i64 / 1_000_000,
                last_error: header("Nubo-Error"),
                by: Principal::from_json(header(PRINCIPAL).as_deref()),
            });
        }
        Ok(out)
    }
}

/// The header a message carries who published it in (compact JSON, one
/// line).
const PRINCIPAL: &str = "Nubo-Principal";

fn principal_of(headers: Option<&async_nats::HeaderMap>) -> Option<Principal> {
    Principal::from_json(headers.and_then(|h| h.get(PRINCIPAL)).map(|v| v.as_str()))
}

#[async_trait::async_trait]
impl QueueBackend for NatsQueue {
    async fn publish(
        &self,
        q: &QueueName,
        body: &[u8],
        by: Option<&Principal>,
    ) -> Result<u64, QueueError> {
        crate::check_body(body)?;
        if !self.room(&q.app).await? {
            return Err(QueueError::OverQuota {
                app: q.app.clone(),
                quota: self.quotas.messages(&q.app),
            });
        }
        let mut headers = async_nats::HeaderMap::new();
        if let Some(p) = by {
            headers.insert(PRINCIPAL, p.to_json().as_str());
        }
        let ack = self
            .js
            .publish_with_headers(subject(q), headers, body.to_vec().into())
            .await
            .map_err(|e| err("publish", e))?
            .await
            .map_err(|e| err("publish", e))?;
        // Acknowledged by the stream: now wake every node.
        let _ = self
            .js
            .client()
            .publish(wake_subject(q), bytes::Bytes::new())
            .await;
        Ok(ack.sequence)
    }

    async fn lease(
        &self,
        q: &QueueName,
        max: usize,
        visibility_ms: u64,
    ) -> Result<Vec<Message>, QueueError> {
        let consumer = self.consumer(q, visibility_ms).await?;
        let mut batch = consumer
            .fetch()
            .max_messages(max.max(1))
            .messages()
            .await
            .map_err(|e| err("lease", e))?;
        let mut out = Vec::new();
        let now = Instant::now();
        let stale = Duration::from_millis(visibility_ms.max(1000) * 2);
        let mut leased = Vec::new();
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| err("lease", e))?;
            let Ok(info) = m.info() else { continue };
            let id = info.stream_sequence;
            out.push(Message {
                id,
                body: m.payload.to_vec(),
                attempt: info.delivered.clamp(1, i64::from(u32::MAX)) as u32,
                published_at: info.published.unix_timestamp_nanos() as i64 / 1_000_000,
                last_error: self
                    .errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&(q.clone(), id))
                    .cloned(),
                by: principal_of(m.headers.as_ref()),
            });
            leased.push((id, m));
        }
        let mut map = self.leased.lock().unwrap_or_else(|p| p.into_inner());
        // Leases this node never settled (its delivery task was aborted)
        // are JetStream's to redeliver; forget them.
        map.retain(|_, l| now.duration_since(l.at) < stale);
        for (id, message) in leased {
            map.insert((q.clone(), id), Leased { message, at: now });
        }
        Ok(out)
    }

    async fn ack(&self, q: &QueueName, ids: &[u64]) -> Result<(), QueueError> {
        for id in ids {
            self.errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(q.clone(), *id));
            if let Some(m) = self.take(q, *id) {
                m.ack().await.map_err(|e| err("ack", e))?;
            }
        }
        Ok(())
    }

    async fn fail(
        &self,
        q: &QueueName,
        id: u64,
        error: &str,
        retry_in_ms: u64,
        dead: bool,
    ) -> Result<(), QueueError> {
        let Some(m) = self.take(q, id) else {
            return Ok(());
        };
        let key = (q.clone(), id);
        if !dead {
            self.errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, error.to_string());
            return m
                .ack_with(AckKind::Nak(Some(Duration::from_millis(retry_in_ms))))
                .await
                .map_err(|e| err("nak", e));
        }
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        let attempts = m.info().map(|i| i.delivered).unwrap_or(0);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nubo-Id", id.to_string().as_str());
        headers.insert("Nubo-Attempts", attempts.to_string().as_str());
        // Header values are one line.
        headers.insert("Nubo-Error", error.replace(['\r', '\n'], " ").as_str());
        if let Some(p) = m.headers.as_ref().and_then(|h| h.get(PRINCIPAL)) {
            headers.insert(PRINCIPAL, p.as_str());
        }
        self.js
            .publish_with_headers(dead_subject(q), headers, m.payload.clone())
            .await
            .map_err(|e| err("dead-letter", e))?
            .await
            .map_err(|e| err("dead-letter", e))?;
        m.ack().await.map_err(|e| err("ack", e))?;
        self.trim_dead(&q.app).await
    }

    fn set_quota(&self, app: &str, quota: QueueQuota) {
        self.quotas.set(app, quota);
    }

    async fn next_due_in(&self, _q: &QueueName) -> Result<Option<u64>, QueueError> {
        // Retry times are the server's; wakes cover new messages.
        Ok(Some(250))
    }

    async fn stats(&self, q: &QueueName) -> Result<Stats, QueueError> {
        let dead = self.dead.clone().info_with_subjects(dead_subject(q)).await;
        let dead = match dead {
            Ok(mut subjects) => {
                let mut n = 0;
                while let Some(Ok((_, count))) = subjects.next().await {
                    n += count as u64;
                }
                n
            }
            Err(e) => return Err(err("stats", e)),
        };
        let name = format!("q_{}", tokens(q).replace('.', "_"));
        let (ready, in_flight) = match self.queues.consumer_info(&name).await {
            Ok(info) => (info.num_pending, info.num_ack_pending as u64),
            // No consumer yet: nothing was ever leased.
            Err(_) => {
                let mut n = 0;
                if let Ok(mut subjects) = self.queues.clone().info_with_subjects(subject(q)).await {
                    while let Some(Ok((_, count))) = subjects.next().await {
                        n += count as u64;
                    }
                }
                (n, 0)
            }
        };
        Ok(Stats {
            ready,
            in_flight,
            dead,
        })
    }

    async fn peek(&self, q: &QueueName, n: usize) -> Result<Vec<Message>, QueueError> {
        self.read(&self.queues, subject(q), n).await
    }

    async fn dead(&self, q: &QueueName, n: usize) -> Result<Vec<Message>, QueueError> {
        self.read(&self.dead, dead_subject(q), n).await
    }

    async fn purge(&self, q: &QueueName, dead: bool) -> Result<u64, QueueError> {
        let (stream, subject) = if dead {
            (&self.dead, dead_subject(q))
        } else {
            (&self.queues, subject(q))
        };
        let r = stream
            .purge()
            .filter(subject)
            .await
            .map_err(|e| err("purge", e))?;
        Ok(r.purged)
    }

    async fn purge_app(&self, app: &str) -> Result<u64, QueueError> {
        let app = nubo_jetstream::token(app);
        let mut n = 0;
        for (stream, filter) in [
            (&self.queues, format!("nubo.q.{app}.>")),
            (&self.dead, format!("nubo.dead.{app}.>")),
        ] {
            n += stream
                .purge()
                .filter(filter)
                .await
                .map_err(|e| err("purge", e))?
                .purged;
        }
        Ok(n)
    }
}
