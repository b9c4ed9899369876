//! Per-request cost of a fresh instance: instantiate the pre-instantiated
//! component, run its handler, collect the response. Side by side with the
//! same work on an engine without the pooling allocator, so the report shows
//! what pooling buys, and with a component that reads the request body and
//! formats its answer (`plain`), to show what a less trivial guest costs,
//! and with the run of a trivial task (`tasker`'s `noop`, through the Rust
//! SDK), the part of a task's round trip spent in its instance: as Nubo
//! runs it, through the component's task export, and as `POST /noop`, the
//! way a component without the export runs it.
//!
//! Run: `cargo bench -p nubo-wasm --bench instantiate`

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use nubo_manifest::Limits;
use nubo_wasm::{ComponentSettings, HttpComponent, Runtime, RuntimeOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

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
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the {name} component failed");
    dir.join(format!("target/wasm32-wasip2/release/{name}.wasm"))
}

fn load(pooling: bool, wasm: &Path) -> (Runtime, HttpComponent) {
    let runtime = Runtime::new(RuntimeOptions {
        pooling,
        ..RuntimeOptions::default()
    })
    .expect("runtime");
    let settings = ComponentSettings {
        app: "bench".into(),
        component: "bench".into(),
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
    let component = runtime
        .load_http(wasm, settings)
        .expect("load the component");
    (runtime, component)
}

/// One request; with `task`, the one a trivial task's run is: `POST
/// /noop` with a JSON payload, as the node sends it to the component.
async fn one_request(component: &HttpComponent, task: bool) -> usize {
    let (method, path, payload) = match task {
        true => ("POST", "noop", &b"7"[..]),
        false => ("GET", "", &b""[..]),
    };
    let body = Full::new(Bytes::from_static(payload))
        .map_err(|never| -> wasmtime_wasi_http::Error { match never {} });
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://bench.local/{path}"));
    if task {
        req = req.header("nubo-task-function", path);
    }
    let req = req.body(body).expect("request");
    let resp = component.handle(req, "bench").await.expect("response");
    resp.into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .len()
}

struct NoHooks;

#[async_trait::async_trait]
impl nubo_tasks::WaitHooks for NoHooks {
    async fn waiting(&self) {}
    async fn resumed(&self) {}
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let mut group = c.benchmark_group("instantiate+handle");
    for (name, wasm, pooling) in [
        ("hello/pooling", "hello", true),
        ("hello/on-demand", "hello", false),
        ("plain-echo/pooling", "plain", true),
        ("task-noop/http", "tasker", true),
    ] {
        let task = wasm == "tasker";
        let (_runtime, component) = load(pooling, &component(wasm));
        assert!(rt.block_on(one_request(&component, task)) > 0);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| one_request(&component, task))
        });
    }
    let (_runtime, tasker) = load(true, &component("tasker"));
    let hooks: std::sync::Arc<dyn nubo_tasks::WaitHooks> = std::sync::Arc::new(NoHooks);
    let caller = nubo_tasks::Caller {
        app: "bench".into(),
        task: Some("t1".into()),
        depth: 0,
    };
    group.bench_function("task-noop/export", |b| {
        b.to_async(&rt).iter(|| async {
            let run = tasker.run_task("noop", b"7", caller.clone(), hooks.clone());
            run.await
                .expect("export")
                .expect("run")
                .expect("noop")
                .len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
