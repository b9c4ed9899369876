//! Each app's total in a table, for per-app quotas: how many bytes its
//! rows hold, kept exact by triggers so that every write path counts and
//! a rolled-back write does not.
//!
//! The totals live in a temporary table (memory, never written to the
//! log), rebuilt from the data table at every open: they can never drift
//! from the rows across restarts, and a write pays no extra page. The
//! rebuild reads only row headers when the size is `length()` of a value.
//!
//! With [`Usage::checked_schema`] the same triggers also hold the quota:
//! after a row grows an app's total they call a function of the
//! connection ([`Usage::install`]) that compares it with the app's quota
//! and the disk with its reserve, and `RAISE(ABORT)` undoes the
//! statement when either is exceeded. The check thus costs no statement
//! of its own and no transaction around a single write; [`Limits::within`]
//! tells the refusal from other errors by what the function recorded,
//! never by the error's text.

use crate::{DbError, Disk};
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OptionalExtension};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

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
        self.triggers(false)
    }

    /// [`Usage::schema`] whose triggers also refuse a write that grows
    /// an app's total past its quota or while the disk is within its
    /// reserve; the connection needs [`Usage::install`].
    pub fn checked_schema(&self) -> String {
        self.triggers(true)
    }

    fn triggers(&self, checked: bool) -> String {
        let Usage {
            table,
            source,
            size,
            columns,
        } = *self;
        let new = size.replace("ROW", "NEW");
        let old = size.replace("ROW", "OLD");
        let all = size.replace("ROW.", "");
        let check = |grew: &str| {
            if checked {
                format!(
                    "SELECT RAISE(ABORT, 'over the app''s quota or the disk''s reserve')
                        WHERE {grew} {table}_over(NEW.app, (SELECT bytes FROM {table} WHERE app = NEW.app));"
                )
            } else {
                String::new()
            }
        };
        let (on_insert, on_update) = (check(""), check(&format!("({new}) > ({old}) AND")));
        format!(
            "PRAGMA temp_store = MEMORY;
            CREATE TEMP TABLE IF NOT EXISTS {table} (
                app TEXT PRIMARY KEY,
                bytes INTEGER NOT NULL
            ) WITHOUT ROWID;
            DELETE FROM {table};
            INSERT INTO {table} SELECT app, SUM({all}) FROM main.{source} GROUP BY app;
            DROP TRIGGER IF EXISTS temp.{table}_added;
            DROP TRIGGER IF EXISTS temp.{table}_changed;
            CREATE TEMP TRIGGER {table}_added AFTER INSERT ON main.{source} BEGIN
                INSERT INTO {table} VALUES (NEW.app, {new})
                    ON CONFLICT (app) DO UPDATE SET bytes = bytes + excluded.bytes;
                {on_insert}
            END;
            CREATE TEMP TRIGGER {table}_changed AFTER UPDATE OF {columns} ON main.{source} BEGIN
                UPDATE {table} SET bytes = bytes - ({old}) WHERE app = OLD.app;
                INSERT INTO {table} VALUES (NEW.app, {new})
                    ON CONFLICT (app) DO UPDATE SET bytes = bytes + excluded.bytes;
                {on_update}
            END;
            CREATE TEMP TRIGGER IF NOT EXISTS {table}_removed AFTER DELETE ON main.{source} BEGIN
                UPDATE {table} SET bytes = bytes - ({old}) WHERE app = OLD.app;
            END;"
        )
    }

    /// Gives `db` the function the checked triggers call, reading
    /// `limits`.
    pub fn install(&self, db: &Connection, limits: Arc<Limits>) -> Result<(), DbError> {
        let name = format!("{}_over", self.table);
        db.create_scalar_function(name.as_str(), 2, FunctionFlags::SQLITE_UTF8, move |ctx| {
            let app = ctx.get_raw(0).as_str().unwrap_or_default();
            let total: i64 = ctx.get(1)?;
            Ok(limits.trip(app, total.max(0) as u64))
        })?;
        Ok(())
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
}

/// What a checked [`Usage`] holds writes to: each app's quota, as the
/// node last set it, and the disk's reserve. One per connection.
#[derive(Debug)]
pub struct Limits {
    pub quotas: Quotas,
    pub disk: Disk,
    /// Why the last check refused a write ([`Tripped`]), until
    /// [`Limits::within`] reads it.
    tripped: AtomicU8,
}

#[repr(u8)]
enum Tripped {
    No = 0,
    Quota = 1,
    Disk = 2,
}

impl Limits {
    /// No quotas yet, and the disk that holds `path`.
    pub fn new(path: &Path) -> Arc<Self> {
        Arc::new(Self {
            quotas: Quotas::default(),
            disk: Disk::new(path),
            tripped: AtomicU8::new(Tripped::No as u8),
        })
    }

