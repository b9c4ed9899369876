//! One connection behind a lock, for a service whose calls each commit on
//! their own (key-value stores, blob metadata, cron's last runs).
//!
//! The lock must never make a tokio worker wait: with two workers, two
//! callers waiting behind one long batch would stop every request the
//! node serves, whatever app it is for. So a call waits for the lock only
//! on tokio's blocking pool. A short call that finds the connection free
//! ([`SharedDb::quick`]) runs at once on the caller's thread, which costs
//! nothing over a plain mutex; one that finds it taken, and every call
//! whose length depends on what the caller passed or that syncs the disk
//! ([`SharedDb::slow`]), is handed to the blocking pool.

use crate::{DbError, Synchronous};
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

pub struct SharedDb {
    conn: Arc<Mutex<Connection>>,
    name: &'static str,
}

impl SharedDb {
    /// Opens (creating) `path` as [`crate::open`] does and runs `schema`.
    pub fn open(
        path: &Path,
        name: &'static str,
        schema: &str,
        synchronous: Synchronous,
    ) -> Result<Self, DbError> {
        let db = crate::open(path, synchronous)?;
        db.execute_batch(schema)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(db)),
            name,
        })
    }

    /// Runs `f`, whose work is short whatever its caller passed: here if
    /// the connection is free, else on the blocking pool.
    pub async fn quick<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        // The guard must be gone before the await below.
        let f = match self.conn.try_lock() {
            Ok(mut db) => return f(&mut db),
            Err(TryLockError::Poisoned(p)) => return f(&mut p.into_inner()),
            Err(TryLockError::WouldBlock) => f,
        };
        self.slow(f).await
    }

    /// Runs `f` on the blocking pool: for work as long as its caller
    /// makes it (a batch, a listing) or that syncs the disk.
    pub async fn slow<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return f(&mut lock(&self.conn));
        }
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut lock(&conn)))
            .await
            .map_err(|_| E::from(DbError::Panicked(self.name)))?
    }

    /// Runs `f` on this thread, waiting for the lock: for callers that are
    /// not on a tokio worker (opening a service, tests).
    pub fn blocking<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        f(&mut lock(&self.conn))
    }
}

/// The connection; a call that panicked holding it left no transaction
/// open (rusqlite's transactions roll back when dropped), so a poisoned
/// lock is taken as it is.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// While another thread holds the connection, callers that want it
    /// wait off the workers: a task that needs no database still runs on a
    /// two-worker runtime whose every worker has asked for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_for_the_lock_never_holds_a_worker() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(
            SharedDb::open(
                &dir.path().join("t.db"),
                "test",
                "CREATE TABLE t (n INTEGER)",
                Synchronous::Normal,
            )
            .unwrap(),
        );
        let released = hold_for(&db, Duration::from_secs(5));
        // More waiting callers than workers.
        let waiting: Vec<_> = (0..4)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.quick(move |c| {
                        c.execute("INSERT INTO t VALUES (?1)", [i])
                            .map_err(DbError::from)
                    })
                    .await
                })
            })
            .collect();
        let released_first = {
            let released = released.clone();
            tokio::spawn(async move { released.load(Ordering::SeqCst) })
                .await
                .unwrap()
        };
        assert!(
            !released_first,
            "callers waiting for the lock held every worker"
        );
        for w in waiting {
            assert_eq!(w.await.unwrap().unwrap(), 1);
        }
        let n: i64 = db.blocking(|c| {
            c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap()
        });
        assert_eq!(n, 4);
    }

    /// Holds `db`'s lock on a thread of its own for `time`; the flag turns
    /// true when it lets go.
    pub(crate) fn hold_for(db: &Arc<SharedDb>, time: Duration) -> Arc<AtomicBool> {
        let released = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (db, flag) = (db.clone(), released.clone());
        std::thread::spawn(move || {
            db.blocking(|_| {
                let _ = tx.send(());
                std::thread::sleep(time);
                flag.store(true, Ordering::SeqCst);
            })
        });
        let _ = rx.recv();
        released
    }
}
