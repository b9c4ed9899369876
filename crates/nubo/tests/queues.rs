//! Durable queues: publish from a component, delivery to a consumer
//! component with retries, backoff and a dead-letter queue, and nothing
//! lost across a SIGKILL.

mod common;

use common::control::NodeProc;
use common::{AppDir, get, wasm};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn queue_app() -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "q"
[component.probe]
source = "{w}"
key_value_stores = ["default"]
queues = ["jobs", "bad", "flaky"]
[component.outsider]
source = "{w}"
[[http]]
route = "/probe/..."
component = "probe"
[[http]]
route = "/outsider/..."
component = "outsider"
[[http]]
route = "/enqueue"
queue = "jobs"

[queue.jobs]
consumer = "probe"
path = "/probe/q-recv"
concurrency = 4
visibility_timeout_ms = 1000

[queue.bad]
consumer = "probe"
path = "/probe/q-fail"
max_attempts = 3
backoff_ms = 50

[queue.flaky]
consumer = "probe"
path = "/probe/q-flaky"
backoff_ms = 50
"#,
        w = wasm("probe").display()
    ))
}

/// Applies app `app`: the probe component, at `/probe/...`, consuming
/// queue `queue` with the settings in `settings`; the apply's output.
fn apply_probe_queue(node: &NodeProc, app: &str, queue: &str, settings: &str) -> String {
    let dir = AppDir::new(&format!(
        r#"
[app]
name = "{app}"
[component.probe]
source = "{w}"
key_value_stores = ["default"]
queues = ["{queue}"]
[[http]]
route = "/probe/..."
component = "probe"

[queue.{queue}]
consumer = "probe"
{settings}
"#,
        w = wasm("probe").display()
    ));
    node.apply(&dir)
}

