//! Runs Nubo's sandboxed WebAssembly components.
//!
//! One [`Runtime`] per node owns the wasmtime engine, the linker with every
//! host interface Nubo offers, and the compile cache. Loading a component
//! compiles and pre-instantiates it once; serving a request instantiates it
//! afresh under its memory and time limits. Guests see standard WASI only
//! (`wasi:http`, `wasi:config`, `wasi:cli` output), and reach only what their
//! `nubo.toml` entry grants.

mod cache;
mod driven;
mod engine;
mod error;
mod host;
mod http;
mod limiter;
mod logs;
mod outbound;
mod queues;
mod share;
mod tasks;
mod waits;

pub use engine::{EPOCH_TICK, Runtime, RuntimeOptions};
pub use error::{HandleError, LoadError};
pub use http::{ComponentSettings, HttpComponent, QUEUE_TIMEOUT};
pub use limiter::MemoryRefused;
pub use logs::{LogSink, LogTags, Stream as LogStream};
pub use share::{FairPool, NodeShare, default_memory_budget};
pub use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
