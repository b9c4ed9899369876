//! Tasks through a component's `task-handler` export, against real
//! components built from `tests/components`: the Rust SDK's `tasker` has
//! the export, the plain `wasi:http` component does not.

use nubo_manifest::Limits;
use nubo_wasm::{ComponentSettings, HttpComponent, Runtime, RuntimeOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn component(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/components");
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "-p",
            name,
        ])
        .current_dir(&dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the {name} component failed");
    dir.join(format!("target/wasm32-wasip2/release/{name}.wasm"))
}

fn load(runtime: &Runtime, name: &str) -> HttpComponent {
    let settings = ComponentSettings {
        app: "t".into(),
        component: name.into(),
        config: Default::default(),
        allowed_outbound_hosts: vec![],
        limits: Limits::default(),
        logs: None,
        kv: None,
        blobs: None,
        queues: None,
        topics: None,
        tasks: None,
    };
    runtime.load_http(&component(name), settings).expect("load")
}

struct NoHooks;

#[async_trait::async_trait]
impl nubo_tasks::WaitHooks for NoHooks {
    async fn waiting(&self) {}
    async fn resumed(&self) {}
}

fn caller() -> nubo_tasks::Caller {
    nubo_tasks::Caller {
        app: "t".into(),
        task: Some("t1".into()),
        depth: 0,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_components_run_tasks_directly_and_others_do_not() {
    let runtime = Runtime::new(RuntimeOptions::default()).expect("runtime");
    let tasker = load(&runtime, "tasker");
    let hooks: Arc<dyn nubo_tasks::WaitHooks> = Arc::new(NoHooks);

    let run = tasker.run_task("noop", b"7", caller(), hooks.clone()).await;
    assert_eq!(
        run.expect("tasker has the export").unwrap(),
        Ok(b"7".to_vec())
    );
    let run = tasker
        .run_task("count_words", b"\"a b c\"", caller(), hooks.clone())
        .await;
    assert_eq!(run.unwrap().unwrap(), Ok(b"3".to_vec()));
    // What the function cannot run is its failure, not a trap.
    let run = tasker
        .run_task("noop", b"not json", caller(), hooks.clone())
        .await;
    let err = run.unwrap().unwrap().unwrap_err();
    assert!(err.starts_with("bad payload for noop"), "{err}");
    let run = tasker.run_task("nope", b"1", caller(), hooks.clone()).await;
    let err = run.unwrap().unwrap().unwrap_err();
    assert!(err.contains("no task function `nope` here"), "{err}");
    // A trap is an error of the run (retried by the runner).
    let run = tasker
        .run_task("always_traps", b"1", caller(), hooks.clone())
        .await;
    assert!(run.unwrap().is_err());

    let plain = load(&runtime, "plain");
    assert!(
        plain
            .run_task("noop", b"7", caller(), hooks)
            .await
            .is_none()
    );
}