async fn received(node: &NodeProc, key: &str) -> Vec<String> {
    let got = get(&node.url(&format!("/probe/kv-get?{key}"))).await.text();
    if got == "(absent)" {
        return Vec::new();
    }
    got.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

async fn wait_for(node: &NodeProc, key: &str, want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = received(node, key).await;
        let distinct: BTreeSet<&String> = got.iter().collect();
        if distinct.len() >= want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delivered_retried_and_dead_lettered() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let app = queue_app();
    let out = node.apply(&app);
    assert!(
        out.contains(
            "+ queue jobs → POST /probe/q-recv on component probe (concurrency 4, max_attempts 5)"
        ),
        "{out}"
    );

    for i in 0..20 {
        let r = get(&node.url(&format!("/probe/q-pub?jobs=m{i}"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let got = wait_for(&node, "received", 20).await;
    let distinct: BTreeSet<String> = got.into_iter().collect();
    assert_eq!(distinct.len(), 20, "{distinct:?}");

    // A route that publishes request bodies, with no component involved.
    let r = common::request("POST", &node.url("/enqueue"), &[], b"from-route").await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(
        r.text().starts_with("{\"queue\":\"jobs\",\"id\":"),
        "{}",
        r.text()
    );
    let r = get(&node.url("/enqueue")).await;
    assert_eq!((r.status, r.header("allow")), (405, Some("POST, PUT")));
    let big = vec![b'x'; (1 << 20) + 1];
    assert_eq!(
        common::request("POST", &node.url("/enqueue"), &[], &big)
            .await
            .status,
        413
    );
    let got = wait_for(&node, "received", 21).await;
    assert!(got.iter().any(|b| b == "from-route"), "{got:?}");

    // Fails every time: three attempts with backoff, then the dead-letter queue.
    assert_eq!(get(&node.url("/probe/q-pub?bad=doomed")).await.status, 200);
    let failed = wait_for(&node, "failed", 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while received(&node, "failed").await.len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(received(&node, "failed").await.len(), 3, "{failed:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, dead, _) = node.cli(&["queue", "dead", "q", "bad"], &[]);
    assert!(
        dead.contains("attempts 3")
            && dead.contains("body \"doomed")
            && dead.contains("last error: HTTP 500"),
        "{dead}"
    );
    let (_, ls, _) = node.cli(&["queue", "ls", "q"], &[]);
    assert!(ls.contains("bad  → POST /probe/q-fail on probe (concurrency 1, max_attempts 3)  ready 0  in flight 0  dead 1"), "{ls}");
    let (_, purged, _) = node.cli(&["queue", "purge", "q", "bad", "--dead"], &[]);
    assert_eq!(purged.trim(), "purged 1 message(s)");
    let (code, _, err) = node.cli(&["queue", "purge", "q", "bda"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("app `q` has no queue `bda`: it has `bad`, `flaky`, `jobs`"),
        "{err}"
    );

    // Fails once, then succeeds on the retry.
    for i in 0..5 {
        assert_eq!(
            get(&node.url(&format!("/probe/q-pub?flaky=f{i}")))
                .await
                .status,
            200
        );
    }
    let got = wait_for(&node, "received", 26).await;
    assert!(
        got.iter().filter(|b| b.starts_with('f')).count() >= 5,
        "{got:?}"
    );

    // Not granted, or not a queue: a clear error to the guest.
    let r = get(&node.url("/outsider/probe/q-pub?jobs=x")).await;
    assert_eq!(r.status, 500);
    assert!(
        r.text()
            .contains("access denied: queue `jobs` is not in this component's `queues`"),
        "{}",
        r.text()
    );
    let r = get(&node.url("/probe/q-pub?nope=x")).await;
    assert!(r.text().contains("access denied"), "{}", r.text());

    // A changed queue's plan says what changes, from what.
    let toml = std::fs::read_to_string(app.path().join("nubo.toml")).unwrap();
    app.write(
        "nubo.toml",
        toml.replace("concurrency = 4\n", "concurrency = 8\nbatch_size = 10\n"),
    );
    let (code, out, err) = node.cli(&["plan", app.path().to_str().unwrap()], &[]);
    assert_eq!(code, 2, "2: there are changes; {out}{err}");
    assert!(
        out.contains("~ queue jobs") && out.contains("concurrency 4 → 8, batch_size 1 → 10"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_are_delivered_and_settled_message_by_message() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let out = apply_probe_queue(
        &node,
        "qb",
        "batched",
        r#"
path = "/probe/q-each"
batch_size = 10
max_attempts = 2
backoff_ms = 50
"#,
    );
    assert!(
        out.contains("(concurrency 1, max_attempts 2, batch_size 10)"),
        "{out}"
    );

    // 40 messages published in one request, while one delivery at a time
    // runs: the backlog goes out in batches of at most 10.
    let r = get(&node.url("/probe/q-burst?batched=41")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = wait_for(&node, "received", 40).await;
    let distinct: BTreeSet<String> = got.iter().cloned().collect();
    let want: BTreeSet<String> = (0..41)
        .filter(|i| *i != 20)
        .map(|i| format!("b{i}"))
        .collect();
    assert_eq!(distinct, want);
    // Only `bad` failed, so no good message was delivered twice.
    assert_eq!(got.len(), 40, "{got:?}");

    let sizes: Vec<usize> = received(&node, "batches")
        .await
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(sizes.iter().all(|n| (1..=10).contains(n)), "{sizes:?}");
    assert!(
        sizes.iter().any(|n| *n > 1),
        "no batch had two messages: {sizes:?}"
    );

    // `bad` failed alone, twice (its retry came alone or with others), then
    // went to the dead-letter queue with the consumer's reason.
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let (_, dead, _) = node.cli(&["queue", "dead", "qb", "batched"], &[]);
        if dead.contains("bad") || Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        dead.contains("attempts 2") && dead.contains("last error: refused message"),
        "{dead}"
    );
    let (_, ls, _) = node.cli(&["queue", "ls", "qb"], &[]);
    assert!(
        ls.contains("batch_size 10)  ready 0  in flight 0  dead 1"),
        "{ls}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_arrives_during_a_small_delivery_waits_to_fill_the_next() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    apply_probe_queue(
        &node,
        "qs",
        "slow",
        r#"
path = "/probe/q-each?slow"
batch_size = 10
concurrency = 4
"#,
    );
    // The first message goes out alone and its delivery takes a second.
    // Four slots are free meanwhile, but the five messages published then
    // wait for it and go out together.
    let r = get(&node.url("/probe/q-pub?slow=first")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, ls, _) = node.cli(&["queue", "ls", "qs"], &[]);
        if ls.contains("ready 0  in flight 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first message was not leased: {ls}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..5 {
        let r = get(&node.url(&format!("/probe/q-pub?slow=m{i}"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let got = wait_for(&node, "received", 6).await;
    assert_eq!(got.len(), 6, "{got:?}");
    let sizes = received(&node, "batches").await;
    assert_eq!(sizes, ["1", "5"], "delivery sizes");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_message_is_delivered_after_sigkill() {
    let s = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(s.path(), &[]);
    node.apply(&queue_app());
    let mut acked = Vec::new();
    for i in 0..150 {
        let r = get(&node.url(&format!("/probe/q-pub?jobs=k{i}"))).await;
        if r.status == 200 {
            acked.push(format!("k{i}"));
        }
    }
    // Kill while deliveries are under way.
    node.kill9();
    let node = NodeProc::start(s.path(), &[]);
    let got = wait_for(&node, "received", acked.len()).await;
    let delivered: BTreeSet<&String> = got.iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|k| !delivered.contains(k)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages never delivered: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}

/// SDK consumers get their deliveries through the component's queue
/// export: per message with `queue_handler!` (one message of a batch can
/// fail alone), per delivery with `queue_batch_handler!`.
#[tokio::test(flavor = "multi_thread")]
async fn sdk_consumers_are_delivered_through_their_export() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let app = AppDir::new(&format!(
        r#"
[app]
name = "sdkq"
[component.consumer]
source = "{consumer}"
key_value_stores = ["default"]
[component.qbench]
source = "{qbench}"
key_value_stores = ["default"]
[[http]]
route = "/each"
queue = "each"
[[http]]
route = "/whole"
queue = "whole"

[queue.each]
consumer = "consumer"
batch_size = 10
max_attempts = 1

[queue.whole]
consumer = "qbench"
batch_size = 10
"#,
        consumer = wasm("consumer").display(),
        qbench = wasm("qbench").display()
    ));
    node.apply(&app);
    let mut ids = Vec::new();
    for body in ["a", "fail", "b"] {
        let r = common::request("POST", &node.url("/each"), &[], body.as_bytes()).await;
        assert_eq!(r.status, 202, "{}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        ids.push(v["id"].as_u64().unwrap());
    }
    for _ in 0..4 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
            .to_string();
        let r = common::request("POST", &node.url("/whole"), &[], now.as_bytes()).await;
        assert_eq!(r.status, 202, "{}", r.text());
    }

    let kv = |key: String| {
        let node = &node;
        async move {
            let r = node
                .api("GET", &format!("/v1/apps/sdkq/kv/default/{key}"), "")
                .await;
            (r.status == 200).then(|| r.text())
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while kv(format!("got-{}", ids[2])).await.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(kv(format!("got-{}", ids[0])).await.as_deref(), Some("a"));
    assert_eq!(kv(format!("got-{}", ids[2])).await.as_deref(), Some("b"));
    assert_eq!(kv(format!("got-{}", ids[1])).await, None);
    let mut dead = String::new();
    while !dead.contains("told to fail") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        dead = node.cli(&["queue", "dead", "sdkq", "each"], &[]).1;
    }
    assert!(
        dead.contains("last error: told to fail") && dead.contains("fail"),
        "{dead}"
    );

    // qbench writes one key per delivery, its messages counted per bucket.
    let mut counted = 0;
    while counted < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let keys = node.json("/v1/apps/sdkq/kv/default?prefix=lat-").await;
        counted = 0;
        for key in keys["keys"].as_array().cloned().unwrap_or_default() {
            let counts = kv(key.as_str().unwrap_or("").to_string())
                .await
                .unwrap_or_default();
            for pair in counts.split(',') {
                counted += pair
                    .split_once(':')
                    .and_then(|(_, n)| n.parse::<u32>().ok())
                    .unwrap_or(0);
            }
        }
    }
    assert_eq!(counted, 4);
}
