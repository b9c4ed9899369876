//! Applying an app's migrations to a PostgreSQL database, in the
//! transaction [`super::PgDb::migrate`] holds. The transaction first takes
//! an advisory lock, so that nodes of a cluster applying the same
//! revision take turns: the second finds the migrations recorded and
//! applies none. PostgreSQL's DDL is transactional, so a failure leaves
//! no part of any migration behind.

use super::{MIGRATION_LOCK, lex};
use crate::{MigrateError, Migration};
use std::collections::HashMap;
use tokio_postgres::Client;

/// One table per PostgreSQL database, shared by the apps and Nubo
/// databases that use it, each recorded under its own name.
const TABLE: &str = "CREATE TABLE IF NOT EXISTS _nubo_migrations (
    app TEXT NOT NULL,
    database TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    revision BIGINT NOT NULL,
    applied_ms BIGINT NOT NULL,
    PRIMARY KEY (app, database, name)
)";

/// Takes the lock and reads what is applied: name → (sha256, revision).
pub(super) async fn applied(
    c: &Client,
    app: &str,
    database: &str,
) -> Result<HashMap<String, (String, u64)>, tokio_postgres::Error> {
    c.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    // A migration may take long (an index on a big table): `timeout_ms`
    // is for the statements of components.
    c.batch_execute("SET LOCAL statement_timeout = 0").await?;
    c.batch_execute(TABLE).await?;
    let rows = c
        .query(
            "SELECT name, sha256, revision FROM _nubo_migrations WHERE app = $1 AND database = $2",
            &[&app, &database],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get::<_, i64>(2) as u64)))
        .collect())
}

/// Runs each statement of `m`; a failure names the line it starts on.
pub(super) async fn script(c: &Client, m: &Migration) -> Result<(), MigrateError> {
    for (at, statement) in lex::statements(&m.sql) {
        if let Err(e) = c.batch_execute(statement).await {
            return Err(MigrateError::Failed {
                name: m.name.clone(),
                line: lex::line_of(&m.sql, at),
                source: super::classify(e, 0, None),
            });
        }
    }
    Ok(())
}

pub(super) async fn record(
    c: &Client,
    app: &str,
    database: &str,
    m: &Migration,
    revision: u64,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "INSERT INTO _nubo_migrations (app, database, name, sha256, revision, applied_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&app, &database, &m.name, &m.sha256, &(revision as i64), &nubo_sqlite::now_ms()],
    )
    .await
    .map(|_| ())
}
