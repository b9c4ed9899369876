//! A real NATS cluster (nats-server from Debian, JetStream on) on loopback
//! ports, and Nubo nodes that join it.

use super::control::NodeProc;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The token every node of a test cluster shares.
pub const TOKEN: &str = "cluster-test-token";
/// The key every node of a test cluster signs its records with.
pub const KEY: &str = "cluster-test-key-0123456789abcdef0123456789";

pub struct NatsServer {
    child: Option<Child>,
    pub url: String,
    log: Arc<Mutex<String>>,
}

/// Servers killed on drop.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
    _dir: tempfile::TempDir,
}

/// A loopback port nothing listens on, never the same one twice in this
/// process: the cluster tests run at once, and a port one test picked and
/// released can be what the kernel hands the next test.
pub fn free_port() -> u16 {
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut taken = TAKEN.lock().unwrap();
        if !taken.contains(&port) {
            taken.push(port);
            return port;
        }
    }
}

impl NatsCluster {
    /// `n` servers routed to each other; returns once JetStream has a
    /// leader. A server that exits while starting (another program took
    /// one of its ports between the pick and the bind) starts the whole
    /// cluster again on new ports, up to three times.
    pub fn start(n: usize) -> NatsCluster {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(n) {
                Ok(cluster) => return cluster,
                Err(why) => last = why,
            }
        }
        panic!("NATS did not get ready: {last}");
    }

    fn try_start(n: usize) -> Result<NatsCluster, String> {
        let dir = tempfile::tempdir().unwrap();
        let client: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let route: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let servers = (0..n)
            .map(|i| {
                let routes: Vec<String> = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| format!("nats://127.0.0.1:{}", route[j]))
                    .collect();
                let mut cmd = Command::new("nats-server");
                cmd.args(["-a", "127.0.0.1", "-p", &client[i].to_string(), "-js"])
                    .arg("-sd")
                    .arg(dir.path().join(format!("s{i}")))
                    .args(["-n", &format!("s{i}")]);
                if n > 1 {
                    cmd.args([
                        "--cluster_name",
                        "nubo-test",
                        "--cluster",
                        &format!("nats://127.0.0.1:{}", route[i]),
                        "--routes",
                        &routes.join(","),
                    ]);
                }
                let mut child = cmd
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| {
                        panic!(
                            "cannot run nats-server ({e}); install it: apt-get install nats-server"
                        )
                    });
                let log = Arc::new(Mutex::new(String::new()));
                super::collect_into(child.stderr.take().unwrap(), log.clone());
                NatsServer {
                    child: Some(child),
                    url: format!("nats://127.0.0.1:{}", client[i]),
                    log,
                }
            })
            .collect();
        let mut cluster = NatsCluster { servers, _dir: dir };
        // The leader logs "Self is new JetStream cluster metadata leader",
        // the others "JetStream cluster new metadata leader".
        let ready: &[&str] = if n > 1 {
            &[
                "Self is new JetStream cluster metadata leader",
                "JetStream cluster new metadata leader",
            ]
        } else {
            &["Server is ready"]
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let listening = |s: &NatsServer| {
            std::net::TcpStream::connect(s.url.trim_start_matches("nats://")).is_ok()
        };
        let logs = |c: &NatsCluster| {
            c.servers
                .iter()
                .enumerate()
                .map(|(i, s)| format!("--- s{i}:\n{}", s.log()))
                .collect::<Vec<_>>()
                .join("\n")
        };
        while !cluster
            .servers
            .iter()
            .any(|s| ready.iter().any(|r| s.log().contains(r)))
            || !cluster.servers.iter().all(listening)
        {
            let exited = cluster.servers.iter_mut().any(|s| {
                s.child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
            });
            if exited || Instant::now() >= deadline {
                return Err(logs(&cluster));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(cluster)
    }

    /// Every server's URL, comma separated, as `--nats` takes them.
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.url.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A node that joins this cluster as `id`, with the shared token.
    pub fn node(&self, state: &Path, id: &str) -> NodeProc {
        self.node_with(state, id, &[])
    }

    /// [`NatsCluster::node`] with environment variables set for the node.
    pub fn node_with(&self, state: &Path, id: &str, env: &[(&str, &str)]) -> NodeProc {
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

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl NatsServer {
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
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
