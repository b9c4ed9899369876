//! A real NATS cluster (nats-server from Debian, JetStream on) on
//! loopback ports, for the JetStream backends' tests and the cluster tests.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One nats-server process of a [`NatsCluster`].
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
                collect_into(child.stderr.take().unwrap(), log.clone());
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

    /// A JetStream context on the first server, for a backend under test.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let url = self.servers[0].url.as_str();
        match async_nats::connect(url).await {
            Ok(client) => async_nats::jetstream::new(client),
            Err(e) => panic!("cannot connect to the test's nats-server at {url}: {e}"),
        }
    }

    /// Every server's URL, comma separated, as `--nats` takes them.
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.url.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stops server `i` (a lost server, for the tests that need one).
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

/// Appends what `from` gives to `buf` until it ends, on a thread.
fn collect_into(mut from: impl Read + Send + 'static, buf: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&chunk[..n]);
            buf.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&text);
        }
    });
}
