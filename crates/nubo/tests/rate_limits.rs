//! Rate limits at the gateway, over real HTTP to real nodes: `429` with
//! `Retry-After` and the `RateLimit` headers, recovery, keys by address
//! (through trusted proxies only) and by header, shadow mode, and one
//! limit for a whole cluster of two nodes on a real nats-server.

mod common;

use common::cluster::{Join, NatsCluster, eventually};
use common::control::NodeProc;
use common::{AppDir, request, wasm};

fn app(name: &str, limits: &str) -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "{name}"

[component.probe]
source = "{}"

[[http]]
route = "/probe/..."
component = "probe"

[[http]]
route = "/free/..."
component = "probe"

{limits}
"#,
        wasm("probe").display()
    ))
}

async fn get(node: &NodeProc, path: &str, headers: &[(&str, &str)]) -> common::Reply {
    request("GET", &node.url(path), headers, b"").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_refuses_with_429_and_recovers() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app(
        "limited",
        "[[rate_limit]]\nroute = \"/probe/...\"\nrate = \"5/s\"\nburst = 3\n\n[[rate_limit]]\nroute = \"*\"\nkey = \"header:x-tenant\"\nrate = \"1/min\"\nburst = 1\nmode = \"shadow\"\n",
    ));
    for left in ["2", "1", "0"] {
        let r = get(&node, "/probe/echo", &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("ratelimit-policy"), Some("\"limit0\";q=3;w=1"));
        let state = r.header("ratelimit").unwrap_or_default();
        assert!(
            state.starts_with(&format!("\"limit0\";r={left};t=")),
            "{state}"
        );
    }
    let r = get(&node, "/probe/echo", &[]).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.header("ratelimit").unwrap_or_default().contains("r=0"));
    assert!(
        r.text().contains("the limit is 5/s per ip on /probe/..."),
        "{}",
        r.text()
    );
    // Other routes are not limited; the shadow limit refuses nothing.
    for _ in 0..5 {
        let r = get(&node, "/free/echo", &[("x-tenant", "acme")]).await;
        assert_eq!(r.status, 200);
        assert!(r.header("ratelimit").is_none());
    }
    node.wait_log("rate limit (shadow) would refuse this request");
    // One interval later, one more request passes.
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert_eq!(get(&node, "/probe/echo", &[]).await.status, 200);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(&node, "/probe/echo", &[]).await.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

/// The status of a request to a limited route that says it is from `xff`.
async fn from(node: &NodeProc, xff: &str) -> u16 {
    get(node, "/probe/echo", &[("x-forwarded-for", xff)])
        .await
        .status
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_are_told_apart_by_address_only_through_trusted_proxies() {
    let limits = "[[rate_limit]]\nroute = \"*\"\nrate = \"1/min\"\nburst = 1\n\n[[rate_limit]]\nroute = \"/free/...\"\nkey = \"header:x-tenant\"\nrate = \"1/min\"\nburst = 1\n";
    // No trusted proxies: X-Forwarded-For is the client's own word.
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app("plain", limits));
    assert_eq!(from(&node, "1.1.1.1").await, 200);
    assert_eq!(from(&node, "2.2.2.2").await, 429);
    drop(node);

    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &["--trusted-proxies", "127.0.0.0/8"]);
    node.apply(&app("proxied", limits));
    assert_eq!(from(&node, "1.1.1.1").await, 200);
    assert_eq!(from(&node, "2.2.2.2").await, 200);
    // The leftmost address is the client's own word too.
    let r = get(
        &node,
        "/probe/echo",
        &[("x-forwarded-for", "9.9.9.9, 1.1.1.1")],
    )
    .await;
    assert_eq!(r.status, 429);
    // By header: each tenant its own count (on top of the address's).
    let r = get(
        &node,
        "/free/echo",
        &[("x-forwarded-for", "3.3.3.3"), ("x-tenant", "a")],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = get(
        &node,
        "/free/echo",
        &[("x-forwarded-for", "4.4.4.4"), ("x-tenant", "a")],
    )
    .await;
    assert_eq!(r.status, 429);
    assert!(r.text().contains("per header:x-tenant"), "{}", r.text());
}

/// Two nodes, one limit: requests spread over both, some at once, pass
/// exactly as many times as the limit allows.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_holds_one_limit_across_its_nodes() {
    let nats = NatsCluster::start(1);
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = nats.node(dirs[0].path(), "node-a");
    let b = nats.node(dirs[1].path(), "node-b");
    a.apply(&app(
        "shared",
        "[[rate_limit]]\nroute = \"/probe/...\"\nrate = \"10/min\"\n",
    ));
    eventually(20, "the app on node b", || async {
        (get(&b, "/free/echo", &[]).await.status == 200).then_some(())
    })
    .await;
    let mut calls = Vec::new();
    for i in 0..40 {
        let url = if i % 2 == 0 {
            a.url("/probe/echo")
        } else {
            b.url("/probe/echo")
        };
        calls.push(tokio::spawn(async move {
            request("GET", &url, &[], b"").await.status
        }));
    }
    let mut passed = 0;
    for c in calls {
        match c.await.unwrap() {
            200 => passed += 1,
            429 => {}
            other => panic!("status {other}"),
        }
    }
    // The overshoot, measured: none.
    assert_eq!(
        passed, 10,
        "requests that passed a limit of 10 over two nodes"
    );
    assert_eq!(get(&a, "/probe/echo", &[]).await.status, 429);
    assert_eq!(get(&b, "/probe/echo", &[]).await.status, 429);
}
