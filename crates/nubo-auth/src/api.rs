//! The control API of an app's sign-in, which `nubo auth` uses:
//!
//! - `GET /v1/apps/{app}/auth/users`: every account (never a hash);
//! - `PATCH /v1/apps/{app}/auth/users/{email}`: set `roles`, `disabled`;
//! - `DELETE /v1/apps/{app}/auth/users/{email}`: delete the account;
//! - `DELETE /v1/apps/{app}/auth/users/{email}/sessions`: end every
//!   session of the account, on every node;
//! - `GET|POST /v1/apps/{app}/auth/keys`, `DELETE …/keys/{name}`: list,
//!   make (the key is in that one answer) and revoke API keys.

use crate::capability::AuthService;
use crate::guard::{AppGuard, KEY_PREFIX, now_ms};
use crate::store::{ApiKey, User};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nubo_api::extract::{JsonBody, Path};
use nubo_api::{Apps, Routes, error};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Clone)]
struct Api {
    service: Arc<AuthService>,
    apps: Arc<dyn Apps>,
}

pub(crate) fn routes(service: Arc<AuthService>, apps: Arc<dyn Apps>) -> Routes {
    Routes::new()
        .get("/v1/apps/{app}/auth/users", users)
        .patch("/v1/apps/{app}/auth/users/{email}", change_user)
        .delete("/v1/apps/{app}/auth/users/{email}", delete_user)
        .delete(
            "/v1/apps/{app}/auth/users/{email}/sessions",
            revoke_sessions,
        )
        .get("/v1/apps/{app}/auth/keys", keys)
        .post("/v1/apps/{app}/auth/keys", create_key)
        .delete("/v1/apps/{app}/auth/keys/{name}", revoke_key)
        .with_state(Api { service, apps })
}

/// App `app`'s guard, or the 404 that says the app or its `[auth]` is
/// missing.
async fn guard(api: &Api, app: &str) -> Result<Arc<AppGuard>, Response> {
    nubo_api::app(&*api.apps, app).await?;
    api.service.app(app).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("app `{app}` has no [auth] in its nubo.toml"),
        )
    })
}

fn failed(e: nubo_kv::KvError) -> Response {
    tracing::error!(error = %e, "the account store failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the account store failed: {e}"),
    )
}

fn shown(u: &User) -> serde_json::Value {
    json!({
        "id": u.id,
        "email": u.email,
        "roles": u.roles,
        "disabled": u.disabled,
        "created_ms": u.created_ms,
    })
}

async fn users(State(api): State<Api>, Path(app): Path<String>) -> Response {
    let g = match guard(&api, &app).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    match g.accounts.users().await {
        Ok(list) => axum::Json(list.iter().map(shown).collect::<Vec<_>>()).into_response(),
        Err(e) => failed(e),
    }
}

/// App `app`'s guard and its account `email`, or the 404 that names
/// what is missing.
async fn account(api: &Api, app: &str, email: &str) -> Result<(Arc<AppGuard>, User), Response> {
    let g = guard(api, app).await?;
    match g.accounts.user(&email.to_lowercase()).await {
        Ok(Some(u)) => Ok((g, u)),
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            format!("app `{app}` has no account `{email}`"),
        )),
        Err(e) => Err(failed(e)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    roles: Option<Vec<String>>,
    disabled: Option<bool>,
}

async fn change_user(
    State(api): State<Api>,
    Path((app, email)): Path<(String, String)>,
    JsonBody(c): JsonBody<Change>,
) -> Response {
    let (g, mut u) = match account(&api, &app, &email).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if let Some(roles) = c.roles {
        if let Some(bad) = roles.iter().find(|r| !nubo_manifest::is_store_name(r)) {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "invalid role `{bad}`: lower-case letters, digits, `-` and `_`, starting with a letter"
                ),
            );
        }
        u.roles = roles;
        u.roles.sort_unstable();
        u.roles.dedup();
    }
    if let Some(d) = c.disabled {
        u.disabled = d;
    }
    match g.accounts.save(&u).await {
        Ok(()) => {
            tracing::info!(app, email = %u.email, roles = ?u.roles, disabled = u.disabled, "account changed");
            axum::Json(shown(&u)).into_response()
        }
        Err(e) => failed(e),
    }
}

