//! SQL databases of an app: `[sql.NAME]` in `nubo.toml`, reached by a
//! component granted `sql = ["NAME"]` through `nubo:platform/sql`.
//!
//! As with every Nubo capability: [`SqlBackend`] opens an app's databases
//! and [`Database`] is the contract each engine keeps (statements with
//! typed parameters and rows, transactions held across guest calls,
//! migrations, limits); [`SqliteBackend`] is the embedded engine, one file
//! per database in the node's state dir, and [`PostgresBackend`] a
//! PostgreSQL server the app's owner runs, which every node of a cluster
//! reaches. The guest interface has no engine in it, so the same
//! component runs on either.
//!
//! Values are SQLite's five storage classes (null, integer, real, text,
//! blob), which is also what Spin's `spin:sqlite` carries: a Spin
//! component maps onto this interface one to one.

mod api;
mod capability;
mod host;
mod migrate;
mod postgres;
mod section;
mod sqlite;

pub use capability::{Declared, Sql, SqlGrant, SqlService};
pub use postgres::PostgresBackend;
pub use section::{DatabaseSpec, Engine, Migration, SqlLimits, SqlSection, SqlSpecs};
pub use sqlite::SqliteBackend;

use std::sync::Arc;

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// What a query returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// Rows the statement inserted, updated or deleted (0 for a read).
    pub changes: u64,
}

/// What a statement changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Executed {
    /// Rows inserted, updated or deleted.
    pub changes: u64,
    /// The row id of the last insert, if the statement inserted a row.
    pub last_insert_id: Option<i64>,
}

/// Why a statement failed, in the terms the guest gets.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SqlError {
    #[error("no database `{0}` is declared ([sql.NAME] in nubo.toml)")]
    NoSuchDatabase(String),
    #[error("access denied: database `{0}` is not in this component's `sql` in nubo.toml")]
    AccessDenied(String),
    /// A constraint refused the change.
    #[error("constraint failed: {message}")]
    Constraint {
        /// The constraint's name, or the column(s) of a `UNIQUE`/`NOT NULL`
        /// as SQLite names them (`notes.title`).
        name: Option<String>,
        message: String,
    },
    /// The statement does not parse.
    #[error("syntax error: {message}")]
    Syntax {
        message: String,
        /// Byte offset in the statement where the engine stopped.
        offset: Option<u32>,
    },
    /// Another statement or transaction held the database past the wait.
    #[error("database busy: {0}")]
    Busy(String),
    /// The statement ran past the database's `timeout_ms` and was stopped.
    #[error("statement stopped after {0} ms (`timeout_ms` of the database)")]
    Timeout(u64),
    /// A result or the database grew past a limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The transaction was already committed or rolled back.
    #[error("the transaction has ended")]
    Ended,
    #[error("{0}")]
    Other(String),
}

/// An app's databases on this node.
#[async_trait::async_trait]
pub trait SqlBackend: Send + Sync + 'static {
    /// The database `name` of `app`, opened (and created) as `spec` says;
    /// the same handle for every caller while it stays declared.
    async fn database(
        &self,
        app: &str,
        name: &str,
        spec: &DatabaseSpec,
    ) -> Result<Arc<dyn Database>, SqlError>;

    /// Deletes every database of `app`, which it declared as `specs`
    /// (with each `url` rendered); how many there were.
    async fn purge_app(&self, app: &str, specs: &crate::SqlSpecs) -> Result<u64, SqlError>;
}

/// One database: the contract every engine keeps.
#[async_trait::async_trait]
pub trait Database: Send + Sync {
    async fn execute(&self, statement: String, params: Vec<Value>) -> Result<Executed, SqlError>;
    async fn query(&self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError>;
    /// Starts a transaction, which holds the database until it ends:
    /// statements made on the database meanwhile wait for it.
    async fn begin(&self) -> Result<Box<dyn Transaction>, SqlError>;
    /// Applies the migrations not applied yet, in order and in one
    /// transaction, recording each with its checksum and `revision`; the
    /// names it applied. Refuses, applying nothing, a migration applied
    /// before whose text has changed since.
    async fn migrate(
        &self,
        migrations: &[Migration],
        revision: u64,
    ) -> Result<Vec<String>, MigrateError>;
    /// The database as SQL text: its tables and rows, then indexes,
    /// triggers and views, as one consistent snapshot.
    async fn dump(&self) -> Result<String, SqlError>;
    /// Runs `script` (a dump) in one transaction. Without `replace` the
    /// database must have no tables; with it, they are dropped first.
    async fn restore(&self, script: String, replace: bool) -> Result<(), SqlError>;
}

/// A transaction in progress. Dropped without [`Transaction::commit`], it
/// is rolled back.
#[async_trait::async_trait]
pub trait Transaction: Send {
    async fn execute(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> Result<Executed, SqlError>;
    async fn query(&mut self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError>;
    async fn commit(self: Box<Self>) -> Result<(), SqlError>;
    async fn rollback(self: Box<Self>) -> Result<(), SqlError>;
}

/// Why migrations were not applied; nothing of them was.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "migration `{name}` was changed after it was applied on revision {revision}; add a new migration instead"
    )]
    Changed { name: String, revision: u64 },
    #[error("migration `{name}`, line {line}: {source}")]
    Failed {
        name: String,
        /// Line in the file of the statement that failed.
        line: usize,
        #[source]
        source: SqlError,
    },
    #[error(transparent)]
    Sql(#[from] SqlError),
}
