//! `[tasks]`: an app's limits on durable tasks and their retry policy.
//!
//! The limits are per app so that one app's spawn storm is stopped at its
//! own ceiling while the node keeps serving every other app.

use crate::error::Reporter;
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
}

impl Default for TasksSpec {
    fn default() -> Self {
        Self {
            max_running: 64,
            max_queued: 100_000,
            max_depth: 16,
            max_attempts: 3,
            backoff_ms: 100,
        }
    }
}

pub(crate) fn tasks(raw: Option<&S<RawTasks>>, r: &mut Reporter<'_>) -> TasksSpec {
    let d = TasksSpec::default();
    let Some(raw) = raw else { return d };
    let raw = raw.get_ref();
    let mut num = |v: &Option<S<i64>>, key: &str, min: i64, max: i64, default: u64| {
        crate::validate::ranged(r, v, key, min..=max, default)
    };
    TasksSpec {
        max_running: num(
            &raw.max_running,
            "max_running",
            1,
            10_000,
            d.max_running.into(),
        ) as u32,
        max_queued: num(
            &raw.max_queued,
            "max_queued",
            1,
            10_000_000,
            d.max_queued.into(),
        ) as u32,
        max_depth: num(&raw.max_depth, "max_depth", 0, 64, d.max_depth.into()) as u32,
        max_attempts: num(
            &raw.max_attempts,
            "max_attempts",
            1,
            100,
            d.max_attempts.into(),
        ) as u32,
        backoff_ms: num(&raw.backoff_ms, "backoff_ms", 0, 3_600_000, d.backoff_ms),
    }
}
