//! The embedded engine: one SQLite file per database, `STATE/sql/APP/DB.db`.
//!
//! Each database has one connection, opened as every Nubo service opens
//! SQLite (WAL, `synchronous = NORMAL`: a committed statement survives a
//! killed node). Statements take the connection in turn and run on the
//! blocking pool, never on a tokio worker, under a progress handler that
//! stops one at its `timeout_ms`. A transaction holds the connection
//! from `begin` to its end, across the guest's calls.
//!
//! A guest's SQL reaches only its own file: attaching another database
//! (`ATTACH`, `VACUUM INTO`) is refused, and so is every `PRAGMA` but
//! those that read the schema, so no statement can change how Nubo opened
//! the file. Foreign keys are enforced.

mod dump;
mod statement;

use statement::{Budget, Stop};
pub(crate) use statement::{classify, size};

use crate::{
    Database, DatabaseSpec, Executed, MigrateError, Migration, Rows, SqlBackend, SqlError,
    SqlLimits, Transaction, Value,
};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{Connection, params};
use statement::{execute, query};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;

/// How long a statement waits for the connection while a transaction or
/// a long statement holds it.
const WAIT: Duration = Duration::from_secs(5);

/// The `PRAGMA`s a guest may run: they read the schema (and
/// `data_version`, which FTS5 reads to see whether its index changed).
const READ_PRAGMAS: [&str; 8] = [
    "data_version",
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "foreign_key_list",
    "foreign_key_check",
];

pub struct SqliteBackend {
    dir: PathBuf,
    open: Mutex<HashMap<(String, String), Arc<SqliteDb>>>,
}

impl SqliteBackend {
    /// Databases under `dir` (the node's `STATE/sql`).
    pub fn open(dir: &Path) -> Result<Self, SqlError> {
        std::fs::create_dir_all(dir).map_err(|e| SqlError::Other(e.to_string()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn open_dbs(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<SqliteDb>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl SqlBackend for SqliteBackend {
    async fn database(
        &self,
        app: &str,
        name: &str,
        spec: &DatabaseSpec,
    ) -> Result<Arc<dyn Database>, SqlError> {
        let key = (app.to_string(), name.to_string());
        let found = self.open_dbs().get(&key).cloned();
        if let Some(db) = found {
            db.set_limits(spec.limits).await?;
            return Ok(db);
        }
        let dir = self.dir.join(app);
        let path = dir.join(format!("{name}.db"));
        let limits = spec.limits;
        let file = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, SqlError> {
            std::fs::create_dir_all(&dir).map_err(|e| SqlError::Other(e.to_string()))?;
            open_file(&file, limits)
        })
        .await
        .map_err(|e| SqlError::Other(e.to_string()))??;
        let db = Arc::new(SqliteDb {
            path,
            conn: Arc::new(tokio::sync::Mutex::new(conn)),
            limits: Mutex::new(limits),
        });
        let db = self.open_dbs().entry(key).or_insert(db).clone();
        Ok(db)
    }

    /// Every file under `STATE/sql/APP`, declared now or not.
    async fn purge_app(&self, app: &str, _specs: &crate::SqlSpecs) -> Result<u64, SqlError> {
        self.open_dbs().retain(|(a, _), _| a != app);
        let dir = self.dir.join(app);
        tokio::task::spawn_blocking(move || {
            let count = std::fs::read_dir(&dir)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| e.path().extension().is_some_and(|x| x == "db"))
                        .count() as u64
                })
                .unwrap_or(0);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => Ok(count),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
                Err(e) => Err(SqlError::Other(format!("deleting {}: {e}", dir.display()))),
            }
        })
        .await
        .map_err(|e| SqlError::Other(e.to_string()))?
    }
}

/// Opens one database file with Nubo's pragmas, the guest's guard rails
/// and `limits`.
fn open_file(path: &Path, limits: SqlLimits) -> Result<Connection, SqlError> {
    let conn = nubo_sqlite::open(path, nubo_sqlite::Synchronous::Normal)
        .map_err(|e| SqlError::Other(e.to_string()))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(classify)?;
    conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)
        .map_err(classify)?;
    conn.authorizer(Some(guard_rails));
    apply_size(&conn, limits)?;
    Ok(conn)
}

fn guard_rails(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        AuthAction::Pragma { pragma_name, .. }
            if !READ_PRAGMAS.contains(&pragma_name.to_ascii_lowercase().as_str()) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

/// Runs Nubo's own statements (its pragmas) around the guest's guard
/// rails, which are back in place when `f` returns.
pub(crate) fn unguarded<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
    let out = f(conn);
    conn.authorizer(Some(guard_rails));
    out
}

