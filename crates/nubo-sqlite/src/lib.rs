//! One SQLite database per service, with group commit.
//!
//! Durable services answer a caller only once its change is committed. A
//! transaction per call makes the commit the bottleneck; a mutex around a
//! shared connection makes tokio workers wait on each other. Here one
//! task owns the connection: a call adds its work to a list and wakes the
//! task, which first yields once, so that every request already readable
//! on that worker runs and adds its own, and then runs the whole list in
//! one transaction and answers each caller. This is the event loop's group
//! commit that Redis does before it sleeps: under load one commit carries
//! dozens of calls, and a lone call costs one extra turn of the scheduler.
//! A database whose calls mostly come one after another, each waiting for
//! the last (a task's spawn, start and outcome), opens with
//! [`Pace::Eager`] instead: a call that finds it idle runs at once on the
//! caller's thread.
//!
//! The task runs on a tokio worker, not on a thread of its own. A thread
//! of its own meant a futex wake-up to hand it work and another to hand
//! back each answer, and on this VM those wake-ups and the context
//! switches they cause cost more than the SQL (10% of the node's CPU in
//! the queue bench). SQLite's work here is short: WAL with
//! `synchronous = NORMAL` writes to the page cache and syncs only at a
//! checkpoint, one per 40 MB of log.
//!
//! Some changes need not be durable before the caller goes on: a queue's
//! lease or acknowledgement, whose loss in a crash only means a message is
//! delivered again. [`GroupDb::call_lazy`] answers those as soon as they
//! ran; they are committed with the rest of their group.
//!
//! The file uses WAL with `synchronous = NORMAL` (a committed change is in
//! the log, which survives a killed process) and exclusive locking (only
//! the node opens it, so WAL's index stays in memory and no file lock is
//! taken per transaction).

mod disk;
mod shared;
mod usage;

pub use disk::Disk;
pub use shared::SharedDb;
pub use usage::{Limits, Quotas, Usage};

use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Sqlite(String),
    #[error("the database task `{0}` stopped")]
    Stopped(&'static str),
    #[error("a call to the database `{0}` panicked")]
    Panicked(&'static str),
    /// The disk (or the file system's quota) has no room for the write;
    /// SQLite rolled it back.
    #[error("the disk is full")]
    DiskFull,
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => DbError::DiskFull,
            _ => DbError::Sqlite(e.to_string()),
        }
    }
}

/// Milliseconds since the Unix epoch: how the services store times.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// When SQLite syncs a commit to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// The commit is in the write-ahead log, which survives a killed
    /// process; the log is synced at checkpoints, so a power cut can lose
    /// the commits since the last one.
    Normal,
    /// Every commit syncs the log before it returns.
    Full,
}

/// Opens (creating) the database file at `path` the way every Nubo
/// service does: WAL, exclusive locking (only the node opens it, so WAL's
/// index stays in memory and no file lock is taken per transaction), a
/// checkpoint per 10,000 pages of log (40 MB, which keeps the sync a
/// checkpoint costs off the hot path), a 5 s busy timeout, and the query
/// planner stability guarantee.
pub fn open(path: &Path, synchronous: Synchronous) -> Result<Connection, DbError> {
    let db = Connection::open(path)?;
    // Must be set before WAL mode is.
    db.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    db.pragma_update(None, "synchronous", sync)?;
    db.pragma_update(None, "wal_autocheckpoint", 10_000)?;
    db.busy_timeout(std::time::Duration::from_secs(5))?;
    // SQLite plans `LIMIT ?` with the bound value and marks the statement
    // stale whenever that parameter is bound again, so every run of a
    // cached `… LIMIT ?` query would be parsed and planned anew. The query
    // planner stability guarantee plans once per statement.
    db.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(db)
}

