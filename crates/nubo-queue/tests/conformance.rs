//! The queue backend contract, written once and run against both
//! backends: the embedded SQLite queue always, JetStream on a real
//! nats-server. What the dispatcher relies on (order, leases that hide and
//! then return a message, acknowledgement, retries, dead letters, purges,
//! quotas) holds for both, or this fails.

use nubo_queue::{
    MAX_BODY, NatsQueue, QueueBackend, QueueError, QueueName, QueueQuota, SqliteQueue,
};
use std::time::Duration;

fn queue(app: &str, name: &str) -> QueueName {
    QueueName {
        app: app.into(),
        queue: name.into(),
    }
}

async fn keeps_the_contract(qs: &dyn QueueBackend) {
    let q = queue("a", "jobs");
    let other = queue("b", "jobs");

    // Published messages come out oldest first, to one lease at a time,
    // each with who published it.
    let ada = nubo_wasm::Principal {
        id: "u1".into(),
        email: Some("ada@example.com".into()),
        roles: vec!["admin".into()],
        how: "session".into(),
    };
    let mut ids = Vec::new();
    for body in [&b"one"[..], b"two", b"three"] {
        let by = (body == b"two").then_some(&ada);
        ids.push(qs.publish(&q, body, by).await.unwrap());
    }
    qs.publish(&other, b"theirs", None).await.unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // While a message waits, the dispatcher is told to look again soon.
    let due = qs.next_due_in(&q).await.unwrap();
    assert!(due.is_some_and(|ms| ms <= 1000), "{due:?}");
    let peeked = qs.peek(&q, 10).await.unwrap();
    assert_eq!(peeked.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
    assert_eq!(peeked[1].by.as_ref(), Some(&ada));
    assert_eq!(peeked[0].by, None);
    // A lease hides its messages for its visibility time (JetStream's is a
    // second at least, so the contract is written with one second).
    let leased = qs.lease(&q, 2, 1000).await.unwrap();
    assert_eq!(leased.len(), 2);
    assert_eq!(
        (leased[0].body.as_slice(), leased[0].attempt),
        (&b"one"[..], 1)
    );
    assert_eq!(leased[1].body, b"two");
    assert_eq!(leased[1].by.as_ref(), Some(&ada));
    let rest = qs.lease(&q, 10, 1000).await.unwrap();
    assert_eq!(rest.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[2]]);
    assert!(
        qs.lease(&q, 10, 300).await.unwrap().is_empty(),
        "all are out"
    );
    let stats = qs.stats(&q).await.unwrap();
    assert_eq!((stats.in_flight, stats.dead), (3, 0));

    // Acknowledged: gone. Unanswered: due again once its lease ends.
    qs.ack(&q, &[ids[0], ids[2]]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = qs.lease(&q, 10, 10_000).await.unwrap();
    assert_eq!(again.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[1]]);
    assert_eq!(again[0].attempt, 2, "the lease that ran out was an attempt");

    // Failed: due again after its retry time, with why; then dead.
    qs.fail(&q, ids[1], "boom", 200, false).await.unwrap();
    assert!(
        qs.lease(&q, 10, 10_000).await.unwrap().is_empty(),
        "not yet due"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let retried = qs.lease(&q, 10, 10_000).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].last_error.as_deref(), Some("boom"));
    qs.fail(&q, ids[1], "boom again", 0, true).await.unwrap();
    assert!(qs.lease(&q, 10, 10_000).await.unwrap().is_empty());
    let dead = qs.dead(&q, 10).await.unwrap();
    assert_eq!(dead.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[1]]);
    assert_eq!(qs.stats(&q).await.unwrap().dead, 1);

    // Purges: the waiting ones, the dead ones, a whole app.
    qs.publish(&q, b"four", None).await.unwrap();
    assert_eq!(qs.purge(&q, false).await.unwrap(), 1);
    assert_eq!(qs.purge(&q, true).await.unwrap(), 1);
    let stats = qs.stats(&q).await.unwrap();
    assert_eq!((stats.ready, stats.in_flight, stats.dead), (0, 0, 0));
    assert_eq!(qs.purge_app("b").await.unwrap(), 1);
    assert!(qs.peek(&other, 10).await.unwrap().is_empty());

    // A quota refuses the publish past it; the queue works on below it.
    let limited = queue("c", "jobs");
    qs.set_quota(
        "c",
        QueueQuota {
            messages: 2,
            dead_letters: 10,
        },
    );
    qs.publish(&limited, b"1", None).await.unwrap();
    qs.publish(&limited, b"2", None).await.unwrap();
    let refused = qs.publish(&limited, b"3", None).await;
    assert!(
        matches!(refused, Err(QueueError::OverQuota { .. })),
        "{refused:?}"
    );
    let out = qs.lease(&limited, 1, 10_000).await.unwrap();
    qs.ack(&limited, &[out[0].id]).await.unwrap();
    // A shared count may take a moment to see the acknowledgement.
    let mut published = false;
    for _ in 0..30 {
        if qs.publish(&limited, b"3", None).await.is_ok() {
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(published, "room was freed by the acknowledgement");

    // The largest body a publish takes is stored and delivered whole.
    let big = queue("d", "jobs");
    let body = vec![7u8; MAX_BODY];
    qs.publish(&big, &body, None).await.unwrap();
    let out = qs.lease(&big, 1, 10_000).await.unwrap();
    assert_eq!(out[0].body.len(), MAX_BODY);
    let refused = qs.publish(&big, &vec![0; MAX_BODY + 1], None).await;
    assert!(
        matches!(refused, Err(QueueError::Invalid(_))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_embedded_backend_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let qs = SqliteQueue::open(&dir.path().join("q.db")).unwrap();
    keeps_the_contract(&qs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_jetstream_backend_keeps_the_contract() {
    let nats = nubo_testkit::nats::NatsCluster::start(1);
    let js = nats.jetstream().await;
    let qs = NatsQueue::open(&js, 1).await.unwrap();
    keeps_the_contract(&qs).await;
}
