//! `PUT /v1/components/{sha256}` and `PUT /v1/files/{sha256}`: content-
//! addressed uploads. A component is compiled before it is stored, so a
//! file that is not a `wasi:http` component is refused at upload with the
//! reason, not later in the middle of an apply.

use super::extract::Path;
use super::{ErrorCode, coded, error};
use crate::Node;
use crate::content::ContentError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub(crate) async fn head(State(node): State<Arc<Node>>, Path(digest): Path<String>) -> StatusCode {
    if node.content.has(&digest) {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

pub(crate) async fn put_component(
    State(node): State<Arc<Node>>,
    Path(digest): Path<String>,
    req: Request,
) -> Response {
    let bytes = match received(&node, &digest, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !node.content.has(&digest) {
        let runtime = node.runtime.clone();
        let wasm = bytes.clone();
        let settings = nubo_wasm::ComponentSettings {
            app: "upload".into(),
            component: digest.clone(),
            ..Default::default()
        };
        let name = std::path::PathBuf::from("the uploaded wasm");
        let checked = tokio::task::spawn_blocking(move || {
            runtime.load_http_bytes(&name, &wasm, settings).map(|_| ())
        })
        .await;
        match checked {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                use nubo_wasm::LoadError;
                let code = match &e {
                    LoadError::CoreModule { .. } => Some(ErrorCode::CoreModule),
                    LoadError::Imports(_) => Some(ErrorCode::UnsupportedImport),
                    _ => None,
                };
                return coded(StatusCode::BAD_REQUEST, code, e.to_string());
            }
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("compiler stopped: {e}"),
                );
            }
        }
    }
    store(&node, &digest, &bytes)
}

pub(crate) async fn put_file(
    State(node): State<Arc<Node>>,
    Path(digest): Path<String>,
    req: Request,
) -> Response {
    let bytes = match received(&node, &digest, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    store(&node, &digest, &bytes)
}

/// `None` if the digest is well formed, else the 400 to answer with.
fn check_digest(digest: &str) -> Option<Response> {
    (!nubo_plan::is_digest(digest)).then(|| {
        error(
            StatusCode::BAD_REQUEST,
            format!("`{digest}` is not a sha256 in lower-case hex"),
        )
    })
}

/// The upload's bytes, once the digest in the URL is well formed.
async fn received(node: &Node, digest: &str, req: Request) -> Result<Bytes, Response> {
    if let Some(r) = check_digest(digest) {
        return Err(r);
    }
    Bytes::from_request(req, &()).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "upload is larger than this node accepts ({} MiB; see `nubo node --max-upload-mb`)",
                    node.max_upload >> 20
                ),
            )
        } else {
            error(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}"))
        }
    })
}

fn store(node: &Node, digest: &str, bytes: &[u8]) -> Response {
    match node.content.put(digest, bytes) {
        Ok(true) => (
            StatusCode::CREATED,
            axum::Json(serde_json::json!({"digest": digest, "size": bytes.len()})),
        )
            .into_response(),
        Ok(false) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"digest": digest, "size": bytes.len()})),
        )
            .into_response(),
        Err(e @ ContentError::DigestMismatch { .. }) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Err(e) => {
            tracing::error!("{e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}
