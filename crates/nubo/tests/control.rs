//! `nubo node`, its control API, and `nubo plan / apply / rollback / ps /
//! logs`, through the real binary and real HTTP.

mod common;

use common::control::{NodeProc, probe_app};
use common::{get, request, wasm};
use std::time::Duration;

fn state() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_needs_the_token_and_says_what_is_wrong() {
    let s = state();
    let node = NodeProc::start(s.path(), &["--max-upload-mb", "1"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.path().join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let apps = format!("{}/v1/apps", node.control);
    let none = get(&apps).await;
    assert_eq!(none.status, 401);
    assert!(
        none.text()
            .contains("missing `Authorization: Bearer TOKEN`"),
        "{}",
        none.text()
    );
    let wrong = request("GET", &apps, &[("authorization", "Bearer nope")], b"").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("wrong token"));
    // Even the OpenAPI document and unknown paths are behind the token.
    assert_eq!(
        get(&format!("{}/v1/openapi.json", node.control))
            .await
            .status,
        401
    );

    assert_eq!(node.api("GET", "/v1/apps", "").await.text(), "[]");
    let doc = node.json("/v1/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");

    let bad = node.api("POST", "/v1/apps/x/changes", "{not json").await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("malformed JSON body"), "{}", bad.text());
    let unknown = node
        .api(
            "POST",
            "/v1/apps/x/changes",
            r#"{"steps":[{"op":"explode"}]}"#,
        )
        .await;
    assert_eq!(unknown.status, 400);
    assert!(
        unknown.text().contains("unknown variant `explode`"),
        "{}",
        unknown.text()
    );
    let missing = node
        .api("POST", "/v1/apps/x/changes", r#"{"steps":[{"op":"create_app","name":"x","settings":{}},{"op":"add_component","name":"c","component":{"digest":"0000000000000000000000000000000000000000000000000000000000000000"}}]}"#)
        .await;
    assert_eq!(missing.status, 400);
    assert!(
        missing.text().contains("was never uploaded"),
        "{}",
        missing.text()
    );
    assert_eq!(
        node.api("GET", "/v1/apps/x", "").await.status,
        404,
        "nothing half-applied"
    );

    let big = vec![0u8; 2 << 20];
    let digest = sha256(&big);
    let auth = format!("Bearer {}", node.token());
    let r = request(
        "PUT",
        &format!("{}/v1/files/{digest}", node.control),
        &[("authorization", &auth)],
        &big,
    )
    .await;
    assert_eq!(r.status, 413);
    assert!(
        r.text().contains("larger than this node accepts (1 MiB"),
        "{}",
        r.text()
    );

    let not_wasm = b"hello".to_vec();
    let r = request(
        "PUT",
        &format!("{}/v1/components/{}", node.control, sha256(&not_wasm)),
        &[("authorization", &auth)],
        &not_wasm,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("is not a WebAssembly component"),
        "{}",
        r.text()
    );
    // A core module is named so, with a code the CLI acts on.
    let core = b"\0asm\x01\0\0\0".to_vec();
    let r = request(
        "PUT",
        &format!("{}/v1/components/{}", node.control, sha256(&core)),
        &[("authorization", &auth)],
        &core,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let why: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(why["code"], "core_module", "{why}");
    let r = request(
        "PUT",
        &format!("{}/v1/files/{}", node.control, sha256(b"other")),
        &[("authorization", &auth)],
        b"bytes",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("the body's sha256 is"), "{}", r.text());

    let wasm_bytes = std::fs::read(wasm("probe")).unwrap();
    let url = format!("{}/v1/components/{}", node.control, sha256(&wasm_bytes));
    let s2 = state();
    let small = NodeProc::start(s2.path(), &[]);
    let auth2 = format!("Bearer {}", small.token());
    let url2 = url.replace(&node.control, &small.control);
    assert_eq!(
        request("PUT", &url2, &[("authorization", &auth2)], &wasm_bytes)
            .await
            .status,
        201
    );
    assert_eq!(
        request("PUT", &url2, &[("authorization", &auth2)], &wasm_bytes)
            .await
            .status,
        200,
        "idempotent"
    );
    assert_eq!(
        request("HEAD", &url2, &[("authorization", &auth2)], b"")
            .await
            .status,
        200
    );
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_apply_and_rollback_like_terraform() {
    let s = state();
    let node = NodeProc::start(s.path(), &[]);
    let app = probe_app("demo", "");
    let dir = app.path().to_str().unwrap();

    let (code, out, err) = node.cli(&["plan", dir], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("+ upload component probe"), "{out}");
    assert!(out.contains("+ app demo"), "{out}");
    assert!(
        out.contains("+ route /probe/... → component probe"),
        "{out}"
    );
    assert!(
        out.contains("Plan: 5 to add, 0 to change, 0 to remove."),
        "{out}"
    );

    let (code, out, err) = node.cli(&["apply", dir, "--auto-approve"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("app `demo` is at revision 1"), "{out}");
    assert!(err.contains("uploading 1/1: probe.wasm"), "progress: {err}");
    assert_eq!(
        get(&node.url("/probe/config?greeting")).await.text(),
        "hello"
    );

    let (code, out, _) = node.cli(&["plan", dir], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is up to date (revision 1)"), "{out}");

    // Without a terminal, apply refuses to go on unasked.
    let env = [("NUBO_VAR_GREETING", "bonjour")];
    let (code, _, err) = node.cli(&["apply", dir, "--no-build"], &env);
    assert_eq!(code, 1);
    assert!(err.contains("pass --auto-approve"), "{err}");

    let (code, out, _) = node.cli(&["plan", dir], &env);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("~ variable greeting = \"bonjour\" (restarts probe: reads it)"),
        "{out}"
    );
    assert!(
        out.contains("Plan: 0 to add, 1 to change, 0 to remove."),
        "{out}"
    );
    let (code, out, err) = node.cli(&["apply", dir, "--auto-approve"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        get(&node.url("/probe/config?greeting")).await.text(),
        "bonjour"
    );

    let (code, out, _) = node.cli(&["ps"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("demo"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("demo")
            && l.contains(" 2 ")
            && l.contains("probe")
            && l.contains("running")),
        "{out}"
    );

    let (code, out, err) = node.cli(&["rollback", "demo"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("now at revision 3"), "{out}");
    assert_eq!(
        get(&node.url("/probe/config?greeting")).await.text(),
        "hello"
    );

    let history = node.json("/v1/apps/demo/revisions").await;
    assert_eq!(history.as_array().unwrap().len(), 3);

    // The other way in: PUT a whole definition, and the node plans it.
    let mut def = node.json("/v1/apps/demo").await["definition"].clone();
    def["variables"]["greeting"]["value"] = "put".into();
    let body = serde_json::json!({ "expected_revision": 3, "definition": def }).to_string();
    let r = node.api("PUT", "/v1/apps/demo", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let changed: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(changed["revision"], 4);
    assert_eq!(changed["steps"][0]["op"], "set_variable");
    assert_eq!(get(&node.url("/probe/config?greeting")).await.text(), "put");
    let stale = node.api("PUT", "/v1/apps/demo", &body).await;
    assert_eq!(stale.status, 409, "{}", stale.text());
    let why: serde_json::Value = serde_json::from_slice(&stale.body).unwrap();
    assert_eq!(why["code"], "stale", "{why}");
    let (code, out, _) = node.cli(&["rollback", "demo"], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        get(&node.url("/probe/config?greeting")).await.text(),
        "hello"
    );
    let (code, _, err) = node.cli(&["rollback", "nope"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("no app `nope`"), "{err}");
    assert!(
        err.contains("hint: `nubo ps` lists the apps on a node"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_planned_by_digest_and_never_shown() {
    let s = state();
    let node = NodeProc::start(s.path(), &[]);
    let app = probe_app("sec", "");
    let text = std::fs::read_to_string(app.path().join("nubo.toml")).unwrap();
    std::fs::write(
        app.path().join("nubo.toml"),
        text.replace(
            "version = { default = \"1\" }",
            "version = { required = true, secret = true }",
        ),
    )
    .unwrap();
    let dir = app.path().to_str().unwrap();
    let env = [("NUBO_VAR_VERSION", "s3cr3t")];
    let (code, out, err) = node.cli(&["apply", dir, "--auto-approve"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("variable version = (secret)"), "{out}");
    assert!(!out.contains("s3cr3t"));
    assert_eq!(
        get(&node.url("/probe/config?version")).await.text(),
        "s3cr3t"
    );
    let shown = node.api("GET", "/v1/apps/sec", "").await.text();
    assert!(
        !shown.contains("s3cr3t") && shown.contains("sha256:"),
        "{shown}"
    );
    assert!(
        !node
            .api("GET", "/v1/apps/sec/revisions", "")
            .await
            .text()
            .contains("s3cr3t")
    );
    let (code, out, _) = node.cli(&["plan", dir], &env);
    assert_eq!(code, 0, "same secret, no change: {out}");
    let (code, out, _) = node.cli(&["plan", dir], &[("NUBO_VAR_VERSION", "other")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("~ variable version = (secret)"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn many_apps_by_host_and_base_and_they_survive_a_restart() {
    let s = state();
    let mut node = NodeProc::start(s.path(), &[]);
    let root = probe_app("root", "");
    let shop = probe_app("shop", "base = \"/shop\"");
    let blog = probe_app("blog", "hosts = [\"blog.test\"]");
    for (app, greeting) in [(&root, "root"), (&shop, "shop"), (&blog, "blog")] {
        let (code, out, err) = node.cli(
            &["apply", app.path().to_str().unwrap(), "--auto-approve"],
            &[("NUBO_VAR_GREETING", greeting)],
        );
        assert_eq!(code, 0, "{out}{err}");
    }
    let check = |node: &NodeProc| {
        let root = node.url("/probe/config?greeting");
        let shop = node.url("/shop/probe/config?greeting");
        async move {
            assert_eq!(get(&root).await.text(), "root");
            assert_eq!(get(&shop).await.text(), "shop");
            let blog = request("GET", &root, &[("host", "Blog.test:80")], b"").await;
            assert_eq!(blog.text(), "blog");
        }
    };
    check(&node).await;
    let base = get(&node.url("/shop/probe/echo")).await;
    assert_eq!(base.status, 200);

    // A fourth app on the root of every host collides with `root`.
    let clash = probe_app("clash", "");
    let (code, _, err) = node.cli(
        &["apply", clash.path().to_str().unwrap(), "--auto-approve"],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("app `root` already serves base `/` on every host"),
        "{err}"
    );
    assert_eq!(node.api("GET", "/v1/apps/clash", "").await.status, 404);

    node.kill9();
    let node = NodeProc::start(s.path(), &[]);
    check(&node).await;
    assert_eq!(node.json("/v1/apps").await.as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_changes_are_caught_by_the_revision() {
    let s = state();
    let node = NodeProc::start(s.path(), &[]);
    let app = probe_app("race", "");
    node.apply(&app);
    let change = |v: &str| {
        format!(
            r#"{{"expected_revision":1,"steps":[{{"op":"set_variable","name":"greeting","value":"{v}"}},{{"op":"set_variable","name":"version","value":"{v}"}}]}}"#
        )
    };
    let (ca, cb) = (change("a"), change("b"));
    let (a, b) = tokio::join!(
        node.api("POST", "/v1/apps/race/changes", &ca),
        node.api("POST", "/v1/apps/race/changes", &cb),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} / {}", a.text(), b.text());
    let loser = if a.status == 409 { &a } else { &b };
    assert!(
        loser
            .text()
            .contains("is at revision 2, but the change was planned against revision 1"),
        "{}",
        loser.text()
    );
    // The winner's change is whole: both variables from the same request.
    let g = get(&node.url("/probe/config?greeting")).await.text();
    let v = get(&node.url("/probe/config?version")).await.text();
    assert_eq!(g, v);
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_and_start_a_component_and_follow_its_logs() {
    let s = state();
    let node = NodeProc::start(s.path(), &[]);
    let app = probe_app("logs", "");
    node.apply(&app);

    let mut follow = common::nubo()
        .args([
            "logs",
            "logs",
            "--component",
            "probe",
            "-f",
            "--node",
            &node.control,
        ])
        .arg("--state")
        .arg(&node.state)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(&node.url("/probe/log")).await.status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = follow.kill();
    let out = follow.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("probe probe says"), "{out}");
    assert!(out.contains("probe ! probe warns"), "{out}");
    let (_, recent, _) = node.cli(&["logs", "logs"], &[]);
    assert!(recent.contains("probe says"), "{recent}");

    let r = node
        .api("POST", "/v1/apps/logs/components/probe/stop", "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let stopped = get(&node.url("/probe/echo")).await;
    assert_eq!(stopped.status, 503);
    assert!(stopped.text().contains("component is stopped"));
    let (_, ps, _) = node.cli(&["ps"], &[]);
    assert!(ps.contains("stopped"), "{ps}");
    assert_eq!(
        node.api("POST", "/v1/apps/logs/components/probe/start", "")
            .await
            .status,
        200
    );
    assert_eq!(get(&node.url("/probe/echo")).await.status, 200);
    let r = node
        .api(
            "PUT",
            "/v1/apps/logs/variables/greeting",
            r#"{"value":"hey"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(&node.url("/probe/config?greeting")).await.text(), "hey");
    let r = node
        .api(
            "PUT",
            "/v1/apps/logs/components/probe/config/greeting",
            r#"{"value":"literal"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        get(&node.url("/probe/config?greeting")).await.text(),
        "literal"
    );
    assert_eq!(node.api("DELETE", "/v1/apps/logs", "").await.status, 200);
    assert_eq!(get(&node.url("/probe/echo")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_node_on_a_state_dir_in_use_is_refused() {
    let dir = state();
    let first = NodeProc::start(dir.path(), &[]);
    let out = common::nubo()
        .arg("node")
        .arg("--state")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let pid = first.child.id();
    assert!(
        err.contains(&format!("is in use by another node (pid {pid})")),
        "{err}"
    );
    assert!(err.contains("--state DIR"), "{err}");
    // The first node still answers, with its own token.
    let auth = format!("Bearer {}", first.token());
    let apps = format!("{}/v1/apps", first.control);
    let reply = request("GET", &apps, &[("authorization", &auth)], b"").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    drop(first);
    // A killed node leaves no lock behind.
    let again = NodeProc::start(dir.path(), &[]);
    let reply = request(
        "GET",
        &format!("{}/v1/apps", again.control),
        &[("authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// The control API refuses exactly what `nubo check` refuses: a `[tasks]`
/// limit, a queue setting, a component limit out of range or a grant
/// its capability refuses is an error in both, with the same words.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_and_check_refuse_the_same_numbers() {
    let s = state();
    let node = NodeProc::start(s.path(), &[]);
    let app = probe_app("same", "");
    node.apply(&app);
    let settings = r#"{"expected_revision":1,"steps":[{"op":"set_section","key":"tasks","value":{"max_running":0}}]}"#;
    let r = node.api("POST", "/v1/apps/same/changes", settings).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text()
            .contains("`max_running` must be between 1 and 10000, got 0"),
        "{}",
        r.text()
    );
    let queues = r#"{"expected_revision":1,"steps":[{"op":"set_section","key":"queues","value":{"jobs":{"consumer":"probe","path":"/probe/q-recv","concurrency":5000,"max_attempts":5,"visibility_timeout_ms":30000,"backoff_ms":1000}}}]}"#;
    let r = node.api("POST", "/v1/apps/same/changes", queues).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text()
            .contains("`concurrency` must be between 1 and 1000, got 5000"),
        "{}",
        r.text()
    );
    // A section no capability of the node owns is refused, not stored.
    let unknown = r#"{"expected_revision":1,"steps":[{"op":"set_section","key":"qeueus","value":{"jobs":{}}}]}"#;
    let r = node.api("POST", "/v1/apps/same/changes", unknown).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("unknown key `qeueus`"), "{}", r.text());

    // Grants obey their capability's rule in the API as in the file.
    let digest = sha256(&std::fs::read(common::wasm("probe")).unwrap());
    let grants = format!(
        r#"{{"expected_revision":1,"steps":[{{"op":"replace_component","name":"probe","reasons":[],"component":{{"digest":"{digest}","topics":["chat","chat"],"tasks":["ghost"],"key_value_store":["x"]}}}}]}}"#
    );
    let r = node.api("POST", "/v1/apps/same/changes", &grants).await;
    assert_eq!(r.status, 400, "{}", r.text());
    for problem in [
        "component `probe`: topic `chat` is listed twice",
        "component `probe`: `tasks` names unknown component `ghost`",
        "component `probe`: unknown grant `key_value_store`",
    ] {
        assert!(r.text().contains(problem), "{problem}: {}", r.text());
    }

    let toml = std::fs::read_to_string(app.path().join("nubo.toml")).unwrap();
    std::fs::write(
        app.path().join("nubo.toml"),
        format!("{toml}\n[tasks]\nmax_running = 0\n[queue.jobs]\nconsumer = \"probe\"\nconcurrency = 5000\n"),
    )
    .unwrap();
    let out = common::nubo()
        .args(["check"])
        .arg(app.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("`max_running` must be between 1 and 10000, got 0"),
        "{err}"
    );
    assert!(
        err.contains("`concurrency` must be between 1 and 1000, got 5000"),
        "{err}"
    );
}
