//! `POST /v1/apps/{app}/sql/{db}`: what `nubo sql` uses to run one
//! statement on an app's database, with the limits its components have,
//! and read the rows; `GET …/dump` and `POST …/restore` move the whole
//! database as SQL text.

use crate::capability::SqlService;
use crate::{SqlError, SqlSection, Value};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use nubo_api::extract::{JsonBody, Path, Query};
use nubo_api::{Apps, Declared, Routes, error};
use serde::Deserialize;
use serde_json::{Value as J, json};
use std::sync::Arc;

#[derive(Clone)]
struct Api {
    service: Arc<SqlService>,
    apps: Arc<dyn Apps>,
}

const DATABASES: Declared = Declared {
    noun: "database",
    declared_by: "[sql.NAME]",
    names: |def| {
        SqlSection::of(&def.sections)
            .map(|s| s.into_keys().collect())
            .unwrap_or_default()
    },
};

/// The largest script `restore` takes.
const MAX_RESTORE: usize = 1 << 30;

/// `nubo sql`'s routes.
pub(crate) fn routes(service: Arc<SqlService>, apps: Arc<dyn Apps>) -> Routes {
    let restore = Routes::new()
        .post("/v1/apps/{app}/sql/{db}/restore", restore)
        .map(|r| r.layer(DefaultBodyLimit::max(MAX_RESTORE)));
    Routes::new()
        .post("/v1/apps/{app}/sql/{db}", run)
        .get("/v1/apps/{app}/sql/{db}/dump", dump)
        .merge(restore)
        .with_state(Api { service, apps })
}

/// The declared database `db` of `app`, or the answer that says why not.
async fn open(api: &Api, app: &str, db: &str) -> Result<Arc<dyn crate::Database>, Response> {
    nubo_api::declared(&*api.apps, app, &DATABASES, db).await?;
    api.service.open(app, db).await.map_err(sql_error)
}

async fn dump(State(api): State<Api>, Path((app, db)): Path<(String, String)>) -> Response {
    let database = match open(&api, &app, &db).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    match database.dump().await {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/sql; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => sql_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreQuery {
    #[serde(default)]
    replace: bool,
}

async fn restore(
    State(api): State<Api>,
    Path((app, db)): Path<(String, String)>,
    Query(q): Query<RestoreQuery>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(script) = String::from_utf8(body.to_vec()) else {
        return error(StatusCode::BAD_REQUEST, "the script is not UTF-8 text");
    };
    let database = match open(&api, &app, &db).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    match database.restore(script, q.replace).await {
        Ok(()) => {
            tracing::info!(app, database = %db, replace = q.replace, "restored");
            axum::Json(json!({ "restored": true })).into_response()
        }
        Err(e) => sql_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Statement {
    statement: String,
    /// JSON values: null, a boolean or number, a string, or
    /// `{"base64": "…"}` for a blob.
    #[serde(default)]
    params: Vec<J>,
}

async fn run(
    State(api): State<Api>,
    Path((app, db)): Path<(String, String)>,
    JsonBody(s): JsonBody<Statement>,
) -> Response {
    let params = match s.params.iter().map(param).collect::<Result<Vec<_>, _>>() {
        Ok(p) => p,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let database = match open(&api, &app, &db).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    match database.query(s.statement, params).await {
        Ok(rows) => axum::Json(json!({
            "columns": rows.columns,
            "rows": rows.rows.into_iter().map(|r| r.into_iter().map(value).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "changes": rows.changes,
        }))
        .into_response(),
        Err(e) => sql_error(e),
    }
}

fn param(v: &J) -> Result<Value, String> {
    Ok(match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Integer(i64::from(*b)),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::Text(s.clone()),
        J::Object(o) => match o.get("base64").and_then(J::as_str) {
            Some(b) => Value::Blob(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("a blob parameter is not base64: {e}"))?,
            ),
            None => return Err("an object parameter must be {\"base64\": \"…\"} (a blob)".into()),
        },
        J::Array(_) => return Err("a parameter cannot be a list".into()),
    })
}

fn value(v: Value) -> J {
    match v {
        Value::Null => J::Null,
        Value::Integer(i) => json!(i),
        Value::Real(f) => json!(f),
        Value::Text(t) => json!(t),
        Value::Blob(b) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) }),
    }
}

fn sql_error(e: SqlError) -> Response {
    let status = match &e {
        SqlError::NoSuchDatabase(_) => StatusCode::NOT_FOUND,
        SqlError::AccessDenied(_) => StatusCode::FORBIDDEN,
        SqlError::Constraint { .. } => StatusCode::CONFLICT,
        SqlError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        SqlError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        SqlError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        SqlError::Syntax { .. } | SqlError::Ended | SqlError::Other(_) => StatusCode::BAD_REQUEST,
    };
    error(status, e.to_string())
}
