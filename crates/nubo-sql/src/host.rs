//! `nubo:platform/sql` for one guest instance: the databases its
//! component is granted, statements, and transactions held as resources.

use crate::{Database, SqlError, SqlGrant, Transaction, Value};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nubo:platform/sql-host",
        imports: { default: async | trappable },
        with: {
            "nubo:platform/sql.database": super::DatabaseHandle,
            "nubo:platform/sql.transaction": super::TxHandle,
        },
    });
}

use generated::nubo::platform::sql;

/// An open database, as the guest holds it.
pub struct DatabaseHandle(Arc<dyn Database>);

/// A transaction, as the guest holds it; `None` once it ended.
pub struct TxHandle(Option<Box<dyn Transaction>>);

type R<T> = wasmtime::Result<Result<T, sql::Error>>;

/// What the binding borrows from the store's data for one call.
struct SqlView<'a> {
    /// `None` for a component without the grant.
    grant: Option<&'a SqlGrant>,
    table: &'a mut ResourceTable,
}

struct HasSql;

impl HasData for HasSql {
    type Data<'a> = SqlView<'a>;
}

/// A component's SQL grant, as the runtime holds it.
pub(crate) struct Granted(pub Arc<SqlGrant>);

impl nubo_wasm::Grant for Granted {
    fn instantiate(&self, _run: &nubo_wasm::Run<'_>, states: &mut nubo_wasm::States) {
        states.insert(self.0.clone());
    }
}

/// Calls a component made into nubo:platform/sql: what the node's usage counts of
/// this capability ([`nubo_wasm::usage`]).
pub const SQL_CALLS: nubo_wasm::Metric = nubo_wasm::Metric::sum("sql_calls");

fn view(host: &mut nubo_wasm::Host) -> SqlView<'_> {
    host.count(SQL_CALLS, 1);
    let (grant, table) = host.state_and_table::<Arc<SqlGrant>>();
    SqlView {
        grant: grant.map(|g| &**g),
        table,
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<nubo_wasm::Host>) -> wasmtime::Result<()> {
    sql::add_to_linker::<_, HasSql>(linker, view)
}

impl sql::Host for SqlView<'_> {}

impl sql::HostDatabase for SqlView<'_> {
    async fn open(&mut self, name: String) -> R<Resource<DatabaseHandle>> {
        let Some(grant) = self.grant.filter(|g| g.databases.contains(&name)) else {
            tracing::warn!(database = %name, "component opened a database it is not granted (sql in nubo.toml)");
            return Ok(Err(guest(SqlError::AccessDenied(name))));
        };
        match grant.open(&name).await {
            Ok(db) => Ok(Ok(self.table.push(DatabaseHandle(db))?)),
            Err(e) => Ok(Err(guest(e))),
        }
    }

    async fn execute(
        &mut self,
        db: Resource<DatabaseHandle>,
        statement: String,
        params: Vec<sql::Value>,
    ) -> R<sql::Executed> {
        let db = self.table.get(&db)?.0.clone();
        Ok(db
            .execute(statement, params.into_iter().map(from_guest).collect())
            .await
            .map(executed)
            .map_err(guest))
    }

    async fn query(
        &mut self,
        db: Resource<DatabaseHandle>,
        statement: String,
        params: Vec<sql::Value>,
    ) -> R<sql::Rows> {
        let db = self.table.get(&db)?.0.clone();
        Ok(db
            .query(statement, params.into_iter().map(from_guest).collect())
            .await
            .map(rows)
            .map_err(guest))
    }

    async fn begin(&mut self, db: Resource<DatabaseHandle>) -> R<Resource<TxHandle>> {
        let db = self.table.get(&db)?.0.clone();
        match db.begin().await {
            Ok(tx) => Ok(Ok(self.table.push(TxHandle(Some(tx)))?)),
            Err(e) => Ok(Err(guest(e))),
        }
    }

    async fn drop(&mut self, db: Resource<DatabaseHandle>) -> wasmtime::Result<()> {
        self.table.delete(db)?;
        Ok(())
    }
}

