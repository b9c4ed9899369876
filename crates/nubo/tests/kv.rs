//! Key-value stores through `wasi:keyvalue`, from a real component on a
//! real node, and `nubo kv` from the CLI.

mod common;

use common::control::NodeProc;
use common::{AppDir, get, nubo, wasm};

/// An app with the probe at `/probe/...`, granted `stores`.
fn kv_app(name: &str, base: &str, stores: &str) -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "{name}"
base = "{base}"
[component.probe]
source = "{}"
key_value_stores = [{stores}]
[[http]]
route = "/probe/..."
component = "probe"
"#,
        wasm("probe").display()
    ))
}

async fn call(node: &NodeProc, path: &str) -> (u16, String) {
    let r = get(&node.url(path)).await;
    (r.status, r.text())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_uses_its_store_and_nothing_else() {
    let s = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(s.path(), &[]);
    let a = kv_app("a", "/a", "\"default\"");
    let b = kv_app("b", "/b", "\"default\"");
    let none = kv_app("none", "/none", "");
    for app in [&a, &b, &none] {
        node.apply(app);
    }
    assert_eq!(
        call(&node, "/a/probe/kv-set?k=one").await,
        (200, "ok".into())
    );
    assert_eq!(call(&node, "/a/probe/kv-get?k").await, (200, "one".into()));
    assert_eq!(
        call(&node, "/a/probe/kv-exists?k").await,
        (200, "true".into())
    );
    // Same store name, other app: other data.
    assert_eq!(
        call(&node, "/b/probe/kv-get?k").await,
        (200, "(absent)".into())
    );
    assert_eq!(call(&node, "/b/probe/kv-set?k=two").await.0, 200);
    assert_eq!(call(&node, "/a/probe/kv-get?k").await.1, "one");

    // No grant, or a store not granted: access denied, the node serves on.
    let denied = call(&node, "/none/probe/kv-get?k").await;
    assert_eq!(denied.0, 500);
    assert!(denied.1.contains("access denied"), "{}", denied.1);
    let other = call(&node, "/a/probe/kv-open?secrets").await;
    assert!(other.1.contains("access denied"), "{}", other.1);
    let log = node.wait_log("not granted to this component");
    assert!(log.contains("not granted to this component"), "{log}");

    // Counters, compare-and-swap, batches, listing, expiry.
    assert_eq!(call(&node, "/a/probe/kv-incr?n=5").await.1, "5");
    assert_eq!(call(&node, "/a/probe/kv-incr?n=-2").await.1, "3");
    let not_int = call(&node, "/a/probe/kv-incr?k=1").await;
    assert!(
        not_int.1.contains("is not a decimal integer"),
        "{}",
        not_int.1
    );
    assert_eq!(call(&node, "/a/probe/kv-cas?c=-:x").await.1, "true");
    assert_eq!(call(&node, "/a/probe/kv-cas?c=-:y").await.1, "false");
    assert_eq!(call(&node, "/a/probe/kv-cas?c=x:y").await.1, "true");
    assert_eq!(call(&node, "/a/probe/kv-get?c").await.1, "y");
    assert_eq!(
        call(&node, "/a/probe/kv-batch").await.1,
        "b1=1,b2=2,- then b1 exists=false"
    );
    assert_eq!(call(&node, "/a/probe/kv-keys").await.1, "b2,c,k,n");
    assert_eq!(call(&node, "/a/probe/kv-ttl?t=150").await.1, "ok");
    assert_eq!(call(&node, "/a/probe/kv-exists?t").await.1, "true");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(call(&node, "/a/probe/kv-exists?t").await.1, "false");

    // Over the limits: a clear error to the guest.
    let big = call(&node, "/a/probe/kv-big?huge").await;
    assert_eq!(big.0, 500);
    assert!(big.1.contains("values may be at most 1047552"), "{}", big.1);
    let long_key = format!("/a/probe/kv-set?{}=v", "k".repeat(1500));
    assert!(
        call(&node, &long_key)
            .await
            .1
            .contains("keys may be at most 1024")
    );

    // Concurrent read-modify-writes through CAS all land.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let url = node.url(&format!("/a/probe/kv-append?log={}", (b'a' + i) as char));
        tasks.push(tokio::spawn(async move { get(&url).await.status }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let log = call(&node, "/a/probe/kv-get?log").await.1;
    assert_eq!(log.len(), 20, "lost an append: {log}");

    // Acknowledged writes survive a SIGKILL.
    assert_eq!(
        call(&node, "/a/probe/kv-set?last=before-kill").await.1,
        "ok"
    );
    node.kill9();
    let node = NodeProc::start(s.path(), &[]);
    assert_eq!(call(&node, "/a/probe/kv-get?last").await.1, "before-kill");
    assert_eq!(call(&node, "/b/probe/kv-get?k").await.1, "two");
}

#[tokio::test(flavor = "multi_thread")]
async fn nubo_kv_reads_and_writes_a_store() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let app = kv_app("cli", "/", "\"default\", \"sessions\"");
    node.apply(&app);
    assert_eq!(call(&node, "/probe/kv-set?from-guest=1").await.1, "ok");

    let (code, out, err) = node.cli(&["kv", "set", "cli", "a/b:c", "hello"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = node.cli(&["kv", "get", "cli", "a/b:c"], &[]);
    assert_eq!(out, "hello");
    assert_eq!(
        call(&node, "/probe/kv-get?a/b:c").await.1,
        "hello",
        "the guest sees it"
    );
    let (_, out, _) = node.cli(&["kv", "ls", "cli"], &[]);
    assert_eq!(out, "a/b:c\nfrom-guest\n");
    let (_, out, _) = node.cli(&["kv", "ls", "cli", "--prefix", "from"], &[]);
    assert_eq!(out, "from-guest\n");
    let (code, _, err) = node.cli(&["kv", "del", "cli", "a/b:c"], &[]);
    assert_eq!(code, 0);
    assert!(
        err.contains("deleted `a/b:c` from store `default`"),
        "{err}"
    );
    // Again: still success (as Redis' DEL), and it says there was none.
    let (code, _, err) = node.cli(&["kv", "del", "cli", "a/b:c"], &[]);
    assert_eq!(code, 0);
    assert!(
        err.contains("no key `a/b:c` in store `default`: nothing to delete"),
        "{err}"
    );
    let (code, _, err) = node.cli(&["kv", "get", "cli", "a/b:c"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no key `a/b:c` in store `default` of app `cli`"),
        "{err}"
    );
    let (code, _, err) = node.cli(&["kv", "ls", "cli", "--store", "Bad Name"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid store name"), "{err}");
    let (_, out, _) = node.cli(
        &[
            "kv", "set", "cli", "s", "v", "--store", "sessions", "--ttl", "60",
        ],
        &[],
    );
    assert_eq!(out, "");
    let (_, out, _) = node.cli(&["kv", "get", "cli", "s", "--store", "sessions"], &[]);
    assert_eq!(out, "v");
}

#[tokio::test(flavor = "multi_thread")]
async fn nubo_kv_refuses_what_the_app_does_not_declare() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&kv_app("typos", "/", "\"default\", \"sessions\""));
    let refused = |args: &[&str], want: &str| {
        let (code, out, err) = node.cli(args, &[]);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
    };
    refused(
        &["kv", "set", "typos", "k", "v", "--store", "sesions"],
        "app `typos` has no key-value store `sesions`: it has `default`, `sessions`",
    );
    refused(
        &["kv", "set", "typo", "k", "v"],
        "no app `typo` on this node",
    );
    refused(&["kv", "ls", "typo"], "no app `typo` on this node");
    refused(&["kv", "set", "typos", "", "v"], "the key is empty");
    refused(&["kv", "del", "typos", ""], "the key is empty");
    let long = "k".repeat(1025);
    refused(&["kv", "get", "typos", &long], "keys may be at most 1024");
    // Nothing was created on the way: the store lists no keys.
    let (code, out, _) = node.cli(&["kv", "ls", "typos"], &[]);
    assert_eq!((code, out.as_str()), (0, ""));

    // Pointed at the app's port instead of the control API.
    let out = nubo()
        .args([
            "kv", "get", "typos", "k", "--node", &node.http, "--token", "x",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("not a Nubo control API"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_write_survives_sigkill_under_load() {
    let s = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(s.path(), &[]);
    let app = kv_app("load", "/", "\"default\"");
    node.apply(&app);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let base = node.url("/probe/kv-set");
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("w{w}-{i}");
                // A connection error is the kill: that write was never acknowledged.
                let Ok(Ok(r)) = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    tokio::spawn({
                        let url = format!("{base}?{key}=x");
                        async move { common::request("GET", &url, &[], b"").await }
                    }),
                )
                .await
                else {
                    break;
                };
                if r.status == 200 && r.text() == "ok" {
                    acked.push(key);
                }
                i += 1;
            }
            acked
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    node.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap_or_default());
    }
    assert!(acked.len() > 50, "the writers barely ran: {}", acked.len());
    let node = NodeProc::start(s.path(), &[]);
    let (code, listed, err) = node.cli(&["kv", "ls", "load"], &[]);
    assert_eq!(code, 0, "{err}");
    let present: std::collections::HashSet<&str> = listed.lines().collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|k| !present.contains(k.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}
