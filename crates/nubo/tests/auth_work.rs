//! The identity travels with the work a request starts, over real HTTP to
//! a real node: a queue message published by a signed-in request (through
//! a queue route, or by a component) is delivered as started by that
//! person, and a task they start, and its child, run as started by them;
//! work nobody signed in to starts carries nobody.

mod common;

use common::control::NodeProc;
use common::{AppDir, Reply, request, wasm};
use serde_json::json;
use std::time::{Duration, Instant};

fn app() -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "work"
hosts = ["work.test"]

[auth]
accounts = true

[component.tasker]
source = "{tasker}"
tasks = ["tasker"]

[component.consumer]
source = "{consumer}"
key_value_stores = ["default"]

[component.probe]
source = "{probe}"
queues = ["jobs"]

[queue.jobs]
consumer = "consumer"
batch_size = 10

[[http]]
route = "/signed/..."
component = "tasker"
auth = "required"

[[http]]
route = "/open/..."
component = "tasker"

[[http]]
route = "/publish/..."
component = "probe"
auth = "optional"

[[http]]
route = "/enqueue"
queue = "jobs"
auth = "optional"
"#,
        tasker = wasm("tasker").display(),
        consumer = wasm("consumer").display(),
        probe = wasm("probe").display(),
    ))
}

async fn call(
    node: &NodeProc,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> Reply {
    let mut h = vec![("host", "work.test")];
    if let Some(c) = cookie {
        h.push(("cookie", c));
    }
    request(method, &node.url(path), &h, body.as_bytes()).await
}

/// Key `key` of the consumer's store, once it is there.
async fn delivered(node: &NodeProc, key: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = node
            .api("GET", &format!("/v1/apps/work/kv/default/{key}"), "")
            .await;
        if r.status == 200 {
            return r.text();
        }
        assert!(Instant::now() < deadline, "{key} never delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_messages_and_tasks_carry_who_started_them() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app());
    let creds = json!({ "email": "ada@example.com", "password": "correct horse" }).to_string();
    let r = call(&node, "POST", "/auth/signup", None, &creds).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let user: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let ada = user["user"]["id"].as_str().unwrap().to_string();
    let cookie = r
        .header("set-cookie")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();

    // A task and its child run as started by Ada; nobody's stay nobody's.
    let r = call(&node, "GET", "/signed/whoami", Some(&cookie), "").await;
    assert_eq!((r.status, r.text()), (200, format!("{ada}>{ada}")));
    let r = call(&node, "GET", "/open/whoami", None, "").await;
    assert_eq!((r.status, r.text()), (200, "nobody>nobody".to_string()));

    // Messages: through the queue route, and published by a component;
    // each delivery knows its publisher, in one batch or not.
    let mut ids = Vec::new();
    for (cookie, body) in [
        (Some(cookie.as_str()), "a"),
        (None, "b"),
        (Some(cookie.as_str()), "c"),
    ] {
        let r = call(&node, "POST", "/enqueue", cookie, body).await;
        assert_eq!(r.status, 202, "{}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        ids.push(v["id"].as_u64().unwrap());
    }
    let r = call(&node, "GET", "/publish/q-pub?jobs=d", Some(&cookie), "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    ids.push(r.text().trim().parse().unwrap());
    let mut by = Vec::new();
    for id in &ids {
        by.push(delivered(&node, &format!("by-{id}")).await);
    }
    assert_eq!(by, [ada.clone(), "nobody".into(), ada.clone(), ada]);
}
