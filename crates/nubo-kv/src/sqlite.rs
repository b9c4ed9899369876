//! The embedded backend: one SQLite file, WAL mode.
//!
//! `synchronous = NORMAL` in WAL mode: a write is in the log before the
//! call returns, so a killed node loses nothing it acknowledged; only a
//! power cut can drop the last transactions (the operating system had not
//! flushed them). Expired keys read as absent at once and are deleted by
//! a sweep. A single-key call runs on the caller's thread when the
//! connection is free (tens of microseconds, less than handing it to
//! another thread); batches, listings and any call that would wait for
//! the connection run on the blocking pool, so that one app's large batch
//! never holds a tokio worker that other apps' requests need
//! ([`nubo_sqlite::SharedDb`]).

use crate::{KvBackend, KvError, Namespace, check_key, check_value};
use nubo_sqlite::{DbError, Limits, SharedDb, Synchronous, Usage, now_ms};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub struct SqliteKv {
    db: SharedDb,
    limits: Arc<Limits>,
}

fn db_err(e: rusqlite::Error) -> KvError {
    DbError::from(e).into()
}

impl From<DbError> for KvError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::DiskFull => KvError::DiskFull,
            e => KvError::backend("SQLite", e),
        }
    }
}

/// Runs `write` unless it takes `app` past its quota or the disk is
/// within its reserve ([`nubo_sqlite::Limits::within`]).
fn within_quota<T>(
    limits: &Limits,
    app: &str,
    write: impl FnOnce() -> Result<T, KvError>,
) -> Result<T, KvError> {
    let over = || KvError::OverQuota {
        app: app.to_owned(),
        quota: limits.quotas.of(app),
    };
    limits.within(write, over)
}

/// Rows that are live now.
const LIVE: &str = "(expires_at IS NULL OR expires_at > ?4)";

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (
                 app TEXT NOT NULL,
                 store TEXT NOT NULL,
                 key TEXT NOT NULL,
                 value BLOB NOT NULL,
                 expires_at INTEGER,
                 PRIMARY KEY (app, store, key)
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;";

/// Each app's bytes (keys and values), for its quota.
const USAGE: Usage = Usage {
    table: "kv_usage",
    source: "kv",
    size: "octet_length(ROW.key) + length(ROW.value)",
    columns: "value",
};

impl SqliteKv {
    pub fn open(path: &Path) -> Result<Self, KvError> {
        let db = SharedDb::open(
            path,
            "kv",
            &format!("{SCHEMA}\n{}", USAGE.checked_schema()),
            Synchronous::Normal,
        )?;
        let limits = Limits::new(path);
        db.blocking(|c| USAGE.install(c, limits.clone()))?;
        Ok(Self { db, limits })
    }

    /// Deletes expired keys; returns how many.
    pub async fn sweep(&self) -> Result<usize, KvError> {
        self.db
            .slow(|db| {
                db.execute(
                    "DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                    [now_ms()],
                )
                .map_err(db_err)
            })
            .await
    }

    fn get_sync(db: &Connection, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        db.prepare_cached(&format!(
            "SELECT value FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3 AND {LIVE}"
        ))
        .and_then(|mut s| {
            s.query_row(params![ns.app, ns.store, key, now_ms()], |r| r.get(0))
                .optional()
        })
        .map_err(db_err)
    }

    fn set_sync(
        db: &Connection,
        ns: &Namespace,
        key: &str,
        value: &[u8],
        expires_at: Option<i64>,
    ) -> Result<(), KvError> {
        db.prepare_cached(
            "INSERT INTO kv (app, store, key, value, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (app, store, key) DO UPDATE SET value = ?4, expires_at = ?5",
        )
        .and_then(|mut s| s.execute(params![ns.app, ns.store, key, value, expires_at]))
        .map(|_| ())
        .map_err(db_err)
    }
}

fn expiry(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|t| now_ms().saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX)))
}

