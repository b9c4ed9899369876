//! The embedded backend: one SQLite table per node in a
//! [`nubo_sqlite::GroupDb`] (WAL, group commit): a published message is in
//! the log before `publish` returns, so a killed node loses none, and
//! under load one commit carries many publishes and acks: it is opened
//! with [`Pace::Gather`], so publishes that arrive together wait for each
//! other and share one commit.
//!
//! Leases are not written at all, and acknowledgements are not waited
//! for: [`lanes`] says why and what that means after a crash.
//!
//! Message ids are never reused, so that consumers can deduplicate by id.
//! `AUTOINCREMENT` would promise that too, but it reads and rewrites its
//! counter row on every insert, which puts one more page in every commit.
//! Instead ids are reserved in blocks of [`ID_BLOCK`] in the `queue_ids`
//! row: a publish reads the reservation (a cached one-row lookup) and
//! writes it only when its id reaches it. The reservation is read rather
//! than remembered so that one rolled back with its group is not trusted.

mod lanes;
#[cfg(test)]
mod tests;

use crate::{Message, QueueBackend, QueueError, QueueName, QueueQuota, Quotas, Stats};
use lanes::Lanes;
use nubo_sqlite::{DbError, Disk, GroupDb, Pace, Usage, now_ms};
use nubo_wasm::Principal;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// How many message ids one write of `queue_ids` reserves.
const ID_BLOCK: i64 = 1024;

pub struct SqliteQueue {
    db: GroupDb,
    /// The next message id, once the first publish has read it.
    next_id: Arc<Mutex<Option<i64>>>,
    lanes: Arc<Mutex<Lanes>>,
    quotas: Arc<Quotas>,
    disk: Disk,
}

fn db_err(e: rusqlite::Error) -> QueueError {
    DbError::from(e).into()
}

impl From<DbError> for QueueError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::DiskFull => QueueError::DiskFull,
            e => QueueError::backend("SQLite", e),
        }
    }
}

/// Each app's messages waiting or in delivery, for its quota.
const LIVE: Usage = Usage {
    table: "queue_live",
    source: "messages",
    size: "(ROW.dead = 0)",
    columns: "dead",
};

/// Each app's dead letters, for its quota.
const DEAD: Usage = Usage {
    table: "queue_dead",
    source: "messages",
    size: "(ROW.dead = 1)",
    columns: "dead",
};

/// Drops `app`'s oldest dead letters beyond `keep`; how many.
fn trim_dead(db: &Connection, app: &str, keep: u64) -> Result<u64, QueueError> {
    let excess = DEAD.total(db, app)?.saturating_sub(keep);
    if excess == 0 {
        return Ok(0);
    }
    let n = db
        .prepare_cached(
            "DELETE FROM messages WHERE id IN
                 (SELECT id FROM messages WHERE app = ?1 AND dead = 1 ORDER BY id LIMIT ?2)",
        )
        .and_then(|mut s| s.execute(params![app, excess as i64]))
        .map_err(db_err)?;
    Ok(n as u64)
}

/// The columns [`message`] reads, in its order.
macro_rules! columns {
    () => {
        "id, body, attempts, published_at, last_error, principal"
    };
}

/// A message from a row of [`COLUMNS`]; `delivering` counts the delivery
/// about to be made as an attempt.
fn message(r: &rusqlite::Row<'_>, delivering: bool) -> rusqlite::Result<Message> {
    Ok(Message {
        id: r.get::<_, i64>(0)? as u64,
        body: r.get(1)?,
        attempt: (r.get::<_, i64>(2)? as u32).saturating_add(u32::from(delivering)),
        published_at: r.get(3)?,
        last_error: r.get(4)?,
        by: Principal::from_json(r.get::<_, Option<String>>(5)?.as_deref()),
    })
}

fn lock(lanes: &Mutex<Lanes>) -> std::sync::MutexGuard<'_, Lanes> {
    lanes.lock().unwrap_or_else(|p| p.into_inner())
}

