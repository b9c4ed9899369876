//! What users stake production on: an apply under traffic drops no request,
//! and a node killed mid-apply comes back with the old or the new revision,
//! never a mix.

mod common;

use common::control::NodeProc;
use common::{AppDir, get, wasm};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn web_app(component: &str, greeting: &str) -> String {
    format!(
        r#"
[app]
name = "zd"
[variables]
greeting = {{ default = "{greeting}" }}
[component.web]
source = "{}"
config = {{ greeting = "{{{{ greeting }}}}" }}
[[http]]
route = "/..."
component = "web"
"#,
        wasm(component).display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn applying_under_load_drops_no_request() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let app = AppDir::new(&web_app("hello", "v1"));
    let dir = app.path().to_str().unwrap().to_string();
    let (code, out, err) = node.cli(&["apply", &dir, "--auto-approve"], &[]);
    assert_eq!(code, 0, "{out}{err}");

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let url = node.url("/zd");
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let (mut ok, mut bad, mut bodies) =
                (0u32, Vec::new(), std::collections::BTreeSet::new());
            while !stop.load(Ordering::Relaxed) {
                let r = get(&url).await;
                if (200..300).contains(&r.status) {
                    ok += 1;
                    bodies.insert(r.text().lines().next().unwrap_or("").to_string());
                } else {
                    bad.push((r.status, r.text()));
                }
            }
            (ok, bad, bodies)
        }));
    }
    // A new build, a config change through a variable, and back.
    for (component, greeting) in [("plain", "v1"), ("plain", "v2"), ("hello", "v2")] {
        std::fs::write(app.path().join("nubo.toml"), web_app(component, greeting)).unwrap();
        let node_cli = node.cli(&["apply", &dir, "--auto-approve", "--no-build"], &[]);
        assert_eq!(node_cli.0, 0, "{}{}", node_cli.1, node_cli.2);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut seen = std::collections::BTreeSet::new();
    for c in clients {
        let (ok, bad, bodies) = c.await.unwrap();
        assert!(bad.is_empty(), "failed requests during apply: {bad:?}");
        total += ok;
        seen.extend(bodies);
    }
    assert!(total > 20, "the clients barely ran: {total} requests");
    // Both builds answered at some point: the switch happened under load.
    assert!(seen.len() >= 2, "only saw {seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_apply_leaves_the_old_or_the_new_revision() {
    let s = tempfile::tempdir().unwrap();
    let app = AppDir::new(&format!(
        r#"
[app]
name = "crash"
[variables]
version = {{ default = "0" }}
[component.a]
source = "{w}"
config = {{ version = "{{{{ version }}}}" }}
[component.b]
source = "{w}"
config = {{ version = "{{{{ version }}}}" }}
[[http]]
route = "/a/..."
component = "a"
[[http]]
route = "/b/..."
component = "b"
"#,
        w = wasm("probe").display()
    ));
    let mut node = NodeProc::start(s.path(), &[]);
    node.apply(&app);
    let mut outcomes = Vec::new();
    for round in 1..=6u64 {
        // Each round changes the variable both components read, and kills
        // the node a little later each time: before, during or after commit.
        let body = format!(
            r#"{{"steps":[{{"op":"set_variable","name":"version","value":"{round}"}},{{"op":"set_config","component":"b","key":"round","value":"{round}"}}]}}"#
        );
        let control = node.control.clone();
        let token = node.token();
        let sent = tokio::spawn(async move {
            let auth = format!("Bearer {token}");
            let url = format!("{control}/v1/apps/crash/changes");
            // The connection dies with the node; either outcome is fine here.
            tokio::time::timeout(
                Duration::from_secs(5),
                common::request(
                    "POST",
                    &url,
                    &[
                        ("authorization", &auth),
                        ("content-type", "application/json"),
                    ],
                    body.as_bytes(),
                ),
            )
            .await
            .map(|r| r.status)
        });
        tokio::time::sleep(Duration::from_millis(2 + round * 4)).await;
        node.kill9();
        let _ = sent.await;
        node = NodeProc::start(s.path(), &[]);
        let a = get(&node.url("/a/probe/config?version")).await.text();
        let b = get(&node.url("/b/probe/config?version")).await.text();
        let b_round = get(&node.url("/b/probe/config?round")).await;
        assert_eq!(a, b, "round {round}: components serve different revisions");
        let stored = node.json("/v1/apps/crash").await;
        assert_eq!(
            stored["definition"]["variables"]["version"]["value"],
            a.as_str()
        );
        if a == round.to_string() {
            assert_eq!(
                b_round.text(),
                round.to_string(),
                "half of a change applied"
            );
        } else {
            assert_eq!(a, (round - 1).to_string());
            let prev = node.json("/v1/apps/crash").await;
            // The old revision is whole: its `round` is the previous one's.
            let expected_round = prev["definition"]["components"]["b"]["config"]["round"].clone();
            match expected_round.as_str() {
                Some(r) => assert_eq!(b_round.text(), r),
                None => assert_eq!(b_round.status, 404),
            }
        }
        outcomes.push(a == round.to_string());
        // Make the next round start from this round's value either way.
        if a != round.to_string() {
            let r = node
                .api(
                    "POST",
                    "/v1/apps/crash/changes",
                    &format!(
                        r#"{{"steps":[{{"op":"set_variable","name":"version","value":"{round}"}},{{"op":"set_config","component":"b","key":"round","value":"{round}"}}]}}"#
                    ),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    eprintln!("applied before the kill: {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_variable_change_restarts_only_its_readers_and_in_flight_requests_finish() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let app = AppDir::new(&format!(
        r#"
[app]
name = "two"
[variables]
greeting = {{ default = "hello" }}
[component.reader]
source = "{w}"
config = {{ greeting = "{{{{ greeting }}}}" }}
[component.other]
source = "{w}"
config = {{ fixed = "yes" }}
[[http]]
route = "/reader/..."
component = "reader"
[[http]]
route = "/other/..."
component = "other"
"#,
        w = wasm("probe").display()
    ));
    let dir = app.path().to_str().unwrap().to_string();
    let (code, out, err) = node.cli(&["apply", &dir, "--auto-approve"], &[]);
    assert_eq!(code, 0, "{out}{err}");

    // One slow request in flight on each component.
    let slow_reader = tokio::spawn(get_owned(node.url("/reader/probe/sleep?1500")));
    let slow_other = tokio::spawn(get_owned(node.url("/other/probe/sleep?1500")));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let env = [("NUBO_VAR_GREETING", "changed")];
    let (code, out, err) = node.cli(&["plan", &dir], &env);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("(restarts reader: reads it)"), "{out}");
    assert!(!out.contains("other"), "{out}");
    let (code, out, err) = node.cli(&["apply", &dir, "--auto-approve"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        get(&node.url("/reader/probe/config?greeting")).await.text(),
        "changed"
    );

    // `other` is the same running component: its in-flight request is still
    // counted against it after the apply. `reader` is a new one.
    let apps = node.json("/v1/apps/two").await;
    let instances = |name: &str| {
        apps["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["instances"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(instances("other"), 1, "{apps}");
    assert_eq!(instances("reader"), 0, "{apps}");

    for slow in [slow_reader, slow_other] {
        let r = slow.await.unwrap();
        assert_eq!((r.status, r.text()), (200, "slept 1500".to_string()));
    }
}

async fn get_owned(url: String) -> common::Reply {
    get(&url).await
}
