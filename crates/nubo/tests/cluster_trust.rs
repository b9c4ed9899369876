//! Between nodes: only records signed with the cluster key are acted on,
//! a node needs that key to join, and NATS's own authentication works.

mod common;

use common::cluster::{Join, KEY, NatsCluster, free_port};
use common::control::{NodeProc, probe_app};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_app_record_in_nats_is_refused_and_logged() {
    let nats = NatsCluster::start(1);
    let state = tempfile::tempdir().unwrap();
    let node = nats.node(state.path(), "n1");
    node.apply(&probe_app("real", ""));
    // A secret variable's value travels sealed.
    let secret_app = common::AppDir::new(&common::probe_app("", "").replace(
        "name = \"probe-app\"",
        "name = \"vault\"\nbase = \"/vault\"",
    ));
    let (code, out, err) = node.cli(
        &[
            "apply",
            secret_app.path().to_str().unwrap(),
            "--auto-approve",
        ],
        &[("NUBO_VAR_SECRET", "cluster-pa55-word")],
    );
    assert_eq!(code, 0, "{out}{err}");

    // Someone with access to NATS writes an app into the desired state.
    let client = async_nats::connect(nats.servers[0].url.as_str())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let apps = js.get_key_value("nubo_apps").await.unwrap();
    let vault = apps.get("vault").await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&vault);
    assert!(!text.contains("cluster-pa55-word"), "{text}");
    assert!(text.contains("sealed:v1:"), "{text}");
    let forged = serde_json::json!({
        "app": "evil",
        "revision": 1,
        "def": { "name": "evil", "components": {}, "routes": [] },
        "steps": [],
        "at": 0
    });
    apps.put("evil", serde_json::to_vec(&forged).unwrap().into())
        .await
        .unwrap();
    // The same record under the real app's key, replacing its signed one.
    apps.put("real", serde_json::to_vec(&forged).unwrap().into())
        .await
        .unwrap();

    let log = node.wait_log("is not signed with this cluster's key");
    assert!(log.contains("app record evil is not signed"), "{log}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listed = node.json("/v1/apps").await.to_string();
    assert!(!listed.contains("evil"), "{listed}");
    // The real app serves on, at its signed revision.
    let r = common::get(&node.url("/probe/echo")).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // A task outcome written into the task rows by someone else: no
    // awaiter, listing or API call takes it for a task.
    let rows = js.get_key_value("nubo_tasks").await.unwrap();
    let forged = serde_json::json!({
        "app": "real", "component": "probe", "function": "steal",
        "payload": "", "state": "done", "attempts": 1, "depth": 0,
        "result": "b3duZWQ", "created_ms": 0
    });
    rows.put("real.tf0rged", serde_json::to_vec(&forged).unwrap().into())
        .await
        .unwrap();
    let shown = node.api("GET", "/v1/apps/real/tasks/tf0rged", "").await;
    assert_eq!(shown.status, 404, "{}", shown.text());
    let log = node.wait_log("task row real.tf0rged is not signed");
    assert!(log.contains("task row real.tf0rged is not signed"), "{log}");
}

#[test]
fn a_node_needs_the_cluster_key_and_nats_credentials() {
    let state = tempfile::tempdir().unwrap();
    // No key: refused before anything is written.
    let out = common::nubo()
        .args(["node", "--nats", "nats://127.0.0.1:1", "--state"])
        .arg(state.path())
        .env_remove("NUBO_CLUSTER_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--cluster-key"), "{err}");

    // A NATS server that wants a user and password.
    let port = free_port();
    let store = tempfile::tempdir().unwrap();
    let mut server = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
        .args(["--user", "nubo", "--pass", "s3cret-nats"])
        .arg("-sd")
        .arg(store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server (apt-get install nats-server)");
    let url = format!("nats://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let node_args = |dir: &std::path::Path| {
        let mut c = common::nubo();
        c.args(["node", "--nats", &url, "--cluster-key", KEY])
            .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .arg("--state")
            .arg(dir);
        c
    };
    let without = tempfile::tempdir().unwrap();
    let out = node_args(without.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "joined without credentials");
    assert!(err.to_lowercase().contains("author"), "{err}");

    let with = tempfile::tempdir().unwrap();
    let node = NodeProc::start_with(
        with.path(),
        &["--nats", &url, "--cluster-key", KEY, "--nats-user", "nubo"],
        &[("NUBO_NATS_PASSWORD", "s3cret-nats")],
    );
    assert!(!node.stderr.lock().unwrap().contains("s3cret-nats"));
    drop(node);
    let _ = server.kill();
    let _ = server.wait();
}