    /// Whether a write that took `app` to `total` bytes must be undone;
    /// records why.
    fn trip(&self, app: &str, total: u64) -> bool {
        let why = if total > self.quotas.of(app) {
            Tripped::Quota
        } else if self.disk.room().is_err() {
            Tripped::Disk
        } else {
            return false;
        };
        self.tripped.store(why as u8, Ordering::Relaxed);
        true
    }

    /// Runs `write` on the connection these limits were installed on; if
    /// the checked triggers undid it, the error is `over()` for the quota
    /// and [`DbError::DiskFull`] for the disk. A write that does not grow
    /// an app's total (a smaller value, a delete) is never refused.
    pub fn within<T, E: From<DbError>>(
        &self,
        write: impl FnOnce() -> Result<T, E>,
        over: impl FnOnce() -> E,
    ) -> Result<T, E> {
        self.tripped.store(Tripped::No as u8, Ordering::Relaxed);
        write().map_err(
            |e| match self.tripped.swap(Tripped::No as u8, Ordering::Relaxed) {
                t if t == Tripped::Quota as u8 => over(),
                t if t == Tripped::Disk as u8 => DbError::DiskFull.into(),
                _ => e,
            },
        )
    }
}

/// Each app's quota of one service, as the node last set it; an app
/// never set has none. Shared by a service's embedded and cluster
/// backends.
#[derive(Debug, Default)]
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

    /// Table `t` at `path` with checked totals reading `limits`.
    fn open(path: &std::path::Path, limits: &Arc<Limits>) -> Connection {
        let db = crate::open(path, crate::Synchronous::Normal).unwrap();
        db.execute_batch("CREATE TABLE IF NOT EXISTS t (app TEXT, k TEXT PRIMARY KEY, v BLOB)")
            .unwrap();
        db.execute_batch(&USAGE.checked_schema()).unwrap();
        USAGE.install(&db, limits.clone()).unwrap();
        db
    }

    /// Sets key `k` of app `a` to `n` bytes; `Stopped("over")` over quota.
    fn put(db: &Connection, limits: &Limits, k: &str, n: usize) -> Result<usize, DbError> {
        limits.within(
            || {
                db.execute(
                    "INSERT INTO t VALUES ('a', ?1, ?2) ON CONFLICT (k) DO UPDATE SET v = ?2",
                    rusqlite::params![k, vec![0u8; n]],
                )
                .map_err(DbError::from)
            },
            || DbError::Stopped("over"),
        )
    }

    #[test]
    fn totals_follow_every_write_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let limits = Limits::new(dir.path());
        limits.quotas.set("a", 100);
        let db = open(&path, &limits);
        let put = |db: &Connection, k: &str, n: usize| put(db, &limits, k, n);
        put(&db, "x", 60).unwrap();
        assert_eq!(put(&db, "y", 60), Err(DbError::Stopped("over")));
        assert_eq!(
            USAGE.total(&db, "a").unwrap(),
            60,
            "the refused write was undone"
        );
        put(&db, "x", 30).unwrap();
        put(&db, "y", 60).unwrap();
        // Over the quota once it is lowered: growing is refused,
        // shrinking and deleting are not.
        limits.quotas.set("a", 50);
        assert_eq!(put(&db, "y", 61), Err(DbError::Stopped("over")));
        put(&db, "y", 59).unwrap();
        db.execute("DELETE FROM t WHERE k = 'x'", []).unwrap();
        assert_eq!(USAGE.total(&db, "a").unwrap(), 59);
        // Another error is not taken for the quota.
        let other = limits.within(
            || {
                db.execute("INSERT INTO nowhere VALUES (1)", [])
                    .map_err(DbError::from)
            },
            || DbError::Stopped("over"),
        );
        assert!(matches!(other, Err(DbError::Sqlite(_))), "{other:?}");
        drop(db);
        let db = open(&path, &limits);
        assert_eq!(USAGE.total(&db, "a").unwrap(), 59);
        assert_eq!(USAGE.total(&db, "b").unwrap(), 0);
    }

    #[test]
    fn the_disk_reserve_refuses_growth_only() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits::new(dir.path());
        let db = open(&dir.path().join("t.db"), &limits);
        let put = |k: &str, n: usize| put(&db, &limits, k, n);
        put("x", 10).unwrap();
        limits.disk.keep_free(u64::MAX);
        assert_eq!(put("y", 10), Err(DbError::DiskFull));
        put("x", 5).unwrap();
        limits.disk.keep_free(0);
        put("y", 10).unwrap();
    }
}
