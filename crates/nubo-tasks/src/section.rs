//! `[tasks]` in `nubo.toml`: an app's limits on durable tasks and their
//! retry policy. Stored in the app's definition under `tasks`, and only
//! when some value differs from its default, so that no table and a table
//! of defaults are the same definition.
//!
//! The limits are per app so that one app's spawn storm is stopped at its
//! own ceiling while the node keeps serving every other app.

use nubo_manifest::ranges::Range;
use nubo_manifest::{Change, Declarations, Problem, Section, SectionFile, Spanned};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskLimits {
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

impl Default for TaskLimits {
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

pub const MAX_RUNNING: Range = Range::new("max_running", 1, 10_000);
pub const MAX_QUEUED: Range = Range::new("max_queued", 1, 10_000_000);
pub const MAX_DEPTH: Range = Range::new("max_depth", 0, 64);
pub const MAX_ATTEMPTS: Range = Range::new("max_attempts", 1, 100);
pub const BACKOFF_MS: Range = Range::new("backoff_ms", 0, 3_600_000);
pub const KEEP_FINISHED_HOURS: Range = Range::new("keep_finished_hours", 0, 87_600);

impl TaskLimits {
    /// Each setting by its `nubo.toml` key, with its range and value.
    fn settings(&self) -> [(Range, u64); 6] {
        [
            (MAX_RUNNING, self.max_running.into()),
            (MAX_QUEUED, self.max_queued.into()),
            (MAX_DEPTH, self.max_depth.into()),
            (MAX_ATTEMPTS, self.max_attempts.into()),
            (BACKOFF_MS, self.backoff_ms),
            (KEEP_FINISHED_HOURS, self.keep_finished_hours.into()),
        ]
    }

    /// Every value out of its range.
    pub fn problems(&self) -> Vec<Problem> {
        self.settings()
            .into_iter()
            .filter(|(r, v)| r.check(*v).is_some())
            .map(|(r, v)| Problem::range(r, v))
            .collect()
    }
}

/// `[tasks]` as written.
#[derive(Deserialize)]
struct File {
    tasks: Option<Spanned<RawTasks>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTasks {
    max_running: Option<Spanned<i64>>,
    max_queued: Option<Spanned<i64>>,
    max_depth: Option<Spanned<i64>>,
    max_attempts: Option<Spanned<i64>>,
    backoff_ms: Option<Spanned<i64>>,
    keep_finished_hours: Option<Spanned<i64>>,
}

/// The `[tasks]` section, stored as `tasks`.
pub struct TasksSection;

impl TasksSection {
    pub const KEY: &'static str = "tasks";

    /// The app's limits among the sections of a stored definition.
    pub fn of(sections: &BTreeMap<String, Value>) -> Result<TaskLimits, serde_json::Error> {
        nubo_manifest::section_value(sections.get(Self::KEY))
    }
}

impl Section for TasksSection {
    fn table(&self) -> &'static str {
        "tasks"
    }

    fn key(&self) -> &'static str {
        Self::KEY
    }

    /// Out-of-range values are reported where written and replaced by
    /// their defaults, so no other rule applies to a value read here.
    fn read(&self, f: &mut SectionFile<'_, '_>) -> Option<Value> {
        let raw = f.parse::<File>()?.tasks?;
        let raw = raw.get_ref();
        let d = TaskLimits::default();
        let mut num = |v: &Option<Spanned<i64>>, range, default: u32| {
            f.ranged(v, range, default.into()) as u32
        };
        let limits = TaskLimits {
            max_running: num(&raw.max_running, MAX_RUNNING, d.max_running),
            max_queued: num(&raw.max_queued, MAX_QUEUED, d.max_queued),
            max_depth: num(&raw.max_depth, MAX_DEPTH, d.max_depth),
            max_attempts: num(&raw.max_attempts, MAX_ATTEMPTS, d.max_attempts),
            keep_finished_hours: num(
                &raw.keep_finished_hours,
                KEEP_FINISHED_HOURS,
                d.keep_finished_hours,
            ),
            backoff_ms: f.ranged(&raw.backoff_ms, BACKOFF_MS, d.backoff_ms),
        };
        (limits != d).then(|| serde_json::to_value(limits).ok())?
    }

    fn check(&self, value: &Value, _app: &dyn Declarations) -> Vec<String> {
        match TaskLimits::deserialize(value) {
            Ok(l) => l
                .problems()
                .into_iter()
                .map(|p| format!("[tasks]: {}", p.message))
                .collect(),
            Err(e) => vec![format!("[tasks]: {e}")],
        }
    }

    fn describe(&self, old: Option<&Value>, new: Option<&Value>) -> Vec<Change> {
        let read = |v| nubo_manifest::section_value::<TaskLimits>(v).unwrap_or_default();
        let (old, new) = (read(old).settings(), read(new).settings());
        let changed: Vec<String> = old
            .iter()
            .zip(new.iter())
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, b)| format!("{} {} → {}", a.0.key, a.1, b.1))
            .collect();
        if changed.is_empty() {
            return Vec::new();
        }
        vec![Change::changed(
            "tasks (applies without a restart)",
            changed.join(", "),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str) -> Result<TaskLimits, String> {
        let app = nubo_manifest::sample_app(vec![&TasksSection], extra)?;
        Ok(TasksSection::of(&app.sections).unwrap())
    }

    #[test]
    fn limits_have_defaults_and_are_checked_where_written() {
        assert_eq!(load("").unwrap(), TaskLimits::default());
        let d = TaskLimits::default();
        assert_eq!((d.max_depth, d.max_attempts), (16, 3));
        let err =
            load("\n[tasks]\nmax_running = 8\nmax_depth = 100\nmax_attempts = 0\n").unwrap_err();
        assert!(
            err.contains("nubo.toml:10:13: `max_depth` must be between 0 and 64, got 100"),
            "{err}"
        );
        assert!(
            err.contains("nubo.toml:11:16: `max_attempts` must be between 1 and 100, got 0"),
            "{err}"
        );
        let err = load("\n[tasks]\nmax_parallel = 8\n").unwrap_err();
        assert!(err.contains("unknown field `max_parallel`"), "{err}");
        let limits = load("\n[tasks]\nmax_running = 8\nbackoff_ms = 0\n").unwrap();
        assert_eq!((limits.max_running, limits.backoff_ms), (8, 0));
        assert_eq!(limits.max_queued, 100_000);
        // A table of defaults is no section: the same definition as none.
        let app = nubo_manifest::sample_app(vec![&TasksSection], "[tasks]\nmax_running = 64\n");
        assert!(app.unwrap().sections.is_empty());
    }

    #[test]
    fn stored_limits_obey_the_rules_of_nubo_check() {
        let app = nubo_manifest::SampleApp;
        let check = |v: Value| TasksSection.check(&v, &app);
        assert!(check(serde_json::json!({ "max_running": 8 })).is_empty());
        assert_eq!(
            check(serde_json::json!({ "max_running": 0 })),
            ["[tasks]: `max_running` must be between 1 and 10000, got 0"]
        );
        let changes = TasksSection.describe(None, Some(&serde_json::json!({ "max_running": 8 })));
        assert_eq!(changes[0].detail.as_deref(), Some("max_running 64 → 8"));
    }
}
