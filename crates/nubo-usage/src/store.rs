//! Where usage is kept on a node: `usage.db` in the state dir, one row
//! per hour of each app, component, route, user and metric, and one per
//! minute of each app, component, route and metric (all users together:
//! a row per user and minute would make an app with a hundred active
//! users write a hundred times as many rows). A row adds up what was
//! counted in it (or keeps its peak, for a peak metric); the hour's and
//! the minute's rows are written in the same transaction, so the two never
//! disagree. Minutes are kept for [`KEEP_MINUTES`], hours for
//! [`KEEP_HOURS`]; a question about a longer span, or by user, is
//! answered from the hours.

use nubo_sqlite::{DbError, SharedDb, Synchronous};
use nubo_wasm::usage::Point;
use rusqlite::params;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// How long one-minute points are kept.
pub const KEEP_MINUTES: u64 = 7 * 24 * 60;
/// How long hourly points are kept, in minutes.
pub const KEEP_HOURS: u64 = 365 * 24 * 60;

/// Each of `minutes` and `hours` is this table.
const TABLE: &str = "
CREATE TABLE IF NOT EXISTS {table} (
    app TEXT NOT NULL, at INTEGER NOT NULL, component TEXT NOT NULL,
    route TEXT NOT NULL, user TEXT NOT NULL, metric TEXT NOT NULL,
    peak INTEGER NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (app, at, component, route, user, metric)
) WITHOUT ROWID;
";

/// How rows are grouped in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum By {
    /// One row for the whole app.
    #[default]
    App,
    Component,
    Route,
    User,
    /// One row per minute (per hour past [`KEEP_MINUTES`]): a series.
    Time,
}

impl By {
    fn column(self) -> &'static str {
        match self {
            By::App => "''",
            By::Component => "component",
            By::Route => "route",
            By::User => "user",
            By::Time => "at",
        }
    }
}

/// One row of an answer: what `key` (a component, route, user, or the
/// minute as text) used, by metric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub key: String,
    pub usage: BTreeMap<String, u64>,
}

/// The node's usage database.
pub struct UsageDb {
    db: SharedDb,
}

impl UsageDb {
    pub fn open(state: &Path) -> Result<Self, DbError> {
        let schema = ["minutes", "hours"]
            .map(|t| TABLE.replace("{table}", t))
            .concat();
        let db = SharedDb::open(
            &state.join("usage.db"),
            "usage",
            &schema,
            Synchronous::Normal,
        )?;
        Ok(Self { db })
    }

    /// Adds `points` to their minutes and hours, in one transaction.
    pub async fn add(&self, points: Vec<Point>) -> Result<(), DbError> {
        self.db
            .slow(move |db| {
                let tx = db.transaction()?;
                for table in ["minutes", "hours"] {
                    let (sum, peak) = (upsert(table, false), upsert(table, true));
                    let mut sum = tx.prepare_cached(&sum)?;
                    let mut peak = tx.prepare_cached(&peak)?;
                    for p in &points {
                        let (at, user) = if table == "hours" {
                            (p.minute / 60 * 60, &*p.dims.user)
                        } else {
                            (p.minute, "")
                        };
                        let stmt = if p.metric.peak { &mut peak } else { &mut sum };
                        stmt.execute(params![
                            &*p.dims.app,
                            at as i64,
                            &*p.dims.component,
                            &*p.dims.route,
                            user,
                            p.metric.name,
                            p.metric.peak,
                            p.value.min(i64::MAX as u64) as i64,
                        ])?;
                    }
                }
                tx.commit()?;
                Ok::<_, DbError>(())
            })
            .await
    }

    /// What `app` used from minute `since` to minute `until` (exclusive),
    /// grouped `by`. Spans that reach back past [`KEEP_MINUTES`], and
    /// rows by user, are read from the hours (from the start of the hour
    /// `since` is in).
    pub async fn query(
        &self,
        app: &str,
        since: u64,
        until: u64,
        by: By,
        now: u64,
    ) -> Result<Vec<Row>, DbError> {
        let table = if by != By::User && since + KEEP_MINUTES >= now {
            "minutes"
        } else {
            "hours"
        };
        let since = if table == "hours" {
            since / 60 * 60
        } else {
            since
        };
        let sql = format!(
            "SELECT {col}, metric, MAX(peak), SUM(value), MAX(value) FROM {table}
             WHERE app = ?1 AND at >= ?2 AND at < ?3 GROUP BY 1, 2 ORDER BY 1",
            col = by.column()
        );
        let app = app.to_string();
        self.db
            .slow(move |db| {
                let mut stmt = db.prepare_cached(&sql)?;
                let mut rows: Vec<Row> = Vec::new();
                let found = stmt.query_map(params![app, since as i64, until as i64], |r| {
                    let key = match r.get_ref(0)? {
                        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                        v => v.as_str().map(str::to_string).unwrap_or_default(),
                    };
                    let peak: bool = r.get(2)?;
                    let value: i64 = if peak { r.get(4)? } else { r.get(3)? };
                    Ok((key, r.get::<_, String>(1)?, value.max(0) as u64))
                })?;
                for f in found {
                    let (key, metric, value) = f?;
                    match rows.last_mut() {
                        Some(row) if row.key == key => {
                            row.usage.insert(metric, value);
                        }
                        _ => rows.push(Row {
                            key,
                            usage: BTreeMap::from([(metric, value)]),
                        }),
                    }
                }
                Ok::<_, DbError>(rows)
            })
            .await
    }

