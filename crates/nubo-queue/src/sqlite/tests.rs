use super::*;

#[tokio::test]
async fn a_lease_takes_up_to_max_due_messages_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let q = SqliteQueue::open(&dir.path().join("q.db")).unwrap();
    let name = QueueName {
        app: "a".into(),
        queue: "jobs".into(),
    };
    for body in [b"1", b"2", b"3"] {
        q.publish(&name, body, None).await.unwrap();
    }
    let first = q.lease(&name, 2, 60_000).await.unwrap();
    let bodies: Vec<&[u8]> = first.iter().map(|m| m.body.as_slice()).collect();
    assert_eq!(bodies, [b"1", b"2"]);
    let rest = q.lease(&name, 10, 60_000).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].body, b"3");
    assert!(q.lease(&name, 10, 60_000).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_lease_gives_its_messages_in_publish_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = SqliteQueue::open(&dir.path().join("q.db")).unwrap();
    let name = jobs();
    let first = q.publish(&name, b"1", None).await.unwrap();
    // Message 1 fails and is due again after 2 and 3 were published:
    // it is due last, yet a lease of all three gives it first.
    let leased = q.lease(&name, 1, 60_000).await.unwrap();
    assert_eq!(leased[0].id, first);
    for body in [b"2", b"3"] {
        q.publish(&name, body, None).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    q.fail(&name, first, "boom", 0, false).await.unwrap();
    let again = q.lease(&name, 10, 60_000).await.unwrap();
    let bodies: Vec<&[u8]> = again.iter().map(|m| m.body.as_slice()).collect();
    assert_eq!(bodies, [b"1", b"2", b"3"]);
    assert_eq!(again[0].attempt, 2);
}

fn jobs() -> QueueName {
    QueueName {
        app: "a".into(),
        queue: "jobs".into(),
    }
}

#[tokio::test]
async fn ids_are_not_reused_after_the_queue_drains_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let mut last = 0;
    for _ in 0..3 {
        let q = SqliteQueue::open(&path).unwrap();
        for body in [b"1", b"2"] {
            let id = q.publish(&jobs(), body, None).await.unwrap();
            assert!(id > last, "id {id} after {last}");
            last = id;
        }
        let leased = q.lease(&jobs(), 10, 60_000).await.unwrap();
        let ids: Vec<u64> = leased.iter().map(|m| m.id).collect();
        q.ack(&jobs(), &ids).await.unwrap();
        assert_eq!(q.stats(&jobs()).await.unwrap(), Stats::default());
    }
}

#[test]
fn a_reservation_rolled_back_with_its_group_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = Connection::open(dir.path().join("q.db")).unwrap();
    db.execute_batch(SCHEMA).unwrap();
    let next = Mutex::new(None);
    let reserved = |db: &Connection| -> i64 {
        db.query_row("SELECT reserved FROM queue_ids", [], |r| r.get(0))
            .unwrap()
    };
    db.execute_batch("BEGIN").unwrap();
    assert_eq!(take_id(&db, &next).unwrap(), 1);
    assert_eq!(reserved(&db), 1 + ID_BLOCK);
    db.execute_batch("ROLLBACK").unwrap();
    // The reservation is gone with its group; the next id, which is
    // still 2 in memory, reserves again instead of trusting it.
    db.execute_batch("BEGIN").unwrap();
    assert_eq!(take_id(&db, &next).unwrap(), 2);
    assert_eq!(reserved(&db), 2 + ID_BLOCK);
    for want in 3..=(2 + ID_BLOCK) {
        assert_eq!(take_id(&db, &next).unwrap(), want);
    }
    assert_eq!(reserved(&db), 2 + 2 * ID_BLOCK);
    db.execute_batch("COMMIT").unwrap();
}

