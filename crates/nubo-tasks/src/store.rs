//! Where tasks are kept: [`TaskStore`], the contract the node's runner
//! uses, with the embedded backend ([`crate::SqliteTasks`]) and the
//! cluster one ([`crate::NatsTasks`]) behind it.

use crate::{NewTask, State, Task, TaskError};

pub use crate::sqlite::StoreError;

/// How [`TaskStore::start`] starts a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A queued task: a new attempt.
    Attempt,
    /// A waiting task whose wait is over: the same attempt, run again.
    Resume,
}

/// Durable task state. Every method that changes a task returns only once
/// the change is durable.
#[async_trait::async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// Stores each task as queued unless a task with its id exists (a
    /// re-run spawning again): for each, `true` if it is new. One is
    /// refused when the app is at `max_queued`, or when the existing task
    /// runs another function (the re-run took another path).
    async fn spawn_all(
        &self,
        tasks: Vec<NewTask>,
        max_queued: u32,
    ) -> Result<Vec<Result<bool, TaskError>>, StoreError>;
    /// Marks a task running; `None` if it is not in the state `how`
    /// starts from (cancelled, or taken already). An attempt starts a
    /// queued task and counts; a resume re-runs a waiting one.
    async fn start(&self, id: &str, app: &str, how: Start) -> Result<Option<Task>, StoreError>;
    /// Marks a task that was just spawned running, its first attempt,
    /// without waiting for it to be durable.
    fn started(&self, id: &str);
    /// Records a running task's outcome; a task cancelled meanwhile stays
    /// cancelled.
    async fn finish(
        &self,
        id: &str,
        app: &str,
        outcome: Result<Vec<u8>, TaskError>,
    ) -> Result<(), StoreError>;
    /// A running task left its instance to wait on others; `false` if it
    /// was not running (cancelled meanwhile).
    async fn unload(&self, id: &str, app: &str) -> Result<bool, StoreError>;
    /// A running task goes back to the queue, to be retried.
    async fn requeue(&self, id: &str, app: &str) -> Result<bool, StoreError>;
    /// Cancels `id` and its unfinished descendants; the ids cancelled.
    async fn cancel(&self, app: &str, id: &str) -> Result<Vec<String>, StoreError>;
    /// Each task's outcome (`None`: not finished; refused if unknown).
    async fn outcomes(
        &self,
        app: &str,
        ids: Vec<String>,
    ) -> Result<Vec<Option<Result<Vec<u8>, TaskError>>>, StoreError>;
    async fn get(&self, app: &str, id: &str) -> Result<Option<Task>, StoreError>;
    /// The app's most recent tasks, newest first, only in `state` if given.
    async fn list(
        &self,
        app: &str,
        state: Option<State>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError>;
    async fn counts(&self, app: &str) -> Result<Vec<(State, u64)>, StoreError>;
    /// Deletes every task of `app` (the app was removed): how many, and
    /// the ids of those that were unfinished, for the runner to stop.
    async fn purge_app(&self, app: &str) -> Result<(u64, Vec<String>), StoreError>;
    /// After this node restarted: the tasks it must run again (those it
    /// was running go back to the queue; that run counts as an attempt).
    async fn recover(&self) -> Result<Vec<Task>, StoreError>;
    /// Deletes the app's trees of tasks whose every task finished before
    /// `before_ms` ([`expired`]); how many tasks.
    async fn expire(&self, app: &str, before_ms: i64) -> Result<u64, StoreError>;
    /// Spawns are refused while the disk of an embedded store has less
    /// than `bytes` free ([`nubo_sqlite::Disk`]).
    fn keep_free(&self, _bytes: u64) {}
}

/// Of `tasks` (id, state, when finished), the ids of every tree — a root
/// task and all the tasks under it — that is finished through and through
/// and whose last task finished before `before_ms`. A tree is kept whole
/// or deleted whole: a task that runs again (a retried parent) finds
/// every result it stored, and no result is dropped while anyone could
/// still wait for it.
pub fn expired<'a>(
    tasks: impl IntoIterator<Item = (&'a str, State, Option<i64>)>,
    before_ms: i64,
) -> Vec<String> {
    use std::collections::HashMap;
    // Per root: whether it may go, and the ids in it.
    let mut trees: HashMap<&str, (bool, Vec<&str>)> = HashMap::new();
    for (id, state, finished) in tasks {
        let root = id.split('.').next().unwrap_or(id);
        let tree = trees.entry(root).or_insert((true, Vec::new()));
        tree.0 &= state.is_final() && finished.is_some_and(|f| f < before_ms);
        tree.1.push(id);
    }
    trees
        .into_values()
        .filter(|(old, _)| *old)
        .flat_map(|(_, ids)| ids.into_iter().map(str::to_owned))
        .collect()
}

