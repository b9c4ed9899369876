//! A real NATS cluster (nats-server from Debian, JetStream on) on loopback
//! ports, and Nubo nodes that join it.

use super::control::NodeProc;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The token every node of a test cluster shares.
pub const TOKEN: &str = "cluster-test-token";
/// The key every node of a test cluster signs its records with.
pub const KEY: &str = "cluster-test-key-0123456789abcdef0123456789";

pub use nubo_testkit::nats::NatsCluster;
#[allow(unused_imports)]
pub use nubo_testkit::nats::free_port;

/// Nubo nodes that join a test cluster.
pub trait Join {
    /// A node that joins this cluster as `id`, with the shared token.
    fn node(&self, state: &Path, id: &str) -> NodeProc;
    /// [`Join::node`] with environment variables set for the node.
    fn node_with(&self, state: &Path, id: &str, env: &[(&str, &str)]) -> NodeProc;
}

impl Join for NatsCluster {
    fn node(&self, state: &Path, id: &str) -> NodeProc {
        self.node_with(state, id, &[])
    }

    fn node_with(&self, state: &Path, id: &str, env: &[(&str, &str)]) -> NodeProc {
        NodeProc::start_with(
            state,
            &[
                "--nats",
                &self.urls(),
                "--node-id",
                id,
                "--token",
                TOKEN,
                "--cluster-key",
                KEY,
            ],
            env,
        )
    }
}

/// Polls `check` until it returns `Some`, for up to `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP link to `target` that a test can cut and heal: a network
/// partition between one node and NATS, while the others stay connected.
pub struct Link {
    pub port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Link {
    /// Forwards 127.0.0.1:PORT to `target` (`host:port`); needs a tokio
    /// runtime with worker threads.
    pub async fn start(target: &str) -> Link {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (c, o, target) = (cut.clone(), open.clone(), target.to_string());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                o.lock().unwrap().push(conn.abort_handle());
            }
        });
        Link { port, cut, open }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.open.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
