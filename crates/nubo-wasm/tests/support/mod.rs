//! Shared by this crate's tests and its bench: real guest components from
//! `tests/components`, loaded the way a node loads them.
#![allow(dead_code)]

use nubo_wasm::{ComponentSettings, HttpComponent, Runtime, RuntimeOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds test component `name` (release, wasm32-wasip2); its path.
pub fn component(name: &str) -> PathBuf {
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

/// A runtime (with or without the pooling allocator) and test component
/// `name` loaded in it with no grants.
pub fn load(pooling: bool, name: &str) -> (Runtime, HttpComponent) {
    let runtime = Runtime::new(RuntimeOptions {
        pooling,
        ..RuntimeOptions::default()
    })
    .expect("runtime");
    let settings = ComponentSettings {
        app: "t".into(),
        component: name.into(),
        ..Default::default()
    };
    let component = runtime
        .load_http(&component(name), settings)
        .expect("load the component");
    (runtime, component)
}

/// Wait hooks of a task that waits on nothing.
pub struct NoHooks;

#[async_trait::async_trait]
impl nubo_tasks::WaitHooks for NoHooks {
    async fn waiting(&self) {}
    async fn resumed(&self) {}
}

/// A root task's caller, as the node passes it.
pub fn caller() -> nubo_tasks::Caller {
    nubo_tasks::Caller {
        app: "t".into(),
        task: Some("t1".into()),
        depth: 0,
    }
}
