//! Test harness: real guest components built from `tests/components`, a
//! real `nubo` process, real HTTP over loopback.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use nubo_testkit::{repo_root, wasm};

/// A throwaway app folder holding `nubo.toml` and whatever else a test puts there.
pub struct AppDir {
    pub dir: tempfile::TempDir,
}

impl AppDir {
    pub fn new(manifest: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nubo.toml"), manifest).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, contents).unwrap();
        p
    }
}

pub fn nubo() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nubo"));
    // One compile cache for the whole test run: tests exercise Nubo, not Cranelift.
    c.env("NUBO_CACHE_DIR", repo_root().join("target/nubo-test-cache"));
    c.env("NO_COLOR", "1");
    c
}

/// A running `nubo up`; killed on drop.
pub struct Node {
    pub child: Child,
    pub addr: SocketAddr,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
}

impl Node {
    pub fn up(dir: &Path, extra: &[&str]) -> Node {
        Self::up_with(dir, extra, &[])
    }

    pub fn up_with(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Node {
        let mut cmd = nubo();
        cmd.arg("up")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nubo up");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let out = BufReader::new(child.stdout.take().unwrap());
            let buf = stdout.clone();
            std::thread::spawn(move || {
                // Ready once the whole banner (address, then routes) is out.
                let mut addr = None;
                for line in out.lines().map_while(Result::ok) {
                    if let Some(url) = line.split("on http://").nth(1) {
                        addr = url.trim().parse::<SocketAddr>().ok();
                    }
                    {
                        let mut b = buf.lock().unwrap();
                        b.push_str(&line);
                        b.push('\n');
                    }
                    if line.starts_with("press Ctrl-C") {
                        let _ = tx.send(addr);
                    }
                }
                let _ = tx.send(None);
            });
        }
        collect_into(child.stderr.take().unwrap(), stderr.clone());
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(Some(addr)) => Node {
                child,
                addr,
                stdout,
                stderr,
            },
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "nubo up did not start serving\nstdout:\n{}\nstderr:\n{}",
                    stdout.lock().unwrap(),
                    stderr.lock().unwrap()
                );
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle` (logs are asynchronous).
    pub fn wait_log(&self, needle: &str) -> String {
        wait_text(&self.stderr, needle)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies everything `from` yields into `buf`, on a thread.
pub fn collect_into(mut from: impl Read + Send + 'static, buf: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `GET path` on a fresh connection to `addr`; the response with its body
/// still to be read (a stream, or one that may break).
pub async fn open_get(addr: &str, path: &str) -> http::Response<hyper::body::Incoming> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", addr)
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    sender.send_request(req).await.unwrap()
}

/// One HTTP/1.1 request with a fresh connection.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    match send(method, url, headers, body).await {
        Ok(r) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

/// The body of a `200` answer to a request with a fresh connection;
/// `None` for any other answer, or if the node is gone.
pub async fn try_request(method: &str, url: &str, body: &[u8]) -> Option<String> {
    let r = send(method, url, &[("content-type", "application/json")], body)
        .await
        .ok()?;
    (r.status == 200).then(|| r.text())
}

async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
    let uri: http::Uri = url.parse()?;
    let addr = format!(
        "{}:{}",
        uri.host().unwrap_or_default(),
        uri.port_u16().unwrap_or(80)
    );
    let stream = tokio::net::TcpStream::connect(&addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header(
            "host",
            uri.authority().map(|a| a.as_str()).unwrap_or_default(),
        );
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::copy_from_slice(body)))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

pub async fn get(url: &str) -> Reply {
    request("GET", url, &[], b"").await
}

/// A manifest with the probe component on `/probe/...`.
pub fn probe_app(extra_component_keys: &str, extra: &str) -> String {
    format!(
        r#"
[app]
name = "probe-app"

[variables]
greeting = {{ default = "Hello" }}
secret = {{ required = true, secret = true }}

[component.probe]
source = "{wasm}"
config = {{ greeting = "{{{{ greeting }}}}, world", token = "{{{{ secret }}}}" }}
{extra_component_keys}

[[http]]
route = "/probe/..."
component = "probe"
{extra}
"#,
        wasm = wasm("probe").display()
    )
}
pub mod cluster;
pub mod control;
pub mod sql;

/// Waits up to 10 s until `buf` (a node's captured output) contains
/// `needle`, and returns it either way. A node's log line can reach the
/// test after the response that followed it: the two travel on
/// different pipes.
pub fn wait_text(buf: &Mutex<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = buf.lock().unwrap().clone();
        if s.contains(needle) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
