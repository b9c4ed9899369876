//! Serving components over real HTTP: routing, config, logs, outbound
//! allow-list, and a third-party component that knows nothing of Nubo.

mod common;
use common::*;

const SECRET: (&str, &str) = ("NUBO_VAR_SECRET", "s3cret");

#[tokio::test(flavor = "multi_thread")]
async fn routes_requests_to_components_and_static_files() {
    let manifest = probe_app(
        "",
        &format!(
            r#"
[component.plain]
source = "{}"

[[http]]
route = "/plain"
component = "plain"

[component.hello]
source = "{}"

[[http]]
route = "/hello"
component = "hello"

[[static]]
route = "/"
dir = "public"
"#,
            wasm("plain").display(),
            wasm("hello").display()
        ),
    );
    let app = AppDir::new(&manifest);
    app.write("public/index.html", "<h1>home</h1>");
    let node = Node::up_with(app.path(), &[], &[SECRET]);

    let r = request("POST", &node.url("/probe/echo?x=1"), &[], b"ping").await;
    assert_eq!(r.status, 200);
    let text = r.text();
    // An absolute URI, its authority from the Host header.
    let url = node.url("/probe/echo?x=1");
    assert!(text.starts_with(&format!("POST {url} ")), "{text}");
    // The guest sees the same request id the response and the logs carry.
    let id = r.header("x-request-id").unwrap();
    assert!(
        text.contains(&format!("route=/probe/... info=/echo id={id} body=ping")),
        "{text}"
    );

    // The unmodified third-party-style component.
    let r = request("POST", &node.url("/plain"), &[], b"hi").await;
    assert_eq!(
        (r.status, r.text()),
        (200, "plain: POST /plain body=hi\n".to_string())
    );

    // The benchmark's hello component.
    let r = get(&node.url("/hello")).await;
    assert_eq!((r.status, r.text()), (200, "Hello, world!\n".to_string()));

    // Exact route: /plain/x is not /plain, so it falls to the static prefix.
    let r = get(&node.url("/plain/x")).await;
    assert_eq!(r.status, 404);

    let r = get(&node.url("/")).await;
    assert_eq!((r.status, r.text()), (200, "<h1>home</h1>".to_string()));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
}

