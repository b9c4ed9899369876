//! The embedded task store: one table in a [`nubo_sqlite::GroupDb`]. A
//! spawn is acknowledged to the guest only once its row is committed, and
//! so is every state change, so a killed node loses no task it admitted.

use crate::store::Start;
use crate::{NewTask, State, Task, TaskError};
use nubo_sqlite::{DbError, Disk, GroupDb, Pace, now_ms};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Run at every open. `task_counts` holds each app's unfinished tasks, so
/// that a spawn checks its app's limit without counting rows. It is a
/// temporary table in memory, rebuilt from `tasks` here: it takes part in
/// every transaction (a rolled-back spawn does not count) but adds no page
/// to the log a commit writes, and it can never drift across restarts.
/// There is no index on state: every state change would rewrite it, and
/// only listings and the start-up scan would read it.
const SETUP: &str = "CREATE TABLE IF NOT EXISTS tasks (
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
        finished_ms INTEGER,
        principal TEXT
    ) WITHOUT ROWID;
    DROP INDEX IF EXISTS tasks_active;
    DROP TABLE IF EXISTS main.task_counts;
    PRAGMA temp_store = MEMORY;
    CREATE TEMP TABLE IF NOT EXISTS task_counts (
        app TEXT PRIMARY KEY,
        active INTEGER NOT NULL
    ) WITHOUT ROWID;
    DELETE FROM task_counts;
    INSERT INTO task_counts SELECT app, COUNT(*) FROM tasks
        WHERE state IN ('queued', 'running', 'waiting') GROUP BY app;";

const COLUMNS: &str = "id, app, component, function, payload, state, attempts, depth, result, error, created_ms, finished_ms, principal";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("task store failed: {0}")]
    Db(#[from] DbError),
    #[error("{0}")]
    Task(#[from] TaskError),
    /// JetStream, underneath the cluster's task store, failed.
    #[error("task store failed: {context}: {source}")]
    Backend {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// A failure of the store underneath: what was being done, and why.
    pub fn backend(
        context: impl Into<String>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            context: context.into(),
            source: cause.into(),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(DbError::from(e))
    }
}

pub struct SqliteTasks {
    db: GroupDb,
    /// Tasks marked running by [`SqliteTasks::started`] whose write has not
    /// run yet: one queued write takes them all.
    starting: Arc<Mutex<Vec<String>>>,
    disk: Disk,
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
        by: nubo_wasm::Principal::from_json(r.get::<_, Option<String>>(12)?.as_deref()),
    })
}

fn get(db: &Connection, id: &str) -> Result<Option<Task>, StoreError> {
    Ok(db
        .prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"))?
        .query_row([id], task)
        .optional()?)
}

/// Stores `tasks` (see [`SqliteTasks::spawn_all`]), all or nothing.
///
/// One statement per new task: the insert finds an existing id itself,
/// and each app's count of unfinished tasks is read once and written once
/// for the whole batch (a fan-out spawns thousands at once, and the four
/// statements a task took before kept the task threads idle meanwhile).
fn spawn_batch(
    db: &Connection,
    tasks: Vec<NewTask>,
    max_queued: u32,
) -> Result<Vec<Result<bool, TaskError>>, StoreError> {
    db.execute_batch("SAVEPOINT spawn")?;
    let out = spawn_each(db, tasks, max_queued);
    let end = match out {
        Ok(_) => "RELEASE spawn",
        Err(_) => "ROLLBACK TO spawn; RELEASE spawn",
    };
    db.execute_batch(end)?;
    out
}

