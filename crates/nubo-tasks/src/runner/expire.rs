//! Deleting finished tasks once each app's `keep_finished_hours` passed.
//!
//! A finished task keeps its payload and result in the store so that
//! whoever holds its id can read the outcome, and so that a parent run
//! again finds its children's results. Kept forever, they would fill the
//! disk at the rate an app runs tasks; so every few minutes each app's
//! trees of tasks that finished long enough ago are deleted whole
//! ([`crate::expired`]). On a cluster every node sweeps; the
//! deletes are idempotent.

use super::{TaskRunner, lock};
use std::sync::Arc;
use std::time::Duration;

/// How often the sweep runs; `NUBO_TASK_SWEEP_MS` sets it (for tests).
fn every() -> Duration {
    std::env::var("NUBO_TASK_SWEEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(600), Duration::from_millis)
}

impl TaskRunner {
    /// Starts the sweep; it ends with the runner.
    pub fn expire_finished(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let every = every();
            loop {
                tokio::time::sleep(every).await;
                let Some(runner) = me.upgrade() else { return };
                runner.expire_old().await;
            }
        });
    }

    async fn expire_old(&self) {
        let keep: Vec<(String, u32)> = lock(&self.apps)
            .iter()
            .map(|(app, a)| (app.clone(), a.limits.keep_finished_hours))
            .collect();
        for (app, hours) in keep {
            let before = crate::now_ms() - i64::from(hours) * 3_600_000;
            match self.store.expire(&app, before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    app,
                    deleted = n,
                    "deleted finished tasks older than keep_finished_hours"
                ),
                Err(e) => tracing::warn!(app, "could not delete finished tasks: {e}"),
            }
        }
    }
}
