//! One SQLite database per service, owned by one thread, with group commit.
//!
//! Durable services answer a caller only once its change is committed. A
//! transaction per call makes the commit the bottleneck; a mutex around a
//! shared connection makes tokio workers wait on each other. Here one
//! thread owns the connection, takes every call waiting at that moment,
//! runs them all in one transaction and then answers each: under load one
//! commit carries dozens of calls.
//!
//! When nothing is queued and the connection is free, a call runs at once
//! on the caller's thread instead: a lone caller then pays no hand-off to
//! the database thread and back (two thread wake-ups, which on a VM cost
//! more than the transaction). Under load calls queue, and group commit
//! takes over.
//!
//! Some changes need not be durable before the caller goes on: a queue's
//! lease or acknowledgement, whose loss in a crash only means a message is
//! delivered again. [`GroupDb::call_lazy`] answers those as soon as they
//! ran; their transaction stays open and the next group commits it, so
//! they add no commit of their own.
//!
//! The file uses WAL with `synchronous = NORMAL` (a committed change is in
//! the log, which survives a killed process) and exclusive locking (only
//! the node opens it, so WAL's index stays in memory and no file lock is
//! taken per transaction).

use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Sqlite(String),
    #[error("the database thread `{0}` stopped")]
    Stopped(&'static str),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e.to_string())
    }
}

/// Milliseconds since the Unix epoch: how the services store times.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What a call does inside the group transaction; it returns what to do
/// once the transaction's fate is known.
type Job = Box<dyn FnOnce(&Connection) -> Box<dyn FnOnce(Result<(), DbError>) + Send> + Send>;

/// Most calls in one transaction.
const GROUP: usize = 512;

/// The connection, and whether a transaction holding lazy changes is
/// open (the next group, or the flush queued with it, commits it).
struct Conn {
    db: Connection,
    open: bool,
}

impl Conn {
    fn begin(&mut self) -> Result<(), DbError> {
        if !self.open {
            exec(&self.db, "BEGIN IMMEDIATE")?;
            self.open = true;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), DbError> {
        self.open = false;
        let committed = exec(&self.db, "COMMIT");
        if committed.is_err() {
            let _ = self.db.execute_batch("ROLLBACK");
        }
        committed
    }
}

pub struct GroupDb {
    jobs: mpsc::Sender<Job>,
    db: Arc<Mutex<Conn>>,
    /// Calls sent to the thread and not yet taken.
    queued: Arc<AtomicUsize>,
    name: &'static str,
}

impl GroupDb {
    /// Opens (creating) `path`, runs `schema`, and starts the thread `name`.
    pub fn open(path: &Path, name: &'static str, schema: &str) -> Result<Self, DbError> {
        let db = Connection::open(path)?;
        // Must be set before WAL mode is.
        db.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        // A checkpoint syncs the database file: one every 10,000 pages of
        // log (40 MB) rather than every 1,000 keeps that off the hot path.
        db.pragma_update(None, "wal_autocheckpoint", 10_000)?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        // SQLite plans `LIMIT ?` with the bound value and marks the
        // statement stale whenever that parameter is bound again, so every
        // run of a cached `… LIMIT ?` query parsed and planned it anew (8%
        // of the node's CPU in the queue bench, all in the lease query).
        // The query planner stability guarantee plans once per statement.
        db.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        db.execute_batch(schema)?;
        let db = Arc::new(Mutex::new(Conn { db, open: false }));
        let queued = Arc::new(AtomicUsize::new(0));
        let (jobs, rx) = mpsc::channel::<Job>();
        let (thread_db, thread_queued) = (db.clone(), queued.clone());
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || commit_loop(&thread_db, &thread_queued, rx))
            .map_err(|e| DbError::Sqlite(format!("cannot start thread `{name}`: {e}")))?;
        Ok(Self {
            jobs,
            db,
            queued,
            name,
        })
    }

    /// Runs `f` in the next group transaction without waiting for it.
    /// Calls made after this one by the same caller run after it.
    pub fn send(&self, f: impl FnOnce(&Connection) -> Result<(), DbError> + Send + 'static) {
        let name = self.name;
        let job: Job = Box::new(move |db| {
            let result = f(db);
            Box::new(move |committed: Result<(), DbError>| {
                if let Err(e) = committed.and(result) {
                    tracing::error!("{name}: a write failed: {e}");
                }
            })
        });
        if let Err(e) = self.queue(job) {
            tracing::error!("{name}: {e}");
        }
    }