#[async_trait::async_trait]
impl KvBackend for SqliteKv {
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        let (ns, key) = (ns.clone(), key.to_owned());
        self.db.quick(move |db| Self::get_sync(db, &ns, &key)).await
    }

    async fn set(
        &self,
        ns: &Namespace,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        check_key(key)?;
        check_value(value)?;
        let (ns, key, value) = (ns.clone(), key.to_owned(), value.to_vec());
        let expires_at = expiry(ttl);
        let limits = self.limits.clone();
        self.db
            .quick(move |db| {
                within_quota(&limits, &ns.app, || {
                    Self::set_sync(db, &ns, &key, &value, expires_at)
                })
            })
            .await
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> Result<(), KvError> {
        check_key(key)?;
        let (ns, key) = (ns.clone(), key.to_owned());
        self.db
            .quick(move |db| {
                db.prepare_cached("DELETE FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3")
                    .and_then(|mut s| s.execute(params![ns.app, ns.store, key]))
                    .map(|_| ())
                    .map_err(db_err)
            })
            .await
    }

    async fn exists(&self, ns: &Namespace, key: &str) -> Result<bool, KvError> {
        Ok(self.get(ns, key).await?.is_some())
    }

    async fn list_keys(
        &self,
        ns: &Namespace,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), KvError> {
        let limit = limit.clamp(1, 10_000);
        let (ns, prefix) = (ns.clone(), prefix.to_owned());
        // Keys are compared as text in byte order; `prefix` bounds the
        // range so the primary key index does the work.
        let after = cursor.unwrap_or("").to_owned();
        self.db
            .slow(move |db| {
                let mut stmt = db
                    .prepare_cached(&format!(
                        "SELECT key FROM kv WHERE app = ?1 AND store = ?2 AND key > ?3 AND {LIVE}
                         AND substr(key, 1, length(?5)) = ?5 ORDER BY key LIMIT ?6"
                    ))
                    .map_err(db_err)?;
                let keys: Vec<String> = stmt
                    .query_map(
                        params![
                            ns.app,
                            ns.store,
                            after,
                            now_ms(),
                            prefix,
                            (limit + 1) as i64
                        ],
                        |r| r.get(0),
                    )
                    .and_then(|rows| rows.collect())
                    .map_err(db_err)?;
                if keys.len() > limit {
                    let page: Vec<String> = keys.into_iter().take(limit).collect();
                    let next = page.last().cloned();
                    Ok((page, next))
                } else {
                    Ok((keys, None))
                }
            })
            .await
    }

    async fn increment(&self, ns: &Namespace, key: &str, delta: i64) -> Result<i64, KvError> {
        check_key(key)?;
        let (ns, key) = (ns.clone(), key.to_owned());
        let limits = self.limits.clone();
        // One write after one read, both under the connection's lock.
        self.db
            .quick(move |db| {
                let current = Self::get_sync(db, &ns, &key)?;
                let next = crate::incremented(&key, current.as_deref(), delta)?;
                within_quota(&limits, &ns.app, || {
                    Self::set_sync(db, &ns, &key, next.to_string().as_bytes(), None)
                })?;
                Ok(next)
            })
            .await
    }

    async fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, KvError> {
        check_key(key)?;
        check_value(new)?;
        let (ns, key) = (ns.clone(), key.to_owned());
        let (expected, new) = (expected.map(<[u8]>::to_vec), new.to_vec());
        let limits = self.limits.clone();
        // One write after one read, both under the connection's lock.
        self.db
            .quick(move |db| {
                if Self::get_sync(db, &ns, &key)? != expected {
                    return Ok(false);
                }
                within_quota(&limits, &ns.app, || {
                    Self::set_sync(db, &ns, &key, &new, None)
                })?;
                Ok(true)
            })
            .await
    }

    async fn get_many(
        &self,
        ns: &Namespace,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        check_batch(keys.len())?;
        for k in keys {
            check_key(k)?;
        }
        let (ns, keys) = (ns.clone(), keys.to_vec());
        self.db
            .slow(move |db| keys.iter().map(|k| Self::get_sync(db, &ns, k)).collect())
            .await
    }

    async fn set_many(&self, ns: &Namespace, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        check_batch(pairs.len())?;
        for (k, v) in pairs {
            check_key(k)?;
            check_value(v)?;
        }
        let (ns, pairs) = (ns.clone(), pairs.to_vec());
        let limits = self.limits.clone();
        self.db
            .slow(move |db| {
                let tx = db.transaction().map_err(db_err)?;
                within_quota(&limits, &ns.app, || {
                    pairs
                        .iter()
                        .try_for_each(|(k, v)| Self::set_sync(&tx, &ns, k, v, None))
                })?;
                tx.commit().map_err(db_err)
            })
            .await
    }

    async fn delete_many(&self, ns: &Namespace, keys: &[String]) -> Result<(), KvError> {
        check_batch(keys.len())?;
        let (ns, keys) = (ns.clone(), keys.to_vec());
        self.db
            .slow(move |db| {
                let tx = db.transaction().map_err(db_err)?;
                for k in &keys {
                    tx.prepare_cached("DELETE FROM kv WHERE app = ?1 AND store = ?2 AND key = ?3")
                        .and_then(|mut s| s.execute(params![ns.app, ns.store, k]))
                        .map_err(db_err)?;
                }
                tx.commit().map_err(db_err)
            })
            .await
    }

    async fn purge_app(&self, app: &str) -> Result<u64, KvError> {
        let app = app.to_owned();
        self.db
            .slow(move |db| {
                db.execute("DELETE FROM kv WHERE app = ?1", params![app])
                    .map(|n| n as u64)
                    .map_err(db_err)
            })
            .await
    }

    fn set_quota(&self, app: &str, bytes: u64) {
        self.limits.quotas.set(app, bytes);
    }

    fn keep_free(&self, bytes: u64) {
        self.limits.disk.keep_free(bytes);
    }
}