// `attempts` counts deliveries that failed or ran out of time (a lease
// is not written: see `lanes`); `visible_at` is when the message is due
// (again); `dead` marks the dead-letter queue. `leased` is not written;
// a database from an older node may have it set, and `visible_at` at the
// lease's end, which a lane reads as "due then". Messages are read in id order,
// which the table's own key gives: no index. The index by due time that
// written leases needed cost every publish and every acknowledgement a
// second b-tree to change and its pages in every commit; what scans the
// table (a lease reading past memory, `stats`, `peek`, `dead`) is
// rare, and a lease reads on from where the last one stopped.
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
        last_error TEXT,
        principal TEXT
    );
    DROP INDEX IF EXISTS messages_due;
    CREATE TABLE IF NOT EXISTS queue_ids (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        reserved INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS messages_dead ON messages (app, id) WHERE dead = 1;";

/// Rows one read of the table takes at least, and at most per lease.
const READ_ROWS: usize = 256;
const READ_BUDGET: usize = 8192;

impl SqliteQueue {
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        let schema = format!("{SCHEMA}\n{}\n{}", LIVE.schema(), DEAD.schema());
        // A database made without the `principal` column gets it added.
        let columns = [("messages", "principal", "TEXT")];
        let db = GroupDb::open_with_columns(path, "queue-db", &schema, Pace::Gather, &columns)?;
        let lanes = Arc::new(Mutex::new(Lanes::default()));
        let hook = lanes.clone();
        db.after_each_group(move |committed| lock(&hook).group_done(committed));
        Ok(Self {
            db,
            next_id: Arc::new(Mutex::new(None)),
            lanes,
            quotas: Arc::default(),
            disk: Disk::new(path),
        })
    }

    /// Runs `f` in the next group transaction; its result once committed.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        self.db.call(f).await
    }

    /// Like [`with`](Self::with), answered before the commit: for reads,
    /// and for changes a crash may lose.
    async fn with_lazy<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        self.db.call_lazy(f).await
    }
}

