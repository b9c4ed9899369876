//! The per-request store state: what a guest instance can reach.
//!
//! Everything a component may touch lives here and is built from its
//! `nubo.toml` grants: config values, the outbound allow-list, memory
//! limits, and each granted capability's own state.
//! WASI filesystem and sockets are linked (Rust's std imports them) but get
//! no preopened directories and no socket permissions.

use crate::capability::States;
use crate::logs::{LineStream, LogSink, LogTags, Stream};
use crate::outbound::OutboundPolicy;
use crate::usage::{Metric, Tally};
use nubo_manifest::OutboundRule;
use std::any::Any;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The data of one instance's store: WASI, outbound HTTP, limits, and the
/// state each granted capability put in ([`crate::Grant`]).
pub struct Host {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundPolicy,
    pub(crate) limits: crate::limiter::Limiter,
    pub(crate) config: Arc<WasiConfigVariables>,
    states: States,
    tally: Arc<Tally>,
}

impl Host {
    pub(crate) fn new(
        tags: LogTags,
        rules: Arc<Vec<OutboundRule>>,
        config: Arc<WasiConfigVariables>,
        limits: crate::limiter::Limiter,
        sink: Option<Arc<dyn LogSink>>,
        states: States,
        tally: Arc<Tally>,
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
            hooks: OutboundPolicy::new(rules, tags, tally.clone()),
            limits,
            config,
            states,
            tally,
        }
    }

    /// Counts `n` of `metric` as this run's usage ([`crate::usage`]).
    pub fn count(&self, metric: Metric, n: u64) {
        self.tally.count(metric, n);
    }

    /// A handle that counts this run's usage from elsewhere (a stream).
    pub fn usage(&self) -> crate::usage::RunUsage {
        crate::usage::RunUsage(self.tally.clone())
    }

    /// The instance's state of capability state type `T`: `None` when the
    /// component has no grant of that capability.
    pub fn state<T: Any + Send>(&mut self) -> Option<&mut T> {
        self.states.get_mut()
    }

    /// [`Self::state`] and the instance's resource table, for bindings
    /// that hand out resources.
    pub fn state_and_table<T: Any + Send>(&mut self) -> (Option<&mut T>, &mut ResourceTable) {
        (self.states.get_mut(), &mut self.table)
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

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
