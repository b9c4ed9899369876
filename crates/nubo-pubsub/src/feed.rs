//! The node's side of WebSocket and SSE routes: which topics a browser
//! receives, and which component gets what it sends.

use bytes::Bytes;
use nubo_wasm::HttpComponent;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::broadcast;

pub struct TopicFeed {
    pub hub: Arc<nubo_pubsub::Hub>,
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
            if let Err(e) = crate::internal::post(
                &component,
                &app,
                "websocket",
                &path,
                &headers,
                message.to_vec(),
                &id,
            )
            .await
            {
                tracing::warn!(app = %app, "websocket message not handled: {e}");
            }
        })
    }
}