/// Caps the file at `max_size_mb`: past it a write fails as "full".
fn apply_size(conn: &Connection, limits: SqlLimits) -> Result<(), SqlError> {
    unguarded(conn, |conn| {
        let page = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, u64>(0))?;
        let pages = (limits.max_size_mb << 20) / page.max(512);
        conn.pragma_update(None, "max_page_count", pages)
    })
    .map_err(classify)
}

struct SqliteDb {
    path: PathBuf,
    conn: Arc<tokio::sync::Mutex<Connection>>,
    limits: Mutex<SqlLimits>,
}

type Held = OwnedMutexGuard<Connection>;

impl SqliteDb {
    fn limits(&self) -> SqlLimits {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn set_limits(&self, limits: SqlLimits) -> Result<(), SqlError> {
        let changed = {
            let mut l = self.limits.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *l, limits) != limits
        };
        if changed {
            let held = self.hold().await?;
            blocking(held, move |c| apply_size(c, limits)).await.1?;
        }
        Ok(())
    }

    /// The connection, once no one else holds it (at most [`WAIT`]). A
    /// transaction whose guest went away in the middle of a statement
    /// (the call's future dropped at its deadline) comes back open when
    /// that statement ends; it is rolled back here, before anyone else
    /// uses the connection.
    async fn hold(&self) -> Result<Held, SqlError> {
        let held = tokio::time::timeout(WAIT, self.conn.clone().lock_owned())
            .await
            .map_err(|_| {
                SqlError::Busy(format!(
                    "a transaction or a statement held the database for {} s",
                    WAIT.as_secs()
                ))
            })?;
        if !held.is_autocommit() {
            let _ = held.execute_batch("ROLLBACK");
        }
        Ok(held)
    }
}

impl SqliteDb {
    /// Runs `f` at once on this thread if no one holds the connection,
    /// and gives its answer if it finished within [`statement::AT_ONCE`]:
    /// most statements take microseconds, less than a hop to the blocking
    /// pool. `None` means it did not run or was stopped, undone whole, and
    /// is to run on the pool.
    fn at_once<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Stop>,
    ) -> Option<Result<T, SqlError>> {
        let mut held = self.conn.try_lock().ok()?;
        if !held.is_autocommit() {
            // See `hold`: a transaction abandoned mid-statement.
            let _ = held.execute_batch("ROLLBACK");
        }
        match f(&mut held) {
            Ok(v) => Some(Ok(v)),
            Err(Stop::Failed(e)) => Some(Err(e)),
            Err(Stop::OverBudget) => None,
        }
    }
}

/// Runs `f` with the held connection on the blocking pool; the connection
/// comes back with the result (none if `f` panicked, which drops it and
/// frees the database for the next caller).
async fn blocking<T, E>(
    mut held: Held,
    f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
) -> (Option<Held>, Result<T, E>)
where
    T: Send + 'static,
    E: From<SqlError> + Send + 'static,
{
    let run = tokio::task::spawn_blocking(move || {
        let out = f(&mut held);
        (held, out)
    });
    match run.await {
        Ok((held, out)) => (Some(held), out),
        Err(e) => (
            None,
            Err(E::from(SqlError::Other(format!(
                "the statement's run failed: {e}"
            )))),
        ),
    }
}

#[async_trait::async_trait]
impl Database for SqliteDb {
    async fn execute(&self, statement: String, params: Vec<Value>) -> Result<Executed, SqlError> {
        let limits = self.limits();
        let at_once = self.at_once(|c| {
            alone(c, |c| {
                execute(c, &statement, &params, limits, Budget::AtOnce)
            })
        });
        if let Some(done) = at_once {
            return done;
        }
        let held = self.hold().await?;
        blocking(held, move |c| {
            alone(c, |c| {
                execute(c, &statement, &params, limits, Budget::Whole)
            })
            .map_err(|e| e.whole(limits))
        })
        .await
        .1
    }