#[async_trait::async_trait]
impl QueueBackend for SqliteQueue {
    async fn publish(
        &self,
        q: &QueueName,
        body: &[u8],
        by: Option<&Principal>,
    ) -> Result<u64, QueueError> {
        crate::check_body(body)?;
        self.disk.room()?;
        let now = now_ms();
        let (q, body, by) = (q.clone(), body.to_vec(), by.cloned());
        let (next_id, lanes) = (self.next_id.clone(), self.lanes.clone());
        let quota = self.quotas.messages(&q.app);
        self.with(move |db| {
            if LIVE.total(db, &q.app)? >= quota {
                return Err(QueueError::OverQuota {
                    app: q.app.clone(),
                    quota,
                });
            }
            let id = take_id(db, &next_id).map_err(db_err)?;
            db.prepare_cached(
                "INSERT INTO messages (id, app, queue, body, visible_at, published_at, principal) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![id, q.app, q.queue, body, now, by.as_ref().map(Principal::to_json)])
            })
            .map_err(db_err)?;
            let m = Message {
                id: id as u64,
                body,
                attempt: 1,
                published_at: now,
                last_error: None,
                by,
            };
            lock(&lanes).published(q, m);
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
        let until = now.saturating_add(visibility_ms as i64);
        {
            // A full lease from memory needs no database call. One that
            // would come back short goes through the database task: the
            // publishes of its group join it, and batches stay full.
            let mut lanes = lock(&self.lanes);
            let lane = lanes.lane(q);
            if !lane.needs_table(now, max) && lane.ready_len() >= max {
                let mut out = Vec::with_capacity(max.min(1024));
                lane.take_ready(max, &mut out);
                for m in &out {
                    lane.lease(m.id, until);
                }
                return Ok(out);
            }
        }
        let (q, lanes) = (q.clone(), self.lanes.clone());
        // On the database task, so no publish or read of the table comes
        // between what the lane knows and what the table says.
        self.with_lazy(move |db| {
            let mut lanes = lock(&lanes);
            lease_reading(db, &mut lanes, &q, max, now, until).map_err(|e| {
                // It may have taken messages out of the lane before it
                // failed: read everything again rather than lose them.
                lanes.forget();
                db_err(e)
            })
        })
        .await
    }

    async fn ack(&self, q: &QueueName, ids: &[u64]) -> Result<(), QueueError> {
        {
            let mut lanes = lock(&self.lanes);
            let lane = lanes.lane(q);
            for &id in ids {
                lane.settle(id);
            }
        }
        // Not waited for: lost in a crash, the messages are delivered
        // again.
        let ids = ids.to_vec();
        self.db.send(move |db| {
            let mut s = db.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
            for id in ids {
                s.execute([id as i64])?;
            }
            Ok(())
        });
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
        let due = now_ms().saturating_add(retry_in_ms as i64);
        let error = error.to_string();
        let (q, lanes) = (q.clone(), self.lanes.clone());
        let keep = self.quotas.dead_letters(&q.app);
        self.with(move |db| {
            db.prepare_cached(
                "UPDATE messages SET attempts = attempts + 1, visible_at = ?2, dead = ?3, last_error = ?4 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id as i64, due, dead, error]))
            .map_err(db_err)?;
            if dead {
                let dropped = trim_dead(db, &q.app, keep)?;
                if dropped > 0 {
                    tracing::warn!(app = %q.app, dropped, keep, "dropped the oldest dead letters: the app keeps at most `dead_letters` (in [quotas])");
                }
            }
            let mut lanes = lock(&lanes);
            let lane = lanes.lane(&q);
            if dead {
                lane.settle(id);
            } else {
                lane.retry_at(id, due);
            }
            Ok(())
        })
        .await
    }

    async fn next_due_in(&self, q: &QueueName) -> Result<Option<u64>, QueueError> {
        Ok(lock(&self.lanes).lane(q).next_due(now_ms()))
    }

    async fn stats(&self, q: &QueueName) -> Result<Stats, QueueError> {
        let (q, lanes) = (q.clone(), self.lanes.clone());
        self.with_lazy(move |db| {
            let (live, dead): (i64, i64) = db
                .query_row(
                    "SELECT COALESCE(SUM(dead = 0), 0), COALESCE(SUM(dead = 1), 0)
                     FROM messages WHERE app = ?1 AND queue = ?2",
                    params![q.app, q.queue],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db_err)?;
            let in_flight = lock(&lanes).lane(&q).in_flight() as u64;
            Ok(Stats {
                ready: (live as u64).saturating_sub(in_flight),
                in_flight: in_flight.min(live as u64),
                dead: dead as u64,
            })
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
        let (q, lanes) = (q.clone(), self.lanes.clone());
        self.with(move |db| {
            let n = db
                .execute(
                    "DELETE FROM messages WHERE app = ?1 AND queue = ?2 AND dead = ?3",
                    params![q.app, q.queue, dead],
                )
                .map_err(db_err)?;
            if !dead {
                lock(&lanes).purged(&q);
            }
            Ok(n as u64)
        })
        .await
    }

    async fn purge_app(&self, app: &str) -> Result<u64, QueueError> {
        let (app, lanes) = (app.to_string(), self.lanes.clone());
        self.with(move |db| {
            let n = db
                .execute("DELETE FROM messages WHERE app = ?1", params![app])
                .map_err(db_err)?;
            lock(&lanes).purged_app(&app);
            Ok(n as u64)
        })
        .await
    }

    fn set_quota(&self, app: &str, quota: QueueQuota) {
        self.quotas.set(app, quota);
    }

    fn keep_free(&self, bytes: u64) {
        self.disk.keep_free(bytes);
    }
}

/// A lease that reads the table: leases that ran out and retries that are
/// due first (they are the oldest), then what is ready, then messages not
/// read yet, then those its own group published. Runs on the database
/// task.
fn lease_reading(
    db: &Connection,
    lanes: &mut Lanes,
    q: &QueueName,
    max: usize,
    now: i64,
    until: i64,
) -> rusqlite::Result<Vec<Message>> {
    let lane = lanes.lane(q);
    let mut out = Vec::new();
    // A lease that ran out is a delivery that never answered: an attempt.
    // (A purged message is gone from the table: nothing to deliver.)
    for id in lane.expired(now, max) {
        let sql = concat!(
            "UPDATE messages SET attempts = attempts + 1 WHERE id = ?1 AND dead = 0 RETURNING ",
            columns!()
        );
        let mut again = db.prepare_cached(sql)?;
        out.extend(
            again
                .query_row([id as i64], |r| message(r, true))
                .optional()?,
        );
    }
    for id in lane.due_later(now, max - out.len()) {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM messages WHERE id = ?1 AND dead = 0"
        );
        let mut due = db.prepare_cached(sql)?;
        out.extend(
            due.query_row([id as i64], |r| message(r, true))
                .optional()?,
        );
    }
    lane.take_ready(max, &mut out);
    let mut budget = READ_BUDGET;
    loop {
        let (after, complete) = lane.unread();
        if complete || out.len() >= max || budget == 0 {
            break;
        }
        let limit = (max - out.len()).clamp(READ_ROWS, budget.max(READ_ROWS));
        let sql = concat!(
            "SELECT ",
            columns!(),
            ", visible_at FROM messages
             WHERE app = ?1 AND queue = ?2 AND dead = 0 AND id > ?3 ORDER BY id LIMIT ?4"
        );
        let rows: Vec<(Message, i64)> = db
            .prepare_cached(sql)?
            .query_map(params![q.app, q.queue, after as i64, limit as i64], |r| {
                Ok((message(r, true)?, r.get(6)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        budget = budget.saturating_sub(rows.len().max(1));
        let all = rows.len() < limit;
        lane.read(rows, all, now, max, &mut out);
    }
    lanes.take_pending(q, max, &mut out);
    let lane = lanes.lane(q);
    for m in &out {
        lane.lease(m.id, until);
    }
    // Retries come first in the lease but not in the batch: a batch is in
    // publish order.
    out.sort_unstable_by_key(|m| m.id);
    Ok(out)
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
            db.prepare_cached(concat!(
                "SELECT ",
                columns!(),
                " FROM messages
                     WHERE app = ?1 AND queue = ?2 AND dead = ?3 ORDER BY id LIMIT ?4"
            ))
            .and_then(|mut s| {
                s.query_map(params![q.app, q.queue, dead, n.min(10_000) as i64], |r| {
                    message(r, false)
                })?
                .collect()
            })
            .map_err(db_err)
        })
        .await
    }
}
