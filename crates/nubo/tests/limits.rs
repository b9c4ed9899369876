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
source = "{0}"
limits = {{ timeout_ms = 5000, max_instances = 1 }}

[[http]]
route = "/single/..."
component = "single"

[component.thrifty]
source = "{0}"
limits = {{ cpu_ms = 100, timeout_ms = 5000 }}

[[http]]
route = "/thrifty/..."
component = "thrifty"
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

#[tokio::test(flavor = "multi_thread")]
async fn cpu_limit_stops_a_busy_run_but_not_a_waiting_one() {
    let app = app();
    let node = Node::up_with(app.path(), &[], &[SECRET]);
    let started = Instant::now();
    let r = get(&node.url("/thrifty/burn?3000")).await;
    let took = started.elapsed();
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.text().contains("exceeded its CPU limit of 100 ms"),
        "{}",
        r.text()
    );
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    // Waiting is not CPU: a run that sleeps past its CPU limit answers.
    let r = get(&node.url("/thrifty/sleep?400")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(&node.url("/thrifty/burn?10")).await;
    assert_eq!(r.status, 200, "{}", r.text());
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

/// An app with a base of its own, whose one component may use 100 MB.
fn hoarder(name: &str) -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "{name}"
base = "/{name}"
[component.probe]
source = "{w}"
limits = {{ memory_mb = 100, timeout_ms = 10000 }}
[[http]]
route = "/probe/..."
component = "probe"
"#,
        w = wasm("probe").display()
    ))
}

/// Two apps share the node's guest memory (here 160 MB): while app B runs
/// an instance, app A can grow only to its share plus what B is not owed,
/// and B can still grow to its share, which first come, first served would
/// have given to A.
#[tokio::test(flavor = "multi_thread")]
async fn one_app_cannot_take_the_memory_another_is_owed() {
    let tmp = tempfile::tempdir().unwrap();
    let node =
        common::control::NodeProc::start(&tmp.path().join("state"), &["--memory-budget-mb", "160"]);
    node.apply(&hoarder("a"));
    node.apply(&hoarder("b"));
    let at = |path: &str| format!("{}{path}", node.http);
    let pause = || tokio::time::sleep(Duration::from_millis(400));
    // B holds 10 MB for a while; A holds 70 MB, within its share of 80.
    let b1 = tokio::spawn(get_owned(at("/b/probe/hoard?10,5000")));
    pause().await;
    let a1 = tokio::spawn(get_owned(at("/a/probe/hoard?70,5000")));
    pause().await;
    // 30 MB more for A would fit in the node, but it is what B is owed.
    let a2 = get(&at("/a/probe/hoard?30,0")).await;
    assert_eq!(a2.status, 503, "{}", a2.text());
    // B's 60 MB more are within its share: they are there for it.
    let b2 = get(&at("/b/probe/hoard?60,0")).await;
    assert_eq!((b2.status, b2.text()), (200, "held 60 MB".to_string()));
    for held in [a1.await.unwrap(), b1.await.unwrap()] {
        assert_eq!(held.status, 200, "{}", held.text());
    }
    let log = node.wait_log("memory.grow by");
    assert!(
        log.contains("app=a") && log.contains("more than its share"),
        "{log}"
    );
}