    async fn query(&self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError> {
        let limits = self.limits();
        let at_once =
            self.at_once(|c| alone(c, |c| query(c, &statement, &params, limits, Budget::AtOnce)));
        if let Some(done) = at_once {
            return done;
        }
        let held = self.hold().await?;
        blocking(held, move |c| {
            alone(c, |c| query(c, &statement, &params, limits, Budget::Whole))
                .map_err(|e| e.whole(limits))
        })
        .await
        .1
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>, SqlError> {
        let held = self.hold().await?;
        let (held, begun) = blocking(held, |c| c.execute_batch("BEGIN").map_err(classify)).await;
        begun?;
        Ok(Box::new(SqliteTx {
            held,
            limits: self.limits(),
        }))
    }

    async fn migrate(
        &self,
        migrations: &[Migration],
        revision: u64,
    ) -> Result<Vec<String>, MigrateError> {
        let held = self.hold().await?;
        let migrations = migrations.to_vec();
        blocking(held, move |c| crate::migrate::run(c, &migrations, revision))
            .await
            .1
    }

    /// Copies the file with SQLite's online backup (holding the
    /// connection only for the copy), then writes the copy out as SQL.
    async fn dump(&self) -> Result<String, SqlError> {
        let dir = self.path.parent().unwrap_or(&self.path).to_path_buf();
        let copy = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix(".dump-")
                .suffix(".db")
                .tempfile_in(dir)
        })
        .await
        .map_err(|e| SqlError::Other(format!("the dump failed: {e}")))?
        .map_err(|e| SqlError::Other(format!("a file for the dump's copy: {e}")))?;
        let target = copy.path().to_path_buf();
        let held = self.hold().await?;
        blocking(held, move |c| {
            c.backup(rusqlite::MAIN_DB, &target, None).map_err(classify)
        })
        .await
        .1?;
        tokio::task::spawn_blocking(move || {
            let out = dump::dump(copy.path());
            drop(copy);
            out
        })
        .await
        .map_err(|e| SqlError::Other(format!("the dump failed: {e}")))?
    }

    async fn restore(&self, script: String, replace: bool) -> Result<(), SqlError> {
        let held = self.hold().await?;
        blocking(held, move |c| dump::restore(c, &script, replace))
            .await
            .1
    }
}

/// Runs one statement outside a transaction; one that leaves a
/// transaction open (`BEGIN` sent as a statement) is rolled back and
/// refused, so the next caller finds the connection as it should be.
fn alone<T, E: From<SqlError>>(
    c: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    let out = f(c);
    if !c.is_autocommit() {
        let _ = c.execute_batch("ROLLBACK");
        return Err(E::from(SqlError::Other(
            "transactions are begun with `begin` (a transaction resource), not as statements; rolled back".into(),
        )));
    }
    out
}

struct SqliteTx {
    held: Option<Held>,
    limits: SqlLimits,
}

impl SqliteTx {
    async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<T, SqlError> + Send + 'static,
    ) -> Result<T, SqlError> {
        let held = self.held.take().ok_or(SqlError::Ended)?;
        let (held, out) = blocking(held, move |c| {
            let out = f(c);
            if c.is_autocommit() {
                // The statement ended the transaction (`COMMIT` sent as a
                // statement, or SQLite rolled back on an error).
                return out.and(Err(SqlError::Ended));
            }
            out
        })
        .await;
        // A transaction SQLite ended is over for the guest too.
        self.held = held.filter(|h| !h.is_autocommit());
        out
    }

    /// Runs a read at once on this thread, as [`SqliteDb::at_once`] does.
    /// A write is not: stopped inside a transaction, it would roll back
    /// the whole transaction.
    fn read_at_once<T>(
        &mut self,
        statement: &str,
        f: impl FnOnce(&Connection) -> Result<T, Stop>,
    ) -> Option<Result<T, SqlError>> {
        let held = self.held.as_mut()?;
        let read = held.prepare_cached(statement).is_ok_and(|s| s.readonly());
        if !read {
            return None;
        }
        match f(held) {
            Ok(v) => Some(Ok(v)),
            Err(Stop::Failed(e)) => Some(Err(e)),
            Err(Stop::OverBudget) => None,
        }
    }
}

