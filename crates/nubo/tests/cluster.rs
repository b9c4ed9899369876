//! Cluster mode: three Nubo nodes on a real three-server NATS cluster
//! (JetStream, three replicas). An app applied to one node serves on all;
//! key-value and topics are shared; a lost NATS server or node does not
//! stop the app; each cron run happens on one node.

mod common;

use common::cluster::{Join, NatsCluster, eventually};
use common::control::NodeProc;
use common::{AppDir, get, wasm};
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn chat_app(extra: &str) -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "chat"
[component.probe]
source = "{w}"
topics = ["chat"]
key_value_stores = ["default"]
blob_containers = ["files"]
[[http]]
route = "/probe/..."
component = "probe"
[[websocket]]
route = "/ws"
topics = ["chat"]
{extra}
"#,
        w = wasm("probe").display()
    ))
}

/// Nodes `ids` joined to `nats`, each with its own state dir in `dirs`.
fn join(nats: &NatsCluster, ids: &[&str], dirs: &[tempfile::TempDir]) -> Vec<NodeProc> {
    ids.iter()
        .zip(dirs)
        .map(|(id, d)| nats.node(d.path(), id))
        .collect()
}

/// Waits until every node answers `path` with 200: it adopted the app.
async fn serving(nodes: &[NodeProc], path: &str) {
    for n in nodes {
        eventually(20, "the app on every node", || async {
            (get(&n.url(path)).await.status == 200).then_some(())
        })
        .await;
    }
}