    /// Runs `f` in the next group transaction; its result once committed.
    /// An error from `f` does not roll back the others' work: `f` must
    /// leave nothing half-done when it fails.
    pub async fn call<T: Send + 'static, E: From<DbError> + Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        if self.queued.load(Ordering::Acquire) == 0
            && let Ok(mut conn) = self.db.try_lock()
        {
            let began = conn.begin();
            let result = f(&conn.db);
            let committed = began.and_then(|()| conn.commit());
            return committed.map_err(E::from).and(result);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |db| {
            let result = f(db);
            Box::new(move |committed: Result<(), DbError>| {
                let _ = tx.send(committed.map_err(E::from).and(result));
            })
        });
        self.queue(job).map_err(E::from)?;
        rx.await.map_err(|_| E::from(DbError::Stopped(self.name)))?
    }

    /// Like [`call`](Self::call), but answers as soon as `f` ran, before
    /// its changes are committed: they go with the next group, which is
    /// queued now if none is. Only for changes a crash may lose.
    pub async fn call_lazy<T: Send + 'static, E: From<DbError> + Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        if self.queued.load(Ordering::Acquire) == 0
            && let Ok(mut conn) = self.db.try_lock()
        {
            let opened = !conn.open;
            conn.begin().map_err(E::from)?;
            let result = f(&conn.db);
            if opened {
                // Counted while the connection is held: from here until the
                // flush is taken, callers queue behind it instead of taking
                // the connection (and its open transaction) themselves.
                self.queued.fetch_add(1, Ordering::AcqRel);
                drop(conn);
                let flush: Job = Box::new(|_| Box::new(|_| {}));
                if self.jobs.send(flush).is_err() {
                    self.queued.fetch_sub(1, Ordering::AcqRel);
                    return Err(E::from(DbError::Stopped(self.name)));
                }
            }
            return result;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |db| {
            let _ = tx.send(f(db));
            Box::new(|_| {})
        });
        self.queue(job).map_err(E::from)?;
        rx.await.map_err(|_| E::from(DbError::Stopped(self.name)))?
    }

    fn queue(&self, job: Job) -> Result<(), DbError> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.jobs.send(job).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(DbError::Stopped(self.name));
        }
        Ok(())
    }
}

fn exec(db: &Connection, sql: &str) -> Result<(), DbError> {
    db.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(DbError::from)
}

/// The database thread: waits for a call, takes all others waiting, runs
/// them in one transaction, commits, answers. Ends with the last sender.
fn commit_loop(db: &Mutex<Conn>, queued: &AtomicUsize, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        // Locked before the count drops: a caller that sees nothing queued
        // and takes the connection runs after this group, never before.
        let mut conn = db.lock().unwrap_or_else(|p| p.into_inner());
        queued.fetch_sub(group.len(), Ordering::AcqRel);
        // Cached statements: parsing BEGIN and COMMIT anew cost as much as
        // the statements they wrap.
        let began = conn.begin();
        let mut answers = Vec::with_capacity(group.len());
        for job in group {
            answers.push(job(&conn.db));
        }
        let committed = began.and_then(|()| conn.commit());
        drop(conn);
        for answer in answers {
            answer(committed.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_calls_commit_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let schema = "CREATE TABLE IF NOT EXISTS t (n INTEGER)";
        {
            let db = std::sync::Arc::new(GroupDb::open(&path, "test-db", schema).unwrap());
            let mut tasks = Vec::new();
            for n in 0..100 {
                let db = db.clone();
                tasks.push(tokio::spawn(async move {
                    db.call(move |c| {
                        c.execute("INSERT INTO t VALUES (?1)", [n])
                            .map_err(DbError::from)
                    })
                    .await
                }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
        }
        let db = GroupDb::open(&path, "test-db", schema).unwrap();
        assert_eq!(db.call(sum).await.unwrap(), (0..100).sum::<i64>());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn lazy_changes_are_seen_at_once_and_committed_without_another_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let schema = "CREATE TABLE IF NOT EXISTS t (n INTEGER)";
        {
            let db = GroupDb::open(&path, "test-db", schema).unwrap();
            for n in 1..=3 {
                db.call_lazy(move |c| {
                    c.execute("INSERT INTO t VALUES (?1)", [n])
                        .map_err(DbError::from)
                })
                .await
                .unwrap();
            }
            assert_eq!(db.call_lazy(sum).await.unwrap(), 6);
            // Dropped with nothing else called: the queued flush commits.
        }
        // The old connection lets go of its exclusive lock when its thread
        // ends; the busy timeout waits for that.
        let db = GroupDb::open(&path, "test-db", schema).unwrap();
        assert_eq!(db.call(sum).await.unwrap(), 6);
    }

    fn sum(c: &Connection) -> Result<i64, DbError> {
        c.query_row("SELECT SUM(n) FROM t", [], |r| r.get(0))
            .map_err(DbError::from)
    }
}
