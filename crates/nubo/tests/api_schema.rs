//! The control API checked against its own OpenAPI document with
//! schemathesis (PyPI): generated valid and invalid requests to every
//! operation, stateful sequences along the document's links, and every
//! answer checked for a documented status, content type, headers and
//! schema, and that no request makes the node fail (5xx).
//!
//! One check is left out: `positive_data_acceptance` expects every request
//! the schema allows to succeed, but the API validates more than a schema
//! can say (an upload whose body must hash to the digest in its URL, a
//! definition that must name the app in the URL, a wasm file that must be
//! a component) and answers those with a documented 400.
//!
//! schemathesis is installed once into `target/tools` (a Python venv); the
//! test needs `python3` with `venv`, as CI has.

mod common;

use common::control::NodeProc;
use common::{AppDir, wasm};
use std::path::PathBuf;
use std::process::Command;

const SCHEMATHESIS: &str = "4.32.5";

/// The `st` command of a venv holding schemathesis, made on first use.
fn schemathesis() -> PathBuf {
    let venv = common::repo_root().join(format!("target/tools/schemathesis-{SCHEMATHESIS}"));
    let st = venv.join("bin/st");
    if st.exists() {
        return st;
    }
    eprintln!(
        "installing schemathesis {SCHEMATHESIS} into {} (once)",
        venv.display()
    );
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 is needed for this test: install python3 and python3-venv");
    assert!(made.success(), "python3 -m venv {} failed", venv.display());
    let installed = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            &format!("schemathesis=={SCHEMATHESIS}"),
        ])
        .status()
        .expect("run pip");
    assert!(installed.success(), "pip install schemathesis failed");
    st
}

#[test]
fn the_control_api_keeps_to_its_openapi_document() {
    let st = schemathesis();
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("state"), &[]);
    // An app with a store, a container and a queue, so that requests for
    // it reach past "no such app".
    let app = AppDir::new(&format!(
        r#"
[app]
name = "probe"
[component.probe]
source = "{w}"
key_value_stores = ["default"]
blob_containers = ["files"]
queues = ["jobs"]
[[http]]
route = "/probe/..."
component = "probe"
[queue.jobs]
consumer = "probe"
path = "/probe/q-recv"
"#,
        w = wasm("probe").display()
    ));
    node.apply(&app);
    // Valid requests name what exists, so that they reach past "no such
    // app"; invalid ones vary every parameter, in a run of their own.
    let named = tmp.path().join("named.toml");
    std::fs::write(
        &named,
        r#"
[parameters]
"path.app" = "probe"
"path.store" = "default"
"path.container" = "files"
"path.queue" = "jobs"
"path.component" = "probe"
"#,
    )
    .unwrap();
    let free = tmp.path().join("free.toml");
    std::fs::write(&free, "").unwrap();
    for (mode, config) in [("positive", &named), ("negative", &free)] {
        let out = Command::new(&st)
            .arg("--config-file")
            .arg(config)
            .arg("run")
            .arg(format!("{}/v1/openapi.json", node.control))
            .args([
                "--header",
                &format!("Authorization: Bearer {}", node.token()),
            ])
            .args(["--mode", mode, "--max-examples", "50", "--seed", "1"])
            .args(["--exclude-checks", "positive_data_acceptance"])
            // Followed logs stream until the client leaves, which
            // schemathesis reads as a timeout; `logs` tests cover them.
            .args(["--exclude-path", "/v1/apps/{app}/logs"])
            // Hypothesis is not thread-safe on every Python 3.11.
            .args(["--workers", "1"])
            .env("NO_COLOR", "1")
            // Its cache of crashes goes to the working dir.
            .current_dir(tmp.path())
            .output()
            .expect("run schemathesis");
        assert!(
            out.status.success(),
            "schemathesis ({mode}) found answers that break the OpenAPI document:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
