//! Scheduled runs: each `[[cron]]` entry of each app is a task that sleeps
//! until the next time its schedule names, then sends `POST path` to the
//! component's HTTP handler, as a browser would but from inside the node.
//!
//! Runs of one schedule never overlap: a run holds that schedule's lock,
//! which outlives app revisions, and the next time is computed after a run
//! ends, so ticks that pass during a long run are skipped (and logged).
//! The last scheduled time of every entry is kept in `STATE/cron.db`; on
//! start, an entry whose schedule passed while the node was down runs once
//! if its `missed` policy is `run-once`, else waits for its next time.
//!
//! In a cluster every node runs the same schedules, and each due run first
//! takes a lease named by the entry and its scheduled time; only the node
//! that gets it runs. A node that cannot reach NATS skips the run rather
//! than risk running it twice.

mod api;
mod capability;
mod schedule;
mod section;

pub use capability::Cron;
pub use schedule::{Schedule, ScheduleError};
pub use section::{CronSection, CronSpec, Missed};

use chrono::{DateTime, Utc};
use nubo_sqlite::{DbError, SharedDb};
use nubo_wasm::HttpComponent;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Largest answer to a cron run read (and thrown away), in bytes.
const MAX_ANSWER: usize = 1 << 20;

/// How a run ended, as `nubo cron ls` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub scheduled_at: DateTime<Utc>,
    pub status: String,
}

/// Held while one run of an entry goes on.
type RunLock = Arc<tokio::sync::Mutex<()>>;

pub struct Scheduler {
    db: SharedDb,
    /// One lock per (app, entry), kept across revisions.
    locks: Mutex<HashMap<(String, String), RunLock>>,
    /// The running tasks of each app; replaced on every revision.
    tasks: Mutex<HashMap<String, Vec<tokio::task::JoinHandle<()>>>>,
    /// In a cluster: where runs are leased, and this node's id.
    cluster: std::sync::OnceLock<(Arc<nubo_cluster::Cluster>, String)>,
    /// Apps whose runs wait (at a usage cap).
    pauses: Arc<nubo_wasm::Pauses>,
}

/// A stable name for an entry: what it runs and when.
pub fn entry_id(c: &CronSpec) -> String {
    format!("{} {} {} {}", c.schedule, c.timezone, c.component, c.path)
}

