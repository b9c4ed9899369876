//! Usage caps over real HTTP to a real node: an app that nears its cap
//! pauses its queue deliveries and task starts (the message and the task
//! wait, stored), then answers `503` with `Retry-After` and the cap's name
//! once it reaches it, while another app on the node serves on; raising
//! the cap with an apply serves it again at once and runs what waited.

mod common;

use common::control::NodeProc;
use common::{AppDir, request, wasm};
use std::time::{Duration, Instant};

fn app(requests_per_day: u64) -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "capped"

[component.probe]
source = "{w}"
key_value_stores = ["default"]
queues = ["jobs"]

[[http]]
route = "/probe/..."
component = "probe"

[[http]]
route = "/enqueue"
queue = "jobs"

[queue.jobs]
consumer = "probe"
path = "/probe/q-recv"

[caps]
requests_per_day = {requests_per_day}
warn_at = 0.4
pause_background_at = 0.5
"#,
        w = wasm("probe").display()
    ))
}

fn other() -> AppDir {
    AppDir::new(&format!(
        "[app]\nname = \"free\"\nhosts = [\"free.test\"]\n[component.probe]\nsource = \"{}\"\n[[http]]\nroute = \"/probe/...\"\ncomponent = \"probe\"\n",
        wasm("probe").display()
    ))
}

async fn received(node: &NodeProc) -> Option<String> {
    let r = node
        .api("GET", "/v1/apps/capped/kv/default/received", "")
        .await;
    (r.status == 200).then(|| r.text())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_at_its_cap_pauses_then_refuses_and_a_raised_cap_resumes_it() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&other());
    node.apply(&app(12));

    for _ in 0..6 {
        let r = request("GET", &node.url("/probe/echo"), &[], b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    node.wait_log("has used 50% of its cap of 12 requests a day");
    node.wait_log("background work paused");
    // Still served over HTTP, but the message waits.
    let r = request("POST", &node.url("/enqueue"), &[], b"m1").await;
    assert_eq!(r.status, 202, "{}", r.text());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        received(&node).await,
        None,
        "a paused app's queue is not delivered"
    );

    // On to the cap: refused, saying which cap and when it resets.
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let r = request("GET", &node.url("/probe/echo"), &[], b"").await;
        if r.status == 503 {
            break r;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        refused.text().contains("`requests_per_day`"),
        "{}",
        refused.text()
    );
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&wait), "{wait}");
    // The other app is not touched.
    let r = request(
        "GET",
        &node.url("/probe/echo"),
        &[("host", "free.test")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // A plan shows what a cap would do to the app at once.
    let lower = app(5);
    let (code, out, err) = node.cli(&["plan", lower.path().to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("caps.requests_per_day"), "{out}");
    assert!(out.contains("would be refused (503) at once"), "{out}");
    let v = node.json("/v1/apps/capped/caps").await;
    assert_eq!(v["refused"], true, "{v}");
    let metrics = node.api("GET", "/metrics", "").await.text();
    assert!(metrics.contains("nubo_apps_refused_at_cap 1"), "{metrics}");
    assert!(metrics.contains("nubo_apps_paused_at_cap 1"), "{metrics}");
    // The app's owner reads each step in the app's own log.
    let (code, out, err) = node.cli(&["logs", "capped"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    for step in [
        "has used",
        "background work paused",
        "requests refused (503)",
    ] {
        assert!(out.contains(step), "no {step:?} in {out}");
    }
    assert!(
        v["paused"]
            .as_str()
            .unwrap_or("")
            .contains("requests_per_day"),
        "{v}"
    );
    assert!(v["caps"][0]["share"].as_f64().unwrap() >= 1.0, "{v}");

    // Raised: served at once, and the waiting message is delivered.
    node.apply(&app(1000));
    let r = request("GET", &node.url("/probe/echo"), &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(20);
    while received(&node).await.is_none() {
        assert!(Instant::now() < deadline, "the message never came");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(received(&node).await.as_deref(), Some("m1,"));
}

#[test]
fn check_names_a_bad_cap_where_it_is_written() {
    let dir = app(0);
    let out = common::nubo()
        .args(["check", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("nubo.toml:23:20"), "{err}");
    assert!(
        err.contains("cap `requests_per_day` must be more than 0"),
        "{err}"
    );
}

fn tasker(requests_per_day: u64) -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "busy"
[component.tasker]
source = "{w}"
tasks = ["tasker"]
[[http]]
route = "/t/..."
component = "tasker"
[caps]
requests_per_day = {requests_per_day}
pause_background_at = 0.25
"#,
        w = wasm("tasker").display()
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_app_keeps_its_tasks_until_it_resumes() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&tasker(8));
    let r = request("GET", &node.url("/t/nap?1"), &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request("GET", &node.url("/t/nap?1"), &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    node.wait_log("background work paused");
    // Spawned while paused: stored, not started.
    let r = request("GET", &node.url("/t/nap?1"), &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.text().trim().to_string();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v = node.json(&format!("/v1/apps/busy/tasks/{id}")).await;
    assert_eq!(v["state"], "queued", "{v}");

    node.apply(&tasker(1000));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = node.json(&format!("/v1/apps/busy/tasks/{id}")).await;
        if v["state"] == "done" {
            break;
        }
        assert!(Instant::now() < deadline, "the task never ran: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
