//! Per-app quotas on stored data (`[quotas]`), on one node and on a
//! cluster: an app that fills its share gets a clear error and the node
//! serves every other app on.

mod common;

use common::cluster::{Join, NatsCluster, eventually};
use common::control::NodeProc;
use common::{AppDir, get, request, wasm};

/// App `name` at `/name`: the probe at `/probe/...` (key-value store
/// `default`, queues `jobs` and `doomed`) and the blob test component at
/// `/files/...` (container `files`), under `quotas`.
fn app(name: &str, quotas: &str) -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "{name}"
base = "/{name}"

[quotas]
{quotas}

[component.probe]
source = "{probe}"
key_value_stores = ["default"]
queues = ["jobs", "doomed"]

[component.blobs]
source = "{blobs}"
blob_containers = ["files"]

[[http]]
route = "/probe/..."
component = "probe"

[[http]]
route = "/files/..."
component = "blobs"

[[http]]
route = "/enqueue"
queue = "jobs"

# Fails every delivery and retries after an hour: messages stay waiting.
[queue.jobs]
consumer = "probe"
path = "/probe/q-fail"
max_attempts = 5
backoff_ms = 3600000

# Fails once and is dead.
[queue.doomed]
consumer = "probe"
path = "/probe/q-fail"
max_attempts = 1
"#,
        probe = wasm("probe").display(),
        blobs = wasm("blobs").display(),
    ))
}

async fn call(node: &NodeProc, path: &str) -> (u16, String) {
    let r = get(&node.url(path)).await;
    (r.status, r.text())
}

async fn put_blob(node: &NodeProc, app: &str, name: &str, kib: usize) -> (u16, String) {
    let url = node.url(&format!("/{app}/files/put/{name}"));
    let r = request("POST", &url, &[], &vec![7u8; kib << 10]).await;
    (r.status, r.text())
}

async fn dead_letters(node: &NodeProc, app: &str) -> u64 {
    let queues = node.json(&format!("/v1/apps/{app}/queues")).await;
    queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "doomed")
        .and_then(|q| q["dead"].as_u64())
        .unwrap()
}

/// App `a` has small quotas, app `b` the defaults: `a` is stopped at each
/// of its own, `b` is not, and `a` gets room back by deleting.
async fn each_quota_holds(node: &NodeProc) {
    let a = app(
        "a",
        "kv_mb = 1\nblob_mb = 1\nqueue_messages = 3\ndead_letters = 1",
    );
    node.apply(&a);
    node.apply(&app("b", ""));

    // Key-value: two 400 KiB values fit in 1 MiB, a third does not.
    for k in ["k1", "k2"] {
        let stored = call(node, &format!("/a/probe/kv-fill?{k}=400")).await;
        assert_eq!(stored, (200, "stored".into()));
    }
    let (status, why) = call(node, "/a/probe/kv-fill?k3=400").await;
    assert_eq!(status, 500, "{why}");
    assert!(
        why.contains("has used its key-value quota of 1 MiB (`kv_mb` in [quotas])"),
        "{why}"
    );
    assert_eq!(call(node, "/a/probe/kv-get?k3").await.1, "(absent)");
    for k in ["k1", "k2", "k3"] {
        assert_eq!(
            call(node, &format!("/b/probe/kv-fill?{k}=400")).await.0,
            200
        );
    }
    // The control API is held to the same quota, with 507.
    let put = node
        .api("PUT", "/v1/apps/a/kv/default/k3", &"x".repeat(400 << 10))
        .await;
    assert_eq!(put.status, 507, "{}", put.text());
    assert_eq!(call(node, "/a/probe/kv-del?k1").await.0, 200);
    assert_eq!(call(node, "/a/probe/kv-fill?k3=400").await.0, 200);

    // Blobs: 600 KiB fits in 1 MiB, another 600 KiB does not.
    assert_eq!(
        put_blob(node, "a", "one", 600).await,
        (201, "614400".into())
    );
    let (status, why) = put_blob(node, "a", "two", 600).await;
    assert_ne!(status, 201, "{why}");
    assert!(
        why.contains("has used its blob quota of 1 MiB (`blob_mb` in [quotas])"),
        "{why}"
    );
    assert_eq!(call(node, "/a/files/info/two").await.0, 404);
    assert_eq!(put_blob(node, "b", "two", 1200).await.0, 201);
    assert_eq!(call(node, "/a/files/del/one").await.0, 200);
    assert_eq!(put_blob(node, "a", "two", 600).await.0, 201);

    // Dead letters: one kept, the oldest dropped.
    for n in 1..=3 {
        assert_eq!(
            call(node, &format!("/a/probe/q-pub?doomed=d{n}")).await.0,
            200
        );
        eventually(20, "the message to die", || async {
            let log = node.stderr.lock().unwrap().clone();
            (log.matches("dead-lettered").count() >= n).then_some(())
        })
        .await;
    }
    let kept = node
        .json("/v1/apps/a/queues/doomed/messages?dead=true")
        .await;
    assert_eq!(dead_letters(node, "a").await, 1, "{kept}");
    assert!(kept.to_string().contains("d3"), "{kept}");
    node.wait_log("dropped the oldest dead letters");

    // Waiting messages: three over all the app's queues, then refused.
    for n in 1..=3 {
        let (status, why) = call(node, &format!("/a/probe/q-pub?jobs=j{n}")).await;
        assert_eq!(status, 200, "{why}");
    }
    let (status, why) = call(node, "/a/probe/q-pub?doomed=x").await;
    assert_eq!(status, 500, "{why}");
    assert!(
        why.contains("its quota (`queue_messages` in [quotas]); the message was not published"),
        "{why}"
    );
    let r = request("POST", &node.url("/a/enqueue"), &[], b"from a route").await;
    assert_eq!(r.status, 507, "{}", r.text());
    assert!(
        r.text().contains("`queue_messages` in [quotas]"),
        "{}",
        r.text()
    );
    assert_eq!(call(node, "/b/probe/q-pub?jobs=fine").await.0, 200);

    // Raising the quota takes effect at the apply.
    node.apply(&app("a", "queue_messages = 4"));
    assert_eq!(call(node, "/a/probe/q-pub?jobs=j4").await.0, 200);
    assert_eq!(call(node, "/a/probe/kv-fill?k4=900").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_quota_holds_on_one_node() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    each_quota_holds(&node).await;
}

/// A node that restarts sets each app's quotas again as it loads it,
/// before it serves: a restart is no way around them.
#[tokio::test(flavor = "multi_thread")]
async fn quotas_hold_after_a_restart() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app("a", "kv_mb = 1\nqueue_messages = 1"));
    drop(node);
    let node = NodeProc::start(s.path(), &[]);
    for k in ["k1", "k2"] {
        let stored = call(&node, &format!("/a/probe/kv-fill?{k}=400")).await;
        assert_eq!(stored, (200, "stored".into()));
    }
    let (status, why) = call(&node, "/a/probe/kv-fill?k3=400").await;
    assert_eq!(status, 500, "{why}");
    assert!(why.contains("`kv_mb` in [quotas]"), "{why}");
    assert_eq!(call(&node, "/a/probe/q-pub?jobs=j1").await.0, 200);
    let (status, why) = call(&node, "/a/probe/q-pub?jobs=j2").await;
    assert_eq!(status, 500, "{why}");
    assert!(why.contains("`queue_messages` in [quotas]"), "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_quota_holds_on_a_cluster() {
    let nats = NatsCluster::start(1);
    let s = tempfile::tempdir().unwrap();
    let node = nats.node(s.path(), "n1");
    each_quota_holds(&node).await;
}

