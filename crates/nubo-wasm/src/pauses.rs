//! Apps whose background work is paused. A capability that decides an
//! app must pause (usage caps) says so here; the capabilities that run
//! background work (queue deliveries, task runs, cron runs) wait while
//! their app is paused and go on when it resumes. Nothing is dropped:
//! messages and tasks stay stored while they wait.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// The node's paused apps, with why each is paused.
pub struct Pauses {
    why: Mutex<HashMap<String, String>>,
    changed: watch::Sender<u64>,
}

impl Default for Pauses {
    fn default() -> Self {
        Self {
            why: Mutex::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl Pauses {
    /// Pauses `app` (or keeps it paused, with the new reason); `true` if
    /// it was running.
    pub fn pause(&self, app: &str, why: String) -> bool {
        let was = self.lock().insert(app.to_string(), why).is_none();
        if was {
            self.changed.send_modify(|n| *n += 1);
        }
        was
    }

    /// Lets `app`'s background work go on; `true` if it was paused.
    pub fn resume(&self, app: &str) -> bool {
        let was = self.lock().remove(app).is_some();
        if was {
            self.changed.send_modify(|n| *n += 1);
        }
        was
    }

    /// Why `app` is paused, if it is.
    pub fn why(&self, app: &str) -> Option<String> {
        self.lock().get(app).cloned()
    }

    /// Returns once `app` is not paused (at once if it is not).
    pub async fn until_resumed(&self, app: &str) {
        let mut rx = self.changed.subscribe();
        while self.lock().contains_key(app) {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.why.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn waiting_ends_when_the_app_resumes() {
        let p = Arc::new(Pauses::default());
        p.until_resumed("a").await;
        assert!(p.pause("a", "cap".into()));
        assert!(!p.pause("a", "cap".into()));
        let waiting = tokio::spawn({
            let p = p.clone();
            async move { p.until_resumed("a").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        assert!(!p.resume("b"));
        assert!(p.resume("a"));
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .expect("resumed")
            .expect("no panic");
    }
}
