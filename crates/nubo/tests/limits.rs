//! Hostile and failing components are contained: the client gets a clear
//! status and the node goes on serving everyone.

mod common;
use common::*;
use std::time::{Duration, Instant};

const SECRET: (&str, &str) = ("NUBO_VAR_SECRET", "x");

fn app() -> AppDir {
    AppDir::new(&probe_app(
        "limits = { memory_mb = 16, timeout_ms = 500, max_instances = 4 }",
        &format!(
            r#"
[component.single]
source = "{}"
limits = {{ timeout_ms = 5000, max_instances = 1 }}

[[http]]
route = "/single/..."
component = "single"
"#,
            wasm("probe").display()
        ),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_gets_504_within_the_limit_and_node_keeps_serving() {
    let app = app();
    let node = Node::up_with(app.path(), &[], &[SECRET]);
    let started = Instant::now();
    let r = get(&node.url("/probe/loop")).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        r.text().contains("exceeded its time limit of 500 ms"),
        "{}",
        r.text()
    );
    // The limit is 500 ms; allow generous slack for a loaded CI machine but
    // fail if the loop was not stopped at all.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let r = get(&node.url("/probe/echo")).await;
    assert_eq!(r.status, 200);
    // Several loops at once do not starve the others either.
    let loops: Vec<_> = (0..3)
        .map(|_| tokio::spawn(get_owned(node.url("/probe/loop"))))
        .collect();
    let r = get(&node.url("/single/echo")).await;
    assert_eq!(r.status, 200);
    for l in loops {
        assert_eq!(l.await.unwrap().status, 504);
    }
}

async fn get_owned(url: String) -> Reply {
    get(&url).await
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_bomb_gets_500_and_node_keeps_serving() {
    let app = app();
    let node = Node::up_with(app.path(), &[], &[SECRET]);
    let r = get(&node.url("/probe/oom")).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.text().contains("exceeded its memory limit of 16 MB"),
        "{}",
        r.text()
    );
    let r = get(&node.url("/probe/echo")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_panic_gets_500_and_is_logged() {
    let app = app();
    let node = Node::up_with(app.path(), &[], &[SECRET]);
    let r = get(&node.url("/probe/panic")).await;
    assert_eq!(r.status, 500);
    let id = r.header("x-request-id").unwrap().to_string();
    assert!(r.text().contains(&id));
    let logs = node.wait_log("probe panicked on purpose");
    assert!(logs.contains("probe panicked on purpose"), "{logs}");
    assert_eq!(get(&node.url("/probe/echo")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_instances_queues_briefly_then_503() {
    let app = app();
    let node = Node::up_with(app.path(), &[], &[SECRET]);
    // One slot: the first request holds it for 2.5 s; the second waits
    // for the 1 s queue time and gets 503 with Retry-After.
    let first = tokio::spawn(get_owned(node.url("/single/sleep?2500")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = get(&node.url("/single/echo")).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.text().contains("max_instances"), "{}", r.text());
    let first = first.await.unwrap();
    assert_eq!(
        (first.status, first.text()),
        (200, "slept 2500".to_string())
    );
    // A short wait in the queue is served, not refused.
    let first = tokio::spawn(get_owned(node.url("/single/sleep?300")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get(&node.url("/single/echo")).await.status, 200);
    assert_eq!(first.await.unwrap().status, 200);
}
