//! The task runner's part of `/metrics` ([`nubo_wasm::metrics`]): each run
//! of a task on this node by how it ended and how long it took, counted
//! as it ends; tasks by state and the node's run slots, read when
//! scraped.

use super::{Outcome, TaskRunner, lock};
use nubo_wasm::metrics::{Counter, Family, Labels, LatencyFamily, Metrics, Reading, Unit};
use std::time::Duration;

pub(crate) struct TaskMetrics {
    runs: Family<Labels, Counter>,
    duration: LatencyFamily,
}

impl Default for TaskMetrics {
    fn default() -> Self {
        Self {
            runs: Family::default(),
            duration: nubo_wasm::metrics::latency_family(),
        }
    }
}

impl TaskMetrics {
    /// Counts a run of a task of `component` of `app` that came to
    /// `outcome` after `took`.
    pub(super) fn observe(&self, app: &str, component: &str, outcome: &Outcome, took: Duration) {
        let how = match outcome {
            Outcome::Done(_) => "done",
            Outcome::Final(_) => "failed",
            Outcome::Retry(_) => "retry",
            Outcome::Unloaded(_) => "parked",
        };
        let mut labels: Labels = vec![
            ("app", app.to_string()),
            ("component", component.to_string()),
        ];
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        labels.push(("outcome", how.to_string()));
        self.runs.get_or_create(&labels).inc();
    }
}

impl TaskRunner {
    /// Adds the runner's counted metrics to the node's.
    pub fn register_metrics(&self, m: &Metrics) {
        m.register(
            "nubo_task_runs",
            "runs of durable tasks on this node, by app, component and how they ended",
            None,
            self.metrics.runs.clone(),
        );
        m.register(
            "nubo_task_run_duration",
            "how long a run of a task took, its waits on other tasks included",
            Some(Unit::Seconds),
            self.metrics.duration.clone(),
        );
    }

    /// The node's run slots, and each app's tasks by state.
    pub async fn readings(&self) -> Vec<Reading> {
        let (busy, slots) = self.slots();
        let mut out = vec![
            Reading::gauge(
                "nubo_task_slots",
                "tasks this node runs at once, at most",
                slots as f64,
            ),
            Reading::gauge(
                "nubo_task_slots_busy",
                "task run slots in use now",
                busy as f64,
            ),
        ];
        let apps: Vec<String> = lock(&self.apps).keys().cloned().collect();
        for app in apps {
            let Ok(counts) = self.counts(&app).await else {
                continue;
            };
            for (state, n) in counts {
                out.push(
                    Reading::gauge("nubo_tasks", "tasks by app and state", n as f64).with(vec![
                        ("app", app.clone()),
                        ("state", state.as_str().to_string()),
                    ]),
                );
            }
        }
        out
    }
}
