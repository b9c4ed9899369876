//! `/v1/apps/{app}/caps`: where an app stands against its caps.
//!
//! - `GET /v1/apps/{app}/caps`: each cap of the app's `[caps]` with what
//!   was used of it, and whether the app is paused or refused now;
//! - `POST /v1/apps/{app}/caps/preview`: the same for caps and prices not
//!   applied yet (`{"caps": {...}, "prices": {...}}`), which `nubo plan`
//!   asks before it shows a change of `[caps]`.

use crate::caps::{AppCaps, CapService};
use crate::section::{CapsSpec, Prices};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nubo_api::extract::{JsonBody, Path};
use nubo_api::{Apps, Routes, error};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone)]
struct Api {
    caps: Arc<CapService>,
    apps: Arc<dyn Apps>,
}

pub(crate) fn routes(caps: Arc<CapService>, apps: Arc<dyn Apps>) -> Routes {
    Routes::new()
        .get("/v1/apps/{app}/caps", current)
        .post("/v1/apps/{app}/caps/preview", preview)
        .with_state(Api { caps, apps })
}

#[derive(Serialize)]
struct Answer {
    app: String,
    caps: Vec<crate::Standing>,
    /// Why its background work is paused, if it is.
    paused: Option<String>,
    /// Whether its requests are refused now.
    refused: bool,
}

#[derive(Deserialize)]
struct Proposed {
    caps: CapsSpec,
    #[serde(default)]
    prices: Prices,
}

async fn current(State(api): State<Api>, Path(app): Path<String>) -> Response {
    if let Err(r) = nubo_api::app(&*api.apps, &app).await {
        return r;
    }
    let caps = api.caps.apps.get(&app);
    answer(&api, app, caps.as_deref()).await
}

async fn preview(
    State(api): State<Api>,
    Path(app): Path<String>,
    JsonBody(p): JsonBody<Proposed>,
) -> Response {
    if let Err(r) = nubo_api::app(&*api.apps, &app).await {
        return r;
    }
    let problems = p.caps.problems(Some(&p.prices));
    if let Some(first) = problems.first() {
        return error(StatusCode::BAD_REQUEST, format!("caps: {}", first.message));
    }
    let caps = AppCaps {
        caps: p.caps,
        prices: p.prices,
    };
    answer(&api, app, Some(&caps)).await
}

async fn answer(api: &Api, app: String, caps: Option<&AppCaps>) -> Response {
    let standings = match caps {
        Some(c) => match api.caps.standings(&app, c, chrono::Utc::now()).await {
            Ok(s) => s,
            Err(e) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the usage database failed: {e}"),
                );
            }
        },
        None => Vec::new(),
    };
    Json(Answer {
        paused: api.caps.pauses.why(&app),
        refused: api.caps.is_closed(&app),
        app,
        caps: standings,
    })
    .into_response()
}
