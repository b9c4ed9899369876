//! Durable tasks: fan-out/fan-in, nested tasks, retries ending in typed
//! errors, and the depth limit, through real components on a real node.

mod common;

use common::control::NodeProc;
use common::{AppDir, get, wasm};

fn tasks_app() -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "jobs"
[component.tasker]
source = "{w}"
tasks = ["tasker"]
limits = {{ timeout_ms = 60000 }}
[component.outsider]
source = "{w}"
[[http]]
route = "/t/..."
component = "tasker"
[[http]]
route = "/o/..."
component = "outsider"
"#,
        w = wasm("tasker").display()
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn fan_out_nesting_typed_errors_and_limits() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let app = tasks_app();
    let (code, out, err) = node.cli(
        &["apply", app.path().to_str().unwrap(), "--auto-approve"],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");

    // 1,000 chunks, one task each: the same count as sequentially.
    let r = get(&node.url("/t/wc?1000")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (parallel, sequential) = r
        .text()
        .split_once(' ')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap();
    assert_eq!(
        parallel.trim_start_matches("parallel="),
        sequential.trim_start_matches("sequential=")
    );
    assert_eq!(
        sequential,
        format!("sequential={}", (0..1000).map(|i| i % 7 + 1).sum::<usize>())
    );

    // A task that spawns and awaits tasks itself.
    let r = get(&node.url("/t/nested?50")).await;
    assert_eq!(
        r.text(),
        format!("total={}", (0..50).map(|i| i % 7 + 1).sum::<usize>())
    );

    // Traps are retried (3 attempts by default), then a typed error.
    let r = get(&node.url("/t/trap")).await;
    assert_eq!(r.status, 500);
    assert!(r.text().starts_with("trapped: "), "{}", r.text());
    assert!(r.text().contains("(attempt 3)"), "{}", r.text());

    // A function the component lacks: failed at once, not retried.
    let r = get(&node.url("/t/unknown")).await;
    assert!(
        r.text()
            .starts_with("failed: no task function `no_such_function`"),
        "{}",
        r.text()
    );

    // A task that spawns itself without end stops at the depth limit, and
    // the node keeps serving.
    let r = get(&node.url("/t/deep")).await;
    assert_eq!(r.text(), "deepest=16");
    assert_eq!(get(&node.url("/t/wc?3")).await.status, 200);

    // A long job answered at once with its id; its status and result
    // through the control API.
    let id = get(&node.url("/t/start?30")).await.text();
    assert!(id.starts_with('t'), "{id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let shown = loop {
        let v = node.json(&format!("/v1/apps/jobs/tasks/{id}")).await;
        if v["state"] == "done" || std::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(shown["state"], "done", "{shown}");
    assert_eq!(shown["function"], "fan_out");
    assert_eq!(
        shown["result"],
        (0..30).map(|i| i % 7 + 1).sum::<usize>().to_string()
    );
    let listed = node.json("/v1/apps/jobs/tasks?limit=5000").await;
    let children = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["id"].as_str().unwrap().starts_with(&format!("{id}.")))
        .count();
    assert_eq!(children, 30);

    // Not granted: refused, with the reason.
    let r = get(&node.url("/o/wc?2")).await;
    assert!(
        r.text()
            .contains("refused: access denied: this component may not start tasks"),
        "{}",
        r.text()
    );
}
