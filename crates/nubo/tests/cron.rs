//! `[[cron]]`: scheduled runs of a component's HTTP handler, never
//! overlapping, with the declared policy for runs missed while down.

mod common;

use common::control::NodeProc;
use common::{AppDir, get, wasm};
use std::time::Duration;

fn cron_app(crons: &str) -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "timed"
[component.probe]
source = "{}"
key_value_stores = ["default"]
[[http]]
route = "/probe/..."
component = "probe"
{crons}
"#,
        wasm("probe").display()
    ))
}

async fn kv(node: &NodeProc, key: &str) -> String {
    get(&node.url(&format!("/probe/kv-get?{key}"))).await.text()
}

#[tokio::test(flavor = "multi_thread")]
async fn schedules_run_and_a_slow_run_never_overlaps_the_next() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let app = cron_app(
        r#"
[[cron]]
schedule = "* * * * * *"
component = "probe"
path = "/probe/kv-incr?ticks"

[[cron]]
schedule = "* * * * * *"
component = "probe"
path = "/probe/kv-overlap?slow=1500"
timezone = "Europe/Paris"

[[cron]]
schedule = "0 0 1 1 *"
component = "probe"
path = "/probe/kv-incr?yearly"
"#,
    );
    let out = node.apply(&app);
    assert!(
        out.contains("+ cron \"* * * * * *\" (UTC) → POST /probe/kv-incr?ticks on component probe"),
        "{out}"
    );
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let ticks: i64 = kv(&node, "ticks").await.parse().unwrap_or(0);
    assert!((3..=6).contains(&ticks), "ticks = {ticks}");
    let runs: i64 = kv(&node, "runs").await.parse().unwrap_or(0);
    assert!(runs >= 2, "slow runs = {runs}");
    assert_eq!(
        kv(&node, "overlapped").await,
        "(absent)",
        "two runs of one schedule overlapped"
    );
    let log = node.stderr.lock().unwrap().clone();
    assert!(
        log.contains("run(s): the previous run was still going"),
        "{log}"
    );

    let (code, out, _) = node.cli(&["cron", "ls", "timed"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("\"* * * * * *\" (Europe/Paris)  → POST /probe/kv-overlap?slow=1500 on probe"),
        "{out}"
    );
    assert!(out.contains("last: ") && out.contains("ok (200)"), "{out}");
    assert_eq!(out.matches("next: ").count(), 3, "{out}");
    // An entry that has not run yet says so, not the time it was applied.
    let yearly = out.split("\"0 0 1 1 *\"").nth(1).unwrap_or_default();
    assert!(yearly.contains("last: never"), "{out}");

    // Removing the schedules stops them.
    let plain = cron_app("");
    let out = node.apply(&plain);
    assert!(out.contains("- cron"), "{out}");
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let before = kv(&node, "ticks").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(kv(&node, "ticks").await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_missed_while_down_follow_the_policy() {
    let s = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(s.path(), &[]);
    let app = cron_app(
        r#"
[[cron]]
schedule = "0 * * * *"
component = "probe"
path = "/probe/kv-incr?caught_up"
missed = "run-once"

[[cron]]
schedule = "0 * * * *"
component = "probe"
path = "/probe/kv-incr?skipped"
"#,
    );
    node.apply(&app);
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.kill9();
    // Three hours of downtime: the node last saw both schedules then.
    let db = rusqlite::Connection::open(s.path().join("cron.db")).unwrap();
    let three_hours_ago = chrono_ms() - 3 * 3600 * 1000;
    let n = db
        .execute("UPDATE runs SET scheduled_at = ?1", [three_hours_ago])
        .unwrap();
    assert_eq!(n, 2);
    drop(db);
    let mut node = NodeProc::start(s.path(), &[]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        kv(&node, "caught_up").await,
        "1",
        "run-once runs exactly once"
    );
    assert_eq!(
        kv(&node, "skipped").await,
        "(absent)",
        "skip does not catch up"
    );
    // The catch-up counts as the last run: another restart runs nothing.
    node.kill9();
    let node = NodeProc::start(s.path(), &[]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(kv(&node, "caught_up").await, "1");
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
