//! The embedded backend: one SQLite table per node in a
//! [`nubo_sqlite::GroupDb`] (WAL, group commit): a published message is in
//! the log before `publish` returns, so a killed node loses none, and
//! under load one commit carries many publishes, leases and acks: it is
//! opened with [`Pace::Gather`], so publishes that arrive together wait
//! for each other and share one commit.
//!
//! Leases and acknowledgements do not wait for their commit
//! ([`GroupDb::call_lazy`]): one lost in a crash makes a message due again,
//! and at-least-once delivery allows that. A lease lost that way does not
//! count as an attempt.
//!
//! Message ids are never reused, so that consumers can deduplicate by id.
//! `AUTOINCREMENT` would promise that too, but it reads and rewrites its
//! counter row on every insert, which puts one more page in every commit.
//! Instead ids are reserved in blocks of [`ID_BLOCK`] in the `queue_ids`
//! row: a publish reads the reservation (a cached one-row lookup) and
//! writes it only when its id reaches it. The reservation is read rather
//! than remembered so that one rolled back with its group is not trusted.

use crate::{Message, QueueBackend, QueueError, QueueName, Stats};
use nubo_sqlite::{DbError, GroupDb, Pace, now_ms};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// How many message ids one write of `queue_ids` reserves.
const ID_BLOCK: i64 = 1024;

pub struct SqliteQueue {
    db: GroupDb,
    /// The next message id, once the first publish has read it.
    next_id: Arc<Mutex<Option<i64>>>,
}

fn db_err(e: rusqlite::Error) -> QueueError {
    QueueError::Backend(e.to_string())
}

impl From<DbError> for QueueError {
    fn from(e: DbError) -> Self {
        QueueError::Backend(e.to_string())
    }
}

fn message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: r.get::<_, i64>(0)? as u64,
        body: r.get(1)?,
        attempt: r.get::<_, i64>(2)? as u32,
        published_at: r.get(3)?,
        last_error: r.get(4)?,
    })
}

// `attempts` counts deliveries handed out; `visible_at` is when the
// message is due (again); `dead` marks the dead-letter queue.
// Databases made before ids were reserved in blocks keep their
// `AUTOINCREMENT` table; explicit ids work the same in it.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        app TEXT NOT NULL,
        queue TEXT NOT NULL,
        body BLOB NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        visible_at INTEGER NOT NULL,
        leased INTEGER NOT NULL DEFAULT 0,
        dead INTEGER NOT NULL DEFAULT 0,
        published_at INTEGER NOT NULL,
        last_error TEXT
    );
    CREATE INDEX IF NOT EXISTS messages_due ON messages (app, queue, dead, visible_at, id);
    CREATE TABLE IF NOT EXISTS queue_ids (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        reserved INTEGER NOT NULL
    );";

impl SqliteQueue {
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        Ok(Self {
            db: GroupDb::open(path, "queue-db", SCHEMA, Pace::Gather)?,
            next_id: Arc::new(Mutex::new(None)),
        })
    }

    /// Runs `f` in the next group transaction; its result once committed.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        self.db.call(f).await
    }

    /// Like [`with`](Self::with), answered before the commit (see above).
    async fn with_lazy<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        self.db.call_lazy(f).await
    }
}