    /// Deletes points older than they are kept, as of minute `now`.
    pub async fn prune(&self, now: u64) -> Result<(), DbError> {
        self.db
            .slow(move |db| {
                db.execute(
                    "DELETE FROM minutes WHERE at < ?1",
                    [now.saturating_sub(KEEP_MINUTES) as i64],
                )?;
                db.execute(
                    "DELETE FROM hours WHERE at < ?1",
                    [now.saturating_sub(KEEP_HOURS) as i64],
                )?;
                Ok::<_, DbError>(())
            })
            .await
    }

    /// Deletes everything of `app`; the number of rows.
    pub async fn purge(&self, app: &str) -> Result<u64, DbError> {
        let app = app.to_string();
        self.db
            .slow(move |db| {
                let n = db.execute("DELETE FROM minutes WHERE app = ?1", [&app])?
                    + db.execute("DELETE FROM hours WHERE app = ?1", [&app])?;
                Ok::<_, DbError>(n as u64)
            })
            .await
    }
}

fn upsert(table: &str, peak: bool) -> String {
    let merge = if peak {
        "MAX(value, excluded.value)"
    } else {
        "value + excluded.value"
    };
    format!(
        "INSERT INTO {table} (app, at, component, route, user, metric, peak, value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT DO UPDATE SET value = {merge}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use nubo_wasm::usage::{Dims, MEMORY_PEAK_BYTES, RUNS};

    fn point(minute: u64, component: &str, metric: nubo_wasm::Metric, value: u64) -> Point {
        Point {
            minute,
            dims: Dims::of("a", component),
            metric,
            value,
        }
    }

    #[tokio::test]
    async fn sums_and_peaks_group_and_outlive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = 30_000_000;
        {
            let db = UsageDb::open(dir.path()).unwrap();
            db.add(vec![
                point(now - 2, "api", RUNS, 3),
                point(now - 1, "api", RUNS, 4),
                point(now - 1, "web", RUNS, 1),
                point(now - 2, "api", MEMORY_PEAK_BYTES, 100),
                point(now - 1, "api", MEMORY_PEAK_BYTES, 70),
            ])
            .await
            .unwrap();
            db.add(vec![point(now - 1, "api", RUNS, 2)]).await.unwrap();
        }
        let db = UsageDb::open(dir.path()).unwrap();
        let rows = db
            .query("a", now - 60, now, By::Component, now)
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].key, "api");
        assert_eq!(rows[0].usage["runs"], 9);
        assert_eq!(rows[0].usage["memory_peak_bytes"], 100);
        assert_eq!(rows[1].usage["runs"], 1);
        let total = db.query("a", now - 60, now, By::App, now).await.unwrap();
        assert_eq!(total[0].usage["runs"], 10);
        let series = db.query("a", now - 60, now, By::Time, now).await.unwrap();
        assert_eq!(series.len(), 2, "one row per minute");
        let old = db
            .query("a", now - KEEP_MINUTES - 120, now, By::App, now)
            .await
            .unwrap();
        assert_eq!(old[0].usage["runs"], 10, "the hours hold the same");
        assert!(
            db.query("b", now - 60, now, By::App, now)
                .await
                .unwrap()
                .is_empty()
        );
        let mut by_user = point(now - 1, "api", RUNS, 5);
        by_user.dims.user = "u1".into();
        db.add(vec![by_user]).await.unwrap();
        let users = db.query("a", now - 60, now, By::User, now).await.unwrap();
        assert_eq!(users.len(), 2, "{users:?}");
        assert_eq!((users[1].key.as_str(), users[1].usage["runs"]), ("u1", 5));
        let minutes = db.query("a", now - 60, now, By::App, now).await.unwrap();
        assert_eq!(
            minutes[0].usage["runs"], 15,
            "the minutes add every user up"
        );
        db.prune(now + KEEP_MINUTES + 10).await.unwrap();
        assert!(
            db.query("a", now - 60, now, By::App, now)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            db.purge("a").await.unwrap(),
            4,
            "the hours' rows are left to purge"
        );
    }
}
