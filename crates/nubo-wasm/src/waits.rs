//! How long an instance has waited on other tasks, so that its time
//! limit counts only the time it ran.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct WaitClock {
    state: Mutex<(Duration, Option<Instant>)>,
    inner: Option<Arc<dyn nubo_tasks::WaitHooks>>,
}

impl WaitClock {
    pub(crate) fn new(inner: Option<Arc<dyn nubo_tasks::WaitHooks>>) -> Self {
        Self {
            state: Mutex::new((Duration::ZERO, None)),
            inner,
        }
    }

    /// Time spent waiting so far, including a wait in progress.
    pub(crate) fn waited(&self) -> Duration {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 + s.1.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

#[async_trait::async_trait]
impl nubo_tasks::WaitHooks for WaitClock {
    async fn waiting(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(Instant::now());
        if let Some(h) = &self.inner {
            h.waiting().await;
        }
    }

    fn unload_after(&self) -> Option<Duration> {
        self.inner.as_ref().and_then(|h| h.unload_after())
    }

    fn unloaded(&self, wait: nubo_tasks::Wait) {
        if let Some(h) = &self.inner {
            h.unloaded(wait);
        }
    }

    async fn resumed(&self) {
        if let Some(h) = &self.inner {
            h.resumed().await;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = s.1.take() {
            s.0 += t.elapsed();
        }
    }
}