#[tokio::test]
async fn an_autoincrement_table_of_an_older_node_keeps_its_ids_unique() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    {
        let db = older_database(
            &path,
            "id INTEGER PRIMARY KEY,",
            "id INTEGER PRIMARY KEY AUTOINCREMENT,",
        );
        for _ in 0..5 {
            db.execute(
                "INSERT INTO messages (app, queue, body, visible_at, published_at) VALUES ('a', 'jobs', x'00', 0, 0)",
                [],
            )
            .unwrap();
        }
        // Delivered and gone: only AUTOINCREMENT remembers 5.
        db.execute("DELETE FROM messages", []).unwrap();
    }
    let q = SqliteQueue::open(&path).unwrap();
    assert_eq!(q.publish(&jobs(), b"next", None).await.unwrap(), 6);
}

#[tokio::test]
async fn lease_ack_retry_and_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let q = SqliteQueue::open(&dir.path().join("q.db")).unwrap();
    let name = QueueName {
        app: "a".into(),
        queue: "jobs".into(),
    };
    let first = q.publish(&name, b"one", None).await.unwrap();
    q.publish(&name, b"two", None).await.unwrap();
    let m = q.lease(&name, 1, 60_000).await.unwrap().remove(0);
    assert_eq!(
        (m.id, m.attempt, m.body.as_slice()),
        (first, 1, &b"one"[..])
    );
    assert_eq!(
        q.stats(&name).await.unwrap(),
        Stats {
            ready: 1,
            in_flight: 1,
            dead: 0
        }
    );
    // A leased message is hidden until its visibility runs out.
    let m2 = q.lease(&name, 1, 60_000).await.unwrap().remove(0);
    assert_eq!(m2.body, b"two");
    assert!(q.lease(&name, 1, 60_000).await.unwrap().is_empty());
    q.ack(&name, &[m2.id]).await.unwrap();
    q.fail(&name, m.id, "boom", 0, false).await.unwrap();
    let again = q.lease(&name, 1, 0).await.unwrap().remove(0);
    assert_eq!(
        (again.attempt, again.last_error.as_deref()),
        (2, Some("boom"))
    );
    // Visibility 0: due again at once, as after a crash.
    let third = q.lease(&name, 1, 60_000).await.unwrap().remove(0);
    assert_eq!(third.attempt, 3);
    q.fail(&name, third.id, "still boom", 0, true)
        .await
        .unwrap();
    assert!(q.lease(&name, 1, 60_000).await.unwrap().is_empty());
    assert_eq!(q.dead(&name, 10).await.unwrap().len(), 1);
    assert_eq!(q.purge(&name, true).await.unwrap(), 1);
    assert!(
        q.publish(&name, &vec![0; crate::MAX_BODY + 1], None)
            .await
            .is_err()
    );
    assert_eq!(crate::backoff_ms(1000, 1), 1000);
    assert_eq!(crate::backoff_ms(1000, 4), 8000);
    assert_eq!(crate::backoff_ms(1000, 40), 3_600_000);
}

#[tokio::test]
async fn a_restart_delivers_again_what_was_out_and_does_not_count_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    {
        let q = SqliteQueue::open(&path).unwrap();
        for body in [b"a", b"b"] {
            q.publish(&jobs(), body, None).await.unwrap();
        }
        let out = q.lease(&jobs(), 10, 60_000).await.unwrap();
        assert_eq!(out.len(), 2);
        q.ack(&jobs(), &[out[0].id]).await.unwrap();
        assert_eq!(q.stats(&jobs()).await.unwrap().in_flight, 1);
        // The node dies with `b` out.
    }
    let q = SqliteQueue::open(&path).unwrap();
    let again = q.lease(&jobs(), 10, 60_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].body.as_slice(), again[0].attempt), (&b"b"[..], 1));
}

#[tokio::test]
async fn a_message_an_older_node_leased_waits_for_its_lease_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    {
        // As an older node's database has it: leased, attempts counted by
        // the lease, `visible_at` the lease's end.
        let db = older_database(
            &path,
            "DROP INDEX IF EXISTS messages_due;",
            "CREATE INDEX messages_due ON messages (app, queue, dead, visible_at, id);",
        );
        db.execute(
            "INSERT INTO messages (app, queue, body, attempts, visible_at, leased, published_at) VALUES ('a', 'jobs', x'00', 1, ?1, 1, 0)",
            [now_ms() + 300],
        )
        .unwrap();
    }
    let q = SqliteQueue::open(&path).unwrap();
    assert!(q.lease(&jobs(), 10, 60_000).await.unwrap().is_empty());
    let wait = q.next_due_in(&jobs()).await.unwrap().unwrap();
    assert!((1..=300).contains(&wait), "{wait}");
    tokio::time::sleep(std::time::Duration::from_millis(wait + 20)).await;
    let out = q.lease(&jobs(), 10, 60_000).await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attempt, 2);
}

