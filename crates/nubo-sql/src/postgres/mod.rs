//! The PostgreSQL engine: a database is a schema of its own in the
//! PostgreSQL database its `url` names, on a server the app's owner runs
//! (and every node of a cluster reaches).
//!
//! The schema is `"APP/NAME"`, first on each connection's `search_path`
//! (then `public`): the app's tables, and its `_nubo_migrations`, are made
//! there, tables already in `public` stay readable, and two apps (or two
//! databases of one app) may share a server database without meeting.
//! Removing the app drops its schemas, and nothing else.
//!
//! Each database has a small pool of connections (rustls when the URL
//! asks for TLS); a statement borrows one, a transaction keeps one from
//! `begin` to its end. `timeout_ms` is the connections' own
//! `statement_timeout`, so the server stops a runaway statement even when
//! its guest is gone. Statements are written as for SQLite, with `?`
//! parameters (rewritten as `$n`, see [`lex`]); `$n` works as well.
//!
//! A guest's statement may not change its connection's session (`SET`,
//! `RESET`, `BEGIN`, `COMMIT` as statements), since the connection serves
//! other calls next; what it may read and write is what the URL's role may.

mod lex;
mod types;

use crate::{
    Database, DatabaseSpec, Executed, MigrateError, Migration, Rows, SqlBackend, SqlError,
    SqlLimits, Transaction, Value,
};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use types::{Param, classify};

/// How long a statement waits for a free connection.
const WAIT: Duration = Duration::from_secs(5);
/// Connections per database on one node.
const POOL_SIZE: usize = 4;
/// The advisory lock that makes nodes apply migrations one at a time.
const MIGRATION_LOCK: i64 = 0x6e75_626f_5f73_716c;

#[derive(Default)]
pub struct PostgresBackend {
    open: Mutex<HashMap<(String, String), Arc<PgDb>>>,
}

impl PostgresBackend {
    fn open_dbs(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<PgDb>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl SqlBackend for PostgresBackend {
    /// `spec.url` must be resolved (its variables filled in).
    async fn database(
        &self,
        app: &str,
        name: &str,
        spec: &DatabaseSpec,
    ) -> Result<Arc<dyn Database>, SqlError> {
        let url = spec.url.as_deref().ok_or_else(|| {
            SqlError::Other(format!(
                "database `{name}` has engine \"postgres\" but no url"
            ))
        })?;
        let key = (app.to_string(), name.to_string());
        let found = self.open_dbs().get(&key).cloned();
        if let Some(db) =
            found.filter(|d| d.url == url && d.limits().timeout_ms == spec.limits.timeout_ms)
        {
            db.set_limits(spec.limits);
            return Ok(db);
        }
        let schema = schema_name(app, name);
        let db = Arc::new(PgDb {
            app: app.to_string(),
            name: name.to_string(),
            url: url.to_string(),
            pool: pool(url, spec.limits, &schema)?,
            limits: Mutex::new(spec.limits),
        });
        let conn = db.connection().await?;
        let made = conn
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", ident(&schema)))
            .await;
        match made {
            // Another node made it at the same moment.
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
            other => other.map_err(|e| classify(e, spec.limits.timeout_ms, None))?,
        }
        drop(conn);
        self.open_dbs().insert(key, db.clone());
        Ok(db)
    }

    /// Drops the schema of each PostgreSQL database the app declared, and
    /// closes its connections; the rest of the server database is not
    /// touched.
    async fn purge_app(&self, app: &str, specs: &crate::SqlSpecs) -> Result<u64, SqlError> {
        self.open_dbs().retain(|(a, _), _| a != app);
        let mut dropped = 0;
        for (name, spec) in specs
            .iter()
            .filter(|(_, s)| s.engine == crate::Engine::Postgres)
        {
            let Some(url) = spec.url.as_deref() else {
                continue;
            };
            let schema = schema_name(app, name);
            let timeout = spec.limits.timeout_ms;
            let pool = pool(url, spec.limits, &schema)?;
            let conn = pool.get().await.map_err(|e| match e {
                PoolError::Backend(e) => classify(e, timeout, None),
                other => SqlError::Other(format!("PostgreSQL: {other}")),
            })?;
            let existed = conn
                .query_one(
                    "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                    &[&schema],
                )
                .await
                .map_err(|e| classify(e, timeout, None))?
                .get::<_, i64>(0);
            conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(&schema)))
                .await
                .map_err(|e| classify(e, timeout, None))?;
            dropped += existed as u64;
        }
        Ok(dropped)
    }
}

