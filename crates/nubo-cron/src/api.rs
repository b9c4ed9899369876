//! `/v1/apps/{app}/cron`: what `nubo cron` shows.

use crate::Scheduler;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use nubo_api::extract::Path;
use nubo_api::{Apps, Routes};
use serde::Serialize;
use std::sync::Arc;

/// What the route works on.
#[derive(Clone)]
struct Api {
    cron: Arc<Scheduler>,
    apps: Arc<dyn Apps>,
}

/// `nubo cron`'s route.
pub(crate) fn routes(cron: Arc<Scheduler>, apps: Arc<dyn Apps>) -> Routes {
    Routes::new()
        .get("/v1/apps/{app}/cron", list)
        .with_state(Api { cron, apps })
}

#[derive(Serialize)]
struct CronStatus {
    schedule: String,
    timezone: String,
    component: String,
    path: String,
    missed: crate::Missed,
    /// The next three run times.
    next: Vec<chrono::DateTime<chrono::Utc>>,
    last_run: Option<crate::LastRun>,
}

/// `GET /v1/apps/{app}/cron`: schedules with their next run times.
async fn list(State(api): State<Api>, Path(app): Path<String>) -> Response {
    let def = match nubo_api::app(&*api.apps, &app).await {
        Ok(def) => def,
        Err(r) => return r,
    };
    let mut out = Vec::new();
    for c in &crate::CronSection::of(&def.sections).unwrap_or_default() {
        // "scheduled" only marks when the node first saw the entry (the
        // start for missed runs); nothing ran yet.
        let last_run = api
            .cron
            .last_run(&app, &crate::entry_id(c))
            .await
            .filter(|l| l.status != "scheduled");
        out.push(CronStatus {
            schedule: c.schedule.clone(),
            timezone: c.timezone.clone(),
            component: c.component.clone(),
            path: c.path.clone(),
            missed: c.missed,
            next: next_three(c),
            last_run,
        });
    }
    Json(out).into_response()
}

/// The entry's next three run times (none if its schedule does not parse).
fn next_three(c: &crate::CronSpec) -> Vec<chrono::DateTime<chrono::Utc>> {
    let mut next = Vec::new();
    if let Ok(s) = crate::Schedule::parse(&c.schedule, &c.timezone) {
        let mut t = chrono::Utc::now();
        for _ in 0..3 {
            match s.next_after(t) {
                Some(n) => {
                    next.push(n);
                    t = n;
                }
                None => break,
            }
        }
    }
    next
}
