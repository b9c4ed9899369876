//! A run's wall-clock limit, and how long an instance has waited on
//! other tasks (which a task's limit does not count).
//!
//! Every run (a request, a task, a queue delivery, a cron run, a
//! WebSocket message) ends at `timeout_ms` of wall-clock time, whether its
//! guest computes or waits on the host (a sleep, an outbound call, a slow
//! store): the epoch deadline alone would let a guest that waits hold its
//! instance slot and its run permits for ever. A task is the exception
//! only for the time it awaits other tasks, which may take as long as
//! they take: that time is added to its limit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an instance has waited on other tasks: the runtime extends a
/// task's time limits by it. The task capability marks each wait.
#[derive(Default)]
pub struct WaitClock {
    state: Mutex<(Duration, Option<Instant>)>,
}

impl WaitClock {
    /// The instance starts waiting.
    pub fn begin(&self) {
        self.lock().1 = Some(Instant::now());
    }

    /// The instance's wait is over.
    pub fn end(&self) {
        let mut s = self.lock();
        if let Some(t) = s.1.take() {
            s.0 += t.elapsed();
        }
    }

    /// Time spent waiting so far, including a wait in progress.
    pub(crate) fn waited(&self) -> Duration {
        let s = self.lock();
        s.0 + s.1.map_or(Duration::ZERO, |t| t.elapsed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Duration, Option<Instant>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// When one run must end: `budget` after `started`, plus what it waited
/// on other tasks.
pub(crate) struct WallLimit {
    started: tokio::time::Instant,
    budget: Duration,
    waits: Option<Arc<WaitClock>>,
}

impl WallLimit {
    pub(crate) fn new(budget: Duration, waits: Option<Arc<WaitClock>>) -> Self {
        Self {
            started: tokio::time::Instant::now(),
            budget,
            waits,
        }
    }

    /// Resolves once the limit is reached.
    async fn reached(&self) {
        loop {
            let waited = self.waits.as_ref().map_or(Duration::ZERO, |w| w.waited());
            let due = self.started + self.budget + waited;
            if tokio::time::Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }

    /// `run`, cut off with a timeout trap when the limit is reached.
    pub(crate) async fn bound<T>(
        &self,
        run: impl std::future::Future<Output = wasmtime::Result<T>>,
    ) -> wasmtime::Result<T> {
        tokio::select! {
            r = run => r,
            () = self.reached() => Err(wasmtime::Trap::Interrupt.into()),
        }
    }
}
