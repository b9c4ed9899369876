//! Durable tasks through real components on a real node: fan-out/fan-in,
//! nested tasks, retries ending in typed errors, per-app limits from
//! `[tasks]`, cancelling a running tree, ten thousand waiting tasks, and
//! a SIGKILL in the middle of a ten-thousand-task job.

mod common;

use common::control::NodeProc;
use common::{AppDir, get, wasm};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn app(name: &str, base: &str, tasks: &str) -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "{name}"
base = "{base}"
[tasks]
{tasks}
[component.tasker]
source = "{w}"
tasks = ["tasker"]
limits = {{ timeout_ms = 120000 }}
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

fn sum_of_chunks(n: usize) -> usize {
    (0..n).map(|i| i % 7 + 1).sum()
}

async fn counts(node: &NodeProc, app: &str) -> serde_json::Value {
    node.json(&format!("/v1/apps/{app}/tasks/counts")).await
}

/// Polls task `id` until it is finished; its JSON.
async fn finished(node: &NodeProc, app: &str, id: &str, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let v = node.json(&format!("/v1/apps/{app}/tasks/{id}")).await;
        if ["done", "failed", "cancelled"].contains(&v["state"].as_str().unwrap_or(""))
            || Instant::now() > deadline
        {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fan_out_nesting_typed_errors_and_limits() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app("jobs", "/", "max_attempts = 2\nmax_depth = 6"));
    node.apply(&app("flood", "/flood", "max_queued = 40"));

    // 1,000 chunks, one task each: the same count as sequentially.
    let r = get(&node.url("/t/wc?1000")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        format!(
            "parallel={} sequential={}",
            sum_of_chunks(1000),
            sum_of_chunks(1000)
        )
    );

    // A task that spawns and awaits tasks itself.
    let r = get(&node.url("/t/nested?50")).await;
    assert_eq!(r.text(), format!("total={}", sum_of_chunks(50)));

    // Traps are retried (max_attempts = 2 here), then a typed error.
    let r = get(&node.url("/t/trap")).await;
    assert_eq!(r.status, 500);
    assert!(r.text().starts_with("trapped: "), "{}", r.text());
    assert!(r.text().contains("(attempt 2)"), "{}", r.text());

    // A payload over 4 MiB is refused at the spawn, with why.
    let r = get(&node.url(&format!("/t/heavy?{}", (4 << 20) + 1))).await;
    assert!(
        r.text().starts_with(
            "refused: the task's payload is 4194305 bytes; payloads may be at most 4194304"
        ),
        "{}",
        r.text()
    );
    let r = get(&node.url(&format!("/t/heavy?{}", 4 << 20))).await;
    assert_eq!(r.text(), "spawned");

    // A function the component lacks: failed at once, not retried.
    let r = get(&node.url("/t/unknown")).await;
    assert!(
        r.text()
            .starts_with("failed: no task function `no_such_function`"),
        "{}",
        r.text()
    );

    // A task that spawns itself without end stops at max_depth, and the
    // node keeps serving.
    let r = get(&node.url("/t/deep")).await;
    assert_eq!(r.text(), "deepest=6");
    assert_eq!(get(&node.url("/t/wc?3")).await.status, 200);

    // A spawn storm in another app stops at that app's max_queued (the
    // gate task is one of the 40); this app is not affected.
    let r = get(&node.url("/flood/t/flood?60")).await;
    assert!(
        r.text().starts_with(
            "spawned=39 done=39 refused=21 refused: app `flood` has 40 unfinished tasks"
        ),
        "{}",
        r.text()
    );
    assert_eq!(get(&node.url("/t/wc?3")).await.status, 200);

    // A long job answered at once with its id; its status and result
    // through the control API.
    let id = get(&node.url("/t/start?30")).await.text();
    assert!(id.starts_with('t'), "{id}");
    let shown = finished(&node, "jobs", &id, Duration::from_secs(30)).await;
    assert_eq!(shown["state"], "done", "{shown}");
    assert_eq!(shown["function"], "fan_out");
    assert_eq!(shown["result"], sum_of_chunks(30).to_string());
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

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_a_running_tree_and_the_cli_shows_it() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app("jobs", "/", "max_running = 4"));

    // Four tasks that would spin for 50 s each fill the app's run slots.
    let id = get(&node.url("/t/spinning?4")).await.text();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = counts(&node, "jobs").await;
        if c["running"] == 4 && c["waiting"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the spinners never all ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (code, out, err) = node.cli(&["tasks", "ls", "jobs"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("4 running, 1 waiting\n"), "{out}");
    assert!(out.contains(&format!("{id}.0  running")), "{out}");

    let (code, out, err) = node.cli(&["tasks", "cancel", "jobs", &id], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!("cancelled {id} and 4 task(s) it started")
    );

    // Every task of the tree is cancelled, and the spinners let go of
    // their slots: a new job with max_running = 4 gets to run.
    let c = counts(&node, "jobs").await;
    assert_eq!(c["cancelled"], 5, "{c}");
    let r = get(&node.url("/t/wc?20")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let c = counts(&node, "jobs").await;
    assert_eq!(
        (c["running"].clone(), c["queued"].clone()),
        (0.into(), 0.into()),
        "{c}"
    );

    let (code, out, _) = node.cli(&["tasks", "show", "jobs", &format!("{id}.2")], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("state     cancelled") && out.contains("function  spin of component tasker"),
        "{out}"
    );
    let (code, _, err) = node.cli(&["tasks", "show", "jobs", "t-nope"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("no task `t-nope` in app `jobs`"), "{err}");
}

/// A request that spawns one task and awaits it at once runs the task on
/// its own thread (see `TaskRunner::run_awaited`); that task is recorded,
/// takes a run slot and can be cancelled like any other.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_its_awaiter_runs_is_recorded_and_cancellable() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app("solo", "/", "max_running = 1"));

    let r = get(&node.url("/t/one?20")).await;
    assert_eq!((r.status, r.text()), (200, "spun".to_string()));
    let done = node.json("/v1/apps/solo/tasks?state=done").await;
    assert_eq!(done.as_array().map(Vec::len), Some(1), "{done}");
    assert_eq!(done[0]["function"], "spin", "{done}");

    // A child that would spin for 60 s, cancelled while it runs: its
    // awaiter gets the typed error, and the app's one slot is free again.
    let url = node.url("/t/one?60000");
    let waiting = tokio::spawn(async move { get(&url).await });
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let running = node.json("/v1/apps/solo/tasks?state=running").await;
        if let Some(id) = running[0]["id"].as_str() {
            break id.to_string();
        }
        assert!(Instant::now() < deadline, "the child never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (code, out, err) = node.cli(&["tasks", "cancel", "solo", &id], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("cancelled {id}"));
    let r = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the awaiter was not woken by the cancel")
        .unwrap();
    assert_eq!((r.status, r.text()), (500, "cancelled".to_string()));
    let r = get(&node.url("/t/one?20")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let c = counts(&node, "solo").await;
    assert_eq!(
        (c["done"].clone(), c["cancelled"].clone()),
        (2.into(), 1.into()),
        "{c}"
    );
}

/// SDK components run tasks through their `task-handler` export; any
/// other `wasi:http` component still runs them as `POST /FUNCTION`.
#[tokio::test(flavor = "multi_thread")]
async fn tasks_run_through_the_export_or_over_http() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&AppDir::new(&format!(
        r#"
[app]
name = "mixed"
[component.tasker]
source = "{t}"
tasks = ["tasker", "plain"]
[component.plain]
source = "{p}"
[[http]]
route = "/t/..."
component = "tasker"
"#,
        t = wasm("tasker").display(),
        p = wasm("plain").display()
    )));
    let r = get(&node.url("/t/plain")).await;
    assert_eq!(
        (r.status, r.text()),
        (200, "plain: POST /echo body=hi".into())
    );
    let r = get(&node.url("/t/wc?50")).await;
    let total = sum_of_chunks(50);
    assert_eq!(
        (r.status, r.text()),
        (200, format!("parallel={total} sequential={total}"))
    );
    // A function the component lacks fails at once, with the SDK's word.
    let r = get(&node.url("/t/unknown")).await;
    assert_eq!(r.status, 500);
    assert!(
        r.text()
            .contains("no task function `no_such_function` here"),
        "{}",
        r.text()
    );
}

/// The node's resident memory, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_tasks_wait_at_once() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app("jobs", "/", ""));
    let before = rss_mib(node.child.id());

    // 10,000 tasks wait on one gate task, which the test then cancels.
    let id = get(&node.url("/t/gated?10000")).await.text();
    let deadline = Instant::now() + Duration::from_secs(240);
    let c = loop {
        let c = counts(&node, "jobs").await;
        if c["waiting"].as_u64().unwrap() >= 10_000 {
            break c;
        }
        assert!(Instant::now() < deadline, "never 10,000 waiting: {c}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let during = rss_mib(node.child.id());
    eprintln!("waiting: {c}; node RSS {before:.0} MiB before, {during:.0} MiB with them waiting");

    let (code, out, err) = node.cli(&["tasks", "cancel", "jobs", &format!("{id}.0")], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("cancelled {id}.0"));
    let shown = finished(&node, "jobs", &id, Duration::from_secs(240)).await;
    assert_eq!(shown["state"], "done", "{shown}");
    assert_eq!(shown["result"], "10000");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_job_finishes_without_rerunning_finished_tasks() {
    let s = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(s.path(), &[]);
    node.apply(&app("jobs", "/", ""));

    // One task that fans out to 10,000 tasks.
    let id = get(&node.url("/t/start?10000")).await.text();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let c = counts(&node, "jobs").await;
        if c["done"].as_u64().unwrap() >= 2000 {
            break;
        }
        assert!(Instant::now() < deadline, "the job never got going: {c}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.kill9();

    // What the store says had finished when the node died.
    let done_before: HashSet<String> = {
        let db = rusqlite::Connection::open(s.path().join("tasks.db")).unwrap();
        let mut q = db
            .prepare("SELECT id FROM tasks WHERE state = 'done'")
            .unwrap();
        q.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert!(done_before.len() >= 2000 && !done_before.contains(&id));

    let node = NodeProc::start(s.path(), &[]);
    let shown = finished(&node, "jobs", &id, Duration::from_secs(240)).await;
    assert_eq!(shown["state"], "done", "{shown}");
    assert_eq!(shown["result"], sum_of_chunks(10_000).to_string());

    // Every run after the restart: no task that had finished ran again,
    // and the job did resume (the kill came in the middle).
    let log = node.stderr.lock().unwrap().clone();
    let rerun: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ran count_words") || l.contains("ran fan_out"))
        .filter_map(|l| l.split("request_id=").nth(1)?.split_whitespace().next())
        .collect();
    assert!(
        rerun.contains(&id.as_str()),
        "the job itself was not resumed"
    );
    let again: Vec<&&str> = rerun.iter().filter(|r| done_before.contains(**r)).collect();
    assert!(again.is_empty(), "finished tasks ran again: {again:?}");
}

/// App A names a task id of app B: it learns nothing and B's own await
/// still gets its result (outcome slots are keyed by app and id).
#[tokio::test(flavor = "multi_thread")]
async fn one_app_cannot_touch_another_apps_awaits() {
    let state = tempfile::tempdir().unwrap();
    let node = NodeProc::start(state.path(), &[]);
    let a = app("alpha", "/a", "");
    let b = app("beta", "/b", "");
    node.apply(&a);
    node.apply(&b);
    // 200 children of 50 ms each: over a second on any machine.
    let r = get(&node.url("/b/t/slow?200")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.text();
    let mine = tokio::spawn({
        let url = node.url(&format!("/b/t/await?{id}"));
        async move { get(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let theirs = get(&node.url(&format!("/a/t/await?{id}"))).await;
    assert_eq!(theirs.status, 500, "{}", theirs.text());
    assert!(theirs.text().contains("no task"), "{}", theirs.text());
    let mine = mine.await.unwrap();
    assert_eq!(mine.status, 200, "B's own await failed: {}", mine.text());
    assert_eq!(mine.text(), sum_of_chunks(200).to_string());
}

/// A task that waits on the host (a sleep here; a slow outbound call is
/// the same) is stopped at its `timeout_ms` like one that computes, so it
/// cannot keep its run permits for ever.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_waiting_on_the_host_is_stopped_at_its_time_limit() {
    let state = tempfile::tempdir().unwrap();
    let node = NodeProc::start(state.path(), &[]);
    let a = AppDir::new(&format!(
        r#"
[app]
name = "sleepy"
[tasks]
max_attempts = 1
[component.tasker]
source = "{w}"
tasks = ["tasker"]
limits = {{ timeout_ms = 500 }}
[[http]]
route = "/t/..."
component = "tasker"
"#,
        w = wasm("tasker").display()
    ));
    node.apply(&a);
    let r = get(&node.url("/t/nap?30000")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let task = finished(&node, "sleepy", &r.text(), Duration::from_secs(20)).await;
    assert_eq!(task["state"], "failed", "{task}");
    assert!(
        task["error"].to_string().contains("timeout_ms = 500"),
        "{task}"
    );
}

/// A task that computes past its component's `cpu_ms` is stopped there,
/// while its parent, which only waits for it, is not.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_is_stopped_at_its_cpu_limit() {
    let state = tempfile::tempdir().unwrap();
    let node = NodeProc::start(state.path(), &[]);
    let a = AppDir::new(&format!(
        r#"
[app]
name = "thrifty"
[tasks]
max_attempts = 1
[component.tasker]
source = "{w}"
tasks = ["tasker"]
limits = {{ cpu_ms = 100, timeout_ms = 120000 }}
[[http]]
route = "/t/..."
component = "tasker"
"#,
        w = wasm("tasker").display()
    ));
    node.apply(&a);
    // A tree of one task that spins for 50 s of CPU.
    let r = get(&node.url("/t/spinning?1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let child = format!("{}.0", r.text());
    let task = finished(&node, "thrifty", &child, Duration::from_secs(20)).await;
    assert_eq!(task["state"], "failed", "{task}");
    assert!(
        task["error"].to_string().contains("CPU limit of 100 ms"),
        "{task}"
    );
    // The parent panics when its child fails: a trap of its own, not its
    // CPU limit (waiting for its child used none).
    let parent = finished(&node, "thrifty", &r.text(), Duration::from_secs(20)).await;
    let why = parent["error"].to_string();
    assert!(
        why.contains("unreachable") && !why.contains("CPU limit"),
        "{parent}"
    );
}

/// One app that keeps every run permit busy with long tasks does not stop
/// another app's tasks: an app that holds none can always start one.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_app_leaves_run_permits_for_another() {
    let state = tempfile::tempdir().unwrap();
    let node = NodeProc::start(state.path(), &[]);
    let busy = app("busy", "/busy", "");
    let other = app("other", "/other", "");
    node.apply(&busy);
    node.apply(&other);
    // Far more spinning tasks than the node has permits.
    let r = get(&node.url("/busy/t/spinning?64")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let done = tokio::time::timeout(Duration::from_secs(30), get(&node.url("/other/t/wc?3")))
        .await
        .expect("the other app's tasks never got a run permit");
    assert_eq!(done.status, 200, "{}", done.text());
    let want = sum_of_chunks(3);
    assert_eq!(done.text(), format!("parallel={want} sequential={want}"));
}

const SWEEP_OFTEN: (&str, &str) = ("NUBO_TASK_SWEEP_MS", "200");

/// Finished trees go once the app's `keep_finished_hours` passed; trees
/// with a task still running stay whole, and another app's tasks are kept
/// for its own time.
#[tokio::test(flavor = "multi_thread")]
async fn finished_tasks_are_deleted_after_keep_finished_hours() {
    let s = tempfile::tempdir().unwrap();
    finished_tasks_expire(&NodeProc::start_with(s.path(), &[], &[SWEEP_OFTEN])).await;
}

/// The same on a cluster, where tasks are rows in JetStream.
#[tokio::test(flavor = "multi_thread")]
async fn finished_tasks_expire_on_a_cluster() {
    use common::cluster::Join;
    let nats = common::cluster::NatsCluster::start(1);
    let s = tempfile::tempdir().unwrap();
    finished_tasks_expire(&nats.node_with(s.path(), "n1", &[SWEEP_OFTEN])).await;
}

async fn finished_tasks_expire(node: &NodeProc) {
    node.apply(&app("brief", "/a", "keep_finished_hours = 0"));
    node.apply(&app("kept", "/b", ""));
    for base in ["/a", "/b"] {
        let r = get(&node.url(&format!("{base}/t/wc?5"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let spinning = get(&node.url("/a/t/spinning?1")).await.text();

    let done = |app: &'static str| async move {
        let v = node.json(&format!("/v1/apps/{app}/tasks?state=done")).await;
        v.as_array().map_or(0, Vec::len)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while done("brief").await > 0 {
        assert!(
            Instant::now() < deadline,
            "brief's finished tasks were kept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done("kept").await >= 5, "kept's tasks went too");
    let v = node.json(&format!("/v1/apps/brief/tasks/{spinning}")).await;
    assert_eq!(v["id"], spinning.as_str(), "{v}");
    let v = node
        .json(&format!("/v1/apps/brief/tasks/{spinning}.0"))
        .await;
    assert!(
        ["queued", "running"].contains(&v["state"].as_str().unwrap_or("")),
        "{v}"
    );
    // The tasks were there, and the sweep deleted them.
    let log = node.stderr.lock().unwrap().clone();
    assert!(
        log.lines().any(|l| l.contains("app=\"brief\"")
            && l.contains("deleted finished tasks older than keep_finished_hours")),
        "{log}"
    );
}
