//! Recent guest log lines per app, for `nubo logs` and `nubo logs -f`.
//!
//! A bounded ring per app (older lines fall off) plus a broadcast channel
//! for followers. Lines also go to the node's own log through `tracing`;
//! this buffer is what a remote CLI can read. A follower that falls behind
//! loses lines and is told so, rather than slowing the guests down.

use nubo_wasm::{LogSink, LogStream, LogTags};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Lines kept per app.
pub const KEEP: usize = 2000;

#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    pub app: String,
    pub component: String,
    pub request_id: String,
    pub stream: &'static str,
    pub line: String,
}

pub struct LogHub {
    recent: Mutex<BTreeMap<String, VecDeque<Arc<LogLine>>>>,
    live: broadcast::Sender<Arc<LogLine>>,
}

impl Default for LogHub {
    fn default() -> Self {
        Self {
            recent: Mutex::new(BTreeMap::new()),
            live: broadcast::channel(4096).0,
        }
    }
}

impl LogHub {
    /// The last `tail` lines of `app` (optionally of one component).
    pub fn recent(&self, app: &str, component: Option<&str>, tail: usize) -> Vec<Arc<LogLine>> {
        let Ok(recent) = self.recent.lock() else {
            return Vec::new();
        };
        let Some(lines) = recent.get(app) else {
            return Vec::new();
        };
        let matching: Vec<_> = lines
            .iter()
            .filter(|l| component.is_none_or(|c| l.component == c))
            .cloned()
            .collect();
        matching[matching.len().saturating_sub(tail)..].to_vec()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogLine>> {
        self.live.subscribe()
    }

    /// Forgets a removed app's lines.
    pub fn forget(&self, app: &str) {
        if let Ok(mut recent) = self.recent.lock() {
            recent.remove(app);
        }
    }
}

impl LogSink for LogHub {
    fn line(&self, tags: &LogTags, stream: LogStream, line: &str) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let entry = Arc::new(LogLine {
            at,
            app: tags.app.to_string(),
            component: tags.component.to_string(),
            request_id: tags.request_id.to_string(),
            stream: stream.as_str(),
            line: line.to_string(),
        });
        if let Ok(mut recent) = self.recent.lock() {
            let lines = recent.entry(entry.app.clone()).or_default();
            if lines.len() == KEEP {
                lines.pop_front();
            }
            lines.push_back(entry.clone());
        }
        let _ = self.live.send(entry);
    }
}