/// A node whose state dir is a small disk: writes that do not fit fail
/// with an error that says the disk is full and leave nothing behind;
/// reads and every other app go on; deleting makes room again.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_is_reported_and_the_node_serves_on() {
    let s = tempfile::tempdir().unwrap();
    let Some(node) = NodeProc::start_on_small_disk(s.path(), 32) else {
        eprintln!("SKIPPED: this system forbids user namespaces (`unshare --user`)");
        return;
    };
    node.apply(&app("a", ""));
    node.apply(&app("b", ""));
    let jobs = AppDir::new(&format!(
        "[app]\nname = \"jobs\"\nbase = \"/jobs\"\n\
         [component.tasker]\nsource = \"{}\"\ntasks = [\"tasker\"]\n\
         [[http]]\nroute = \"/t/...\"\ncomponent = \"tasker\"\n",
        wasm("tasker").display()
    ));
    node.apply(&jobs);
    assert_eq!(call(&node, "/b/probe/kv-fill?kept=4").await.0, 200);

    // Objects of 2 MiB, then smaller ones, until the disk is full, well
    // within the app's quota.
    let mut stored = 0;
    for kib in [2048, 256, 32] {
        let (status, why) = loop {
            let (status, why) = put_blob(&node, "a", &format!("o{stored}"), kib).await;
            if status != 201 {
                break (status, why);
            }
            stored += 1;
            assert!(stored < 256, "32 MiB held {stored} objects");
        };
        assert_eq!(status, 500, "{why}");
        assert!(
            why.contains("the node's disk is full; nothing was written"),
            "{why}"
        );
        let failed = format!("/a/files/info/o{stored}");
        assert_eq!(call(&node, &failed).await.0, 404, "a part was kept");
    }
    assert!(stored >= 4, "the disk was full from the start");

    // Key-value writes get the same answer once they reach the reserve,
    // for every app.
    let mut n = 0;
    let (status, why) = loop {
        let (status, why) = call(&node, &format!("/a/probe/kv-fill?v{n}=512")).await;
        if status != 200 {
            break (status, why);
        }
        n += 1;
        assert!(n < 64, "32 MiB held {n} more values of 512 KiB");
    };
    assert_eq!(status, 500, "{why}");
    assert!(
        why.contains("the node's disk is full; nothing was written"),
        "{why}"
    );
    let (status, why) = call(&node, "/b/probe/kv-fill?big=512").await;
    assert_eq!(status, 500, "{why}");
    assert!(why.contains("the node's disk is full"), "{why}");
    node.wait_log("the disk is within the space the node keeps free");
    let (status, why) = call(&node, "/jobs/t/wc?3").await;
    assert_eq!(status, 500, "{why}");
    assert!(why.contains("the disk is full"), "{why}");

    // Reads go on.
    assert_eq!(
        call(&node, "/b/probe/kv-get?kept").await,
        (200, "x".repeat(4096))
    );
    let r = get(&node.url("/a/files/get/o0")).await;
    assert_eq!((r.status, r.body.len()), (200, 2 << 20));
    let v = node.json("/v1/apps").await;
    assert!(v.to_string().contains("\"a\""), "{v}");

    // Deleting makes room for both kinds of writes.
    for n in 0..2 {
        let r = call(&node, &format!("/a/files/del/o{n}")).await;
        assert_eq!(r.0, 200, "{}", r.1);
    }
    assert_eq!(put_blob(&node, "a", "again", 1024).await.0, 201);
    assert_eq!(call(&node, "/b/probe/kv-fill?big=512").await.0, 200);
    assert_eq!(call(&node, "/jobs/t/wc?3").await.0, 200);
    let log = node.stderr.lock().unwrap().clone();
    assert!(!log.contains("panicked"), "{log}");
}
