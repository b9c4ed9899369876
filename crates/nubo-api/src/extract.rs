//! Extractors whose rejections are the API's own JSON errors: a malformed
//! body, query string or path segment is a `400` with `{"error": …}` that
//! says why, like every other error the API returns (axum's own extractors
//! answer them in plain text).

use crate::error;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// A JSON body.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        json_object(&bytes)
            .map(JsonBody)
            .map_err(IntoResponse::into_response)
    }
}

/// A request the API cannot read; answered `400` with why.
pub struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.0)
    }
}

/// A JSON object parsed as `T`. serde would also build a struct from an
/// array of its fields in order; every body of this API is an object.
pub fn json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BadRequest> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(BadRequest("malformed JSON body: expected an object".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| BadRequest(format!("malformed JSON body: {e}")))
}

/// A page size from `?limit=`: `default` when absent, else 1 to 10,000.
pub fn page_limit(limit: Option<usize>, default: usize) -> Result<usize, BadRequest> {
    match limit {
        None => Ok(default),
        Some(n @ 1..=10_000) => Ok(n),
        Some(n) => Err(BadRequest(format!(
            "limit must be between 1 and 10000, got {n}"
        ))),
    }
}

/// The query string.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// The path's parameters.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))
    }
}