/// The ids of the nodes `node` lists as ready.
async fn ready_nodes(node: &NodeProc) -> Vec<String> {
    let v = node.json("/v1/nodes").await;
    assert_eq!(v["cluster"], true, "{v}");
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["health"] == "ready")
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_app_runs_on_every_node_and_outlives_a_nats_server_and_a_node() {
    let mut nats = NatsCluster::start(3);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = nats.node(dirs[0].path(), "node-a");
    let mut b = nats.node(dirs[1].path(), "node-b");
    let c = nats.node(dirs[2].path(), "node-c");
    eventually(20, "three ready nodes", || async {
        (ready_nodes(&b).await.len() == 3).then_some(())
    })
    .await;
    assert_eq!(
        get(&format!("{}/readyz", c.control)).await.status,
        200,
        "readiness needs no token"
    );
    let metrics = get(&format!("{}/metrics", c.control)).await.text();
    assert!(metrics.contains("\nnubo_ready 1\n"), "{metrics}");
    assert!(metrics.contains("\nnubo_task_slots "), "{metrics}");

    // Applied through one node, served by all.
    a.apply(&chat_app(""));
    for n in [&a, &b, &c] {
        eventually(20, "the app on every node", || async {
            (get(&n.url("/probe/kv-set?greeting=hello")).await.status == 200).then_some(())
        })
        .await;
    }
    let (code, ps, err) = c.cli(&["ps"], &[]);
    assert_eq!(code, 0, "{err}");
    for id in ["node-a", "node-b", "node-c"] {
        assert!(ps.contains(id), "{ps}");
    }
    eventually(10, "every heartbeat to show chat@1", || async {
        let (_, ps, _) = c.cli(&["ps"], &[]);
        (ps.matches("chat@1").count() == 3).then_some(())
    })
    .await;

    // One key-value store: written on one node, read on another; atomic
    // increments from all three at once add up.
    assert_eq!(get(&b.url("/probe/kv-get?greeting")).await.text(), "hello");
    let incrs = (0..30).map(|i| {
        let url = [&a, &b, &c][i % 3].url("/probe/kv-incr?hits=1");
        async move { get(&url).await.status }
    });
    for status in futures_util::future::join_all(incrs).await {
        assert_eq!(status, 200);
    }
    assert_eq!(get(&c.url("/probe/kv-get?hits")).await.text(), "30");
    let (code, out, err) = a.cli(&["kv", "get", "chat", "hits"], &[]);
    assert_eq!((code, out.trim()), (0, "30"), "{err}");

    // One blob store: 3 MiB put through node A comes back whole from C.
    let work = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(work.path().join("big.bin"), &big).unwrap();
    let src = work.path().join("big.bin");
    let (code, out, err) = a.cli(
        &["blob", "put", "chat", "files", src.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let dst = work.path().join("back.bin");
    let (code, out, err) = c.cli(
        &[
            "blob",
            "get",
            "chat",
            "files",
            "big.bin",
            "-o",
            dst.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        std::fs::read(&dst).unwrap() == big,
        "the blob came back different"
    );
    let (_, ls, _) = b.cli(&["blob", "ls", "chat", "files"], &[]);
    assert!(ls.contains("big.bin") && ls.contains("3.0 MiB"), "{ls}");

    // A browser on node C hears what a component on node A publishes.
    let url = c.url("/ws").replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        get(&a.url("/probe/ps-pub?chat=from-a")).await.text(),
        "published"
    );
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    match msg {
        Ok(Some(Ok(Message::Text(t)))) => assert_eq!(t.as_str(), "from-a"),
        other => panic!("no message on node C: {other:?}"),
    }

    // Two changes planned against the same revision on two nodes: one
    // wins, the other is told to plan again.
    let change = |v: &str| {
        format!(
            r#"{{"expected_revision": 1, "steps": [{{"op": "set_variable", "name": "v", "value": "{v}"}}]}}"#
        )
    };
    let (to_b, to_c) = (change("b"), change("c"));
    let (rb, rc) = tokio::join!(
        b.api("POST", "/v1/apps/chat/changes", &to_b),
        c.api("POST", "/v1/apps/chat/changes", &to_c),
    );
    let mut statuses = [rb.status, rc.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} / {}", rb.text(), rc.text());
    let loser = if rb.status == 409 { &rb } else { &rc };
    assert!(loser.text().contains("plan"), "{}", loser.text());

    // One NATS server of three dies: the app keeps serving and changing.
    nats.kill(0);
    eventually(30, "key-value writes after a NATS server died", || async {
        (get(&a.url("/probe/kv-set?after=1")).await.status == 200).then_some(())
    })
    .await;
    assert_eq!(get(&c.url("/probe/kv-get?after")).await.text(), "1");
    let r = a
        .api(
            "POST",
            "/v1/apps/chat/changes",
            r#"{"steps": [{"op": "set_variable", "name": "v", "value": "late"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(20, "revision 3 everywhere", || async {
        let revs: Vec<u64> = futures_util::future::join_all(
            [&a, &c].map(|n| async move { n.json("/v1/apps/chat").await["revision"].as_u64() }),
        )
        .await
        .into_iter()
        .flatten()
        .collect();
        (revs == [3, 3]).then_some(())
    })
    .await;

    // A node dies: the others stop listing it once its heartbeat expires,
    // and keep serving.
    let url = b.url("/ws").replace("http://", "ws://");
    let (mut on_b, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    b.kill9();
    let started = Instant::now();
    // Its WebSocket clients lose it, reconnect to another node (as the
    // links example's page does behind a load balancer), and keep hearing.
    match tokio::time::timeout(Duration::from_secs(10), on_b.next()).await {
        Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {}
        other => panic!("the client of the dead node did not notice: {other:?}"),
    }
    let url = c.url("/ws").replace("http://", "ws://");
    let (mut again, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        get(&a.url("/probe/ps-pub?chat=after-failover"))
            .await
            .text(),
        "published"
    );
    match tokio::time::timeout(Duration::from_secs(10), again.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => assert_eq!(t.as_str(), "after-failover"),
        other => panic!("no message after reconnecting: {other:?}"),
    }
    eventually(30, "node-b to leave the list", || async {
        let r = a.api("GET", "/v1/nodes", "").await;
        if r.status != 200 {
            eprintln!("/v1/nodes: {}", r.text());
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        let ids: Vec<&str> = v["nodes"]
            .as_array()?
            .iter()
            .filter_map(|n| n["id"].as_str())
            .collect();
        (!ids.contains(&"node-b")).then_some(())
    })
    .await;
    eprintln!("node-b left the list {:?} after SIGKILL", started.elapsed());
    assert_eq!(get(&c.url("/probe/kv-get?hits")).await.text(), "30");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_cron_run_happens_on_exactly_one_node() {
    let nats = NatsCluster::start(3);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = join(&nats, &["n1", "n2", "n3"], &dirs);
    let started = Instant::now();
    nodes[0].apply(&chat_app(
        r#"
[[cron]]
schedule = "* * * * * *"
component = "probe"
path = "/probe/kv-incr?ticks"
"#,
    ));
    serving(&nodes, "/probe/kv-get?x").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ticks: u64 = get(&nodes[1].url("/probe/kv-get?ticks"))
        .await
        .text()
        .parse()
        .unwrap_or(0);
    let elapsed = started.elapsed().as_secs() + 1;
    // Every node schedules every second; without leases there would be
    // three runs a second.
    assert!(
        (3..=elapsed).contains(&ticks),
        "{ticks} runs in about {elapsed} s"
    );
    let runs: usize = nodes
        .iter()
        .map(|n| n.stderr.lock().unwrap().matches("cron run: ok").count())
        .sum();
    assert!(
        runs as u64 <= elapsed + 1,
        "{runs} runs logged in {elapsed} s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_messages_outlive_the_node_that_was_delivering_them() {
    let nats = NatsCluster::start(1);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = join(&nats, &["qa", "qb", "qc"], &dirs);
    let app = AppDir::new(&format!(
        r#"
[app]
name = "q"
[component.probe]
source = "{w}"
key_value_stores = ["default"]
queues = ["jobs", "bad"]
[[http]]
route = "/probe/..."
component = "probe"
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
"#,
        w = wasm("probe").display()
    ));
    nodes[0].apply(&app);
    serving(&nodes, "/probe/kv-get?x").await;
    // Published through all three nodes; one of them dies mid-way, with
    // deliveries of its own under way.
    let mut acked = Vec::new();
    for i in 0..240 {
        if i == 120 {
            nodes[1].kill9();
        }
        let n = if i >= 120 { [0, 2][i % 2] } else { i % 3 };
        let r = get(&nodes[n].url(&format!("/probe/q-pub?jobs=m{i}"))).await;
        if r.status == 200 {
            acked.push(format!("m{i}"));
        }
    }
    assert!(
        acked.len() >= 200,
        "only {} publishes acknowledged",
        acked.len()
    );
    let received = eventually(60, "every acknowledged message delivered", || async {
        let got = get(&nodes[0].url("/probe/kv-get?received")).await.text();
        let got: std::collections::BTreeSet<String> = got
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        acked.iter().all(|k| got.contains(k)).then_some(got)
    })
    .await;
    assert!(received.len() >= acked.len());

    // Failing every time: dead after three attempts, seen from any node.
    assert_eq!(
        get(&nodes[2].url("/probe/q-pub?bad=doomed")).await.status,
        200
    );
    let dead = eventually(20, "the dead letter", || async {
        let (_, dead, _) = nodes[0].cli(&["queue", "dead", "q", "bad"], &[]);
        dead.contains("doomed").then_some(dead)
    })
    .await;
    assert!(dead.contains("attempts 3"), "{dead}");
    let (_, ls, _) = nodes[2].cli(&["queue", "ls", "q"], &[]);
    assert!(ls.contains("dead 1"), "{ls}");
}

fn jobs_app() -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "jobs"
[component.tasker]
source = "{w}"
tasks = ["tasker"]
limits = {{ timeout_ms = 120000 }}
[[http]]
route = "/t/..."
component = "tasker"
"#,
        w = wasm("tasker").display()
    ))
}

/// `ran …` lines a node logged for tasks (request id = task id).
fn runs(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            [
                "ran count_words",
                "ran fan_out",
                "ran slow_count",
                "ran slow_fan_out",
            ]
            .iter()
            .any(|r| l.contains(r))
        })
        .filter_map(|l| {
            Some(
                l.split("request_id=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_job_spreads_over_the_nodes_and_outlives_one_of_them() {
    let nats = NatsCluster::start(1);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = join(&nats, &["ta", "tb", "tc"], &dirs);
    nodes[0].apply(&jobs_app());
    serving(&nodes, "/t/wc?1").await;
    let sum = |n: usize| (0..n).map(|i| i % 7 + 1).sum::<usize>();

    // A fan-out from node B runs on all three and adds up.
    let r = get(&nodes[1].url("/t/wc?300")).await;
    assert_eq!(
        r.text(),
        format!("parallel={} sequential={}", sum(300), sum(300))
    );
    let spread: Vec<usize> = nodes
        .iter()
        .map(|n| runs(&n.stderr.lock().unwrap()).len())
        .collect();
    eprintln!("count_words runs per node: {spread:?}");
    assert!(
        spread.iter().filter(|&&n| n > 0).count() >= 2,
        "the fan-out stayed on one node: {spread:?}"
    );

    // A long job of 50 ms tasks, so that every node holds some at any
    // moment; node B dies in the middle of it.
    let id = get(&nodes[0].url("/t/slow?600")).await.text();
    assert!(id.starts_with('t'), "{id}");
    eventually(120, "the job under way on node B", || async {
        let c = nodes[2].json("/v1/apps/jobs/tasks/counts").await;
        let on_b = nodes[1]
            .stderr
            .lock()
            .unwrap()
            .matches("ran slow_count")
            .count();
        (c["done"].as_u64().unwrap_or(0) >= 150 && on_b >= 20).then_some(())
    })
    .await;
    let listed = nodes[2]
        .json("/v1/apps/jobs/tasks?state=done&limit=10000")
        .await;
    let done_before: std::collections::HashSet<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| Some(t["id"].as_str()?.to_string()))
        .collect();
    let marks: Vec<usize> = nodes
        .iter()
        .map(|n| n.stderr.lock().unwrap().len())
        .collect();
    nodes[1].kill9();

    let deadline = Instant::now() + Duration::from_secs(120);
    let shown = loop {
        let v = nodes[2].json(&format!("/v1/apps/jobs/tasks/{id}")).await;
        if v["state"] == "done" || v["state"] == "failed" {
            break v;
        }
        if Instant::now() > deadline {
            let c = nodes[2].json("/v1/apps/jobs/tasks/counts").await;
            let notes: Vec<String> = [&nodes[0], &nodes[2]]
                .iter()
                .flat_map(|n| {
                    let log = n.stderr.lock().unwrap().clone();
                    log.lines()
                        .filter(|l| {
                            l.contains("WARN") || l.contains("ERROR") || l.contains("lost node")
                        })
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .take(40)
                .collect();
            panic!(
                "the job did not finish: {v}\ncounts: {c}\n{}",
                notes.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(shown["state"], "done", "{shown}");
    assert_eq!(shown["result"], sum(600).to_string());
    let taken_back = [&nodes[0], &nodes[2]].iter().any(|n| {
        n.stderr
            .lock()
            .unwrap()
            .contains("task(s) of lost nodes back in the queue")
    });
    assert!(taken_back, "no survivor took over the dead node's tasks");
    // After the kill, the survivors ran no task that had finished before.
    for (n, mark) in [(&nodes[0], marks[0]), (&nodes[2], marks[2])] {
        let log = n.stderr.lock().unwrap()[mark..].to_string();
        let again: Vec<String> = runs(&log)
            .into_iter()
            .filter(|r| done_before.contains(r))
            .collect();
        assert!(again.is_empty(), "finished tasks ran again: {again:?}");
    }
}

/// A node cut off from NATS for longer than its heartbeat lives stops its
/// tasks before the others take them over: the task runs on one node at a
/// time, then once more on the node that took it, to its end.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_cut_off_from_nats_stops_its_tasks_before_another_takes_them() {
    use common::cluster::{KEY, Link, TOKEN};
    let nats = NatsCluster::start(1);
    let link = Link::start(nats.servers[0].url.trim_start_matches("nats://")).await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = NodeProc::start(
        dirs[0].path(),
        &[
            "--nats",
            &link.url(),
            "--node-id",
            "fa",
            "--token",
            TOKEN,
            "--cluster-key",
            KEY,
        ],
    );
    a.apply(&jobs_app());
    serving(std::slice::from_ref(&a), "/t/wc?1").await;
    // A task of 12 s, running on A (B is not there yet to take it).
    let id = get(&a.url("/t/nap?12000")).await.text();
    assert!(id.starts_with('t'), "{id}");
    assert!(a.wait_log("ran nap").contains("ran nap"));
    let b = nats.node(dirs[1].path(), "fb");
    serving(std::slice::from_ref(&b), "/t/wc?1").await;

    link.cut();
    let cut = Instant::now();
    let fenced = eventually(20, "node A stopping its tasks", || async {
        a.stderr
            .lock()
            .unwrap()
            .contains("this node stops its tasks")
            .then(|| cut.elapsed())
    })
    .await;
    assert!(
        !b.stderr.lock().unwrap().contains("ran nap"),
        "node B ran the task before node A stopped it"
    );
    let taken = eventually(30, "node B running the task", || async {
        b.stderr
            .lock()
            .unwrap()
            .contains("ran nap")
            .then(|| cut.elapsed())
    })
    .await;
    eprintln!("A stopped its task after {fenced:?}; B took it after {taken:?}");
    link.heal();
    let done = eventually(60, "the task done", || async {
        let v = b.json(&format!("/v1/apps/jobs/tasks/{id}")).await;
        (v["state"] == "done").then_some(v)
    })
    .await;
    assert_eq!(done["attempts"], 2, "{done}");
    // Back in touch, A takes tasks again and did not run this one twice.
    assert!(
        a.wait_log("taking tasks again")
            .contains("taking tasks again")
    );
    assert_eq!(a.stderr.lock().unwrap().matches("ran nap").count(), 1);
}