#[async_trait::async_trait]
impl QueueBackend for SqliteQueue {
    async fn publish(&self, q: &QueueName, body: &[u8]) -> Result<u64, QueueError> {
        crate::check_body(body)?;
        let now = now_ms();
        let (q, body) = (q.clone(), body.to_vec());
        let next_id = self.next_id.clone();
        self.with(move |db| {
            let id = take_id(db, &next_id).map_err(db_err)?;
            db.prepare_cached(
                "INSERT INTO messages (id, app, queue, body, visible_at, published_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            )
            .and_then(|mut s| s.execute(params![id, q.app, q.queue, body, now]))
            .map_err(db_err)?;
            Ok(id as u64)
        })
        .await
    }

    async fn lease(
        &self,
        q: &QueueName,
        max: usize,
        visibility_ms: u64,
    ) -> Result<Vec<Message>, QueueError> {
        let now = now_ms();
        let q = q.clone();
        // Atomic without a transaction of its own: the group transaction
        // holds the database and nothing else runs meanwhile.
        self.with_lazy(move |db| {
            // One statement for the whole lease, rather than a `SELECT`
            // and then an `UPDATE` run (bind, step, reset) per message.
            // The oldest due messages are chosen as before; `RETURNING`
            // gives them in no set order, so they are put back in id
            // (publish) order.
            let until = now.saturating_add(visibility_ms as i64);
            let mut found: Vec<Message> = db
                .prepare_cached(
                    "UPDATE messages SET attempts = attempts + 1, leased = 1, visible_at = ?5
                     WHERE id IN (
                       SELECT id FROM messages
                       WHERE app = ?1 AND queue = ?2 AND dead = 0 AND visible_at <= ?3
                       ORDER BY visible_at, id LIMIT ?4)
                     RETURNING id, body, attempts, published_at, last_error",
                )
                .and_then(|mut s| {
                    s.query_map(params![q.app, q.queue, now, max as i64, until], message)?
                        .collect()
                })
                .map_err(db_err)?;
            found.sort_unstable_by_key(|m| m.id);
            Ok(found)
        })
        .await
    }

    async fn ack(&self, _q: &QueueName, ids: &[u64]) -> Result<(), QueueError> {
        let ids = ids.to_vec();
        self.with_lazy(move |db| {
            let mut s = db
                .prepare_cached("DELETE FROM messages WHERE id = ?1")
                .map_err(db_err)?;
            for id in ids {
                s.execute([id as i64]).map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn fail(
        &self,
        _q: &QueueName,
        id: u64,
        error: &str,
        retry_in_ms: u64,
        dead: bool,
    ) -> Result<(), QueueError> {
        let due = now_ms().saturating_add(retry_in_ms as i64);
        let error = error.to_string();
        self.with(move |db| {
            db.prepare_cached(
                "UPDATE messages SET leased = 0, visible_at = ?2, dead = ?3, last_error = ?4 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id as i64, due, dead, error]))
            .map(|_| ())
            .map_err(db_err)
        })
        .await
    }

    async fn next_due_in(&self, q: &QueueName) -> Result<Option<u64>, QueueError> {
        let now = now_ms();
        let q = q.clone();
        self.with(move |db| {
            db.prepare_cached(
                "SELECT MIN(visible_at) FROM messages WHERE app = ?1 AND queue = ?2 AND dead = 0",
            )
            .and_then(|mut s| s.query_row(params![q.app, q.queue], |r| r.get::<_, Option<i64>>(0)))
            .map(|t| t.map(|t| t.saturating_sub(now).max(0) as u64))
            .map_err(db_err)
        })
        .await
    }

    async fn stats(&self, q: &QueueName) -> Result<Stats, QueueError> {
        let now = now_ms();
        let q = q.clone();
        self.with(move |db| {
            db.query_row(
                "SELECT
                   COALESCE(SUM(dead = 0 AND NOT (leased = 1 AND visible_at > ?3)), 0),
                   COALESCE(SUM(dead = 0 AND leased = 1 AND visible_at > ?3), 0),
                   COALESCE(SUM(dead = 1), 0)
                 FROM messages WHERE app = ?1 AND queue = ?2",
                params![q.app, q.queue, now],
                |r| {
                    Ok(Stats {
                        ready: r.get::<_, i64>(0)? as u64,
                        in_flight: r.get::<_, i64>(1)? as u64,
                        dead: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .map_err(db_err)
        })
        .await
    }

    async fn peek(&self, q: &QueueName, n: usize) -> Result<Vec<Message>, QueueError> {
        self.list(q, n, false).await
    }

    async fn dead(&self, q: &QueueName, n: usize) -> Result<Vec<Message>, QueueError> {
        self.list(q, n, true).await
    }

    async fn purge(&self, q: &QueueName, dead: bool) -> Result<u64, QueueError> {
        let q = q.clone();
        self.with(move |db| {
            db.execute(
                "DELETE FROM messages WHERE app = ?1 AND queue = ?2 AND dead = ?3",
                params![q.app, q.queue, dead],
            )
            .map(|n| n as u64)
            .map_err(db_err)
        })
        .await
    }
}

/// The id for a message inserted in the current transaction: the next one
/// in memory, with the reservation on disk moved past it when it reaches
/// it. Runs inside a group transaction, so nothing else touches the
/// counter meanwhile.
fn take_id(db: &Connection, next_id: &Mutex<Option<i64>>) -> rusqlite::Result<i64> {
    let reserved: Option<i64> = db
        .prepare_cached("SELECT reserved FROM queue_ids WHERE one = 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let mut next = next_id
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let id = match *next {
        Some(id) => id,
        // First publish since opening: past every id on disk, and past
        // what an `AUTOINCREMENT` table of an older database handed out.
        None => {
            let max: i64 = db.query_row("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| {
                r.get(0)
            })?;
            let autoincrement: bool = db.query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence')",
                [],
                |r| r.get(0),
            )?;
            let sequence: i64 = if autoincrement {
                db.query_row(
                    "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'messages'",
                    [],
                    |r| r.get(0),
                )?
            } else {
                0
            };
            (max.max(sequence) + 1).max(reserved.unwrap_or(0))
        }
    };
    if id >= reserved.unwrap_or(0) {
        db.prepare_cached("INSERT OR REPLACE INTO queue_ids (one, reserved) VALUES (1, ?1)")?
            .execute([id + ID_BLOCK])?;
    }
    *next = Some(id + 1);
    Ok(id)
}

impl SqliteQueue {
    async fn list(&self, q: &QueueName, n: usize, dead: bool) -> Result<Vec<Message>, QueueError> {
        let q = q.clone();
        self.with(move |db| {
            db.prepare_cached(
                "SELECT id, body, attempts, published_at, last_error FROM messages
                 WHERE app = ?1 AND queue = ?2 AND dead = ?3 ORDER BY id LIMIT ?4",
            )
            .and_then(|mut s| {
                s.query_map(params![q.app, q.queue, dead, n.min(10_000) as i64], message)?
                    .collect()
            })
            .map_err(db_err)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
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
            q.publish(&name, body).await.unwrap();
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
        let first = q.publish(&name, b"1").await.unwrap();
        // Message 1 fails and is due again after 2 and 3 were published:
        // it is due last, yet a lease of all three gives it first.
        let leased = q.lease(&name, 1, 60_000).await.unwrap();
        assert_eq!(leased[0].id, first);
        for body in [b"2", b"3"] {
            q.publish(&name, body).await.unwrap();
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
                let id = q.publish(&jobs(), body).await.unwrap();
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
            let db = Connection::open(&path).unwrap();
            db.execute_batch(&SCHEMA.replace(
                "id INTEGER PRIMARY KEY,",
                "id INTEGER PRIMARY KEY AUTOINCREMENT,",
            ))
            .unwrap();
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
        assert_eq!(q.publish(&jobs(), b"next").await.unwrap(), 6);
    }

    #[tokio::test]
    async fn lease_ack_retry_and_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let q = SqliteQueue::open(&dir.path().join("q.db")).unwrap();
        let name = QueueName {
            app: "a".into(),
            queue: "jobs".into(),
        };
        let first = q.publish(&name, b"one").await.unwrap();
        q.publish(&name, b"two").await.unwrap();
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
            q.publish(&name, &vec![0; crate::MAX_BODY + 1])
                .await
                .is_err()
        );
        assert_eq!(crate::backoff_ms(1000, 1), 1000);
        assert_eq!(crate::backoff_ms(1000, 4), 8000);
        assert_eq!(crate::backoff_ms(1000, 40), 3_600_000);
    }
}
