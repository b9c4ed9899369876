//! The embedded task store: one table in a [`nubo_sqlite::GroupDb`]. A
//! spawn is acknowledged to the guest only once its row is committed, and
//! so is every state change, so a killed node loses no task it admitted.

use crate::{NewTask, State, Task, TaskError};
use nubo_sqlite::{DbError, GroupDb, now_ms};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tasks (
        id TEXT PRIMARY KEY,
        app TEXT NOT NULL,
        component TEXT NOT NULL,
        function TEXT NOT NULL,
        payload BLOB NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        depth INTEGER NOT NULL,
        result BLOB,
        error TEXT,
        created_ms INTEGER NOT NULL,
        finished_ms INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS tasks_active ON tasks (app, state);";

const COLUMNS: &str = "id, app, component, function, payload, state, attempts, depth, result, error, created_ms, finished_ms";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("task store failed: {0}")]
    Db(#[from] DbError),
    #[error("{0}")]
    Task(#[from] TaskError),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(DbError::from(e))
    }
}

pub struct SqliteTasks {
    db: GroupDb,
}

fn task(r: &rusqlite::Row<'_>) -> rusqlite::Result<Task> {
    let error: Option<String> = r.get(9)?;
    Ok(Task {
        id: r.get(0)?,
        app: r.get(1)?,
        component: r.get(2)?,
        function: r.get(3)?,
        payload: r.get(4)?,
        state: State::parse(&r.get::<_, String>(5)?),
        attempts: r.get::<_, i64>(6)? as u32,
        depth: r.get::<_, i64>(7)? as u32,
        result: r.get(8)?,
        error: error.and_then(|e| serde_json::from_str(&e).ok()),
        created_ms: r.get(10)?,
        finished_ms: r.get(11)?,
    })
}

fn get(db: &Connection, id: &str) -> Result<Option<Task>, StoreError> {
    Ok(db
        .prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"))?
        .query_row([id], task)
        .optional()?)
}