fn check_batch(n: usize) -> Result<(), KvError> {
    if n > crate::MAX_BATCH {
        return Err(KvError::Invalid(format!(
            "a batch of {n} keys; at most {} per call",
            crate::MAX_BATCH
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_app_stores_up_to_its_quota_and_frees_room_by_deleting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let kv = SqliteKv::open(&path).unwrap();
        kv.set_quota("a", 1000);
        let (a, b) = (ns("a"), ns("b"));
        // 400 + 1 bytes each: two fit, a third does not.
        kv.set(&a, "1", &[0; 400], None).await.unwrap();
        kv.set(&a, "2", &[0; 400], None).await.unwrap();
        let over = kv.set(&a, "3", &[0; 400], None).await.unwrap_err();
        assert!(matches!(over, KvError::OverQuota { .. }), "{over}");
        assert_eq!(kv.get(&a, "3").await.unwrap(), None);
        let batch = [
            ("x".to_string(), vec![0; 150]),
            ("y".to_string(), vec![0; 150]),
        ];
        assert!(matches!(
            kv.set_many(&a, &batch).await,
            Err(KvError::OverQuota { .. })
        ));
        assert_eq!(kv.get(&a, "x").await.unwrap(), None, "all or nothing");
        // Another app is not touched by a's quota.
        kv.set(&b, "big", &[0; 900_000], None).await.unwrap();
        // Shrinking a value and deleting a key always work, and free room.
        kv.set(&a, "1", &[0; 10], None).await.unwrap();
        kv.set(&a, "3", &[0; 400], None).await.unwrap();
        kv.delete(&a, "2").await.unwrap();
        kv.set_many(&a, &batch).await.unwrap();
        // The totals are rebuilt from the file at the next open.
        drop(kv);
        let kv = SqliteKv::open(&path).unwrap();
        kv.set_quota("a", 1000);
        let over = kv.set(&a, "4", &[0; 400], None).await.unwrap_err();
        assert!(matches!(over, KvError::OverQuota { .. }), "{over}");
        kv.set(&a, "4", &[0; 200], None).await.unwrap();
    }

    fn ns(app: &str) -> Namespace {
        Namespace {
            app: app.into(),
            store: "default".into(),
        }
    }

    #[tokio::test]
    async fn values_persist_per_app_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let kv = SqliteKv::open(&path).unwrap();
        kv.set(&ns("a"), "k", b"1", None).await.unwrap();
        kv.set(&ns("a"), "short", b"x", Some(Duration::from_millis(30)))
            .await
            .unwrap();
        assert_eq!(kv.get(&ns("b"), "k").await.unwrap(), None, "apps are apart");
        assert!(kv.exists(&ns("a"), "short").await.unwrap());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!kv.exists(&ns("a"), "short").await.unwrap());
        assert_eq!(kv.sweep().await.unwrap(), 1);
        drop(kv);
        let kv = SqliteKv::open(&path).unwrap();
        assert_eq!(kv.get(&ns("a"), "k").await.unwrap(), Some(b"1".to_vec()));
    }

    /// An app's long call (here: the connection held by another thread)
    /// never makes the calls waiting behind it hold the tokio workers
    /// that every other app's requests need.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_call_holds_no_worker() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let kv = Arc::new(SqliteKv::open(&dir.path().join("kv.db")).unwrap());
        let released = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let (kv, released) = (kv.clone(), released.clone());
            std::thread::spawn(move || {
                kv.db.blocking(|_| {
                    let _ = tx.send(());
                    std::thread::sleep(Duration::from_secs(5));
                    released.store(true, Ordering::SeqCst);
                })
            });
        }
        rx.recv().unwrap();
        let waiting: Vec<_> = (0..4)
            .map(|i| {
                let kv = kv.clone();
                tokio::spawn(async move { kv.set(&ns("b"), &format!("k{i}"), b"v", None).await })
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
            "calls waiting for the database held every worker"
        );
        for w in waiting {
            w.await.unwrap().unwrap();
        }
    }
}
