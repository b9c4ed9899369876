//! SQL databases (`nubo:platform/sql`): the app's `[sql.NAME]` databases,
//! for a component granted them (`sql = ["main"]`).
//!
//! ```ignore
//! #[derive(serde::Deserialize)]
//! struct Note { id: i64, title: String }
//!
//! let db = nubo_sdk::sql::Db::open("main")?;
//! db.execute("INSERT INTO notes (title) VALUES (?)", ("groceries",))?;
//! let notes: Vec<Note> = db.query("SELECT id, title FROM notes WHERE id > ?", (0,))?;
//! db.transaction(|tx| {
//!     tx.execute("UPDATE notes SET title = ? WHERE id = ?", ("food", 1))?;
//!     tx.execute("DELETE FROM notes WHERE id = ?", (2,))
//! })?;
//! ```
//!
//! Rows map onto any `serde::Deserialize` type by column name (a tuple or
//! a `Vec` reads them by position); [`Db::rows`] gives them as they are.

use crate::bindings::nubo::platform::sql;
use serde::de::DeserializeOwned;

pub use sql::{Executed, Rows, Value};

/// Why a statement failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The app declares no database of this name.
    NoSuchDatabase(String),
    /// The component is not granted the database (`sql` in nubo.toml).
    AccessDenied(String),
    /// A constraint refused the change: its name (or the column of a
    /// `UNIQUE` or `NOT NULL`, as `notes.title`), if the engine gives one.
    Constraint {
        name: Option<String>,
        message: String,
    },
    /// The statement is not valid SQL or names what does not exist;
    /// `offset` is the byte in the statement where the engine stopped.
    Syntax {
        message: String,
        offset: Option<u32>,
    },
    /// A transaction or statement held the database past the wait.
    Busy(String),
    /// The statement ran past the database's `timeout_ms`.
    Timeout(String),
    /// Over a limit: rows or bytes of a result, or the database's size.
    TooLarge(String),
    /// The transaction was already committed or rolled back.
    Ended,
    Other(String),
}

impl From<sql::Error> for Error {
    fn from(e: sql::Error) -> Self {
        match e {
            sql::Error::NoSuchDatabase(m) => Error::NoSuchDatabase(m),
            sql::Error::AccessDenied(m) => Error::AccessDenied(m),
            sql::Error::Constraint(c) => Error::Constraint {
                name: c.name,
                message: c.message,
            },
            sql::Error::Syntax(s) => Error::Syntax {
                message: s.message,
                offset: s.offset,
            },
            sql::Error::Busy(m) => Error::Busy(m),
            sql::Error::Timeout(m) => Error::Timeout(m),
            sql::Error::TooLarge(m) => Error::TooLarge(m),
            sql::Error::Ended => Error::Ended,
            sql::Error::Other(m) => Error::Other(m),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NoSuchDatabase(m)
            | Error::AccessDenied(m)
            | Error::Busy(m)
            | Error::Timeout(m)
            | Error::TooLarge(m)
            | Error::Other(m) => f.write_str(m),
            Error::Constraint { message, .. } => write!(f, "constraint failed: {message}"),
            Error::Syntax { message, .. } => write!(f, "invalid statement: {message}"),
            Error::Ended => f.write_str("the transaction has ended"),
        }
    }
}

impl std::error::Error for Error {}

/// A value a statement takes as a parameter.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Integer(i64::from(*self))
            }
        }
    )*};
}
integers!(i8, i16, i32, i64, u8, u16, u32, bool);

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// A statement's parameters: `()`, a tuple, or a slice of values.
pub trait Params {
    fn values(&self) -> Vec<Value>;
}

impl Params for () {
    fn values(&self) -> Vec<Value> {
        Vec::new()
    }
}

impl Params for [Value] {
    fn values(&self) -> Vec<Value> {
        self.to_vec()
    }
}

impl Params for Vec<Value> {
    fn values(&self) -> Vec<Value> {
        self.clone()
    }
}

