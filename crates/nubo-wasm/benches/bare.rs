//! The baseline for `hello/pooling`: the same component on the same engine,
//! served the way wasmtime-wasi-http's own documentation does it, with no
//! Nubo code on the path (no limits, deadlines, log capture, grants or
//! slots). `bare/instantiate-drop` is the floor under both: a store, an
//! instance and dropping them, with no request at all.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub struct Bare {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Bare {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: wasmtime_wasi_http::default_hooks(),
        }
    }
}

/// `wasm` pre-instantiated on `engine` (Nubo's, so the pool settings match).
pub fn load(engine: &Engine, wasm: &std::path::Path) -> ProxyPre<Bare> {
    let mut linker = Linker::<Bare>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).expect("wasi:http");
    let component = wasmtime::component::Component::from_file(engine, wasm).expect("compile");
    ProxyPre::new(linker.instantiate_pre(&component).expect("link")).expect("proxy")
}

fn store(pre: &ProxyPre<Bare>) -> Store<Bare> {
    let mut store = Store::new(
        pre.engine(),
        Bare {
            table: ResourceTable::new(),
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
        },
    );
    // Nubo's engine interrupts by epoch; without a deadline a store traps
    // at once.
    store.set_epoch_deadline(u64::MAX / 2);
    store
}

/// One GET through a fresh instance; the body's length.
pub async fn one_request(pre: &ProxyPre<Bare>) -> usize {
    let mut store = store(pre);
    let body =
        Full::new(Bytes::new()).map_err(|never| -> wasmtime_wasi_http::Error { match never {} });
    let req = hyper::Request::get("http://bench.local/")
        .body(body)
        .expect("request");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let req = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)
        .expect("request");
    let out = store
        .data_mut()
        .http()
        .new_response_outparam(tx)
        .expect("outparam");
    let guest = async {
        let proxy = pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, req, out)
            .await
            .expect("handle");
    };
    let response = async {
        let resp = rx.await.expect("answer").expect("response");
        body_len(resp).await
    };
    let ((), len) = tokio::join!(guest, response);
    len
}

/// A store and an instance, then both dropped: no request.
pub async fn instantiate_drop(pre: &ProxyPre<Bare>) {
    let mut store = store(pre);
    pre.instantiate_async(&mut store)
        .await
        .expect("instantiate");
}

/// Reads a response's whole body; its length.
pub async fn body_len(resp: hyper::Response<HyperOutgoingBody>) -> usize {
    resp.into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .len()
}