/// The schema of database `name` of `app`: `APP/NAME`, or, past
/// PostgreSQL's 63 bytes, as much of it as fits and a digest of the rest.
fn schema_name(app: &str, name: &str) -> String {
    let full = format!("{app}/{name}");
    if full.len() <= 63 {
        return full;
    }
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(full.as_bytes()));
    format!("{}~{}", &full[..50], &digest[..12])
}

/// A quoted identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A pool for `url`, whose connections stop a statement at `timeout_ms`
/// and make and find tables in `schema` first.
fn pool(url: &str, limits: SqlLimits, schema: &str) -> Result<Pool, SqlError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| SqlError::Other(format!("the database's url does not parse: {e}")))?;
    // App and database names have no blanks, which separate options.
    let options = format!(
        "{} -c statement_timeout={} -c search_path={},public",
        config.get_options().unwrap_or(""),
        limits.timeout_ms,
        ident(schema)
    );
    config.options(options.trim());
    config.connect_timeout(WAIT);
    let manager = Manager::from_config(
        config,
        tls(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .wait_timeout(Some(WAIT))
        .create_timeout(Some(WAIT))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| SqlError::Other(format!("PostgreSQL pool: {e}")))
}

/// TLS with the system's roots, used when the URL's `sslmode` asks.
fn tls() -> tokio_postgres_rustls::MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    match config {
        Ok(c) => tokio_postgres_rustls::MakeRustlsConnect::new(c),
        // ring supports the default versions; this arm is not reached.
        Err(_) => tokio_postgres_rustls::MakeRustlsConnect::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
    }
}

struct PgDb {
    app: String,
    name: String,
    url: String,
    pool: Pool,
    limits: Mutex<SqlLimits>,
}

impl PgDb {
    fn limits(&self) -> SqlLimits {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_limits(&self, limits: SqlLimits) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    async fn connection(&self) -> Result<Object, SqlError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Timeout(_) => SqlError::Busy(format!(
                "no connection to PostgreSQL was free within {} s",
                WAIT.as_secs()
            )),
            PoolError::Backend(e) => classify(e, self.limits().timeout_ms, None),
            other => SqlError::Other(format!("PostgreSQL: {other}")),
        })
    }
}

/// What a statement may do on a shared connection: none may change its
/// session or end a transaction other than through the resource.
fn allowed(statement: &str, in_tx: bool) -> Result<(), SqlError> {
    let words = lex::first_words(statement, 2);
    let first = words.first().map(String::as_str).unwrap_or("");
    let second = words.get(1).map(String::as_str).unwrap_or("");
    match (first, second) {
        ("BEGIN" | "START" | "COMMIT" | "END" | "ABORT", _) | ("ROLLBACK", "" | "WORK" | "TRANSACTION" | "AND") => {
            Err(SqlError::Other(
                "transactions are begun with `begin` and ended with `commit` or `rollback` of the transaction resource, not as statements".into(),
            ))
        }
        ("SAVEPOINT" | "RELEASE" | "ROLLBACK", _) if !in_tx => Err(SqlError::Other(
            "savepoints are for inside a transaction (`begin`)".into(),
        )),
        ("SET", "LOCAL") if in_tx => Ok(()),
        ("SET" | "RESET" | "DISCARD", _) => Err(SqlError::Other(
            "a component's SQL may not change its connection's session; use SET LOCAL inside a transaction".into(),
        )),
        _ => Ok(()),
    }
}

