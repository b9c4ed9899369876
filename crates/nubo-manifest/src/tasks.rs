//! `[tasks]`: an app's limits on durable tasks and their retry policy.
//!
//! The limits are per app so that one app's spawn storm is stopped at its
//! own ceiling while the node keeps serving every other app.

use crate::error::Reporter;
use crate::ranges;
use crate::raw::{RawTasks, S};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TasksSpec {
    /// Tasks of the app running at once on a node (waiting ones do not
    /// count); more wait in the queue.
    pub max_running: u32,
    /// Tasks of the app admitted and not finished (queued, running or
    /// waiting on other tasks); more spawns are refused.
    pub max_queued: u32,
    /// How deep tasks may start tasks; a task started outside any task is
    /// depth 0.
    pub max_depth: u32,
    /// Runs of a task that traps, times out or loses its node before it
    /// fails for good.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles on each further one.
    pub backoff_ms: u64,
    /// How long a finished task (with its payload and result) is kept:
    /// a tree of tasks is deleted this many hours after its last task
    /// finished. 0 deletes it at the next sweep.
    pub keep_finished_hours: u32,
}

impl Default for TasksSpec {
    fn default() -> Self {
        Self {
            max_running: 64,
            max_queued: 100_000,
            max_depth: 16,
            max_attempts: 3,
            backoff_ms: 100,
            keep_finished_hours: 7 * 24,
        }
    }
}

pub(crate) fn tasks(raw: Option<&S<RawTasks>>, r: &mut Reporter<'_>) -> TasksSpec {
    let d = TasksSpec::default();
    let Some(raw) = raw else { return d };
    let raw = raw.get_ref();
    let num = |r: &mut Reporter<'_>, v: &Option<S<i64>>, range, default: u32| {
        crate::validate::ranged(r, v, range, default.into()) as u32
    };
    TasksSpec {
        max_running: num(
            r,
            &raw.max_running,
            ranges::TASKS_MAX_RUNNING,
            d.max_running,
        ),
        max_queued: num(r, &raw.max_queued, ranges::TASKS_MAX_QUEUED, d.max_queued),
        max_depth: num(r, &raw.max_depth, ranges::TASKS_MAX_DEPTH, d.max_depth),
        max_attempts: num(
            r,
            &raw.max_attempts,
            ranges::TASKS_MAX_ATTEMPTS,
            d.max_attempts,
        ),
        backoff_ms: crate::validate::ranged(
            r,
            &raw.backoff_ms,
            ranges::TASKS_BACKOFF_MS,
            d.backoff_ms,
        ),
        keep_finished_hours: num(
            r,
            &raw.keep_finished_hours,
            ranges::TASKS_KEEP_FINISHED_HOURS,
            d.keep_finished_hours,
        ),
    }
}