fn spawn_each(
    db: &Connection,
    tasks: Vec<NewTask>,
    max_queued: u32,
) -> Result<Vec<Result<bool, TaskError>>, StoreError> {
    // Per app: unfinished tasks before this batch, and added by it.
    let mut active: Vec<(String, i64, i64)> = Vec::new();
    let mut insert = db.prepare_cached(
        "INSERT INTO tasks (id, app, component, function, payload, state, attempts, depth, created_ms, principal)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (id) DO NOTHING",
    )?;
    let now = now_ms();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        let i = match active.iter().position(|(app, ..)| *app == t.app) {
            Some(i) => i,
            None => {
                let before: i64 = db
                    .prepare_cached("SELECT active FROM task_counts WHERE app = ?1")?
                    .query_row([&t.app], |r| r.get(0))
                    .optional()?
                    .unwrap_or(0);
                active.push((t.app.clone(), before, 0));
                active.len() - 1
            }
        };
        let (_, before, added) = &mut active[i];
        if *before + *added < i64::from(max_queued) {
            let (state, attempts) = match t.starts {
                true => (State::Running, 1),
                false => (State::Queued, 0),
            };
            let inserted = insert.execute(params![
                t.id,
                t.app,
                t.component,
                t.function,
                t.payload,
                state.as_str(),
                attempts,
                t.depth,
                now,
                t.by.as_ref().map(nubo_wasm::Principal::to_json)
            ])?;
            if inserted == 1 {
                *added += 1;
                out.push(Ok(true));
                continue;
            }
        }
        // The id exists (a re-run spawning again), or the app is at its
        // limit and only an existing task may be found.
        let existing: Option<(String, String)> = db
            .prepare_cached("SELECT component, function FROM tasks WHERE id = ?1")?
            .query_row([&t.id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        out.push(match existing {
            Some((component, function)) if component != t.component || function != t.function => {
                Err(crate::store::diverged(&t, &component, &function))
            }
            Some(_) => Ok(false),
            None => Err(crate::store::over_limit(&t.app, (*before + *added) as u64)),
        });
    }
    let mut count = db.prepare_cached(
        "INSERT INTO task_counts (app, active) VALUES (?1, ?2)
         ON CONFLICT (app) DO UPDATE SET active = active + ?2",
    )?;
    for (app, _, added) in active {
        if added > 0 {
            count.execute(params![app, added])?;
        }
    }
    Ok(out)
}

/// `n` tasks of `app` finished.
fn finished(db: &Connection, app: &str, n: usize) -> Result<(), StoreError> {
    db.prepare_cached("UPDATE task_counts SET active = max(active - ?2, 0) WHERE app = ?1")?
        .execute(params![app, n as i64])?;
    Ok(())
}

impl SqliteTasks {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            // A database made without the `principal` column gets it added.
            db: GroupDb::open_with_columns(
                path,
                "tasks-db",
                SETUP,
                Pace::Eager,
                &[("tasks", "principal", "TEXT")],
            )?,
            starting: Arc::default(),
            disk: Disk::new(path),
        })
    }

    /// Stores each task as queued (running, if it
    /// [`starts`](NewTask::starts)), in one transaction, unless a task with
    /// its id exists (a re-run spawning again): for each, `true` if it is
    /// new. One is refused when the app already has `max_queued` tasks
    /// unfinished, or when the existing task runs another function (the
    /// re-run took another path).
    pub async fn spawn_all(
        &self,
        tasks: Vec<NewTask>,
        max_queued: u32,
    ) -> Result<Vec<Result<bool, TaskError>>, StoreError> {
        self.disk.room()?;
        self.db
            .call(move |db| spawn_batch(db, tasks, max_queued))
            .await
    }

    /// Marks a task running; `None` if it is not in the state `how`
    /// starts from (cancelled, or taken already). A first run or a retry
    /// starts a queued task and counts an attempt; a resume re-runs a
    /// task that was unloaded while waiting, in the same attempt.
    pub async fn start(&self, id: &str, how: Start) -> Result<Option<Task>, StoreError> {
        let id = id.to_string();
        self.db
            .call(move |db| {
                let sql = match how {
                    Start::Attempt => {
                        "UPDATE tasks SET state = 'running', attempts = attempts + 1
                         WHERE id = ?1 AND state = 'queued'"
                    }
                    Start::Resume => {
                        "UPDATE tasks SET state = 'running' WHERE id = ?1 AND state = 'waiting'"
                    }
                };
                if db.prepare_cached(sql)?.execute([&id])? == 0 {
                    return Ok(None);
                }
                get(db, &id)
            })
            .await
    }

    /// Marks a task that was just spawned running, its first attempt,
    /// without waiting: the runner already holds everything it needs to
    /// run it, and the outcome that follows is written after this.
    /// Under load many tasks start while the database is busy: they
    /// share one write, queued by the first, instead of each queuing
    /// their own. The write is queued (under the lock) before any of them
    /// can finish, so a task's finish always runs after its start.
    pub fn started(&self, id: &str) {
        let mut starting = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        starting.push(id.to_string());
        if starting.len() > 1 {
            return;
        }
        let all = self.starting.clone();
        self.db.send(move |db| {
            let ids = std::mem::take(&mut *all.lock().unwrap_or_else(|p| p.into_inner()));
            let mut update = db.prepare_cached(
                "UPDATE tasks SET state = 'running', attempts = attempts + 1
                 WHERE id = ?1 AND state = 'queued'",
            )?;
            for id in &ids {
                update.execute([id])?;
            }
            Ok(())
        });
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
                let app: Option<String> = db
                    .prepare_cached(
                        "UPDATE tasks SET state = ?2, result = ?3, error = ?4, finished_ms = ?5
                         WHERE id = ?1 AND state = 'running' RETURNING app",
                    )?
                    .query_row(params![id, state.as_str(), result, error, now], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if let Some(app) = app {
                    finished(db, &app, 1)?;
                }
                Ok(())
            })
            .await
    }

    /// A running task's instance was unloaded while it waits on others.
    pub async fn unload(&self, id: &str) -> Result<bool, StoreError> {
        self.leave_running(id, State::Waiting).await
    }

    /// Puts a running task back in the queue (to be retried).
    pub async fn requeue(&self, id: &str) -> Result<bool, StoreError> {
        self.leave_running(id, State::Queued).await
    }

    /// Moves a running task to `to`; `false` if it was not running (it
    /// was cancelled meanwhile).
    async fn leave_running(&self, id: &str, to: State) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.db
            .call(move |db| {
                Ok(db
                    .prepare_cached(
                        "UPDATE tasks SET state = ?2 WHERE id = ?1 AND state = 'running'",
                    )?
                    .execute(params![id, to.as_str()])?
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
                         AND state IN ('queued', 'running', 'waiting')",
                    )?
                    .query_map(params![app, id], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut update = db.prepare_cached(
                    "UPDATE tasks SET state = 'cancelled', finished_ms = ?2 WHERE id = ?1",
                )?;
                for t in &ids {
                    update.execute(params![t, now])?;
                }
                finished(db, &app, ids.len())?;
                Ok(ids)
            })
            .await
    }

    /// Deletes the app's trees of tasks that finished before `before_ms`
    /// ([`crate::expired`]); how many tasks. Reads only the
    /// columns that decide, not payloads or results.
    pub async fn expire(&self, app: &str, before_ms: i64) -> Result<u64, StoreError> {
        let app = app.to_string();
        self.db
            .call(move |db| {
                let rows: Vec<(String, String, Option<i64>)> = db
                    .prepare_cached("SELECT id, state, finished_ms FROM tasks WHERE app = ?1")?
                    .query_map(params![app], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?;
                let decide = rows
                    .iter()
                    .map(|(id, state, f)| (id.as_str(), State::parse(state), *f));
                let gone = crate::store::expired(decide, before_ms);
                let mut delete = db.prepare_cached("DELETE FROM tasks WHERE id = ?1")?;
                for id in &gone {
                    delete.execute([id])?;
                }
                Ok(gone.len() as u64)
            })
            .await
    }

    /// Spawns are refused while the disk has less than `bytes` free.
    pub fn keep_free(&self, bytes: u64) {
        self.disk.keep_free(bytes);
    }

    /// Deletes every task of `app`; the ids of the unfinished ones.
    pub async fn purge_app(&self, app: &str) -> Result<(u64, Vec<String>), StoreError> {
        let app = app.to_string();
        self.db
            .call(move |db| {
                let ids: Vec<String> = db
                    .prepare_cached(
                        "SELECT id FROM tasks WHERE app = ?1 AND state IN ('queued', 'running', 'waiting')",
                    )?
                    .query_map(params![app], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let n = db.execute("DELETE FROM tasks WHERE app = ?1", params![app])?;
                db.execute("DELETE FROM task_counts WHERE app = ?1", params![app])?;
                Ok((n as u64, ids))
            })
            .await
    }

    /// The outcome of each of `ids` of `app`, in one read: `None` while
    /// one is not finished, a refusal for an id the app does not have.
    pub async fn outcomes(
        &self,
        app: &str,
        ids: Vec<String>,
    ) -> Result<Vec<Option<Result<Vec<u8>, TaskError>>>, StoreError> {
        let app = app.to_string();
        self.db
            .call(move |db| {
                let mut out = Vec::with_capacity(ids.len());
                for id in &ids {
                    out.push(match get(db, id)? {
                        Some(t) if t.app == app => t.outcome(),
                        _ => Some(Err(TaskError::refused(format!(
                            "no task `{id}` in app `{app}`"
                        )))),
                    });
                }
                Ok(out)
            })
            .await
    }

    pub async fn get(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let id = id.to_string();
        self.db.call(move |db| get(db, &id)).await
    }

    /// The app's most recent tasks, newest first; only those in `state`
    /// if given.
    pub async fn list(
        &self,
        app: &str,
        state: Option<State>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let app = app.to_string();
        self.db
            .call(move |db| {
                Ok(db
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM tasks WHERE app = ?1 AND (?2 IS NULL OR state = ?2)
                         ORDER BY created_ms DESC, id LIMIT ?3"
                    ))?
                    .query_map(
                        params![app, state.map(State::as_str), limit.min(10_000) as i64],
                        task,
                    )?
                    .collect::<Result<_, _>>()?)
            })
            .await
    }

    /// How many of the app's tasks are in each state.
    pub async fn counts(&self, app: &str) -> Result<Vec<(State, u64)>, StoreError> {
        let app = app.to_string();
        self.db
            .call(move |db| {
                Ok(db
                    .prepare_cached(
                        "SELECT state, COUNT(*) FROM tasks WHERE app = ?1 GROUP BY state",
                    )?
                    .query_map([app], |r| {
                        Ok((
                            State::parse(&r.get::<_, String>(0)?),
                            r.get::<_, i64>(1)? as u64,
                        ))
                    })?
                    .collect::<Result<_, _>>()?)
            })
            .await
    }

    /// After a restart: tasks that were running when the node died go
    /// back to the queue (that run counts as an attempt). Every queued
    /// and waiting task, oldest first.
    pub async fn recover(&self) -> Result<Vec<Task>, StoreError> {
        self.db
            .call(move |db| {
                db.execute(
                    "UPDATE tasks SET state = 'queued' WHERE state = 'running'",
                    [],
                )?;
                Ok(db
                    .prepare(&format!(
                        "SELECT {COLUMNS} FROM tasks WHERE state IN ('queued', 'waiting')
                         ORDER BY created_ms, id"
                    ))?
                    .query_map([], task)?
                    .collect::<Result<_, _>>()?)
            })
            .await
    }
}

#[cfg(test)]
mod tests;