/// Runs one statement on `client`; its rows if `want_rows`.
///
/// Each connection keeps the statements it prepared, so a statement run
/// again costs one round trip, as in a native program. A kept statement
/// whose tables changed since (PostgreSQL: "cached plan must not change
/// result type") is prepared again, and run again outside a transaction.
async fn run(
    client: &deadpool_postgres::ClientWrapper,
    statement: &str,
    params: &[Value],
    limits: SqlLimits,
    want_rows: bool,
    in_tx: bool,
) -> Result<Rows, SqlError> {
    let sql = lex::placeholders(statement);
    let fail = |f: Failed| match f {
        Failed::Pg(e) => classify(e, limits.timeout_ms, Some(&sql)),
        Failed::Sql(e) => e,
    };
    match run_once(client, &sql, params, limits, want_rows).await {
        Err(Failed::Pg(e)) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) => {
            client.statement_cache.remove(&sql.text, &[]);
            if in_tx {
                return Err(fail(Failed::Pg(e)));
            }
            run_once(client, &sql, params, limits, want_rows)
                .await
                .map_err(fail)
        }
        other => other.map_err(fail),
    }
}

enum Failed {
    Pg(tokio_postgres::Error),
    Sql(SqlError),
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Self {
        Failed::Pg(e)
    }
}

impl From<SqlError> for Failed {
    fn from(e: SqlError) -> Self {
        Failed::Sql(e)
    }
}

async fn run_once(
    client: &deadpool_postgres::ClientWrapper,
    sql: &lex::Rewritten,
    params: &[Value],
    limits: SqlLimits,
    want_rows: bool,
) -> Result<Rows, Failed> {
    let stmt = client.prepare_cached(&sql.text).await?;
    let want = stmt.params().len();
    if want != params.len() {
        return Err(Failed::Sql(SqlError::Other(format!(
            "the statement takes {want} parameters, {} were given",
            params.len()
        ))));
    }
    let bound: Vec<Param<'_>> = params.iter().map(Param).collect();
    let refs = bound.iter().map(|p| p as &(dyn ToSql + Sync));
    let mut out = Rows {
        columns: stmt
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect(),
        ..Rows::default()
    };
    let stream = client.query_raw(&stmt, refs).await?;
    futures_util::pin_mut!(stream);
    let mut bytes = 0u64;
    use futures_util::TryStreamExt;
    while let Some(row) = stream.try_next().await? {
        if !want_rows {
            continue;
        }
        if out.rows.len() as u64 >= limits.max_rows {
            return Err(Failed::Sql(SqlError::TooLarge(format!(
                "the result has more than {} rows (`max_rows` of the database); add a LIMIT",
                limits.max_rows
            ))));
        }
        let mut values = Vec::with_capacity(row.len());
        for i in 0..row.len() {
            let v = types::cell(&row, i)?;
            bytes += crate::sqlite::size(&v);
            values.push(v);
        }
        if bytes > limits.max_result_mb << 20 {
            return Err(Failed::Sql(SqlError::TooLarge(format!(
                "the result is over {} MiB (`max_result_mb` of the database)",
                limits.max_result_mb
            ))));
        }
        out.rows.push(values);
    }
    out.changes = stream.rows_affected().unwrap_or(0);
    Ok(out)
}

fn executed(rows: Rows) -> Executed {
    // PostgreSQL has no row id: `INSERT … RETURNING id` gives the key.
    Executed {
        changes: rows.changes,
        last_insert_id: None,
    }
}

#[async_trait::async_trait]
impl Database for PgDb {
    async fn execute(&self, statement: String, params: Vec<Value>) -> Result<Executed, SqlError> {
        allowed(&statement, false)?;
        let conn = self.connection().await?;
        run(&conn, &statement, &params, self.limits(), false, false)
            .await
            .map(executed)
    }