/// The refusal for a re-run that spawns another function under an id
/// its earlier run gave to `component/function`.
pub(crate) fn diverged(t: &NewTask, component: &str, function: &str) -> TaskError {
    TaskError::refused(format!(
        "task `{}` was started as `{component}/{function}` and this run starts `{}/{}` in its place: \
         a task must start the same tasks in the same order each time it runs",
        t.id, t.component, t.function
    ))
}

/// The refusal of a spawn over the app's `max_queued`.
pub(crate) fn over_limit(app: &str, active: u64) -> TaskError {
    TaskError::refused(format!(
        "app `{app}` has {active} unfinished tasks, its limit (max_queued in [tasks])"
    ))
}

#[async_trait::async_trait]
impl TaskStore for crate::SqliteTasks {
    async fn spawn_all(
        &self,
        tasks: Vec<NewTask>,
        max_queued: u32,
    ) -> Result<Vec<Result<bool, TaskError>>, StoreError> {
        crate::SqliteTasks::spawn_all(self, tasks, max_queued).await
    }
    async fn start(&self, id: &str, _app: &str, how: Start) -> Result<Option<Task>, StoreError> {
        crate::SqliteTasks::start(self, id, how).await
    }
    fn started(&self, id: &str) {
        crate::SqliteTasks::started(self, id)
    }
    async fn finish(
        &self,
        id: &str,
        _app: &str,
        outcome: Result<Vec<u8>, TaskError>,
    ) -> Result<(), StoreError> {
        crate::SqliteTasks::finish(self, id, outcome).await
    }
    async fn unload(&self, id: &str, _app: &str) -> Result<bool, StoreError> {
        crate::SqliteTasks::unload(self, id).await
    }
    async fn requeue(&self, id: &str, _app: &str) -> Result<bool, StoreError> {
        crate::SqliteTasks::requeue(self, id).await
    }
    async fn cancel(&self, app: &str, id: &str) -> Result<Vec<String>, StoreError> {
        crate::SqliteTasks::cancel(self, app, id).await
    }
    async fn outcomes(
        &self,
        app: &str,
        ids: Vec<String>,
    ) -> Result<Vec<Option<Result<Vec<u8>, TaskError>>>, StoreError> {
        crate::SqliteTasks::outcomes(self, app, ids).await
    }
    async fn get(&self, app: &str, id: &str) -> Result<Option<Task>, StoreError> {
        Ok(crate::SqliteTasks::get(self, id)
            .await?
            .filter(|t| t.app == app))
    }
    async fn list(
        &self,
        app: &str,
        state: Option<State>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        crate::SqliteTasks::list(self, app, state, limit).await
    }
    async fn counts(&self, app: &str) -> Result<Vec<(State, u64)>, StoreError> {
        crate::SqliteTasks::counts(self, app).await
    }
    async fn purge_app(&self, app: &str) -> Result<(u64, Vec<String>), StoreError> {
        crate::SqliteTasks::purge_app(self, app).await
    }
    async fn expire(&self, app: &str, before_ms: i64) -> Result<u64, StoreError> {
        crate::SqliteTasks::expire(self, app, before_ms).await
    }

    fn keep_free(&self, bytes: u64) {
        crate::SqliteTasks::keep_free(self, bytes);
    }

    async fn recover(&self) -> Result<Vec<Task>, StoreError> {
        crate::SqliteTasks::recover(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_finished_old_trees_expire() {
        use State::*;
        let tasks = [
            // Old and finished through and through.
            ("t1", Done, Some(10)),
            ("t1.1", Failed, Some(20)),
            ("t1.1.1", Cancelled, Some(30)),
            // One descendant still runs.
            ("t2", Done, Some(10)),
            ("t2.1", Running, None),
            // One descendant finished too recently.
            ("t3", Done, Some(10)),
            ("t3.1", Done, Some(500)),
            // Waiting on its children.
            ("t4", Waiting, None),
            ("t4.1", Done, Some(10)),
        ];
        let mut gone = expired(tasks, 100);
        gone.sort();
        assert_eq!(gone, ["t1", "t1.1", "t1.1.1"]);
        assert!(expired(tasks, 10).is_empty());
    }
}
