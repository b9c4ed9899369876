//! `/v1/apps/{app}/kv/{store}`: what `nubo kv` uses to look into an app's
//! key-value stores and fix a value by hand. Same backend, same limits as
//! guests; keys go in the path percent-encoded.

use crate::{KvBackend, KvError, Namespace};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use nubo_api::extract::{Path, Query};
use nubo_api::{Apps, Declared, Routes, error};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// What the routes work on.
#[derive(Clone)]
struct Api {
    kv: Arc<dyn KvBackend>,
    apps: Arc<dyn Apps>,
}

impl Api {
    /// The 404 unless `app` runs and grants store `store`.
    async fn declared(&self, ns: &Namespace) -> Result<(), Response> {
        nubo_api::declared(&*self.apps, &ns.app, &STORES, &ns.store).await
    }
}

const STORES: Declared = Declared {
    noun: "key-value store",
    declared_by: crate::capability::GRANT_KEY,
    names: |def| Declared::granted(def, crate::capability::GRANT_KEY),
};

/// `nubo kv`'s routes.
pub(crate) fn routes(kv: Arc<dyn KvBackend>, apps: Arc<dyn Apps>) -> Routes {
    Routes::new()
        .get("/v1/apps/{app}/kv/{store}", list)
        .get("/v1/apps/{app}/kv/{store}/{*key}", get)
        .put("/v1/apps/{app}/kv/{store}/{*key}", set)
        .delete("/v1/apps/{app}/kv/{store}/{*key}", delete)
        .with_state(Api { kv, apps })
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    cursor: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct SetQuery {
    ttl_ms: Option<u64>,
}

/// A store name that is not one.
struct BadStore(String);

impl IntoResponse for BadStore {
    fn into_response(self) -> Response {
        error(
            StatusCode::BAD_REQUEST,
            format!("invalid store name `{}`", self.0),
        )
    }
}

fn ns(app: String, store: String) -> Result<Namespace, BadStore> {
    if !nubo_manifest::is_store_name(&store) {
        return Err(BadStore(store));
    }
    Ok(Namespace { app, store })
}

/// `/{app}/kv/{store}/{*key}` with the store name checked.
struct StoreKey {
    ns: Namespace,
    key: String,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for StoreKey {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Path((app, store, key)) =
            Path::<(String, String, String)>::from_request_parts(parts, state)
                .await
                .map_err(IntoResponse::into_response)?;
        let ns = ns(app, store).map_err(IntoResponse::into_response)?;
        Ok(StoreKey { ns, key })
    }
}

fn kv_error(e: KvError) -> Response {
    match e {
        KvError::Invalid(m) => error(StatusCode::BAD_REQUEST, m),
        e @ (KvError::OverQuota { .. } | KvError::DiskFull) => {
            error(StatusCode::INSUFFICIENT_STORAGE, e.to_string())
        }
        e @ KvError::Backend { .. } => {
            tracing::error!(error = %e, "key-value backend");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

async fn list(
    State(api): State<Api>,
    Path((app, store)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Response {
    let ns = match ns(app, store) {
        Ok(ns) => ns,
        Err(r) => return r.into_response(),
    };
    if let Err(r) = api.declared(&ns).await {
        return r;
    }
    let limit = match nubo_api::extract::page_limit(q.limit, 1000) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    match api
        .kv
        .list_keys(&ns, &q.prefix, q.cursor.as_deref(), limit)
        .await
    {
        Ok((keys, cursor)) => {
            axum::Json(serde_json::json!({ "keys": keys, "cursor": cursor })).into_response()
        }
        Err(e) => kv_error(e),
    }
}

async fn get(State(api): State<Api>, StoreKey { ns, key }: StoreKey) -> Response {
    if let Err(r) = api.declared(&ns).await {
        return r;
    }
    match api.kv.get(&ns, &key).await {
        Ok(Some(v)) => ([(header::CONTENT_TYPE, "application/octet-stream")], v).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no key `{key}` in store `{}` of app `{}`", ns.store, ns.app),
        ),
        Err(e) => kv_error(e),
    }
}

async fn set(
    State(api): State<Api>,
    StoreKey { ns, key }: StoreKey,
    Query(q): Query<SetQuery>,
    body: Bytes,
) -> Response {
    if let Err(r) = api.declared(&ns).await {
        return r;
    }
    let ttl = q.ttl_ms.map(Duration::from_millis);
    match api.kv.set(&ns, &key, &body, ttl).await {
        Ok(()) => axum::Json(serde_json::json!({ "key": key, "size": body.len() })).into_response(),
        Err(e) => kv_error(e),
    }
}

async fn delete(State(api): State<Api>, StoreKey { ns, key }: StoreKey) -> Response {
    if let Err(r) = api.declared(&ns).await {
        return r;
    }
    // Deleting a missing key succeeds, as in wasi:keyvalue and Redis;
    // `deleted` says whether there was one (for the CLI's message; a
    // write racing this call may make it stale, never wrong about the
    // key being gone now).
    let existed = match api.kv.exists(&ns, &key).await {
        Ok(e) => e,
        Err(e) => return kv_error(e),
    };
    match api.kv.delete(&ns, &key).await {
        Ok(()) => axum::Json(serde_json::json!({ "key": key, "deleted": existed })).into_response(),
        Err(e) => kv_error(e),
    }
}