impl SqlView<'_> {
    fn tx(
        &mut self,
        tx: &Resource<TxHandle>,
    ) -> wasmtime::Result<Option<&mut Box<dyn Transaction>>> {
        Ok(self.table.get_mut(tx)?.0.as_mut())
    }
}

impl sql::HostTransaction for SqlView<'_> {
    async fn execute(
        &mut self,
        tx: Resource<TxHandle>,
        statement: String,
        params: Vec<sql::Value>,
    ) -> R<sql::Executed> {
        let Some(tx) = self.tx(&tx)? else {
            return Ok(Err(sql::Error::Ended));
        };
        Ok(tx
            .execute(statement, params.into_iter().map(from_guest).collect())
            .await
            .map(executed)
            .map_err(guest))
    }

    async fn query(
        &mut self,
        tx: Resource<TxHandle>,
        statement: String,
        params: Vec<sql::Value>,
    ) -> R<sql::Rows> {
        let Some(tx) = self.tx(&tx)? else {
            return Ok(Err(sql::Error::Ended));
        };
        Ok(tx
            .query(statement, params.into_iter().map(from_guest).collect())
            .await
            .map(rows)
            .map_err(guest))
    }

    async fn commit(&mut self, tx: Resource<TxHandle>) -> R<()> {
        match self.table.delete(tx)?.0 {
            Some(tx) => Ok(tx.commit().await.map_err(guest)),
            None => Ok(Err(sql::Error::Ended)),
        }
    }

    async fn rollback(&mut self, tx: Resource<TxHandle>) -> R<()> {
        match self.table.delete(tx)?.0 {
            Some(tx) => Ok(tx.rollback().await.map_err(guest)),
            None => Ok(Err(sql::Error::Ended)),
        }
    }

    /// Dropped without commit: rolled back (the transaction's own drop).
    async fn drop(&mut self, tx: Resource<TxHandle>) -> wasmtime::Result<()> {
        self.table.delete(tx)?;
        Ok(())
    }
}

fn from_guest(v: sql::Value) -> Value {
    match v {
        sql::Value::Null => Value::Null,
        sql::Value::Integer(i) => Value::Integer(i),
        sql::Value::Real(f) => Value::Real(f),
        sql::Value::Text(t) => Value::Text(t),
        sql::Value::Blob(b) => Value::Blob(b),
    }
}

fn to_guest(v: Value) -> sql::Value {
    match v {
        Value::Null => sql::Value::Null,
        Value::Integer(i) => sql::Value::Integer(i),
        Value::Real(f) => sql::Value::Real(f),
        Value::Text(t) => sql::Value::Text(t),
        Value::Blob(b) => sql::Value::Blob(b),
    }
}

fn executed(e: crate::Executed) -> sql::Executed {
    sql::Executed {
        changes: e.changes,
        last_insert_id: e.last_insert_id,
    }
}

fn rows(r: crate::Rows) -> sql::Rows {
    sql::Rows {
        columns: r.columns,
        rows: r
            .rows
            .into_iter()
            .map(|values| sql::Row {
                values: values.into_iter().map(to_guest).collect(),
            })
            .collect(),
    }
}

fn guest(e: SqlError) -> sql::Error {
    match e {
        SqlError::NoSuchDatabase(n) => {
            sql::Error::NoSuchDatabase(SqlError::NoSuchDatabase(n).to_string())
        }
        SqlError::AccessDenied(n) => {
            sql::Error::AccessDenied(SqlError::AccessDenied(n).to_string())
        }
        SqlError::Constraint { name, message } => {
            sql::Error::Constraint(sql::ConstraintViolation { name, message })
        }
        SqlError::Syntax { message, offset } => {
            sql::Error::Syntax(sql::SyntaxError { message, offset })
        }
        SqlError::Busy(m) => sql::Error::Busy(m),
        e @ SqlError::Timeout(_) => sql::Error::Timeout(e.to_string()),
        SqlError::TooLarge(m) => sql::Error::TooLarge(m),
        SqlError::Ended => sql::Error::Ended,
        SqlError::Other(m) => sql::Error::Other(m),
    }
}
