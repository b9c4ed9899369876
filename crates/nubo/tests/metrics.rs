//! `/metrics` over real HTTP to a real node: every line is in the
//! OpenMetrics text format; requests are counted by app, component, route
//! pattern and status class, with a latency histogram whose count is the
//! number of requests; task runs, tasks by state, a queue's depth and the
//! age of its oldest message, the use of a cap and the process's
//! resources are there with their labels.

mod common;

use common::control::NodeProc;
use common::{AppDir, request, wasm};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn app() -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "watched"

[component.probe]
source = "{probe}"
queues = ["slow"]

[component.tasker]
source = "{tasker}"
tasks = ["tasker"]

[[http]]
route = "/probe/..."
component = "probe"

[[http]]
route = "/t/..."
component = "tasker"

[queue.slow]
consumer = "probe"
path = "/probe/q-fail"
max_attempts = 10
backoff_ms = 600000

[caps]
requests_per_day = 1000
"#,
        probe = wasm("probe").display(),
        tasker = wasm("tasker").display()
    ))
}

/// The exposition's samples by series (`name{labels}`), after checking
/// that every line is a comment or a sample and that it ends in `# EOF`.
fn samples(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "{text}");
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unclosed labels in {line:?}");
        }
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        out.insert(series.to_string(), v);
    }
    out
}

async fn scrape(node: &NodeProc) -> HashMap<String, f64> {
    let r = node.api("GET", "/metrics", "").await;
    assert_eq!(r.status, 200);
    samples(&r.text())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_tasks_queues_caps_and_the_process() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app());

    for _ in 0..7 {
        let r = request("GET", &node.url("/probe/echo"), &[], b"").await;
        assert_eq!(r.status, 200);
    }
    for _ in 0..3 {
        let r = request("GET", &node.url("/probe/nothing-here"), &[], b"").await;
        assert_eq!(r.status, 404);
    }
    let r = request("GET", &node.url("/nowhere"), &[], b"").await;
    assert_eq!(r.status, 404);
    let r = request("GET", &node.url("/probe/q-pub?slow=m1"), &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request("GET", &node.url("/t/nap?1"), &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let task = r.text().trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.json(&format!("/v1/apps/watched/tasks/{task}")).await["state"] != "done" {
        assert!(Instant::now() < deadline, "the task never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let probe = r#"app="watched",component="probe",route="/probe/...""#;
    // The message failed once and waits for its retry in ten minutes; the
    // requests are in the usage store once it flushes (every 2 s).
    let ready = r#"nubo_queue_ready{app="watched",queue="slow"}"#;
    let cap = r#"nubo_cap_used_ratio{app="watched",cap="requests_per_day"}"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    let m = loop {
        let m = scrape(&node).await;
        if m.get(ready) == Some(&1.0) && m.get(cap).is_some_and(|v| *v > 0.0) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no waiting message or cap use: {m:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let get = |series: &str| {
        *m.get(series)
            .unwrap_or_else(|| panic!("no {series} in {m:#?}"))
    };
    assert_eq!(
        get(&format!(
            r#"nubo_http_requests_total{{{probe},status="2xx"}}"#
        )),
        8.0
    );
    assert_eq!(
        get(&format!(
            r#"nubo_http_requests_total{{{probe},status="4xx"}}"#
        )),
        3.0
    );
    assert_eq!(
        get(r#"nubo_http_requests_total{app="watched",component="",route="",status="4xx"}"#),
        1.0,
        "a path no route takes counts under no route"
    );
    let count = get(&format!(
        "nubo_http_request_duration_seconds_count{{{probe}}}"
    ));
    assert_eq!(count, 11.0);
    assert_eq!(
        get(&format!(
            r#"nubo_http_request_duration_seconds_bucket{{le="+Inf",{probe}}}"#
        )),
        count
    );
    assert!(
        get(&format!(
            "nubo_http_request_duration_seconds_sum{{{probe}}}"
        )) > 0.0
    );

    assert!(get(r#"nubo_task_runs_total{app="watched",component="tasker",outcome="done"}"#) >= 1.0);
    assert!(
        get(r#"nubo_task_run_duration_seconds_count{app="watched",component="tasker"}"#) >= 1.0
    );
    assert!(get(r#"nubo_tasks{app="watched",state="done"}"#) >= 1.0);
    assert_eq!(get(r#"nubo_queue_dead{app="watched",queue="slow"}"#), 0.0);
    assert!(get(r#"nubo_queue_oldest_age_seconds{app="watched",queue="slow"}"#) >= 0.0);
    assert!(get(cap) < 1.0, "{}", get(cap));
    assert!(
        m.contains_key(r#"nubo_component_instances_busy{app="watched",component="probe"}"#),
        "{m:#?}"
    );
    assert_eq!(get("nubo_ready"), 1.0);
    assert_eq!(get("nubo_apps"), 1.0);
    assert!(get("process_resident_memory_bytes") > 1e6);
    assert!(get("process_cpu_seconds_total") > 0.0);
    assert!(get("process_open_fds") > 0.0);
}