#[tokio::test]
async fn a_backlog_larger_than_memory_is_read_from_the_table_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = std::sync::Arc::new(SqliteQueue::open(&dir.path().join("q.db")).unwrap());
    // An empty lease first, so the lane takes publishes into memory until
    // its window is full; the rest stay in the table.
    assert!(q.lease(&jobs(), 1, 60_000).await.unwrap().is_empty());
    let total = lanes::READY_MESSAGES + 300;
    let mut calls = Vec::new();
    for chunk in 0..10 {
        let q = q.clone();
        calls.push(tokio::spawn(async move {
            for i in (chunk..total).step_by(10) {
                q.publish(&jobs(), i.to_string().as_bytes(), None)
                    .await
                    .unwrap();
            }
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
    let mut last = 0;
    let mut seen = 0;
    loop {
        let out = q.lease(&jobs(), 1000, 60_000).await.unwrap();
        if out.is_empty() {
            break;
        }
        for m in &out {
            assert!(m.id > last, "{} after {last}", m.id);
            last = m.id;
        }
        seen += out.len();
        let ids: Vec<u64> = out.iter().map(|m| m.id).collect();
        q.ack(&jobs(), &ids).await.unwrap();
    }
    assert_eq!(seen, total);
    assert_eq!(q.stats(&jobs()).await.unwrap(), Stats::default());
}

/// A database as an older node made it: today's schema with `was` where
/// `now` is.
fn older_database(path: &Path, now: &str, was: &str) -> Connection {
    assert!(SCHEMA.contains(now), "{now}");
    let db = Connection::open(path).unwrap();
    db.execute_batch(&SCHEMA.replace(now, was)).unwrap();
    db
}

#[tokio::test]
async fn an_app_holds_at_most_its_quota_of_messages_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let q = SqliteQueue::open(&dir.path().join("q.db")).unwrap();
    q.set_quota(
        "a",
        QueueQuota {
            messages: 3,
            dead_letters: 2,
        },
    );
    let other = QueueName {
        app: "a".into(),
        queue: "other".into(),
    };
    q.publish(&jobs(), b"1", None).await.unwrap();
    q.publish(&jobs(), b"2", None).await.unwrap();
    q.publish(&other, b"3", None).await.unwrap();
    // Over all the app's queues: the fourth is refused.
    let over = q.publish(&other, b"4", None).await.unwrap_err();
    assert!(matches!(over, QueueError::OverQuota { .. }), "{over}");
    // In flight still counts; acknowledged or dead does not.
    let leased = q.lease(&jobs(), 2, 60_000).await.unwrap();
    assert!(q.publish(&jobs(), b"4", None).await.is_err());
    q.ack(&jobs(), &[leased[0].id]).await.unwrap();
    q.fail(&jobs(), leased[1].id, "boom", 0, true)
        .await
        .unwrap();
    q.publish(&jobs(), b"4", None).await.unwrap();
    q.publish(&jobs(), b"5", None).await.unwrap();
    // Dead letters beyond two: the oldest go.
    let more = q.lease(&jobs(), 2, 60_000).await.unwrap();
    for m in &more {
        q.fail(&jobs(), m.id, "boom", 0, true).await.unwrap();
    }
    let dead: Vec<Vec<u8>> = q
        .dead(&jobs(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(dead, [b"4".to_vec(), b"5".to_vec()]);
    // The totals are rebuilt from the file at the next open.
    drop(q);
    let q = SqliteQueue::open(&dir.path().join("q.db")).unwrap();
    q.set_quota(
        "a",
        QueueQuota {
            messages: 1,
            dead_letters: 2,
        },
    );
    assert!(
        q.publish(&jobs(), b"6", None).await.is_err(),
        "`3` still waits"
    );
}
