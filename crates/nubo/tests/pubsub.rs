//! Topics, Server-Sent Events and WebSockets: what a component publishes
//! reaches every connected browser; what a browser sends reaches a
//! component; one node holds ten thousand connected clients.

mod common;

use common::control::NodeProc;
use common::{AppDir, get, wasm};
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn chat_app() -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "chat"
[component.probe]
source = "{w}"
topics = ["chat", "news"]
[component.mute]
source = "{w}"
[[http]]
route = "/probe/..."
component = "probe"
[[http]]
route = "/mute/..."
component = "mute"
[[websocket]]
route = "/ws"
topics = ["chat"]
component = "probe"
path = "/probe/ws-in"
[[sse]]
route = "/events"
topics = ["chat", "news"]
"#,
        w = wasm("probe").display()
    ))
}

async fn ws(
    node: &NodeProc,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = node.url(path).replace("http://", "ws://");
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn next_text<S>(s: &mut S) -> String
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return t.to_string(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no message: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_reaches_websockets_and_sse_and_browsers_reach_a_component() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let app = chat_app();
    let (code, out, err) = node.cli(
        &["apply", app.path().to_str().unwrap(), "--auto-approve"],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("+ route /ws → websocket on chat, messages to component probe"),
        "{out}"
    );

    // An SSE client, read frame by frame.
    let addr = node.http.trim_start_matches("http://").to_string();
    let resp = common::open_get(&addr, "/events").await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut sse = resp.into_body();

    let mut a = ws(&node, "/ws").await;
    let mut b = ws(&node, "/ws").await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    assert_eq!(
        get(&node.url("/probe/ps-pub?chat=hello")).await.text(),
        "published"
    );
    assert_eq!(next_text(&mut a).await, "hello");
    assert_eq!(next_text(&mut b).await, "hello");
    let frame = tokio::time::timeout(Duration::from_secs(10), sse.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(frame.into_data().unwrap(), "data: hello\n\n");

    // A browser message goes to the component, which answers on the topic.
    a.send(Message::text("hi there")).await.unwrap();
    assert_eq!(next_text(&mut a).await, "echo:hi there");
    assert_eq!(next_text(&mut b).await, "echo:hi there");

    // SSE carries both of its topics; the WebSocket only `chat`.
    assert_eq!(get(&node.url("/probe/ps-pub?news=extra")).await.status, 200);
    let mut seen = String::new();
    while !seen.contains("data: extra") {
        let f = tokio::time::timeout(Duration::from_secs(10), sse.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&f.into_data().unwrap()));
    }

    // Not granted: refused inside the guest. A plain GET on /ws: 426.
    let r = get(&node.url("/mute/probe/ps-pub?chat=x")).await;
    assert!(
        r.text().contains("access denied: topic `chat`"),
        "{}",
        r.text()
    );
    assert_eq!(get(&node.url("/ws")).await.status, 426);

    // Both sockets are in /metrics while open, and in the app's usage once
    // closed: what each sent and was sent, and how long it was open.
    let metrics = node.api("GET", "/metrics", "").await.text();
    assert!(
        metrics.contains("\nnubo_websocket_connections 2\n"),
        "{metrics}"
    );
    a.close(None).await.unwrap();
    b.close(None).await.unwrap();
    // A socket's usage is recorded before it leaves the count.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node
        .api("GET", "/metrics", "")
        .await
        .text()
        .contains("\nnubo_websocket_connections 0\n")
    {
        assert!(Instant::now() < deadline, "the sockets never closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v = node.json("/v1/apps/chat/usage?by=route").await;
    let usage = v["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["key"] == "/ws"))
        .map(|r| r["usage"].clone())
        .unwrap_or_else(|| panic!("no usage of /ws: {v}"));
    assert_eq!(usage["ws_messages_in"], 1, "{usage}");
    assert_eq!(usage["ws_messages_out"], 4, "{usage}");
    assert!(
        usage["ws_connection_ms"].as_u64().unwrap() >= 200,
        "{usage}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_node_holds_ten_thousand_websocket_clients() {
    raise_fd_limit();
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let app = chat_app();
    let (code, out, err) = node.cli(
        &["apply", app.path().to_str().unwrap(), "--auto-approve"],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    const N: usize = 10_000;
    let url = node.url("/ws").replace("http://", "ws://");
    let started = Instant::now();
    let mut clients = Vec::with_capacity(N);
    let mut connecting = futures_util::stream::iter(0..N)
        .map(|_| {
            let url = url.clone();
            async move { tokio_tungstenite::connect_async(url).await.map(|c| c.0) }
        })
        .buffer_unordered(200);
    while let Some(c) = connecting.next().await {
        clients.push(c.expect("connect"));
    }
    let connected_in = started.elapsed();
    let rss = std::fs::read_to_string(format!("/proc/{}/status", node.child.id()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .map(str::to_string)
        .unwrap_or_default();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    assert_eq!(
        get(&node.url("/probe/ps-pub?chat=to-everyone"))
            .await
            .status,
        200
    );
    let mut received = 0;
    let mut waits = Vec::new();
    for c in clients.iter_mut() {
        waits.push(async move { next_text(c).await });
    }
    for got in futures_util::future::join_all(waits).await {
        assert_eq!(got, "to-everyone");
        received += 1;
    }
    eprintln!(
        "{N} websocket clients: connected in {connected_in:?}, all received in {:?}; node {rss}",
        sent.elapsed()
    );
    assert_eq!(received, N);
}

/// Ten thousand clients need ten thousand descriptors on each side.
fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit on this process.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// A browser that sends faster than the component answers is closed with
/// 1008; it never holds more than one instance, so the component's HTTP
/// routes serve on. A page of another site cannot open the socket.
#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_flood_is_closed_and_other_sites_are_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let state = tempfile::tempdir().unwrap();
    let node = NodeProc::start(state.path(), &[]);
    let app = AppDir::new(&format!(
        r#"
[app]
name = "flood"
[component.probe]
source = "{w}"
limits = {{ max_instances = 4 }}
[[http]]
route = "/probe/..."
component = "probe"
[[websocket]]
route = "/slow"
topics = ["chat"]
component = "probe"
path = "/probe/sleep?200"
[[websocket]]
route = "/partner"
topics = ["chat"]
origins = ["https://partner.test"]
"#,
        w = wasm("probe").display()
    ));
    node.apply(&app);

    let mut s = ws(&node, "/slow").await;
    for i in 0..200 {
        if s.send(Message::text(format!("m{i}"))).await.is_err() {
            break;
        }
    }
    let during = get(&node.url("/probe/echo")).await;
    assert_eq!(during.status, 200, "{}", during.text());
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the flooding socket was not closed");
    assert_eq!(closed, Some(CloseCode::Policy));

    let with_origin = |path: &str, origin: &str| {
        let mut req = node
            .url(path)
            .replace("http://", "ws://")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        req
    };
    let evil = tokio_tungstenite::connect_async(with_origin("/slow", "https://evil.test")).await;
    match evil {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a page of another site connected: {other:?}"),
    }
    let own = node.http.clone();
    assert!(
        tokio_tungstenite::connect_async(with_origin("/slow", &own))
            .await
            .is_ok()
    );
    assert!(
        tokio_tungstenite::connect_async(with_origin("/partner", "https://partner.test"))
            .await
            .is_ok()
    );
}
