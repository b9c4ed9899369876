//! The front door against a hostile client: forged internal headers and
//! hosts, routing by the right authority, a component that breaks its
//! response half way, and connections held without being used.

mod common;

use common::control::NodeProc;
use common::{AppDir, Node, request, wasm};
use http_body_util::BodyExt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn app() -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "edge"
[component.probe]
source = "{probe}"
[component.tasker]
source = "{tasker}"
[component.blobs]
source = "{blobs}"
blob_containers = ["files"]
[[http]]
route = "/probe/..."
component = "probe"
[[http]]
route = "/t/..."
component = "tasker"
[[http]]
route = "/b/..."
component = "blobs"
[queue.jobs]
consumer = "probe"
path = "/probe/q-recv"
[[http]]
route = "/enqueue"
queue = "jobs"
[[websocket]]
route = "/ws"
topics = ["chat"]
"#,
        probe = wasm("probe").display(),
        tasker = wasm("tasker").display(),
        blobs = wasm("blobs").display(),
    ))
}

#[tokio::test]
async fn a_client_cannot_send_the_nodes_internal_headers() {
    let dir = app();
    let node = Node::up(dir.path(), &[]);
    let forged = [
        ("nubo-task-function", "count_words"),
        ("nubo-task-id", "t1"),
        ("nubo-queue", "jobs"),
        ("nubo-message-id", "7"),
        ("nubo-attempt", "1"),
        ("nubo-batch", "1"),
        ("nubo-websocket", "message"),
        ("nubo-cron-schedule", "* * * * *"),
        ("Nubo-User-Id", "admin"),
        ("nubo-matched-route", "/forged"),
    ];
    let r = request("GET", &node.url("/probe/nubo-headers"), &forged, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Only what the gateway itself sets is there.
    assert_eq!(
        r.text(),
        "nubo-base-path=/\nnubo-matched-route=/probe/...\nnubo-path-info=/nubo-headers"
    );

    // The forged task header no longer runs the task function through
    // the public route: the component's own handler answers.
    let r = request(
        "POST",
        &node.url("/t/anything"),
        &[("nubo-task-function", "count_words")],
        br#""one two three""#,
    )
    .await;
    assert_ne!(r.text().trim(), "3", "the task function ran");
}

#[tokio::test]
async fn the_internal_domain_is_refused_and_the_target_authority_routes() {
    let dir = AppDir::new(&format!(
        r#"
[app]
name = "hosted"
hosts = ["a.test"]
[component.probe]
source = "{}"
[[http]]
route = "/probe/..."
component = "probe"
"#,
        wasm("probe").display()
    ));
    let node = Node::up(dir.path(), &[]);
    for host in ["edge.task.nubo.internal", "x.QUEUE.nubo.internal.:80"] {
        let r = request("GET", &node.url("/probe/echo"), &[("host", host)], b"").await;
        assert_eq!(r.status, 400, "{host}: {}", r.text());
        assert!(r.text().contains("nubo.internal"), "{}", r.text());
    }
    let r = request("GET", &node.url("/probe/echo"), &[("host", "a.test")], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request("GET", &node.url("/probe/echo"), &[("host", "b.test")], b"").await;
    assert_eq!(r.status, 404, "{}", r.text());
    // An absolute-form target names the authority; `Host` is ignored
    // (RFC 9112 §3.2.2).
    let raw = raw_exchange(
        &node.addr.to_string(),
        b"GET http://a.test/probe/echo HTTP/1.1\r\nhost: b.test\r\nconnection: close\r\n\r\n",
    );
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("GET http://a.test/probe/echo"), "{raw}");
    let raw = raw_exchange(
        &node.addr.to_string(),
        b"GET http://b.test/probe/echo HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
    );
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
}

/// Sends `request` on a fresh connection and reads until the server closes.
fn raw_exchange(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_component_that_fails_mid_body_breaks_the_transfer() {
    let dir = app();
    let node = Node::up(dir.path(), &[]);
    let resp = common::open_get(&node.addr.to_string(), "/b/broken").await;
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await;
    assert!(
        body.is_err(),
        "a broken response must not look complete: got {} bytes",
        body.map(|b| b.to_bytes().len()).unwrap_or(0)
    );
    let log = node.wait_log("response broken off");
    assert!(log.contains("response broken off"), "{log}");
    // The node serves on.
    let r = common::get(&node.url("/probe/echo")).await;
    assert_eq!(r.status, 200);
}

/// Whether the server closes `s` within `limit` (reads end or fail).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    let started = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return started.elapsed() < limit,
        }
    }
}

