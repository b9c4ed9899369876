//! `GET /v1/apps/{app}/usage?since=24h&by=component`: what `nubo usage`
//! prints. `since` is a span back from now (`90s`, `30m`, `24h`, `7d`; at
//! most a year), `by` is `app` (one row, the default), `component`,
//! `route`, `user` or `time` (one row per minute, or per hour for spans
//! longer than the minutes are kept).

use crate::capability::Metered;
use crate::store::{By, KEEP_HOURS, Row};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nubo_api::extract::{Path, Query};
use nubo_api::{Apps, Routes, error};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone)]
struct Api {
    metered: Arc<Metered>,
    apps: Arc<dyn Apps>,
}

pub(crate) fn routes(metered: Arc<Metered>, apps: Arc<dyn Apps>) -> Routes {
    Routes::new()
        .get("/v1/apps/{app}/usage", usage)
        .with_state(Api { metered, apps })
}

#[derive(Deserialize)]
struct Ask {
    since: Option<String>,
    #[serde(default)]
    by: By,
}

#[derive(Serialize)]
struct Answer {
    app: String,
    /// The span, in minutes since the Unix epoch: `since` to `until`
    /// (exclusive).
    since_minute: u64,
    until_minute: u64,
    by: By,
    rows: Vec<Row>,
}

async fn usage(
    State(api): State<Api>,
    Path(app): Path<String>,
    Query(ask): Query<Ask>,
) -> Response {
    if let Err(r) = nubo_api::app(&*api.apps, &app).await {
        return r;
    }
    let since = ask.since.as_deref().unwrap_or("24h");
    let Some(span) =
        nubo_manifest::parse_duration(since).filter(|s| (60..=KEEP_HOURS * 60).contains(s))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`since={since}` is not a span from 1m to 365d, such as 30m, 24h or 7d"),
        );
    };
    // What was counted in the last moments is stored before answering.
    api.metered.flush().await;
    let now = nubo_wasm::usage::now_minute();
    let since_minute = now.saturating_sub(span.div_ceil(60)) + 1;
    let until_minute = now + 1;
    match api
        .metered
        .db
        .query(&app, since_minute, until_minute, ask.by, now)
        .await
    {
        Ok(rows) => Json(Answer {
            app,
            since_minute,
            until_minute,
            by: ask.by,
            rows,
        })
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reading usage failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the usage database failed: {e}"),
            )
        }
    }
}