#[async_trait::async_trait]
impl Transaction for SqliteTx {
    async fn execute(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> Result<Executed, SqlError> {
        let limits = self.limits;
        self.run(move |c| {
            execute(c, &statement, &params, limits, Budget::Whole).map_err(|e| e.whole(limits))
        })
        .await
    }

    async fn query(&mut self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError> {
        let limits = self.limits;
        let at_once = self.read_at_once(&statement, |c| {
            query(c, &statement, &params, limits, Budget::AtOnce)
        });
        if let Some(done) = at_once {
            return done;
        }
        self.run(move |c| {
            query(c, &statement, &params, limits, Budget::Whole).map_err(|e| e.whole(limits))
        })
        .await
    }

    async fn commit(mut self: Box<Self>) -> Result<(), SqlError> {
        let held = self.held.take().ok_or(SqlError::Ended)?;
        let (held, done) = blocking(held, |c| c.execute_batch("COMMIT").map_err(classify)).await;
        if let Some(h) = held
            && !h.is_autocommit()
        {
            // A failed commit (a deferred foreign key) leaves it open.
            let _ = h.execute_batch("ROLLBACK");
        }
        done
    }

    async fn rollback(mut self: Box<Self>) -> Result<(), SqlError> {
        let held = self.held.take().ok_or(SqlError::Ended)?;
        blocking(held, |c| c.execute_batch("ROLLBACK").map_err(classify))
            .await
            .1
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if let Some(h) = self.held.take()
            && !h.is_autocommit()
        {
            // Rolling back is short: it drops the pages the transaction
            // wrote from the cache.
            let _ = h.execute_batch("ROLLBACK");
        }
    }
}

/// The applied migrations, kept in the database itself.
pub(crate) const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _nubo_migrations (
    name TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    revision INTEGER NOT NULL,
    applied_ms INTEGER NOT NULL
)";

pub(crate) fn record(c: &Connection, m: &Migration, revision: u64) -> Result<(), SqlError> {
    c.execute(
        "INSERT INTO _nubo_migrations (name, sha256, revision, applied_ms) VALUES (?1, ?2, ?3, ?4)",
        params![m.name, m.sha256, revision as i64, nubo_sqlite::now_ms()],
    )
    .map(|_| ())
    .map_err(classify)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DatabaseSpec;

    fn spec(timeout_ms: u64) -> DatabaseSpec {
        DatabaseSpec {
            engine: crate::Engine::Sqlite,
            url: None,
            migrations: Vec::new(),
            limits: SqlLimits {
                timeout_ms,
                ..SqlLimits::default()
            },
        }
    }

    const SLOW: &str =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

    /// A transaction whose caller gives up in the middle of a statement
    /// (a guest past its deadline) is rolled back, and the next caller
    /// finds the database as it should be.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_transaction_abandoned_mid_statement_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(dir.path()).unwrap();
        let db = backend.database("a", "main", &spec(300)).await.unwrap();
        db.execute("CREATE TABLE t (x)".into(), vec![])
            .await
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        tx.execute("INSERT INTO t VALUES (1)".into(), vec![])
            .await
            .unwrap();
        let gave_up =
            tokio::time::timeout(Duration::from_millis(20), tx.query(SLOW.into(), vec![])).await;
        assert!(gave_up.is_err(), "the slow statement finished: {gave_up:?}");
        drop(tx);
        let done = db.execute("INSERT INTO t VALUES (2)".into(), vec![]).await;
        assert_eq!(done.map(|e| e.changes), Ok(1));
        let rows = db.query("SELECT x FROM t".into(), vec![]).await.unwrap();
        assert_eq!(rows.rows, vec![vec![Value::Integer(2)]]);
    }

    /// A statement that runs past the time it may take on the caller's
    /// thread is stopped, undone, and run once more on the blocking pool:
    /// its answer is whole and its write made once.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_long_statement_moves_to_the_pool_and_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(dir.path()).unwrap();
        let db = backend.database("a", "main", &spec(5000)).await.unwrap();
        db.execute("CREATE TABLE t (x)".into(), vec![])
            .await
            .unwrap();
        let fill = "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000) SELECT x FROM c";
        let started = std::time::Instant::now();
        let done = db.execute(fill.into(), vec![]).await.unwrap();
        assert!(started.elapsed() > statement::AT_ONCE, "too quick to test");
        assert_eq!(done.changes, 200_000);
        let sum = "SELECT count(*), sum(x) FROM t";
        let rows = db.query(sum.into(), vec![]).await.unwrap();
        assert_eq!(
            rows.rows,
            vec![vec![
                Value::Integer(200_000),
                Value::Integer(20_000_100_000)
            ]]
        );
        let mut tx = db.begin().await.unwrap();
        let rows = tx.query(sum.into(), vec![]).await.unwrap();
        assert_eq!(rows.rows[0][0], Value::Integer(200_000));
        tx.execute(fill.into(), vec![]).await.unwrap();
        tx.commit().await.unwrap();
        let rows = db
            .query("SELECT count(*) FROM t".into(), vec![])
            .await
            .unwrap();
        assert_eq!(rows.rows, vec![vec![Value::Integer(400_000)]]);
    }
}
