//! The `nubo` command as a user types it: check, build, up, errors, help,
//! shutdown, compile cache, malformed HTTP.

mod common;
use common::*;
use std::time::Duration;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = nubo().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_has_help_with_an_example() {
    let (code, top, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(top.contains("Example"), "{top}");
    // Every command `nubo --help` lists, so a new one cannot be missed.
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 13, "{commands:?}");
    for c in commands {
        let (code, out, _) = run(&[c, "--help"]);
        assert_eq!(code, 0, "{c}");
        assert!(
            out.contains("Example"),
            "nubo {c} --help has no example: {out}"
        );
    }
}

#[test]
fn check_reports_every_problem_with_its_location() {
    let app = AppDir::new(
        r#"[app]
name = "demo"

[component.web]
source = "missing.wasm"
key_value_stores = ["default", "Bad Name"]
blob_containers = ["uploads"]
queues = ["mail"]
topics = ["chat", "chat"]
tasks = ["worker"]
key_value_store = ["default"]

[[http]]
route = "/a"
component = "wbe"
"#,
    );
    let (code, _, err) = run(&["check", app.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("7 problems in the definition file"), "{err}");
    // Each capability's grant, checked by its own rule where it is written.
    for problem in [
        "nubo.toml:6:32: invalid key-value store name `Bad Name`",
        "nubo.toml:8:11: queue `mail` is not declared\n  hint: declare it: [queue.mail]",
        "nubo.toml:9:19: topic `chat` is listed twice",
        "nubo.toml:10:10: `tasks` names unknown component `worker`",
        "nubo.toml:11:1: unknown key `key_value_store` in a component\n  hint: did you mean `key_value_stores`?",
    ] {
        assert!(err.contains(problem), "{problem}\n{err}");
    }
    assert!(
        err.contains("nubo.toml:5:10: component source `missing.wasm` does not exist"),
        "{err}"
    );
    assert!(
        err.contains("nubo.toml:15:13: unknown component `wbe`\n  hint: did you mean `web`?"),
        "{err}"
    );
}

#[test]
fn check_accepts_a_valid_app() {
    let app = AppDir::new(&probe_app("", ""));
    let out = nubo()
        .args(["check"])
        .arg(app.path())
        .env("NUBO_VAR_SECRET", "x")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "ok: app `probe-app`: 1 component(s), 1 route(s)"
    );
}

