//! Usage metering over real HTTP to a real node: the requests counted are
//! the requests made, by status class, component, route and user; the
//! guest CPU of a run that burns the CPU is close to what it burned; the
//! peak memory of one that holds memory is at least what it held; calls
//! into a capability are counted; and what was counted outlives a
//! restart. `nubo usage` prints the same figures.

mod common;

use common::control::NodeProc;
use common::{AppDir, request, wasm};
use serde_json::Value;

fn app() -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "metered"

[auth]
accounts = true

[component.probe]
source = "{}"
key_value_stores = ["default"]

[[http]]
route = "/probe/..."
component = "probe"

[[http]]
route = "/mine/..."
component = "probe"
auth = "required"
"#,
        wasm("probe").display()
    ))
}

/// `GET /v1/apps/metered/usage?QUERY`'s rows, by key.
async fn usage(node: &NodeProc, query: &str) -> serde_json::Map<String, Value> {
    let a = node.json(&format!("/v1/apps/metered/usage?{query}")).await;
    let mut out = serde_json::Map::new();
    for row in a["rows"].as_array().cloned().unwrap_or_default() {
        out.insert(
            row["key"].as_str().unwrap().to_string(),
            row["usage"].clone(),
        );
    }
    out
}

fn n(v: &Value, metric: &str) -> u64 {
    v[metric].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_cpu_memory_and_calls_are_counted_and_kept() {
    let s = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(s.path(), &[]);
    node.apply(&app());

    for _ in 0..25 {
        let r = request("GET", &node.url("/probe/echo"), &[], b"").await;
        assert_eq!(r.status, 200);
    }
    for _ in 0..5 {
        let r = request("GET", &node.url("/probe/nothing-here"), &[], b"").await;
        assert_eq!(r.status, 404);
    }
    let r = request("GET", &node.url("/probe/burn?300"), &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request("GET", &node.url("/probe/hoard?16,10"), &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    for k in ["a", "b", "c"] {
        let r = request("GET", &node.url(&format!("/probe/kv-set?{k}=1")), &[], b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Refused by the gateway before any component runs.
    let r = request("GET", &node.url("/mine/echo"), &[], b"").await;
    assert_eq!(r.status, 401);

    let by_route = usage(&node, "by=route").await;
    let probe = &by_route["/probe/..."];
    assert_eq!(n(probe, "requests_2xx"), 25 + 1 + 1 + 3);
    assert_eq!(n(probe, "requests_4xx"), 5);
    assert_eq!(n(&by_route["/mine/..."], "requests_4xx"), 1);
    assert!(n(probe, "bytes_out") > 0, "{probe}");

    let by_component = usage(&node, "by=component").await;
    let c = &by_component["probe"];
    assert_eq!(n(c, "runs"), 25 + 5 + 1 + 1 + 3, "{c}");
    let cpu_ms = n(c, "cpu_us") / 1000;
    assert!(
        (280..1500).contains(&cpu_ms),
        "a run that burned 300 ms of CPU, and 34 small ones, counted {cpu_ms} ms: {c}"
    );
    assert!(n(c, "memory_peak_bytes") >= 16 << 20, "{c}");
    assert!(n(c, "memory_mb_ms") > 0, "{c}");
    assert!(n(c, "kv_calls") >= 3, "{c}");

    // The CLI prints the same.
    let (code, out, err) = node.cli(&["usage", "metered", "--by", "component"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("probe"))
        .unwrap_or_default();
    assert!(row.split_whitespace().nth(1) == Some("36"), "{out}");
    assert!(out.contains("KV_CALLS"), "{out}");
    let (code, out, _) = node.cli(&["usage", "metered", "--since", "forever"], &[]);
    assert_ne!(code, 0);
    assert!(out.is_empty());

    // Stopped right after more requests, the node stores them first.
    for _ in 0..4 {
        request("GET", &node.url("/probe/echo"), &[], b"").await;
    }
    node.stop();
    let node = NodeProc::start(s.path(), &[]);
    let total = usage(&node, "by=app").await;
    let all = total.values().next().cloned().unwrap_or_default();
    assert_eq!(n(&all, "requests_2xx"), 30 + 4, "{all}");
    assert_eq!(n(&all, "requests_4xx"), 6, "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_in_users_are_counted_apart() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app());
    let mut cookies = Vec::new();
    for email in ["ann@example.com", "bob@example.com"] {
        let body = format!(r#"{{"email":"{email}","password":"correct horse battery"}}"#);
        let r = request(
            "POST",
            &node.url("/auth/signup"),
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap();
        cookies.push(cookie.to_string());
    }
    for (i, cookie) in cookies.iter().enumerate() {
        for _ in 0..(i + 1) * 3 {
            let r = request("GET", &node.url("/mine/echo"), &[("cookie", cookie)], b"").await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    let by_user = usage(&node, "by=user").await;
    let ids: Vec<&String> = by_user.keys().filter(|k| !k.is_empty()).collect();
    assert_eq!(ids.len(), 2, "{by_user:?}");
    let mut counts: Vec<u64> = ids
        .iter()
        .map(|k| n(&by_user[*k], "requests_2xx"))
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, [3, 6], "{by_user:?}");
    let runs: u64 = ids.iter().map(|k| n(&by_user[*k], "runs")).sum();
    assert_eq!(runs, 9, "the runtime counts the same users: {by_user:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_bytes_queue_messages_and_outbound_bytes_are_counted() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&AppDir::new(&format!(
        r#"
[app]
name = "metered"

[component.blobs]
source = "{blobs}"
blob_containers = ["files"]

[component.probe]
source = "{probe}"
queues = ["jobs"]
allowed_outbound_hosts = ["http://127.0.0.1:*"]

[[http]]
route = "/b/..."
component = "blobs"

[[http]]
route = "/probe/..."
component = "probe"

[[http]]
route = "/enqueue"
queue = "jobs"

[queue.jobs]
consumer = "probe"
path = "/probe/q-recv"
"#,
        blobs = wasm("blobs").display(),
        probe = wasm("probe").display()
    )));
    let r = request("PUT", &node.url("/b/put/one.txt"), &[], b"hello blobs").await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = request("GET", &node.url("/b/get/one.txt"), &[], b"").await;
    assert_eq!(r.text(), "hello blobs");
    for m in ["m1", "m22"] {
        let r = request(
            "GET",
            &node.url(&format!("/probe/q-pub?jobs={m}")),
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = request("POST", &node.url("/enqueue"), &[], b"abc").await;
    assert_eq!(r.status, 202, "{}", r.text());
    let echo = node.url("/probe/echo");
    let r = request(
        "GET",
        &node.url(&format!("/probe/outbound?{echo}")),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // A run's usage is recorded when its instance is dropped, just after
    // its answer went out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let by = loop {
        let by = usage(&node, "by=component").await;
        let got = |c: &str, m: &str| by.get(c).map_or(0, |v| n(v, m));
        if got("probe", "outbound_requests") == 1 && got("blobs", "blob_bytes_read") > 0 {
            break by;
        }
        assert!(std::time::Instant::now() < deadline, "{by:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let blobs = &by["blobs"];
    assert_eq!(n(blobs, "blob_bytes_written"), 11, "{blobs}");
    assert_eq!(n(blobs, "blob_bytes_read"), 11, "{blobs}");
    let probe = &by["probe"];
    assert_eq!(n(probe, "queue_messages"), 2, "{probe}");
    assert_eq!(n(probe, "queue_bytes"), 5, "{probe}");
    assert_eq!(n(probe, "outbound_requests"), 1, "{probe}");
    assert!(n(probe, "outbound_bytes_received") > 0, "{probe}");
    // The route's message too, under the app (no component published it).
    let total = usage(&node, "by=app").await;
    let all = total.values().next().cloned().unwrap_or_default();
    assert_eq!(n(&all, "queue_messages"), 3, "{all}");
    assert_eq!(n(&all, "queue_bytes"), 8, "{all}");
}