    async fn query(&self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError> {
        allowed(&statement, false)?;
        let conn = self.connection().await?;
        run(&conn, &statement, &params, self.limits(), true, false).await
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>, SqlError> {
        let conn = self.connection().await?;
        let limits = self.limits();
        conn.batch_execute("BEGIN")
            .await
            .map_err(|e| classify(e, limits.timeout_ms, None))?;
        Ok(Box::new(PgTx {
            conn: Some(conn),
            limits,
        }))
    }

    async fn migrate(
        &self,
        migrations: &[Migration],
        revision: u64,
    ) -> Result<Vec<String>, MigrateError> {
        let conn = self.connection().await?;
        let timeout_ms = self.limits().timeout_ms;
        let mut tx = PgTx {
            conn: Some(conn),
            limits: self.limits(),
        };
        let fail = |e| MigrateError::Sql(classify(e, timeout_ms, None));
        let client: &tokio_postgres::Client = tx.conn.as_ref().ok_or(SqlError::Ended)?;
        client.batch_execute("BEGIN").await.map_err(fail)?;
        let applied = migrate::applied(client, &self.app, &self.name)
            .await
            .map_err(fail)?;
        let pending = crate::migrate::pending(migrations, &applied)?;
        for m in &pending {
            migrate::script(client, m).await?;
            migrate::record(client, &self.app, &self.name, m, revision)
                .await
                .map_err(fail)?;
        }
        let conn = tx.conn.take().ok_or(SqlError::Ended)?;
        conn.batch_execute("COMMIT").await.map_err(fail)?;
        if !pending.is_empty() {
            // Statements prepared before may read tables that changed.
            self.pool.manager().statement_caches.clear();
        }
        Ok(pending.iter().map(|m| m.name.clone()).collect())
    }

    /// PostgreSQL's own tools do this best, and know its every type.
    async fn dump(&self) -> Result<String, SqlError> {
        Err(SqlError::Other(PG_DUMP.into()))
    }

    async fn restore(&self, _script: String, _replace: bool) -> Result<(), SqlError> {
        Err(SqlError::Other(PG_DUMP.into()))
    }
}

const PG_DUMP: &str = "a PostgreSQL database is dumped with `pg_dump` and restored with `psql` (or `pg_restore`) against its URL: see docs/sql.md";

mod migrate;

/// A transaction on a connection of its own until it ends.
struct PgTx {
    conn: Option<Object>,
    limits: SqlLimits,
}

impl PgTx {
    async fn run(
        &mut self,
        statement: String,
        params: Vec<Value>,
        want_rows: bool,
    ) -> Result<Rows, SqlError> {
        allowed(&statement, true)?;
        let conn = self.conn.as_ref().ok_or(SqlError::Ended)?;
        run(conn, &statement, &params, self.limits, want_rows, true).await
    }

    async fn end(mut self: Box<Self>, how: &str) -> Result<(), SqlError> {
        let conn = self.conn.take().ok_or(SqlError::Ended)?;
        conn.batch_execute(how)
            .await
            .map_err(|e| classify(e, self.limits.timeout_ms, None))
    }
}

#[async_trait::async_trait]
impl Transaction for PgTx {
    async fn execute(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> Result<Executed, SqlError> {
        self.run(statement, params, false).await.map(executed)
    }

    async fn query(&mut self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError> {
        self.run(statement, params, true).await
    }

    /// A failed statement leaves PostgreSQL's transaction aborted; its
    /// `COMMIT` then rolls back and says so.
    async fn commit(self: Box<Self>) -> Result<(), SqlError> {
        self.end("COMMIT").await
    }

    async fn rollback(self: Box<Self>) -> Result<(), SqlError> {
        self.end("ROLLBACK").await
    }
}

impl Drop for PgTx {
    /// Rolls back on the connection before it serves anyone else; without
    /// a runtime to do that on, the connection is closed, which the
    /// server takes as a rollback.
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if conn.batch_execute("ROLLBACK").await.is_err() {
                        drop(Object::take(conn));
                    }
                });
            }
            Err(_) => drop(Object::take(conn)),
        }
    }
}