macro_rules! tuples {
    ($(($($n:tt $t:ident),+)),*) => {$(
        impl<$($t: ToValue),+> Params for ($($t,)+) {
            fn values(&self) -> Vec<Value> {
                vec![$(self.$n.to_value()),+]
            }
        }
    )*};
}
tuples!(
    (0 A),
    (0 A, 1 B),
    (0 A, 1 B, 2 C),
    (0 A, 1 B, 2 C, 3 D),
    (0 A, 1 B, 2 C, 3 D, 4 E),
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F),
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G),
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H)
);

/// A database of the app.
pub struct Db(sql::Database);

impl Db {
    /// The app's database `name`; the component must be granted it.
    pub fn open(name: &str) -> Result<Self, Error> {
        sql::Database::open(name).map(Db).map_err(Error::from)
    }

    /// Runs one statement; what it changed.
    pub fn execute(&self, statement: &str, params: impl Params) -> Result<Executed, Error> {
        self.0
            .execute(statement, &params.values())
            .map_err(Error::from)
    }

    /// Runs one query and maps each row onto `T` (see the module docs).
    pub fn query<T: DeserializeOwned>(
        &self,
        statement: &str,
        params: impl Params,
    ) -> Result<Vec<T>, Error> {
        rows_into(self.rows(statement, params)?)
    }

    /// Runs one query; its columns and rows as they are.
    pub fn rows(&self, statement: &str, params: impl Params) -> Result<Rows, Error> {
        self.0
            .query(statement, &params.values())
            .map_err(Error::from)
    }

    /// Runs `f` in a transaction: committed if it returns `Ok`, rolled
    /// back if it returns `Err` (or panics).
    pub fn transaction<T>(&self, f: impl FnOnce(&Tx) -> Result<T, Error>) -> Result<T, Error> {
        let tx = Tx(Some(self.0.begin().map_err(Error::from)?));
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Starts a transaction to end by hand with [`Tx::commit`] or
    /// [`Tx::rollback`]; dropped, it is rolled back.
    pub fn begin(&self) -> Result<Tx, Error> {
        Ok(Tx(Some(self.0.begin().map_err(Error::from)?)))
    }
}

/// A transaction in progress.
pub struct Tx(Option<sql::Transaction>);

impl Tx {
    fn inner(&self) -> Result<&sql::Transaction, Error> {
        self.0.as_ref().ok_or(Error::Ended)
    }

    pub fn execute(&self, statement: &str, params: impl Params) -> Result<Executed, Error> {
        self.inner()?
            .execute(statement, &params.values())
            .map_err(Error::from)
    }

    pub fn query<T: DeserializeOwned>(
        &self,
        statement: &str,
        params: impl Params,
    ) -> Result<Vec<T>, Error> {
        rows_into(self.rows(statement, params)?)
    }

    pub fn rows(&self, statement: &str, params: impl Params) -> Result<Rows, Error> {
        self.inner()?
            .query(statement, &params.values())
            .map_err(Error::from)
    }

    pub fn commit(mut self) -> Result<(), Error> {
        match self.0.take() {
            Some(tx) => sql::Transaction::commit(tx).map_err(Error::from),
            None => Err(Error::Ended),
        }
    }

    pub fn rollback(mut self) -> Result<(), Error> {
        match self.0.take() {
            Some(tx) => sql::Transaction::rollback(tx).map_err(Error::from),
            None => Err(Error::Ended),
        }
    }
}

fn json(v: Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => i.into(),
        Value::Real(f) => {
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Text(t) => t.into(),
        Value::Blob(b) => b.into(),
    }
}

/// Each row as an object by column name, read as `T`; a `T` that reads a
/// sequence (a tuple, a `Vec`) gets the values in order instead.
fn rows_into<T: DeserializeOwned>(rows: Rows) -> Result<Vec<T>, Error> {
    let columns = rows.columns;
    rows.rows
        .into_iter()
        .map(|row| {
            let values: Vec<serde_json::Value> = row.values.into_iter().map(json).collect();
            let object: serde_json::Map<String, serde_json::Value> = columns
                .iter()
                .cloned()
                .zip(values.iter().cloned())
                .collect();
            serde_json::from_value(serde_json::Value::Object(object))
                .or_else(|_| serde_json::from_value(serde_json::Value::Array(values)))
                .map_err(|e| Error::Other(format!("a row does not fit the type asked for: {e}")))
        })
        .collect()
}