#[tokio::test]
async fn connections_that_are_not_used_are_cut_off() {
    let dir = app();
    let node = Node::up(
        dir.path(),
        &[
            "--header-timeout",
            "1",
            "--idle-timeout",
            "2",
            "--body-timeout",
            "1",
        ],
    );
    let addr = node.addr.to_string();
    // Nothing at all.
    let mut silent = TcpStream::connect(&addr).unwrap();
    // Half an HTTP/2 preface.
    let mut half_h2 = TcpStream::connect(&addr).unwrap();
    half_h2.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    // Half a request head.
    let mut half_head = TcpStream::connect(&addr).unwrap();
    half_head
        .write_all(b"GET /probe/echo HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    for (what, s) in [
        ("silent", &mut silent),
        ("half preface", &mut half_h2),
        ("half head", &mut half_head),
    ] {
        assert!(
            closed_within(s, Duration::from_secs(8)),
            "{what} stayed open"
        );
    }

    // A keep-alive connection that goes quiet after a request.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /probe/echo HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(
        closed_within(&mut idle, Duration::from_secs(8)),
        "idle stayed open"
    );

    // A body trickled into a queue route.
    let mut trickle = TcpStream::connect(&addr).unwrap();
    trickle
        .write_all(b"POST /enqueue HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\nabc")
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    trickle
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    while started.elapsed() < Duration::from_secs(15) {
        if trickle.write_all(b"x").is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match trickle.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a trickled body was never cut off"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

#[tokio::test]
async fn the_control_api_cuts_off_a_trickled_upload_and_idle_sockets() {
    let state = tempfile::tempdir().unwrap();
    let node = NodeProc::start(
        state.path(),
        &["--header-timeout", "1", "--body-timeout", "1"],
    );
    let control = node.control.trim_start_matches("http://").to_string();
    let mut silent = TcpStream::connect(&control).unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(8)));

    let mut trickle = TcpStream::connect(&control).unwrap();
    let head = format!(
        "PUT /v1/components/{} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: 1000000\r\n\r\n",
        "0".repeat(64),
        node.token()
    );
    trickle.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(15) {
        if trickle.write_all(b"x").is_err() {
            cut = true;
            break;
        }
        trickle
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 512];
        match trickle.read(&mut buf) {
            Ok(_) => {
                cut = true;
                break;
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "the control API waited for a trickled upload");
}

#[tokio::test]
async fn a_listener_holds_at_most_max_connections() {
    let dir = app();
    let node = Node::up(dir.path(), &["--max-connections", "2"]);
    let addr = node.addr.to_string();
    // The harness's own connections are closed by now; take both slots.
    let a = TcpStream::connect(&addr).unwrap();
    let b = TcpStream::connect(&addr).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let url = node.url("/probe/echo");
    let third = tokio::spawn(async move { common::get(&url).await.status });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served at the cap"
    );
    drop(a);
    let status = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served once a slot was free")
        .unwrap();
    assert_eq!(status, 200);
    drop(b);
}

/// While `nubo up` is still compiling and applying its app, a client is
/// told to come back (503 with Retry-After), never a final 404.
#[tokio::test]
async fn a_node_that_is_still_loading_answers_503_not_404() {
    use std::io::BufRead;
    use std::sync::atomic::{AtomicBool, Ordering};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = app();
    // An empty compile cache: the components compile while the node serves.
    let cache = tempfile::tempdir().unwrap();
    let mut child = common::nubo()
        .arg("up")
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--control", "127.0.0.1:0"])
        .env("NUBO_CACHE_DIR", cache.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    common::collect_into(child.stderr.take().unwrap(), stderr.clone());
    let ready = std::sync::Arc::new(AtomicBool::new(false));
    {
        let ready = ready.clone();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if line.starts_with("press Ctrl-C") {
                    ready.store(true, Ordering::Release);
                }
            }
        });
    }
    let addr = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let mut seen = Vec::new();
    while !ready.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(120) {
        let Ok(mut s) = TcpStream::connect(&addr) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"GET /probe/echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let head = String::from_utf8_lossy(&out).into_owned();
        if let Some(status) = head.get(9..12) {
            if status == "503" {
                assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
            }
            seen.push(status.to_string());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready.load(Ordering::Acquire), "nubo up did not start");
    assert!(
        !seen.iter().any(|s| s == "404"),
        "a loading node said 404: {seen:?}"
    );
    assert!(
        seen.iter().any(|s| s == "503"),
        "never caught the node loading: {seen:?}"
    );
    // What it was doing meanwhile was shown.
    let log = common::wait_text(&stderr, "compiled component");
    assert!(log.contains("compiling component"), "{log}");
}

/// A WebSocket keeps its place under `--max-connections` after the
/// upgrade: sockets cannot be opened past the cap.
#[tokio::test]
async fn websockets_count_under_max_connections() {
    let dir = app();
    let node = Node::up(dir.path(), &["--max-connections", "2"]);
    let url = node.url("/ws").replace("http://", "ws://");
    let a = tokio_tungstenite::connect_async(url.clone())
        .await
        .unwrap()
        .0;
    let b = tokio_tungstenite::connect_async(url).await.unwrap().0;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probe = node.url("/probe/echo");
    let third = tokio::spawn(async move { common::get(&probe).await.status });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !third.is_finished(),
        "served past the cap while two sockets are open"
    );
    drop(a);
    let status = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served once a socket closed")
        .unwrap();
    assert_eq!(status, 200);
    drop(b);
}
