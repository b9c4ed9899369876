//! One statement on a SQLite connection: its parameters bound, its rows
//! read under the database's limits, its error in the guest's terms.

use crate::{Executed, Rows, SqlError, SqlLimits, Value};
use rusqlite::{Connection, ErrorCode};
use std::time::{Duration, Instant};

/// How long a statement may run on the caller's thread (see
/// [`Budget::AtOnce`]).
pub(crate) const AT_ONCE: Duration = Duration::from_millis(1);

/// Where a statement runs, and so how long it may.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// On the caller's thread (a tokio worker), stopped after [`AT_ONCE`]
    /// so that it can run again on the blocking pool: only for a statement
    /// that SQLite undoes whole when stopped (outside a transaction, or a
    /// read).
    AtOnce,
    /// On the blocking pool, for the database's `timeout_ms`.
    Whole,
}

/// Why a statement did not finish.
pub(crate) enum Stop {
    Failed(SqlError),
    /// Past [`AT_ONCE`]: undone, to be run again on the blocking pool.
    OverBudget,
}

impl From<SqlError> for Stop {
    fn from(e: SqlError) -> Self {
        Stop::Failed(e)
    }
}

impl Stop {
    /// The error of a statement run for its whole time.
    pub(crate) fn whole(self, limits: SqlLimits) -> SqlError {
        match self {
            Stop::Failed(e) => e,
            Stop::OverBudget => SqlError::Timeout(limits.timeout_ms),
        }
    }
}

/// Runs `f` with a progress handler that stops it at `timeout_ms`, or
/// sooner for [`Budget::AtOnce`].
fn timed<T>(
    c: &Connection,
    limits: SqlLimits,
    budget: Budget,
    f: impl FnOnce() -> Result<T, rusqlite::Error>,
) -> Result<T, Stop> {
    let whole = Duration::from_millis(limits.timeout_ms);
    let early = budget == Budget::AtOnce && AT_ONCE < whole;
    let deadline = Instant::now() + if early { AT_ONCE } else { whole };
    c.progress_handler(1000, Some(move || Instant::now() > deadline));
    let out = f();
    c.progress_handler(0, None::<fn() -> bool>);
    out.map_err(|e| match e.sqlite_error_code() {
        Some(ErrorCode::OperationInterrupted) if early => Stop::OverBudget,
        Some(ErrorCode::OperationInterrupted) => Stop::Failed(SqlError::Timeout(limits.timeout_ms)),
        _ => Stop::Failed(classify(e)),
    })
}

fn bind(stmt: &mut rusqlite::Statement<'_>, params: &[Value]) -> Result<(), rusqlite::Error> {
    let want = stmt.parameter_count();
    if want != params.len() {
        return Err(rusqlite::Error::InvalidParameterCount(params.len(), want));
    }
    for (i, p) in params.iter().enumerate() {
        let i = i + 1;
        match p {
            Value::Null => stmt.raw_bind_parameter(i, rusqlite::types::Null)?,
            Value::Integer(v) => stmt.raw_bind_parameter(i, v)?,
            Value::Real(v) => stmt.raw_bind_parameter(i, v)?,
            Value::Text(v) => stmt.raw_bind_parameter(i, v)?,
            Value::Blob(v) => stmt.raw_bind_parameter(i, v)?,
        }
    }
    Ok(())
}

pub(crate) fn execute(
    c: &Connection,
    sql: &str,
    params: &[Value],
    limits: SqlLimits,
    budget: Budget,
) -> Result<Executed, Stop> {
    timed(c, limits, budget, || {
        let mut stmt = c.prepare_cached(sql)?;
        bind(&mut stmt, params)?;
        let mut rows = stmt.raw_query();
        while rows.next()?.is_some() {}
        Ok(())
    })?;
    let changes = c.changes();
    Ok(Executed {
        changes,
        last_insert_id: (changes > 0 && inserts(sql)).then(|| c.last_insert_rowid()),
    })
}

/// Whether `sql` is an `INSERT` or `REPLACE` (perhaps after a `WITH`):
/// SQLite's last row id is the connection's, so only such a statement's
/// is its own.
fn inserts(sql: &str) -> bool {
    let words = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .map(str::to_ascii_uppercase);
    for w in words {
        match w.as_str() {
            "INSERT" | "REPLACE" => return true,
            "SELECT" | "UPDATE" | "DELETE" | "CREATE" | "DROP" | "ALTER" => return false,
            _ => {}
        }
    }
    false
}

pub(crate) fn query(
    c: &Connection,
    sql: &str,
    params: &[Value],
    limits: SqlLimits,
    budget: Budget,
) -> Result<Rows, Stop> {
    let mut too_large = None;
    let out = timed(c, limits, budget, || {
        let mut stmt = c.prepare_cached(sql)?;
        bind(&mut stmt, params)?;
        let columns: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let n = columns.len();
        let readonly = stmt.readonly();
        let mut out = Rows {
            columns,
            rows: Vec::new(),
            changes: 0,
        };
        let mut bytes = 0u64;
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next()? {
            if out.rows.len() as u64 >= limits.max_rows {
                too_large = Some(format!(
                    "the result has more than {} rows (`max_rows` of the database); add a LIMIT",
                    limits.max_rows
                ));
                break;
            }
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                let v = value(row.get_ref(i)?);
                bytes += size(&v);
                values.push(v);
            }
            if bytes > limits.max_result_mb << 20 {
                too_large = Some(format!(
                    "the result is over {} MiB (`max_result_mb` of the database)",
                    limits.max_result_mb
                ));
                break;
            }
            out.rows.push(values);
        }
        drop(rows);
        if !readonly {
            out.changes = c.changes();
        }
        Ok(out)
    })?;
    match too_large {
        Some(m) => Err(Stop::Failed(SqlError::TooLarge(m))),
        None => Ok(out),
    }
}

fn value(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

pub(crate) fn size(v: &Value) -> u64 {
    match v {
        Value::Null | Value::Integer(_) | Value::Real(_) => 8,
        Value::Text(t) => t.len() as u64,
        Value::Blob(b) => b.len() as u64,
    }
}

/// SQLite's error in the guest's terms.
pub(crate) fn classify(e: rusqlite::Error) -> SqlError {
    match e {
        rusqlite::Error::SqlInputError { msg, offset, .. } => SqlError::Syntax {
            message: msg,
            offset: u32::try_from(offset).ok(),
        },
        rusqlite::Error::InvalidParameterCount(got, want) => SqlError::Other(format!(
            "the statement takes {want} parameters, {got} were given"
        )),
        rusqlite::Error::SqliteFailure(f, msg) => {
            let message = msg.unwrap_or_else(|| f.to_string());
            match f.code {
                ErrorCode::ConstraintViolation => SqlError::Constraint {
                    name: constraint_name(&message),
                    message,
                },
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => SqlError::Busy(message),
                ErrorCode::DiskFull => SqlError::TooLarge(format!(
                    "{message} (the database is at its `max_size_mb`, or the node's disk is full)"
                )),
                ErrorCode::AuthorizationForStatementDenied => SqlError::Other(format!(
                    "{message}: a component's SQL may not ATTACH databases or change PRAGMAs"
                )),
                _ => SqlError::Other(message),
            }
        }
        other => SqlError::Other(other.to_string()),
    }
}

/// `notes.title` of "UNIQUE constraint failed: notes.title"; the name of
/// "CHECK constraint failed: positive".
fn constraint_name(message: &str) -> Option<String> {
    let (_, name) = message.split_once("constraint failed: ")?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}