impl SqliteTasks {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: GroupDb::open(path, "tasks-db", SCHEMA)?,
        })
    }

    /// Stores `t` as queued, unless a task with its id exists (a re-run
    /// spawning again): then that one. `true` if it is new. Refused when
    /// the app already has `max_active` tasks queued or running.
    pub async fn spawn(&self, t: NewTask, max_active: u32) -> Result<(Task, bool), StoreError> {
        self.db
            .call(move |db| {
                if let Some(existing) = get(db, &t.id)? {
                    return Ok((existing, false));
                }
                let active: i64 = db
                    .prepare_cached(
                        "SELECT COUNT(*) FROM tasks WHERE app = ?1 AND state IN ('queued', 'running')",
                    )?
                    .query_row([&t.app], |r| r.get(0))?;
                if active >= i64::from(max_active) {
                    return Err(TaskError::refused(format!(
                        "app `{}` has {active} tasks queued or running, its limit (max_active_tasks)",
                        t.app
                    ))
                    .into());
                }
                let now = now_ms();
                db.prepare_cached(
                    "INSERT INTO tasks (id, app, component, function, payload, state, depth, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7)",
                )?
                .execute(params![t.id, t.app, t.component, t.function, t.payload, t.depth, now])?;
                let stored = get(db, &t.id)?.ok_or_else(|| {
                    StoreError::Db(DbError::Sqlite("a stored task vanished".into()))
                })?;
                Ok((stored, true))
            })
            .await
    }

    /// Marks a queued task running and counts the attempt; `None` if it
    /// is not queued (cancelled, or already taken).
    pub async fn start(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let id = id.to_string();
        self.db
            .call(move |db| {
                let n = db
                    .prepare_cached(
                        "UPDATE tasks SET state = 'running', attempts = attempts + 1
                         WHERE id = ?1 AND state = 'queued'",
                    )?
                    .execute([&id])?;
                if n == 0 {
                    return Ok(None);
                }
                get(db, &id)
            })
            .await
    }

    /// Records a running task's outcome. A task cancelled meanwhile stays
    /// cancelled.
    pub async fn finish(
        &self,
        id: &str,
        outcome: Result<Vec<u8>, TaskError>,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        let now = now_ms();
        self.db
            .call(move |db| {
                let (state, result, error) = match outcome {
                    Ok(r) => (State::Done, Some(r), None),
                    Err(e) => (State::Failed, None, serde_json::to_string(&e).ok()),
                };
                db.prepare_cached(
                    "UPDATE tasks SET state = ?2, result = ?3, error = ?4, finished_ms = ?5
                     WHERE id = ?1 AND state = 'running'",
                )?
                .execute(params![id, state.as_str(), result, error, now])?;
                Ok(())
            })
            .await
    }

    /// Puts a running task back in the queue (to be retried).
    pub async fn requeue(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.db
            .call(move |db| {
                Ok(db
                    .prepare_cached(
                        "UPDATE tasks SET state = 'queued' WHERE id = ?1 AND state = 'running'",
                    )?
                    .execute([&id])?
                    > 0)
            })
            .await
    }

    /// Cancels `id` of `app` and every task it started, transitively,
    /// that has not finished; the ids cancelled.
    pub async fn cancel(&self, app: &str, id: &str) -> Result<Vec<String>, StoreError> {
        let (app, id) = (app.to_string(), id.to_string());
        let now = now_ms();
        self.db
            .call(move |db| {
                // Descendants of `P` are exactly the ids starting `P.`.
                let ids: Vec<String> = db
                    .prepare_cached(
                        "SELECT id FROM tasks WHERE app = ?1 AND (id = ?2 OR (id > ?2 || '.' AND id < ?2 || '/'))
                         AND state IN ('queued', 'running')",
                    )?
                    .query_map(params![app, id], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut update = db.prepare_cached(
                    "UPDATE tasks SET state = 'cancelled', finished_ms = ?2 WHERE id = ?1",
                )?;
                for t in &ids {
                    update.execute(params![t, now])?;
                }
                Ok(ids)
            })
            .await
    }

    pub async fn get(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let id = id.to_string();
        self.db.call(move |db| get(db, &id)).await
    }

    /// The app's most recent tasks, newest first.
    pub async fn list(&self, app: &str, limit: usize) -> Result<Vec<Task>, StoreError> {
        let app = app.to_string();
        self.db
            .call(move |db| {
                Ok(db
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM tasks WHERE app = ?1 ORDER BY created_ms DESC, id LIMIT ?2"
                    ))?
                    .query_map(params![app, limit.min(10_000) as i64], task)?
                    .collect::<Result<_, _>>()?)
            })
            .await
    }

    /// After a restart: tasks that were running when the node died go
    /// back to the queue. Every queued task, oldest first.
    pub async fn recover(&self) -> Result<Vec<Task>, StoreError> {
        self.db
            .call(move |db| {
                db.execute(
                    "UPDATE tasks SET state = 'queued' WHERE state = 'running'",
                    [],
                )?;
                Ok(db
                    .prepare(&format!(
                        "SELECT {COLUMNS} FROM tasks WHERE state = 'queued' ORDER BY created_ms, id"
                    ))?
                    .query_map([], task)?
                    .collect::<Result<_, _>>()?)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(id: &str) -> NewTask {
        NewTask {
            id: id.into(),
            app: "a".into(),
            component: "c".into(),
            function: "f".into(),
            payload: b"p".to_vec(),
            depth: id.matches('.').count() as u32,
        }
    }

    #[tokio::test]
    async fn a_respawn_finds_the_task_and_its_stored_result() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteTasks::open(&dir.path().join("t.db")).unwrap();
        let (t, fresh) = s.spawn(new("t1"), 10).await.unwrap();
        assert!(fresh && t.state == State::Queued);
        assert_eq!(s.start("t1").await.unwrap().unwrap().attempts, 1);
        assert!(s.start("t1").await.unwrap().is_none(), "taken twice");
        s.finish("t1", Ok(b"42".to_vec())).await.unwrap();
        let (again, fresh) = s.spawn(new("t1"), 10).await.unwrap();
        assert!(!fresh);
        assert_eq!(again.outcome(), Some(Ok(b"42".to_vec())));
    }

    #[tokio::test]
    async fn limits_cancellation_of_descendants_and_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteTasks::open(&dir.path().join("t.db")).unwrap();
        for id in ["t1", "t1.0", "t1.0.3", "t1.1", "t10", "t2"] {
            s.spawn(new(id), 10).await.unwrap();
        }
        let e = s.spawn(new("t3"), 6).await.unwrap_err();
        assert!(e.to_string().contains("max_active_tasks"), "{e}");
        s.start("t1.1").await.unwrap();
        let mut cancelled = s.cancel("a", "t1").await.unwrap();
        cancelled.sort();
        assert_eq!(cancelled, vec!["t1", "t1.0", "t1.0.3", "t1.1"]);
        assert_eq!(
            s.get("t1.0.3").await.unwrap().unwrap().outcome(),
            Some(Err(TaskError::Cancelled))
        );
        // t10 is not a child of t1.
        assert_eq!(s.get("t10").await.unwrap().unwrap().state, State::Queued);
        s.start("t2").await.unwrap();
        drop(s);
        let s = SqliteTasks::open(&dir.path().join("t.db")).unwrap();
        let queued: Vec<String> = s
            .recover()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert!(queued.contains(&"t2".to_string()) && queued.contains(&"t10".to_string()));
        assert_eq!(queued.len(), 2, "{queued:?}");
    }
}