async fn delete_user(
    State(api): State<Api>,
    Path((app, email)): Path<(String, String)>,
) -> Response {
    let (g, u) = match account(&api, &app, &email).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    match g.accounts.delete_user(&u.email).await {
        Ok(()) => {
            tracing::info!(app, email = %u.email, "account deleted");
            axum::Json(json!({ "deleted": u.email })).into_response()
        }
        Err(e) => failed(e),
    }
}

async fn revoke_sessions(
    State(api): State<Api>,
    Path((app, email)): Path<(String, String)>,
) -> Response {
    let (g, mut u) = match account(&api, &app, &email).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    u.generation += 1;
    match g.accounts.save(&u).await {
        Ok(()) => {
            tracing::info!(app, email = %u.email, "sessions revoked");
            axum::Json(json!({ "revoked": u.email })).into_response()
        }
        Err(e) => failed(e),
    }
}

/// A key's guard: the app's, if its `[auth]` takes API keys.
async fn keyed(api: &Api, app: &str) -> Result<Arc<AppGuard>, Response> {
    let g = guard(api, app).await?;
    if !g.spec.api_keys {
        return Err(error(
            StatusCode::CONFLICT,
            format!("app `{app}` takes no API keys: add api_keys = true to its [auth]"),
        ));
    }
    Ok(g)
}

fn shown_key(k: &ApiKey) -> serde_json::Value {
    json!({ "name": k.name, "roles": k.roles, "created_ms": k.created_ms })
}

async fn keys(State(api): State<Api>, Path(app): Path<String>) -> Response {
    let g = match keyed(&api, &app).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    match g.accounts.keys().await {
        Ok(list) => axum::Json(list.iter().map(shown_key).collect::<Vec<_>>()).into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    #[serde(default)]
    roles: Vec<String>,
}

async fn create_key(
    State(api): State<Api>,
    Path(app): Path<String>,
    JsonBody(k): JsonBody<NewKey>,
) -> Response {
    let g = match keyed(&api, &app).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    if !nubo_manifest::is_store_name(&k.name) || k.name.len() > 64 {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "invalid key name `{}`: up to 64 lower-case letters, digits, `-` and `_`, starting with a letter",
                k.name
            ),
        );
    }
    if let Some(bad) = k.roles.iter().find(|r| !nubo_manifest::is_store_name(r)) {
        return error(StatusCode::BAD_REQUEST, format!("invalid role `{bad}`"));
    }
    let Some(secret) = crate::random_token() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node cannot make a secret now; try again",
        );
    };
    let key = format!("{KEY_PREFIX}{secret}");
    let record = ApiKey {
        name: k.name,
        roles: k.roles,
        created_ms: now_ms(),
    };
    match g.accounts.create_key(&key, &record).await {
        Ok(true) => {
            tracing::info!(app, key = %record.name, "API key made");
            let mut body = shown_key(&record);
            body["key"] = json!(key);
            (StatusCode::CREATED, axum::Json(body)).into_response()
        }
        Ok(false) => error(
            StatusCode::CONFLICT,
            format!(
                "app `{app}` has a key named `{}`: revoke it first or pick another name",
                record.name
            ),
        ),
        Err(e) => failed(e),
    }
}

async fn revoke_key(State(api): State<Api>, Path((app, name)): Path<(String, String)>) -> Response {
    let g = match keyed(&api, &app).await {
        Ok(g) => g,
        Err(r) => return r,
    };
    match g.accounts.revoke_key(&name).await {
        Ok(true) => {
            tracing::info!(app, key = %name, "API key revoked");
            axum::Json(json!({ "revoked": name })).into_response()
        }
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("app `{app}` has no API key `{name}`"),
        ),
        Err(e) => failed(e),
    }
}
