//! Runs Nubo's sandboxed WebAssembly components.
//!
//! One [`Runtime`] per node owns the wasmtime engine, the linker with
//! every host interface Nubo offers, and the compile cache. Loading a
//! component compiles and pre-instantiates it once; every run (a request,
//! a task, a delivery) instantiates it afresh under its memory and time
//! limits ([`Component::invoke`]). The runtime itself serves WASI
//! (`wasi:http`, `wasi:config`, `wasi:cli` output); every other interface
//! comes from a [`Capability`], a crate the runtime knows only through
//! that trait, and a guest reaches only what its `nubo.toml` entry grants
//! ([`Grant`]).

mod cache;
mod capability;
mod component;
mod deadline;
mod driven;
mod engine;
mod error;
mod host;
mod http;
mod identity;
mod internal;
mod lifecycle;
mod limiter;
mod logs;
pub mod metrics;
mod outbound;
mod pauses;
pub mod principal;
mod share;
pub mod usage;
mod waits;

pub use capability::{
    BoxFuture, Capability, Deleted, Grant, GrantError, GrantTo, OpenEnv, OpenError, PerApp,
    PrepareError, PurgeError, Run, RunningApp, Services, Shared, States, grants, schema,
};
pub use component::{Component, ComponentSettings, HttpComponent, Invocation, QUEUE_TIMEOUT};
pub use engine::{EPOCH_TICK, Runtime, RuntimeOptions};
pub use error::{HandleError, LoadError, Unloaded};
pub use host::Host;
pub use internal::{Answer, InternalError, InternalRequest};
pub use limiter::MemoryRefused;
pub use logs::{LogSink, LogTags, Stream as LogStream};
pub use nubo_manifest::{GrantKey, Names, Schema, Section};
pub use outbound::is_local;
pub use pauses::Pauses;
pub use principal::Principal;
pub use share::{FairPool, NodeShare, default_memory_budget};
pub use usage::{Dims, Meter, Metric};
pub use waits::WaitClock;
pub use wasmtime;
pub use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
