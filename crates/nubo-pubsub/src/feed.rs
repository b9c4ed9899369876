//! The capability's side of WebSocket and SSE routes (the gateway frames
//! them): which topics a browser receives, and which component gets what
//! it sends.

use bytes::Bytes;
use nubo_wasm::HttpComponent;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Largest answer to a WebSocket message read (and thrown away), in bytes.
const MAX_ANSWER: usize = 1 << 20;

/// The feeds of topic routes, over one hub.
pub struct TopicFeeds(pub Arc<crate::Hub>);

impl nubo_gateway::Feeds for TopicFeeds {
    fn feed(
        &self,
        app: &str,
        topics: &[String],
        inbound: Option<(HttpComponent, String)>,
        origins: &[String],
    ) -> Arc<dyn nubo_gateway::Feed> {
        Arc::new(TopicFeed {
            hub: self.0.clone(),
            app: app.to_string(),
            topics: topics.to_vec(),
            inbound,
            origins: origins.to_vec(),
        })
    }
}

pub struct TopicFeed {
    pub hub: Arc<crate::Hub>,
    pub app: String,
    pub topics: Vec<String>,
    /// The component (and path) a WebSocket's messages are `POST`ed to.
    pub inbound: Option<(HttpComponent, String)>,
    /// Browser origins allowed besides the request's own host.
    pub origins: Vec<String>,
}

impl nubo_gateway::Feed for TopicFeed {
    fn subscribe(&self) -> Vec<broadcast::Receiver<Bytes>> {
        self.topics
            .iter()
            .map(|t| self.hub.subscribe(&self.app, t))
            .collect()
    }

    fn origins(&self) -> &[String] {
        &self.origins
    }

    fn inbound(&self, message: Bytes) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let Some((component, path)) = self.inbound.clone() else {
            return Box::pin(async {});
        };
        let app = self.app.clone();
        Box::pin(async move {
            // Unique per node run, like the gateway's request ids.
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            let id = format!(
                "ws-{:x}",
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let headers = [("nubo-websocket", "message".to_string())];
            let req = nubo_wasm::InternalRequest {
                app: &app,
                kind: "websocket",
                path: &path,
                headers: &headers,
                body: message.to_vec(),
                max_answer: MAX_ANSWER,
            };
            match component
                .post_internal(req, nubo_wasm::Invocation::request(id))
                .await
            {
                Ok(a) if a.is_success() => {}
                Ok(a) => {
                    tracing::warn!(app = %app, "websocket message not handled: HTTP {}", a.status)
                }
                Err(e) => tracing::warn!(app = %app, "websocket message not handled: {e}"),
            }
        })
    }
}