impl Scheduler {
    pub fn open(path: &Path, pauses: Arc<nubo_wasm::Pauses>) -> Result<Self, nubo_sqlite::DbError> {
        // A lost last-run time only means a missed run is run (or skipped)
        // once more, so commits need not be synced one by one.
        let db = SharedDb::open(
            path,
            "cron",
            "CREATE TABLE IF NOT EXISTS runs (
                 app TEXT NOT NULL,
                 entry TEXT NOT NULL,
                 scheduled_at INTEGER NOT NULL,
                 status TEXT NOT NULL,
                 PRIMARY KEY (app, entry)
             );",
            nubo_sqlite::Synchronous::Normal,
        )?;
        Ok(Self {
            db,
            locks: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            cluster: std::sync::OnceLock::new(),
            pauses,
        })
    }

    /// The last run of `entry` of `app`, if one was recorded.
    pub async fn last_run(&self, app: &str, entry: &str) -> Option<LastRun> {
        let (app, entry) = (app.to_string(), entry.to_string());
        let row = self
            .db
            .quick(move |db| {
                db.query_row(
                    "SELECT scheduled_at, status FROM runs WHERE app = ?1 AND entry = ?2",
                    params![app, entry],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()
                .map_err(DbError::from)
            })
            .await;
        let (ms, status) = row.ok().flatten()?;
        Some(LastRun {
            scheduled_at: DateTime::from_timestamp_millis(ms)?,
            status,
        })
    }

    /// Forgets every run of `app` (the app was removed); how many entries
    /// had one.
    pub async fn forget(&self, app: &str) -> Result<u64, DbError> {
        let app = app.to_string();
        self.db
            .slow(move |db| {
                db.execute("DELETE FROM runs WHERE app = ?1", params![app])
                    .map(|n| n as u64)
                    .map_err(DbError::from)
            })
            .await
    }

    async fn record(&self, app: &str, entry: &str, at: DateTime<Utc>, status: &str) {
        let (a, entry, status) = (app.to_string(), entry.to_string(), status.to_string());
        let r = self
            .db
            .quick(move |db| {
                db.execute(
                    "INSERT INTO runs (app, entry, scheduled_at, status) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (app, entry) DO UPDATE SET scheduled_at = ?3, status = ?4",
                    params![a, entry, at.timestamp_millis(), status],
                )
                .map_err(DbError::from)
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(app, "cannot record a cron run: {e}");
        }
    }

    fn lock(&self, app: &str, entry: &str) -> RunLock {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks
            .entry((app.to_string(), entry.to_string()))
            .or_default()
            .clone()
    }

    /// From now on, each run is leased in `cluster` first.
    pub fn share(&self, cluster: Arc<nubo_cluster::Cluster>, node_id: String) {
        let _ = self.cluster.set((cluster, node_id));
    }

    /// Takes the lease of one run; true if this node should run it.
    async fn lease(
        &self,
        app: &str,
        entry: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, nubo_cluster::ClusterError> {
        let Some((cluster, id)) = self.cluster.get() else {
            return Ok(true);
        };
        use sha2::Digest;
        let entry = hex::encode(&sha2::Sha256::digest(entry.as_bytes())[..8]);
        let name = format!(
            "cron.{}.{entry}.{}",
            nubo_jetstream::token(app),
            at.timestamp_millis()
        );
        cluster.lease(&name, id).await
    }

    /// Replaces `app`'s schedules. `component(name)` is the running
    /// component (`None` while stopped). A run in progress finishes.
    pub fn set(
        self: &Arc<Self>,
        app: &str,
        crons: &[CronSpec],
        component: impl Fn(&str) -> Option<HttpComponent>,
    ) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for t in tasks.remove(app).unwrap_or_default() {
            // Aborting only interrupts the sleep: a run holds its lock in
            // a task of its own (see `job`), which finishes.
            t.abort();
        }
        let mut new = Vec::new();
        for c in crons {
            let Ok(schedule) = Schedule::parse(&c.schedule, &c.timezone) else {
                continue; // validated before it was stored
            };
            let job = Job {
                app: app.to_string(),
                entry: entry_id(c),
                spec: c.clone(),
                schedule,
                component: component(&c.component),
                scheduler: self.clone(),
            };
            new.push(tokio::spawn(job.run()));
        }
        if !new.is_empty() {
            tasks.insert(app.to_string(), new);
        }
    }
}

struct Job {
    app: String,
    entry: String,
    spec: CronSpec,
    schedule: Schedule,
    component: Option<HttpComponent>,
    scheduler: Arc<Scheduler>,
}

impl Job {
    async fn run(self) {
        let s = &self.scheduler;
        let now = Utc::now();
        match s.last_run(&self.app, &self.entry).await {
            None => s.record(&self.app, &self.entry, now, "scheduled").await,
            Some(last) => {
                let missed = self
                    .schedule
                    .next_after(last.scheduled_at)
                    .filter(|t| *t < now);
                if let Some(first) = missed
                    && self.spec.missed == Missed::RunOnce
                {
                    // The run stands for the latest missed time: it is the
                    // same on every node of a cluster (so they lease the
                    // same run), and it becomes the last run.
                    tracing::info!(app = %self.app, schedule = %self.spec.schedule, "running once for runs missed while the node was down");
                    self.fire(self.latest_before(first, now)).await;
                }
            }
        }
        loop {
            let Some(next) = self.schedule.next_after(Utc::now()) else {
                return;
            };
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            // While the app is paused its run waits, and runs once when it
            // resumes; the times passed meanwhile are skipped.
            self.scheduler.pauses.until_resumed(&self.app).await;
            self.fire(next).await;
            // Times that passed while the run went on are skipped, not queued.
            let skipped = self.count_between(next, Utc::now());
            if skipped > 0 {
                tracing::warn!(app = %self.app, schedule = %self.spec.schedule, "skipped {skipped} run(s): the previous run was still going");
            }
        }
    }

    /// The last scheduled time before `now`, starting from `from` (one).
    fn latest_before(&self, from: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        let mut t = from;
        for _ in 0..1_000_000 {
            match self.schedule.next_after(t) {
                Some(next) if next < now => t = next,
                _ => break,
            }
        }
        t
    }

    /// Scheduled times strictly between `from` and `to` (at most 1000).
    fn count_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> usize {
        let mut n = 0;
        let mut t = from;
        while let Some(next) = self.schedule.next_after(t) {
            if next >= to || n == 1000 {
                break;
            }
            n += 1;
            t = next;
        }
        n
    }

    /// One run, in a task of its own so that replacing the schedule (which
    /// aborts the sleeping loop) never cuts a run short.
    async fn fire(&self, at: DateTime<Utc>) {
        let lock = self.scheduler.lock(&self.app, &self.entry);
        let Ok(guard) = lock.clone().try_lock_owned() else {
            tracing::warn!(app = %self.app, schedule = %self.spec.schedule, "skipped 1 run(s): the previous run was still going");
            return;
        };
        match self.scheduler.lease(&self.app, &self.entry, at).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(app = %self.app, schedule = %self.spec.schedule, "another node runs this one");
                self.scheduler
                    .record(&self.app, &self.entry, at, "ran on another node")
                    .await;
                return;
            }
            Err(e) => {
                tracing::warn!(app = %self.app, schedule = %self.spec.schedule, "run skipped: cannot take its lease: {e}");
                self.scheduler
                    .record(&self.app, &self.entry, at, "skipped: cluster unavailable")
                    .await;
                return;
            }
        }
        let component = self.component.clone();
        let spec = self.spec.clone();
        let (app, entry) = (self.app.clone(), self.entry.clone());
        let scheduler = self.scheduler.clone();
        let run = tokio::spawn(async move {
            let _guard = guard;
            let status = match component {
                None => "skipped: component stopped".to_string(),
                Some(c) => invoke(&c, &spec, &app, at).await,
            };
            tracing::info!(app = %app, schedule = %spec.schedule, component = %spec.component, "cron run: {status}");
            scheduler.record(&app, &entry, at, &status).await;
        });
        let _ = run.await;
    }
}

async fn invoke(c: &HttpComponent, spec: &CronSpec, app: &str, at: DateTime<Utc>) -> String {
    let id = format!("cron-{}", at.timestamp_millis());
    let headers = [
        ("nubo-cron-schedule", spec.schedule.clone()),
        ("nubo-scheduled-at", at.to_rfc3339()),
    ];
    let req = nubo_wasm::InternalRequest {
        app,
        kind: "cron",
        path: &spec.path,
        headers: &headers,
        body: Vec::new(),
        max_answer: MAX_ANSWER,
    };
    match c
        .post_internal(req, nubo_wasm::Invocation::request(id))
        .await
    {
        Ok(a) if a.is_success() => format!("ok ({})", a.status),
        Ok(a) => format!("failed: HTTP {}", a.status),
        Err(e) => format!("failed: {e}"),
    }
}
