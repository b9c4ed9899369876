//! Each app's total in a table, for per-app quotas: how many bytes its
//! rows hold, kept exact by triggers so that every write path counts and
//! a rolled-back write does not.
//!
//! The totals live in a temporary table (memory, never written to the
//! log), rebuilt from the data table at every open: they can never drift
//! from the rows across restarts, and a write pays no extra page. The
//! rebuild reads only row headers when the size is `length()` of a value.

use crate::{DbError, Disk};
use rusqlite::{Connection, OptionalExtension, Transaction};

/// The totals of one data table.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Name of the temporary table of totals.
    pub table: &'static str,
    /// The data table; it has an `app` column.
    pub source: &'static str,
    /// SQL for a row's size, with `ROW` standing for the row (`NEW`/`OLD`).
    pub size: &'static str,
    /// The columns `size` reads that an update may change (comma
    /// separated): only updates of these run the trigger.
    pub columns: &'static str,
}

impl Usage {
    /// Statements that create the totals and their triggers; run them at
    /// every open, after the data table exists.
    pub fn schema(&self) -> String {
        let Usage {
            table,
            source,
            size,
            columns,
        } = *self;
        let new = size.replace("ROW", "NEW");
        let old = size.replace("ROW", "OLD");
        let all = size.replace("ROW.", "");
        format!(
            "PRAGMA temp_store = MEMORY;
            CREATE TEMP TABLE IF NOT EXISTS {table} (
                app TEXT PRIMARY KEY,
                bytes INTEGER NOT NULL
            ) WITHOUT ROWID;
            DELETE FROM {table};
            INSERT INTO {table} SELECT app, SUM({all}) FROM main.{source} GROUP BY app;
            CREATE TEMP TRIGGER IF NOT EXISTS {table}_added AFTER INSERT ON main.{source} BEGIN
                INSERT INTO {table} VALUES (NEW.app, {new})
                    ON CONFLICT (app) DO UPDATE SET bytes = bytes + excluded.bytes;
            END;
            CREATE TEMP TRIGGER IF NOT EXISTS {table}_changed AFTER UPDATE OF {columns} ON main.{source} BEGIN
                UPDATE {table} SET bytes = bytes - ({old}) WHERE app = OLD.app;
                INSERT INTO {table} VALUES (NEW.app, {new})
                    ON CONFLICT (app) DO UPDATE SET bytes = bytes + excluded.bytes;
            END;
            CREATE TEMP TRIGGER IF NOT EXISTS {table}_removed AFTER DELETE ON main.{source} BEGIN
                UPDATE {table} SET bytes = bytes - ({old}) WHERE app = OLD.app;
            END;"
        )
    }

    /// The bytes `app` holds now.
    pub fn total(&self, db: &Connection, app: &str) -> Result<u64, DbError> {
        let sql = format!("SELECT bytes FROM {} WHERE app = ?1", self.table);
        let n: Option<i64> = db
            .prepare_cached(&sql)?
            .query_row([app], |r| r.get(0))
            .optional()?;
        Ok(n.map_or(0, |n| n.max(0) as u64))
    }

    /// Runs `write` in one transaction and commits it unless it took
    /// `app` past `quota`, in which case `over` is the error and nothing
    /// changed, or it grew the app's total while `disk` is within its
    /// reserve ([`DbError::DiskFull`]). A write that does not grow the
    /// total (a smaller value, a delete) always commits: freeing room is
    /// never refused.
    pub fn within<T, E: From<DbError>>(
        &self,
        db: &mut Connection,
        app: &str,
        (quota, disk): (u64, &Disk),
        write: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
        over: impl FnOnce() -> E,
    ) -> Result<T, E> {
        let tx = db.transaction().map_err(DbError::from)?;
        let before = self.total(&tx, app)?;
        let out = write(&tx)?;
        let after = self.total(&tx, app)?;
        if after > before {
            if after > quota {
                return Err(over());
            }
            disk.room()?;
        }
        tx.commit().map_err(DbError::from)?;
        Ok(out)
    }
}

/// Each app's quota of one service, as the node last set it; an app
/// never set has none. Shared by a service's embedded and cluster
/// backends.
#[derive(Default)]
pub struct Quotas(std::sync::RwLock<std::collections::HashMap<String, u64>>);

impl Quotas {
    pub fn set(&self, app: &str, quota: u64) {
        if let Ok(mut q) = self.0.write() {
            q.insert(app.to_owned(), quota);
        }
    }

    pub fn of(&self, app: &str) -> u64 {
        self.0
            .read()
            .ok()
            .and_then(|q| q.get(app).copied())
            .unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USAGE: Usage = Usage {
        table: "t_usage",
        source: "t",
        size: "length(ROW.v)",
        columns: "v",
    };

    #[test]
    fn totals_follow_every_write_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let open = || {
            let db = crate::open(&path, crate::Synchronous::Normal).unwrap();
            db.execute_batch("CREATE TABLE IF NOT EXISTS t (app TEXT, k TEXT PRIMARY KEY, v BLOB)")
                .unwrap();
            db.execute_batch(&USAGE.schema()).unwrap();
            db
        };
        let mut db = open();
        let disk = Disk::new(dir.path());
        let put = |db: &mut Connection, k: &str, n: usize| {
            USAGE.within(
                db,
                "a",
                (100, &disk),
                |tx| {
                    tx.execute(
                        "INSERT INTO t VALUES ('a', ?1, ?2) ON CONFLICT (k) DO UPDATE SET v = ?2",
                        rusqlite::params![k, vec![0u8; n]],
                    )
                    .map_err(DbError::from)
                },
                || DbError::Stopped("over"),
            )
        };
        put(&mut db, "x", 60).unwrap();
        assert!(matches!(put(&mut db, "y", 60), Err(DbError::Stopped(_))));
        assert_eq!(
            USAGE.total(&db, "a").unwrap(),
            60,
            "the refused write rolled back"
        );
        put(&mut db, "x", 30).unwrap();
        put(&mut db, "y", 60).unwrap();
        db.execute("DELETE FROM t WHERE k = 'x'", []).unwrap();
        assert_eq!(USAGE.total(&db, "a").unwrap(), 60);
        drop(db);
        let db = open();
        assert_eq!(USAGE.total(&db, "a").unwrap(), 60);
        assert_eq!(USAGE.total(&db, "b").unwrap(), 0);
    }
}