/// Adds `column` to `table` unless it has it.
pub fn add_column(db: &Connection, table: &str, column: &str, decl: &str) -> Result<(), DbError> {
    let mut stmt = db.prepare(&format!(
        "SELECT count(*) FROM pragma_table_info('{table}') WHERE name = ?1"
    ))?;
    let has: i64 = stmt.query_row([column], |r| r.get(0))?;
    if has == 0 {
        db.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

/// What a call does inside the group transaction; it returns what to do
/// once the transaction's fate is known.
type Job = Box<dyn FnOnce(&Connection) -> Box<dyn FnOnce(Result<(), DbError>) + Send> + Send>;

/// Most calls in one transaction.
const GROUP: usize = 512;

/// What callers and the database task share.
struct Shared {
    /// Calls not yet taken, in the order they were made.
    jobs: Mutex<Vec<Job>>,
    /// Wakes the task when `jobs` stops being empty, or on close.
    wake: Notify,
    /// Taken by the [`GroupDb`]'s drop, which runs what is left and closes
    /// the database at once: reopening the file right after must not
    /// wait for the task to get its turn.
    db: Mutex<Option<Connection>>,
    /// Told of each group's fate before its callers are answered.
    after_group: std::sync::OnceLock<Box<dyn Fn(bool) + Send + Sync>>,
}

impl Shared {
    /// Tells the hook, if any, how a group ended.
    fn group_ended(&self, committed: bool) {
        if let Some(hook) = self.after_group.get() {
            hook(committed);
        }
    }
}

/// When a call that finds the database idle runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// At once, on the caller's thread, in a transaction of its own: the
    /// least latency for calls that depend on each other one after
    /// another (a task's spawn, start and outcome). Under load calls
    /// queue and share commits as with [`Gather`](Pace::Gather).
    Eager,
    /// Always through the task, after the worker's other ready requests
    /// had their turn: the fewest commits when many independent callers
    /// write at once (publishes), at the cost of one turn of the
    /// scheduler for a lone call.
    Gather,
}

pub struct GroupDb {
    shared: Arc<Shared>,
    pace: Pace,
    name: &'static str,
}

impl GroupDb {
    /// Opens (creating) `path`, runs `schema`, and starts the task `name`
    /// on the current tokio runtime (on a thread of its own outside one).
    pub fn open(
        path: &Path,
        name: &'static str,
        schema: &str,
        pace: Pace,
    ) -> Result<Self, DbError> {
        Self::open_with_columns(path, name, schema, pace, &[])
    }

    /// Like [`GroupDb::open`], then adds each `(table, column, type)` a
    /// table made by an older node lacks (`schema` creates new tables
    /// with them).
    pub fn open_with_columns(
        path: &Path,
        name: &'static str,
        schema: &str,
        pace: Pace,
        columns: &[(&str, &str, &str)],
    ) -> Result<Self, DbError> {
        let db = open(path, Synchronous::Normal)?;
        db.execute_batch(schema)?;
        for (table, column, decl) in columns {
            add_column(&db, table, column, decl)?;
        }
        let shared = Arc::new(Shared {
            jobs: Mutex::new(Vec::new()),
            wake: Notify::new(),
            db: Mutex::new(Some(db)),
            after_group: std::sync::OnceLock::new(),
        });
        let task = commit_loop(shared.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(task)),
            Err(_) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .map_err(|e| DbError::Sqlite(format!("cannot start `{name}`: {e}")))?;
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || rt.block_on(task))
                    .map_err(|e| DbError::Sqlite(format!("cannot start `{name}`: {e}")))?;
            }
        }
        Ok(Self { shared, pace, name })
    }

    /// Calls `hook` on the database task after each group has committed
    /// (`true`) or rolled back (`false`), before any of its callers is
    /// answered. A service that mirrors some rows in memory applies what
    /// a group wrote only once it is durable, and in commit order, which
    /// its callers' own continuations could not promise. One hook per
    /// database: `false` if one was set already.
    pub fn after_each_group(&self, hook: impl Fn(bool) + Send + Sync + 'static) -> bool {
        self.shared.after_group.set(Box::new(hook)).is_ok()
    }

    /// Runs `f` in the next group transaction without waiting for it.
    /// Calls made after this one by the same caller run after it.
    pub fn send(&self, f: impl FnOnce(&Connection) -> Result<(), DbError> + Send + 'static) {
        let name = self.name;
        self.queue(Box::new(move |db| {
            let result = f(db);
            Box::new(move |committed: Result<(), DbError>| {
                if let Err(e) = committed.and(result) {
                    tracing::error!("{name}: a write failed: {e}");
                }
            })
        }));
    }

    /// Runs `f` in the next group transaction; its result once committed.
    /// An error from `f` does not roll back the others' work: `f` must
    /// leave nothing half-done when it fails.
    pub async fn call<T: Send + 'static, E: From<DbError> + Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        self.submit(f, false).await
    }

    /// Like [`call`](Self::call), but answers as soon as `f` ran, before
    /// its changes are committed with the rest of the group. Only for
    /// changes a crash may lose.
    pub async fn call_lazy<T: Send + 'static, E: From<DbError> + Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        self.submit(f, true).await
    }

    /// Runs `f` here or in the next group; answers when it ran (`lazy`) or
    /// once its group committed.
    async fn submit<T: Send + 'static, E: From<DbError> + Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        lazy: bool,
    ) -> Result<T, E> {
        let f = match self.run_here(f) {
            Ok(done) => return done,
            Err(f) => f,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue(Box::new(move |db| {
            let result = f(db);
            if lazy {
                let _ = tx.send(result);
                return Box::new(|_| {});
            }
            Box::new(move |committed: Result<(), DbError>| {
                let _ = tx.send(committed.map_err(E::from).and(result));
            })
        }));
        rx.await.map_err(|_| E::from(DbError::Stopped(self.name)))?
    }

    /// With [`Pace::Eager`], runs `f` at once when nothing is queued and
    /// the database is free; `Err(f)` when it must queue.
    fn run_here<T, E: From<DbError>, F: FnOnce(&Connection) -> Result<T, E>>(
        &self,
        f: F,
    ) -> Result<Result<T, E>, F> {
        if self.pace != Pace::Eager {
            return Err(f);
        }
        let Ok(db) = self.shared.db.try_lock() else {
            return Err(f);
        };
        let Some(db) = db.as_ref() else {
            return Err(f);
        };
        if !self
            .shared
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
        {
            return Err(f);
        }
        let began = begin(db);
        let result = f(db);
        let committed = began.and_then(|()| exec(db, "COMMIT"));
        if committed.is_err() {
            let _ = db.execute_batch("ROLLBACK");
        }
        self.shared.group_ended(committed.is_ok());
        Ok(committed.map_err(E::from).and(result))
    }

    fn queue(&self, job: Job) {
        let mut jobs = self.shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.push(job);
        // The task takes the whole list at once, so it was told when the
        // list stopped being empty and will see this job too.
        let first = jobs.len() == 1;
        drop(jobs);
        if first {
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for GroupDb {
    fn drop(&mut self) {
        let shared = &self.shared;
        let mut db = shared.db.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = db.take() {
            loop {
                let group = take_group(shared);
                if group.is_empty() {
                    break;
                }
                run_group(shared, &db, group);
            }
        }
        drop(db);
        shared.wake.notify_one();
    }
}

fn exec(db: &Connection, sql: &str) -> Result<(), DbError> {
    db.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(DbError::from)
}

/// The database task: waits for calls, lets the worker's other ready
/// tasks add theirs, runs them all in one transaction, commits, answers.
/// Ends once the [`GroupDb`] is dropped.
async fn commit_loop(shared: Arc<Shared>) {
    loop {
        shared.wake.notified().await;
        gather(&shared).await;
        loop {
            let full = {
                let db = shared.db.lock().unwrap_or_else(|p| p.into_inner());
                let Some(db) = db.as_ref() else {
                    return;
                };
                let group = take_group(&shared);
                if group.is_empty() {
                    break;
                }
                let full = group.len() == GROUP;
                run_group(&shared, db, group);
                full
            };
            // A backlog runs a group per turn, so that the worker's other
            // tasks (requests being served) are not held up behind it.
            if full {
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Lets the worker's other ready tasks add their calls before a group
/// runs: one turn, then more while each turn brings more calls, up to
/// [`GATHER_TURNS`]. Under load, the requests that the last commit's
/// answers woke arrive over a few turns; waiting for them makes groups
/// larger, which raises queue throughput for a few hundredths of a
/// millisecond more latency (measured in docs/benchmarks.md, durable
/// queues). A lone call waits two turns.
async fn gather(shared: &Shared) {
    let pending = || shared.jobs.lock().unwrap_or_else(|p| p.into_inner()).len();
    tokio::task::yield_now().await;
    let mut seen = pending();
    for _ in 0..GATHER_TURNS {
        tokio::task::yield_now().await;
        let now = pending();
        if now == seen || now >= GROUP {
            break;
        }
        seen = now;
    }
}

/// At most this many extra turns in [`gather`].
const GATHER_TURNS: usize = 8;

fn take_group(shared: &Shared) -> Vec<Job> {
    let mut jobs = shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
    let n = jobs.len().min(GROUP);
    jobs.drain(..n).collect()
}

fn run_group(shared: &Shared, db: &Connection, group: Vec<Job>) {
    let began = begin(db);
    let mut answers = Vec::with_capacity(group.len());
    // A call that panics must not take the task down with it: every later
    // call would wait forever. Its group is rolled back; the calls not run
    // yet are dropped, so their callers get an error.
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for job in group {
            answers.push(job(db));
        }
    }));
    let committed = match ran {
        Ok(()) => began.and_then(|()| exec(db, "COMMIT")),
        Err(_) => {
            tracing::error!("a database call panicked; its transaction was rolled back");
            Err(DbError::Sqlite(
                "a call in the same transaction failed; nothing was written".into(),
            ))
        }
    };
    if committed.is_err() {
        let _ = db.execute_batch("ROLLBACK");
    }
    shared.group_ended(committed.is_ok());
    for answer in answers {
        answer(committed.clone());
    }
}

/// Starts a transaction. One left open by a call that panicked on its
/// caller's thread ([`Pace::Eager`]) is rolled back first.
fn begin(db: &Connection) -> Result<(), DbError> {
    if !db.is_autocommit() {
        let _ = db.execute_batch("ROLLBACK");
    }
    // Cached statements: parsing BEGIN and COMMIT anew cost as much as the
    // statements they wrap.
    exec(db, "BEGIN IMMEDIATE")
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
            let db =
                std::sync::Arc::new(GroupDb::open(&path, "test-db", schema, Pace::Gather).unwrap());
            insert_at_once(&db, 100).await;
        }
        let db = GroupDb::open(&path, "test-db", schema, Pace::Gather).unwrap();
        assert_eq!(db.call(sum).await.unwrap(), (0..100).sum::<i64>());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn lazy_changes_are_seen_at_once_and_committed_with_their_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let schema = "CREATE TABLE IF NOT EXISTS t (n INTEGER)";
        {
            let db = GroupDb::open(&path, "test-db", schema, Pace::Gather).unwrap();
            for n in 1..=3 {
                db.call_lazy(move |c| {
                    c.execute("INSERT INTO t VALUES (?1)", [n])
                        .map_err(DbError::from)
                })
                .await
                .unwrap();
            }
            assert_eq!(db.call_lazy(sum).await.unwrap(), 6);
        }
        // Dropping it closed the file, so its exclusive lock is gone.
        let db = GroupDb::open(&path, "test-db", schema, Pace::Gather).unwrap();
        assert_eq!(db.call(sum).await.unwrap(), 6);
    }

    /// Commits made while `n` inserts, all started at once, ran (with
    /// the `DELETE` before them and the check after).
    async fn commits_for(n: i64) -> usize {
        let dir = tempfile::tempdir().unwrap();
        let schema = "CREATE TABLE IF NOT EXISTS t (n INTEGER)";
        let db = std::sync::Arc::new(
            GroupDb::open(&dir.path().join("t.db"), "test-db", schema, Pace::Gather).unwrap(),
        );
        let commits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = commits.clone();
        db.call(move |c| {
            c.commit_hook(Some(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                false
            }));
            c.execute("DELETE FROM t", []).map_err(DbError::from)
        })
        .await
        .unwrap();
        insert_at_once(&db, n).await;
        assert_eq!(db.call(sum).await.unwrap(), (0..n).sum::<i64>());
        commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_made_together_share_commits() {
        // Spawned at once, most are ready before the database task's turn
        // comes; the other worker runs some meanwhile, so how many share a
        // commit varies (a handful of commits in all, usually). A commit
        // each would be 200.
        let used = commits_for(200).await;
        assert!(used <= 100, "{used} commits for 200 calls");
    }

    #[tokio::test]
    async fn a_group_holds_at_most_512_calls() {
        // On one thread all 1,200 are queued before the task runs: groups
        // of 512, 512 and 176, between the `DELETE`'s commit and the
        // check's.
        assert_eq!(commits_for(1200).await, 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_eager_database_runs_a_lone_call_on_the_callers_thread() {
        let dir = tempfile::tempdir().unwrap();
        for (pace, here) in [(Pace::Eager, true), (Pace::Gather, false)] {
            let path = dir.path().join(format!("{pace:?}.db"));
            let db = std::sync::Arc::new(GroupDb::open(&path, "test-db", "", pace).unwrap());
            // A thread outside the database's runtime, as a task thread is.
            // Awaited, not joined: the test's workers stay free to run the
            // database task.
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let me = std::thread::current().id();
                let ran = rt.block_on(db.call(|_| Ok::<_, DbError>(std::thread::current().id())));
                let _ = tx.send(ran.unwrap() == me);
            });
            let ran_here = rx.await.unwrap();
            assert_eq!(ran_here, here, "{pace:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_that_panics_fails_its_group_and_the_database_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let schema = "CREATE TABLE IF NOT EXISTS t (n INTEGER)";
        for pace in [Pace::Gather, Pace::Eager] {
            let path = dir.path().join(format!("{pace:?}.db"));
            let db = std::sync::Arc::new(GroupDb::open(&path, "test-db", schema, pace).unwrap());
            let panicky = db.clone();
            let panicked = tokio::spawn(async move {
                panicky
                    .call(|c| {
                        c.execute("INSERT INTO t VALUES (1)", [])?;
                        panic!("a bug in a call");
                        #[allow(unreachable_code)]
                        Ok::<_, DbError>(())
                    })
                    .await
            })
            .await;
            // Gathered: the call fails. Eager: it ran on the caller's task,
            // which panicked.
            assert!(!matches!(panicked, Ok(Ok(()))), "{pace:?}");
            insert_at_once(&db, 10).await;
            assert_eq!(
                db.call(sum).await.unwrap(),
                (0..10).sum::<i64>(),
                "{pace:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_group_hook_hears_each_commit_and_rollback_before_the_callers() {
        let dir = tempfile::tempdir().unwrap();
        let schema = "CREATE TABLE IF NOT EXISTS t (n INTEGER)";
        let db = std::sync::Arc::new(
            GroupDb::open(&dir.path().join("t.db"), "test-db", schema, Pace::Gather).unwrap(),
        );
        let heard = std::sync::Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        assert!(db.after_each_group(move |ok| log.lock().unwrap().push(ok)));
        assert!(!db.after_each_group(|_| {}), "one hook per database");
        let seen = heard.clone();
        // Answered only after the hook ran for the call's own group.
        let answered = db
            .call(move |c| {
                c.execute("INSERT INTO t VALUES (1)", [])?;
                Ok::<_, DbError>(seen.clone())
            })
            .await
            .unwrap();
        assert_eq!(*answered.lock().unwrap(), [true]);
        let panicky = db.clone();
        let _ = tokio::spawn(async move {
            panicky
                .call(|_| -> Result<(), DbError> { panic!("a bug in a call") })
                .await
        })
        .await;
        assert_eq!(*heard.lock().unwrap(), [true, false]);
    }

    /// `n` inserts of 0..n, all started at once.
    async fn insert_at_once(db: &std::sync::Arc<GroupDb>, n: i64) {
        let mut calls = Vec::new();
        for n in 0..n {
            let db = db.clone();
            calls.push(tokio::spawn(async move {
                db.call(move |c| {
                    c.execute("INSERT INTO t VALUES (?1)", [n])
                        .map_err(DbError::from)
                })
                .await
            }));
        }
        for call in calls {
            call.await.unwrap().unwrap();
        }
    }

    fn sum(c: &Connection) -> Result<i64, DbError> {
        c.query_row("SELECT SUM(n) FROM t", [], |r| r.get(0))
            .map_err(DbError::from)
    }
}
