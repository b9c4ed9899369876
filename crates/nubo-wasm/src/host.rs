//! The per-request store state: what a guest instance can reach.
//!
//! Everything a component may touch lives here and is built from its
//! `nubo.toml` grants: config values, the outbound allow-list, memory limits.
//! WASI filesystem and sockets are linked (Rust's std imports them) but get
//! no preopened directories and no socket permissions.

use crate::logs::{LineStream, LogSink, LogTags, Stream};
use crate::outbound::OutboundPolicy;
use nubo_manifest::OutboundRule;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub struct Host {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundPolicy,
    pub(crate) limits: crate::limiter::Limiter,
    pub(crate) config: Arc<WasiConfigVariables>,
    kv: Option<Arc<nubo_kv::KvGrant>>,
    blobs: Option<Arc<nubo_blob::BlobGrant>>,
    queues: Option<Arc<nubo_queue::QueueGrant>>,
    topics: Option<Arc<nubo_pubsub::PubSubGrant>>,
    pub(crate) tasks: Option<nubo_tasks::TaskCtx>,
    open_blobs: nubo_blob::OpenObjects,
    cas_held: nubo_kv::host::CasHeld,
}

impl Host {
    pub(crate) fn new(
        tags: LogTags,
        rules: Arc<Vec<OutboundRule>>,
        config: Arc<WasiConfigVariables>,
        limits: crate::limiter::Limiter,
        sink: Option<Arc<dyn LogSink>>,
        grants: &Grants,
    ) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(LineStream::new(tags.clone(), Stream::Stdout, sink.clone()))
            .stderr(LineStream::new(tags.clone(), Stream::Stderr, sink))
            .build();
        let mut table = ResourceTable::new();
        // Bounds the host memory a guest can pin through resource handles.
        table.set_max_capacity(100_000);
        Self {
            table,
            wasi,
            http: WasiHttpCtx::new(),
            hooks: OutboundPolicy::new(rules, tags),
            limits,
            config,
            kv: grants.kv.clone(),
            blobs: grants.blobs.clone(),
            queues: grants.queues.clone(),
            topics: grants.topics.clone(),
            tasks: None,
            open_blobs: Default::default(),
            cas_held: Default::default(),
        }
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Service grants of a component, shared by all its instances.
#[derive(Clone, Default)]
pub(crate) struct Grants {
    pub kv: Option<Arc<nubo_kv::KvGrant>>,
    pub blobs: Option<Arc<nubo_blob::BlobGrant>>,
    pub queues: Option<Arc<nubo_queue::QueueGrant>>,
    pub topics: Option<Arc<nubo_pubsub::PubSubGrant>>,
    pub tasks: Option<Arc<nubo_tasks::TaskGrant>>,
}

impl Host {
    pub(crate) fn tasks(&mut self) -> nubo_tasks::host::TaskView<'_> {
        nubo_tasks::host::TaskView {
            ctx: self.tasks.as_mut(),
        }
    }

    pub(crate) fn pubsub(&mut self) -> nubo_pubsub::host::PubSubView<'_> {
        nubo_pubsub::host::PubSubView {
            grant: self.topics.as_deref(),
        }
    }

    pub(crate) fn queue(&mut self) -> nubo_queue::host::QueueView<'_> {
        nubo_queue::host::QueueView {
            grant: self.queues.as_deref(),
        }
    }

    pub(crate) fn blobs(&mut self) -> nubo_blob::host::BlobView<'_> {
        nubo_blob::host::BlobView {
            grant: self.blobs.as_deref(),
            table: &mut self.table,
            open: &self.open_blobs,
        }
    }

    pub(crate) fn kv(&mut self) -> nubo_kv::host::KvView<'_> {
        nubo_kv::host::KvView {
            grant: self.kv.as_deref(),
            table: &mut self.table,
            cas: &mut self.cas_held,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
