//! Removing an app deletes what it stored, so that a new app of the same
//! name starts empty and never runs old messages against new code;
//! `--keep-data` keeps it, and says so.

mod common;

use common::control::NodeProc;
use common::{AppDir, get, wasm};
use std::time::{Duration, Instant};

fn app() -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "shop"
[component.probe]
source = "{probe}"
key_value_stores = ["default"]
queues = ["jobs"]
[component.blobs]
source = "{blobs}"
blob_containers = ["files"]
[component.tasker]
source = "{tasker}"
tasks = ["tasker"]
[queue.jobs]
consumer = "probe"
path = "/probe/q-fail"
max_attempts = 1
[[http]]
route = "/probe/..."
component = "probe"
[[http]]
route = "/b/..."
component = "blobs"
[[http]]
route = "/t/..."
component = "tasker"
"#,
        probe = wasm("probe").display(),
        blobs = wasm("blobs").display(),
        tasker = wasm("tasker").display(),
    ))
}

/// (keys, blob objects, queued + dead messages, tasks) of app `shop`.
async fn stored(node: &NodeProc) -> (usize, u64, u64, u64) {
    let keys = node.json("/v1/apps/shop/kv/default").await["keys"]
        .as_array()
        .map_or(0, |k| k.len());
    let blobs = node.json("/v1/apps/shop/blobs").await["containers"]
        .as_array()
        .map_or(0, |cs| {
            cs.iter().map(|c| c["objects"].as_u64().unwrap_or(0)).sum()
        });
    let queues = node.json("/v1/apps/shop/queues").await;
    let messages = queues.as_array().map_or(0, |qs| {
        qs.iter()
            .map(|q| q["ready"].as_u64().unwrap_or(0) + q["dead"].as_u64().unwrap_or(0))
            .sum()
    });
    let counts = node.json("/v1/apps/shop/tasks/counts").await;
    let tasks = counts
        .as_object()
        .map_or(0, |c| c.values().filter_map(|v| v.as_u64()).sum());
    (keys, blobs, messages, tasks)
}

/// Puts keys, a blob, a dead message and a few tasks into `shop`; what
/// is stored then.
async fn fill(node: &NodeProc) -> (usize, u64, u64, u64) {
    assert_eq!(get(&node.url("/probe/kv-set?k=old")).await.status, 200);
    let r = common::request("PUT", &node.url("/b/put/a.txt"), &[], b"old blob").await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = get(&node.url("/probe/q-pub?jobs=old-message")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(&node.url("/t/wc?3")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The message fails once and is dead.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (keys, blobs, messages, tasks) = stored(node).await;
        // The failing consumer records each delivery in a key of its own.
        if keys >= 2 && blobs == 1 && messages == 1 && tasks >= 3 {
            return (keys, blobs, messages, tasks);
        }
        assert!(
            Instant::now() < deadline,
            "not stored: {:?}",
            (keys, blobs, messages, tasks)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Requests app `shop`'s usage counts.
async fn requests_counted(node: &NodeProc) -> u64 {
    let u = node.json("/v1/apps/shop/usage?by=app").await;
    let rows = u["rows"].as_array().cloned().unwrap_or_default();
    rows.iter()
        .flat_map(|r| r["usage"].as_object().cloned().unwrap_or_default())
        .filter(|(k, _)| k.starts_with("requests_"))
        .filter_map(|(_, v)| v.as_u64())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_deletes_the_data_and_keep_data_keeps_it() {
    let state = tempfile::tempdir().unwrap();
    let node = NodeProc::start(state.path(), &[]);
    let dir = app();
    node.apply(&dir);
    let before = fill(&node).await;

    // Kept: a new app of the same name sees the old data.
    let (code, out, err) = node.cli(&["destroy", "shop", "--keep-data", "--auto-approve"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("its data is kept"), "{out}");
    node.apply(&dir);
    assert_eq!(stored(&node).await, before);
    assert!(requests_counted(&node).await > 0, "usage is kept too");

    // Deleted: the plan says so, and a new `shop` finds nothing.
    let (code, out, err) = node.cli(&["destroy", "shop"], &[]);
    assert_ne!(code, 0, "destroy without a terminal must ask: {out}{err}");
    let (code, out, err) = node.cli(&["destroy", "shop", "--auto-approve"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("deletes its data"), "{out}");
    assert!(
        out.contains(&format!("deleted {} keys, 1 blob, 1 message", before.0)),
        "{out}"
    );
    node.apply(&dir);
    assert_eq!(requests_counted(&node).await, 0, "usage is deleted too");
    assert_eq!(stored(&node).await, (0, 0, 0, 0));
    let r = get(&node.url("/probe/kv-get?k")).await;
    assert_eq!(r.text(), "(absent)");
}
