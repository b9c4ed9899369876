//! `/v1/apps/{app}/blobs`: what `nubo blob` uses to list, download,
//! upload and delete an app's blobs. Bodies stream both ways, so a
//! gigabyte object passes through in chunks; the same backend and name
//! rules as guests apply.

use crate::{BlobBackend, BlobError, ContainerId, ObjectMeta};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use nubo_api::extract::{Path, Query};
use nubo_api::{Apps, Declared, Routes, error};
use serde::Deserialize;
use std::sync::Arc;

/// What the routes work on.
#[derive(Clone)]
struct Api {
    blobs: Arc<dyn BlobBackend>,
    apps: Arc<dyn Apps>,
}

impl Api {
    /// The 404 unless `c`'s app runs and grants its container.
    async fn declared(&self, c: &ContainerId) -> Result<(), Response> {
        nubo_api::declared(&*self.apps, &c.app, &CONTAINERS, &c.container).await
    }
}

const CONTAINERS: Declared = Declared {
    noun: "blob container",
    declared_by: crate::capability::GRANT_KEY,
    names: |def| Declared::granted(def, crate::capability::GRANT_KEY),
};

/// `nubo blob`'s routes. Bodies stream in chunks, whatever their size.
pub(crate) fn routes(blobs: Arc<dyn BlobBackend>, apps: Arc<dyn Apps>) -> Routes {
    const OBJECT: &str = "/v1/apps/{app}/blobs/{container}/{*name}";
    Routes::new()
        .get("/v1/apps/{app}/blobs", containers)
        .get("/v1/apps/{app}/blobs/{container}", list)
        .get(OBJECT, get)
        .put(OBJECT, put)
        .delete(OBJECT, delete)
        .map(|r| r.layer(DefaultBodyLimit::disable()))
        .with_state(Api { blobs, apps })
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    cursor: Option<String>,
    limit: Option<usize>,
}

fn container(app: String, container: String) -> Result<ContainerId, BlobError> {
    if !nubo_manifest::is_store_name(&container) {
        return Err(BlobError::Invalid(format!(
            "invalid container name `{container}`"
        )));
    }
    Ok(ContainerId { app, container })
}

fn blob_error(e: BlobError) -> Response {
    match e {
        BlobError::Invalid(m) => error(StatusCode::BAD_REQUEST, m),
        BlobError::NotFound(m) => error(StatusCode::NOT_FOUND, format!("no object `{m}`")),
        e @ (BlobError::OverQuota { .. } | BlobError::DiskFull) => {
            error(StatusCode::INSUFFICIENT_STORAGE, e.to_string())
        }
        e @ BlobError::Backend { .. } => {
            tracing::error!(error = %e, "blob backend");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

fn no_object(c: &ContainerId, name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no object `{name}` in container `{}` of app `{}`",
            c.container, c.app
        ),
    )
}

fn meta_json(m: &ObjectMeta) -> serde_json::Value {
    serde_json::json!({
        "name": m.name,
        "size": m.size,
        "created_ms": m.created_ms,
        "content_type": m.content_type,
    })
}

async fn containers(State(api): State<Api>, Path(app): Path<String>) -> Response {
    if let Err(r) = nubo_api::app(&*api.apps, &app).await {
        return r;
    }
    match api.blobs.containers(&app).await {
        Ok(list) => {
            let list: Vec<_> = list
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "name": c.name,
                        "created_ms": c.created_ms,
                        "objects": c.objects,
                        "bytes": c.bytes,
                    })
                })
                .collect();
            axum::Json(serde_json::json!({ "containers": list })).into_response()
        }
        Err(e) => blob_error(e),
    }
}

async fn list(
    State(api): State<Api>,
    Path((app, c)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Response {
    let c = match container(app, c) {
        Ok(c) => c,
        Err(e) => return blob_error(e),
    };
    if let Err(r) = api.declared(&c).await {
        return r;
    }
    let limit = match nubo_api::extract::page_limit(q.limit, 1000) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    match api
        .blobs
        .list(&c, &q.prefix, q.cursor.as_deref(), limit)
        .await
    {
        Ok((objects, cursor)) => {
            let objects: Vec<_> = objects.iter().map(meta_json).collect();
            axum::Json(serde_json::json!({ "objects": objects, "cursor": cursor })).into_response()
        }
        Err(e) => blob_error(e),
    }
}

async fn get(
    State(api): State<Api>,
    Path((app, c, name)): Path<(String, String, String)>,
) -> Response {
    let c = match container(app, c) {
        Ok(c) => c,
        Err(e) => return blob_error(e),
    };
    if let Err(r) = api.declared(&c).await {
        return r;
    }
    let (meta, reader) = match api.blobs.read(&c, &name, 0, None).await {
        Ok(Some(found)) => found,
        Ok(None) => return no_object(&c, &name),
        Err(e) => return blob_error(e),
    };
    let chunks = futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.read(256 << 10).await {
            Ok(b) if b.is_empty() => None,
            Ok(b) => Some((Ok(b), Some(reader))),
            // Ends the body early; the client sees a cut-off download.
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
        }
    });
    let mut resp = Body::from_stream(chunks).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&meta.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    resp
}

async fn put(
    State(api): State<Api>,
    Path((app, c, name)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let c = match container(app, c) {
        Ok(c) => c,
        Err(e) => return blob_error(e),
    };
    if let Err(r) = api.declared(&c).await {
        return r;
    }
    if let Err(e) = crate::check_name(&name) {
        return blob_error(e);
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| crate::guess_content_type(&name));
    let mut writer = match api.blobs.writer(&c.app).await {
        Ok(w) => w,
        Err(e) => return blob_error(e),
    };
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                // The upload broke off: the writer is dropped, nothing stored.
                return error(StatusCode::BAD_REQUEST, format!("reading the body: {e}"));
            }
        };
        if let Ok(data) = frame.into_data()
            && let Err(e) = writer.write(data).await
        {
            return blob_error(e);
        }
    }
    match writer.commit(&c, &name, &content_type).await {
        Ok(meta) => (StatusCode::CREATED, axum::Json(meta_json(&meta))).into_response(),
        Err(e) => blob_error(e),
    }
}

async fn delete(
    State(api): State<Api>,
    Path((app, c, name)): Path<(String, String, String)>,
) -> Response {
    let c = match container(app, c) {
        Ok(c) => c,
        Err(e) => return blob_error(e),
    };
    if let Err(r) = api.declared(&c).await {
        return r;
    }
    match api.blobs.delete(&c, &name).await {
        Ok(true) => {
            axum::Json(serde_json::json!({ "name": name, "deleted": true })).into_response()
        }
        Ok(false) => no_object(&c, &name),
        Err(e) => blob_error(e),
    }
}
