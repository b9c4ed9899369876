//! The dispatcher on a real SQLite queue with a stand-in consumer: what
//! is delivered, how often, how many at once, and what is retried and
//! dead-lettered. The consumer is not the point here (the component tests
//! in `tests/` deliver to real ones), so a stand-in records each delivery
//! and answers as the test says.

use super::{Consumer, DeliveryError, Dispatcher};
use crate::QueueSpec;
use crate::{Message, QueueBackend, QueueName, SqliteQueue, Stats};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the stand-in answers one delivery.
type Answer = dyn Fn(usize, &[Message]) -> Result<Vec<(u64, String)>, DeliveryError> + Send + Sync;

struct StandIn {
    /// Each delivery: the (body, attempt) of its messages.
    seen: Mutex<Vec<Vec<(String, u32)>>>,
    running: AtomicUsize,
    /// The most deliveries that ran at once.
    most: AtomicUsize,
    /// How long each delivery takes.
    hold: Duration,
    answer: Box<Answer>,
}

impl StandIn {
    fn new(hold: Duration, answer: Box<Answer>) -> Arc<Self> {
        Arc::new(Self {
            seen: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            hold,
            answer,
        })
    }

    fn seen(&self) -> Vec<Vec<(String, u32)>> {
        self.seen.lock().unwrap().clone()
    }

    /// Every attempt at the message with `body`, in order.
    fn attempts(&self, body: &str) -> Vec<u32> {
        self.seen()
            .iter()
            .flatten()
            .filter(|(b, _)| b == body)
            .map(|(_, a)| *a)
            .collect()
    }
}

impl Consumer for StandIn {
    fn deliver<'a>(
        &'a self,
        _q: &'a QueueName,
        _spec: &'a QueueSpec,
        batch: &'a [Message],
    ) -> nubo_wasm::BoxFuture<'a, Result<Vec<(u64, String)>, DeliveryError>> {
        Box::pin(async move {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.hold).await;
            let n = {
                let mut seen = self.seen.lock().unwrap();
                seen.push(
                    batch
                        .iter()
                        .map(|m| (String::from_utf8_lossy(&m.body).into_owned(), m.attempt))
                        .collect(),
                );
                seen.len()
            };
            self.running.fetch_sub(1, Ordering::SeqCst);
            (self.answer)(n, batch)
        })
    }
}

fn spec(concurrency: u32, batch_size: u32, max_attempts: u32) -> QueueSpec {
    QueueSpec {
        consumer: "c".into(),
        path: "/q".into(),
        concurrency,
        max_attempts,
        visibility_timeout_ms: 30_000,
        backoff_ms: 10,
        batch_size,
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    backend: Arc<dyn QueueBackend>,
    dispatcher: Arc<Dispatcher>,
    q: QueueName,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn QueueBackend> =
        Arc::new(SqliteQueue::open(&dir.path().join("queues.db")).unwrap());
    Setup {
        _dir: dir,
        dispatcher: Dispatcher::new(backend.clone(), Arc::default()),
        backend,
        q: QueueName {
            app: "a".into(),
            queue: "jobs".into(),
        },
    }
}

impl Setup {
    async fn publish(&self, bodies: &[&str]) {
        for b in bodies {
            self.backend
                .publish(&self.q, b.as_bytes(), None)
                .await
                .unwrap();
            self.dispatcher.notify(&self.q);
        }
    }

    /// Waits (up to 10 s) until the queue's counts are `want`.
    async fn settles_at(&self, want: Stats) {
        for _ in 0..1000 {
            if self.backend.stats(&self.q).await.unwrap() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let got = self.backend.stats(&self.q).await.unwrap();
        panic!("the queue did not settle at {want:?}: {got:?}");
    }
}

const DONE: Stats = Stats {
    ready: 0,
    in_flight: 0,
    dead: 0,
};

#[tokio::test(flavor = "multi_thread")]
async fn every_message_is_delivered_once_with_at_most_concurrency_at_a_time() {
    let s = setup();
    let consumer = StandIn::new(Duration::from_millis(50), Box::new(|_, _| Ok(Vec::new())));
    s.publish(&["1", "2", "3", "4", "5", "6"]).await;
    let job = s
        .dispatcher
        .spawn(s.q.clone(), spec(2, 1, 3), consumer.clone());
    s.settles_at(DONE).await;
    job.abort();
    let mut bodies: Vec<(String, u32)> = consumer.seen().into_iter().flatten().collect();
    bodies.sort();
    let want: Vec<(String, u32)> = (1..=6).map(|n| (n.to_string(), 1)).collect();
    assert_eq!(bodies, want, "each once, at its first attempt");
    assert_eq!(
        consumer.most.load(Ordering::SeqCst),
        2,
        "both slots, never more"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_message_is_retried_then_dead_lettered_with_why() {
    let s = setup();
    let consumer = StandIn::new(
        Duration::ZERO,
        Box::new(|_, batch| {
            Ok(batch
                .iter()
                .filter(|m| m.body == b"bad")
                .map(|m| (m.id, "it is bad".to_string()))
                .collect())
        }),
    );
    s.publish(&["bad", "good"]).await;
    let job = s
        .dispatcher
        .spawn(s.q.clone(), spec(1, 1, 3), consumer.clone());
    s.settles_at(Stats { dead: 1, ..DONE }).await;
    job.abort();
    assert_eq!(consumer.attempts("bad"), [1, 2, 3]);
    assert_eq!(consumer.attempts("good"), [1]);
    let dead = s.backend.dead(&s.q, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, b"bad");
    assert_eq!(dead[0].last_error.as_deref(), Some("it is bad"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_answer_fails_only_the_messages_it_names() {
    let s = setup();
    let consumer = StandIn::new(
        Duration::ZERO,
        Box::new(|_, batch| {
            Ok(batch
                .iter()
                .filter(|m| m.body == b"1" || m.body == b"3")
                .map(|m| (m.id, "odd".to_string()))
                .collect())
        }),
    );
    // Published before the dispatcher starts: its first lease takes all four.
    s.publish(&["0", "1", "2", "3"]).await;
    let job = s
        .dispatcher
        .spawn(s.q.clone(), spec(1, 4, 2), consumer.clone());
    s.settles_at(Stats { dead: 2, ..DONE }).await;
    job.abort();
    assert_eq!(consumer.seen()[0].len(), 4, "one batch of four");
    for even in ["0", "2"] {
        assert_eq!(consumer.attempts(even), [1], "{even} was acknowledged");
    }
    for odd in ["1", "3"] {
        assert_eq!(consumer.attempts(odd), [1, 2], "{odd} was retried once");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_delivery_fails_its_whole_batch_and_the_retry_succeeds() {
    let s = setup();
    let consumer = StandIn::new(
        Duration::ZERO,
        Box::new(|n, _| match n {
            1 => Err(DeliveryError::Status(503)),
            _ => Ok(Vec::new()),
        }),
    );
    s.publish(&["x", "y", "z"]).await;
    let job = s
        .dispatcher
        .spawn(s.q.clone(), spec(1, 3, 5), consumer.clone());
    s.settles_at(DONE).await;
    job.abort();
    for body in ["x", "y", "z"] {
        assert_eq!(consumer.attempts(body), [1, 2], "{body}");
    }
}