#[tokio::test(flavor = "multi_thread")]
async fn config_resolves_variables_from_defaults_and_environment() {
    let app = AppDir::new(&probe_app("", ""));
    let node = Node::up_with(app.path(), &[], &[SECRET, ("NUBO_VAR_GREETING", "Bonjour")]);
    let r = get(&node.url("/probe/config?greeting")).await;
    assert_eq!((r.status, r.text()), (200, "Bonjour, world".to_string()));
    let r = get(&node.url("/probe/config?token")).await;
    assert_eq!(r.text(), "s3cret");
    let r = get(&node.url("/probe/config?missing")).await;
    assert_eq!(r.status, 404);
    let r = get(&node.url("/probe/config-all")).await;
    assert_eq!(r.text(), "greeting=Bonjour, world\ntoken=s3cret");

    // Without the environment override, the default applies.
    drop(node);
    let node = Node::up_with(app.path(), &[], &[SECRET]);
    let r = get(&node.url("/probe/config?greeting")).await;
    assert_eq!(r.text(), "Hello, world");
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_output_becomes_tagged_log_lines() {
    let app = AppDir::new(&probe_app("", ""));
    let node = Node::up_with(app.path(), &[], &[SECRET]);
    let r = get(&node.url("/probe/log?marker-123")).await;
    assert_eq!(r.status, 200);
    let id = r.header("x-request-id").unwrap().to_string();
    let logs = node.wait_log("probe warns marker-123");
    let line = logs
        .lines()
        .find(|l| l.contains("probe says marker-123"))
        .unwrap_or_else(|| panic!("no stdout line in logs:\n{logs}"));
    assert!(line.contains("app=probe-app"), "{line}");
    assert!(line.contains("component=probe"), "{line}");
    assert!(line.contains(&format!("request_id={id}")), "{line}");
    assert!(
        logs.contains("stream=\"stderr\"") || logs.contains("stream=stderr"),
        "{logs}"
    );
}

/// An HTTP server on loopback that answers `upstream-ok`; its port.
async fn upstream() -> u16 {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = upstream.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = upstream.accept().await else {
                break;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from("upstream-ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_http_only_to_allowed_hosts() {
    // An upstream on loopback that the component may call by IP only.
    let port = upstream().await;
    let app = AppDir::new(&probe_app(
        r#"allowed_outbound_hosts = ["http://127.0.0.1:*"]"#,
        "",
    ));
    let node = Node::up_with(app.path(), &[], &[SECRET]);

    let r = get(&node.url(&format!("/probe/outbound?http://127.0.0.1:{port}/x"))).await;
    assert_eq!(
        (r.status, r.text()),
        (200, "upstream said 200 OK: upstream-ok".to_string())
    );

    // Same server, but by a host name that was not granted.
    let r = get(&node.url(&format!("/probe/outbound?http://localhost:{port}/x"))).await;
    assert_eq!(r.status, 502);
    assert!(r.text().contains("HttpRequestDenied"), "{}", r.text());
    let logs = node.wait_log("denied");
    assert!(
        logs.contains(&format!(
            "outbound request to http://localhost:{port} denied: not in allowed_outbound_hosts"
        )),
        "{logs}"
    );
}

/// A rule that matches by name (a wildcard, or a name that resolves to
/// loopback) does not reach the node's own network: only a rule that
/// names the address does.
#[tokio::test(flavor = "multi_thread")]
async fn outbound_names_that_resolve_to_local_addresses_are_refused() {
    let port = upstream().await;
    let app = AppDir::new(&probe_app(
        r#"allowed_outbound_hosts = ["http://*:*", "http://localhost:*"]"#,
        "",
    ));
    let node = Node::up_with(app.path(), &[], &[SECRET]);
    for target in [
        format!("http://localhost:{port}/x"),
        format!("http://127.0.0.1:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ] {
        let r = get(&node.url(&format!("/probe/outbound?{target}"))).await;
        assert_eq!(r.status, 502, "{target}: {}", r.text());
        assert!(
            r.text().contains("DestinationIpProhibited"),
            "{target}: {}",
            r.text()
        );
    }
    let logs = node.wait_log("a private or local address");
    assert!(
        logs.contains(&format!(
            "outbound request to http://localhost:{port} denied: it resolves to"
        )),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_outbound_grant_means_no_outbound() {
    let app = AppDir::new(&probe_app("", ""));
    let node = Node::up_with(app.path(), &[], &[SECRET]);
    let r = get(&node.url("/probe/outbound?http://127.0.0.1:9/")).await;
    assert_eq!(r.status, 502);
    assert!(r.text().contains("HttpRequestDenied"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_get_404() {
    let app = AppDir::new(&probe_app("", ""));
    let node = Node::up_with(app.path(), &[], &[SECRET]);
    let r = get(&node.url("/nothing/here")).await;
    assert_eq!(
        (r.status, r.text()),
        (404, "no route for /nothing/here\n".to_string())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_stream_and_abandoned_ones_do_not_hurt() {
    let app = AppDir::new(&probe_app("limits = { memory_mb = 64 }", ""));
    let node = Node::up_with(app.path(), &[], &[SECRET]);
    let r = get(&node.url("/probe/big?5000000")).await;
    assert_eq!((r.status, r.body.len()), (200, 5_000_000));
    assert!(r.body.iter().all(|b| *b == b'x'));
    // A client that reads the head and hangs up mid-body.
    for _ in 0..5 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(node.addr).await.unwrap();
        s.write_all(b"GET /probe/big?20000000 HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        drop(s);
    }
    let r = get(&node.url("/probe/echo")).await;
    assert_eq!(r.status, 200);
}

/// An upstream on loopback that answers every request with headers and
/// the start of a chunked body, then keeps the connection open; its port.
async fn endless_upstream() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
                    )
                    .await;
                // Held until the client goes away.
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    port
}

/// A guest that keeps opening outbound connections is refused past the
/// per-instance cap, with `connection-limit-reached`, and gets its slots
/// back as it drops the responses.
#[tokio::test(flavor = "multi_thread")]
async fn outbound_connections_are_bounded_per_instance() {
    let port = endless_upstream().await;
    let app = AppDir::new(&probe_app(
        r#"allowed_outbound_hosts = ["http://127.0.0.1:*"]"#,
        "",
    ));
    let node = Node::up_with(app.path(), &[], &[SECRET]);
    let r = get(&node.url(&format!("/probe/hold?http://127.0.0.1:{port}/,40"))).await;
    assert_eq!(
        (r.status, r.text()),
        (
            200,
            "held 32; refused #32: ErrorCode::ConnectionLimitReached; after dropping them: answered"
                .to_string()
        )
    );
    let logs = node.wait_log("outbound connections open");
    assert!(
        logs.contains("this instance has 32 outbound connections open"),
        "{logs}"
    );
}
