//! `GET /v1/apps/{app}/logs`: recent guest log lines as NDJSON, and with
//! `follow=true` the stream stays open and carries new lines as they come.

use super::extract::{Path, Query};
use crate::Node;
use crate::logs::LogLine;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use std::sync::Arc;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

#[derive(Deserialize)]
pub(crate) struct LogQuery {
    component: Option<String>,
    #[serde(default)]
    follow: bool,
    tail: Option<usize>,
}

fn ndjson(line: &LogLine) -> bytes::Bytes {
    let mut v = serde_json::to_vec(line).unwrap_or_default();
    v.push(b'\n');
    v.into()
}

pub(crate) async fn logs(
    State(node): State<Arc<Node>>,
    Path(app): Path<String>,
    Query(q): Query<LogQuery>,
) -> Response {
    if node.app(&app).await.is_none() {
        return super::no_app(&app);
    }
    // Subscribe before reading the backlog so no line falls between them.
    let live = node.logs.subscribe();
    let backlog = node
        .logs
        .recent(&app, q.component.as_deref(), q.tail.unwrap_or(100));
    let head = futures_util::stream::iter(
        backlog
            .into_iter()
            .map(|l| Ok::<_, std::convert::Infallible>(ndjson(&l)))
            .collect::<Vec<_>>(),
    );
    let body = if q.follow {
        let component = q.component.clone();
        let tail = BroadcastStream::new(live).filter_map(move |item| {
            let out = match item {
                Ok(l) if l.app == app && component.as_deref().is_none_or(|c| c == l.component) => {
                    Some(Ok(ndjson(&l)))
                }
                Ok(_) => None,
                Err(BroadcastStreamRecvError::Lagged(n)) => {
                    Some(Ok(bytes::Bytes::from(format!("{{\"dropped\":{n}}}\n"))))
                }
            };
            std::future::ready(out)
        });
        Body::from_stream(head.chain(tail))
    } else {
        Body::from_stream(head)
    };
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}
