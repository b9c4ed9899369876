//! Per-request cost of a fresh instance: instantiate the pre-instantiated
//! component, run its handler, collect the response. Side by side with the
//! same work on an engine without the pooling allocator, so the report shows
//! what pooling buys, and with a component that reads the request body and
//! formats its answer (`plain`), to show what a less trivial guest costs.
//! (A task's run through the task export is measured end to end by
//! `bench/tasks.sh`.)
//!
//! Beside `hello/pooling` run its baseline, `bare/hello`: the same
//! component on the same engine served with wasmtime-wasi-http alone
//! (`bare.rs`), and `bare/instantiate-drop`, a store and instance made and
//! dropped with no request, the floor a fresh instance per request cannot
//! go under.
//!
//! Run: `cargo bench -p nubo-wasm --bench instantiate`

mod bare;
#[path = "../tests/support/mod.rs"]
mod support;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use nubo_wasm::Component;
use support::load;

/// One `GET /`.
async fn one_request(component: &Component) -> usize {
    let body =
        Full::new(Bytes::new()).map_err(|never| -> wasmtime_wasi_http::Error { match never {} });
    let req = hyper::Request::builder()
        .uri("http://bench.local/")
        .body(body)
        .expect("request");
    let resp = component.handle(req, "bench").await.expect("response");
    bare::body_len(resp).await
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let mut group = c.benchmark_group("instantiate+handle");
    for (name, wasm, pooling) in [
        ("hello/pooling", "hello", true),
        ("hello/on-demand", "hello", false),
        ("plain-echo/pooling", "plain", true),
    ] {
        let (_runtime, component) = load(pooling, wasm);
        assert!(rt.block_on(one_request(&component)) > 0);
        group.bench_function(name, |b| b.to_async(&rt).iter(|| one_request(&component)));
    }
    // A runtime only for its engine: Nubo's settings, no component loaded.
    let runtime =
        nubo_wasm::Runtime::new(nubo_wasm::RuntimeOptions::default(), &[]).expect("runtime");
    let pre = bare::load(runtime.engine(), &support::component("hello"));
    assert!(rt.block_on(bare::one_request(&pre)) > 0);
    group.bench_function("bare/hello", |b| {
        b.to_async(&rt).iter(|| bare::one_request(&pre))
    });
    group.bench_function("bare/instantiate-drop", |b| {
        b.to_async(&rt).iter(|| bare::instantiate_drop(&pre))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