#[test]
fn missing_required_variable_stops_up_before_serving() {
    let app = AppDir::new(&probe_app("", ""));
    let (code, out, err) = run(&[
        "up",
        app.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1);
    assert!(!out.contains("serving"), "{out}");
    assert!(
        err.contains("required variable `secret` is not set"),
        "{err}"
    );
    assert!(err.contains("export NUBO_VAR_SECRET=..."), "{err}");
}

#[test]
fn invalid_wasm_is_refused_with_the_reason() {
    // What the first bytes show is pointed at in nubo.toml; the rest is
    // the runtime's full check when it loads the component.
    for (bytes, expect) in [
        (
            &b"\0asm\x01\0\0\0"[..],
            "nubo.toml:4:10: component source `c.wasm` is a core WebAssembly module, not a component",
        ),
        (
            &b"hello, not wasm"[..],
            "nubo.toml:4:10: component source `c.wasm` is not WebAssembly",
        ),
        (&b"\0asm\x0d\0\x01\0garbage"[..], "component `c`: "),
    ] {
        let app = AppDir::new(
            "[app]\nname = \"bad\"\n[component.c]\nsource = \"c.wasm\"\n[[http]]\nroute = \"/...\"\ncomponent = \"c\"\n",
        );
        app.write("c.wasm", bytes);
        let (code, out, err) = run(&[
            "up",
            app.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(!out.contains("serving"), "{out}");
        assert!(err.contains(expect), "{err}");
    }
}

#[test]
fn build_failure_is_reported_and_nothing_serves() {
    let app = AppDir::new(
        "[app]\nname = \"b\"\n[component.c]\nsource = \"out.wasm\"\nbuild = { command = \"echo compiling; exit 3\" }\n",
    );
    let (code, out, err) = run(&[
        "up",
        app.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains("[1/1] building `c`: echo compiling; exit 3"),
        "{out}"
    );
    assert!(out.contains("compiling"), "{out}");
    assert!(err.contains("the build of `c` failed"), "{err}");
    assert!(!out.contains("serving"));
}

#[test]
fn build_runs_commands_in_their_workdir() {
    let app = AppDir::new(
        "[app]\nname = \"b\"\n[component.c]\nsource = \"sub/out.wasm\"\nbuild = { command = \"pwd > where.txt\", workdir = \"sub\" }\n",
    );
    std::fs::create_dir(app.path().join("sub")).unwrap();
    let (code, out, err) = run(&["build", app.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let where_ = std::fs::read_to_string(app.path().join("sub/where.txt")).unwrap();
    assert!(where_.trim().ends_with("/sub"), "{where_}");
}

#[test]
fn busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let app = AppDir::new("[app]\nname = \"p\"\n[[static]]\nroute = \"/\"\ndir = \".\"\n");
    let (code, _, err) = run(&["up", app.path().to_str().unwrap(), "--listen", &addr]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("cannot listen for HTTP on {addr}")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_lets_in_flight_requests_finish() {
    let app = AppDir::new(&probe_app("", ""));
    let mut node = Node::up_with(app.path(), &[], &[("NUBO_VAR_SECRET", "x")]);
    let url = node.url("/probe/sleep?1500");
    let inflight = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    node.signal(libc::SIGINT);
    let r = inflight.await.unwrap();
    assert_eq!((r.status, r.text()), (200, "slept 1500".to_string()));
    let status = tokio::task::spawn_blocking(move || {
        let s = node.child.wait().unwrap();
        (s, node.stdout.lock().unwrap().clone())
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{status:?}");
    assert!(status.1.contains("stopped"), "{}", status.1);
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_components_are_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let app = AppDir::new(&probe_app("", ""));
    let env = [
        ("NUBO_VAR_SECRET", "x"),
        ("NUBO_CACHE_DIR", cache.path().to_str().unwrap()),
        ("NUBO_LOG", "info,nubo_wasm=debug"),
    ];
    let node = Node::up_with(app.path(), &[], &env);
    let log = node.wait_log("cached=false");
    assert!(log.contains("cached=false"), "{log}");
    drop(node);
    let files: Vec<_> = std::fs::read_dir(cache.path()).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    assert!(files[0].file_name().to_string_lossy().ends_with(".cwasm"));
    let node = Node::up_with(app.path(), &[], &env);
    let log = node.wait_log("cached=true");
    assert!(log.contains("cached=true"), "{log}");
    assert_eq!(get(&node.url("/probe/echo")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_http_gets_400_and_the_node_serves_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = AppDir::new(&probe_app("", ""));
    let node = Node::up_with(app.path(), &[], &[("NUBO_VAR_SECRET", "x")]);
    for junk in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nbad header line\r\n\r\n",
        b"GET /probe/echo HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        let mut s = tokio::net::TcpStream::connect(node.addr).await.unwrap();
        s.write_all(junk).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 400"),
            "{text}"
        );
    }
    assert_eq!(get(&node.url("/probe/echo")).await.status, 200);
}

/// A stand-in `rustup` on PATH that reports the wasm target missing and
/// records the install, since the real target cannot be removed mid-test.
#[cfg(unix)]
#[test]
fn missing_wasm_target_is_installed_with_rustup() {
    use std::os::unix::fs::PermissionsExt;
    let bin = tempfile::tempdir().unwrap();
    let marker = bin.path().join("added");
    let script = format!(
        "#!/bin/sh\nif [ \"$1 $2\" = \"target list\" ]; then echo x86_64-unknown-linux-gnu; exit 0; fi\nif [ \"$1 $2 $3\" = \"target add wasm32-wasip2\" ]; then touch {}; exit 0; fi\nexit 1\n",
        marker.display()
    );
    let rustup = bin.path().join("rustup");
    std::fs::write(&rustup, script).unwrap();
    std::fs::set_permissions(&rustup, std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = AppDir::new(
        "[app]\nname = \"t\"\n[component.c]\nsource = \"c.wasm\"\nbuild = { command = \"echo cargo build --target wasm32-wasip2\" }\n",
    );
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let out = nubo()
        .args(["build"])
        .arg(app.path())
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("installing the wasm32-wasip2 target: rustup target add wasm32-wasip2"),
        "{stdout}"
    );
    assert!(marker.exists(), "rustup target add was not run");
}

#[cfg(unix)]
#[test]
fn without_rustup_the_exact_command_is_printed() {
    let empty = tempfile::tempdir().unwrap();
    let app = AppDir::new(
        "[app]\nname = \"t\"\n[component.c]\nsource = \"c.wasm\"\nbuild = { command = \"cargo build --target wasm32-wasip2\" }\n",
    );
    let out = nubo()
        .args(["build"])
        .arg(app.path())
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("the Rust target wasm32-wasip2 is not installed and rustup is not available"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rustup target add wasm32-wasip2"),
        "{stderr}"
    );
}
