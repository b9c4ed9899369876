use std::path::PathBuf;

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is a core WebAssembly module, not a component")]
    CoreModule { path: PathBuf },
    #[error("{path} is not a WebAssembly component: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("component imports something Nubo does not provide: {0}")]
    Imports(String),
    #[error("component does not export wasi:http/incoming-handler, so it cannot serve HTTP: {0}")]
    NotHttp(String),
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    #[error("cannot link the host interfaces of {capability}: {reason}")]
    Link {
        capability: &'static str,
        reason: String,
    },
}

/// Why a run of a component (a request, a task, a delivery) came to no
/// result: the outcome of every run that is not `Ok`, classified from
/// typed errors only. The gateway turns each into an HTTP status, a task
/// runner into a retry or a final failure; the node keeps serving in every
/// case.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Every instance slot stayed busy for the whole queueing time.
    #[error("component is at its max_instances limit")]
    Busy,
    /// The request ran past `timeout_ms` (CPU loop or slow I/O).
    #[error("component exceeded its time limit of {0} ms")]
    Timeout(u64),
    /// The run's guest code used more CPU time than `cpu_ms`.
    #[error("component exceeded its CPU limit of {0} ms")]
    CpuLimit(u64),
    /// The guest tried to grow memory past `memory_mb`.
    #[error("component exceeded its memory limit of {0} MB")]
    MemoryLimit(u64),
    /// The guest trapped: a WebAssembly trap, or a host call that ended
    /// the instance.
    #[error("component trapped: {0}")]
    Trapped(String),
    /// The guest ran to its end but answered with an error, or without the
    /// answer the run needs (an HTTP handler that set no response).
    #[error("component failed: {0}")]
    GuestError(String),
    /// The node could not set up the run (the component lacks the export
    /// the run needs, a request could not be handed to it).
    #[error("cannot run the component: {0}")]
    Host(String),
}

/// The trap that ends an instance a capability unloaded on purpose (a task
/// parked in a long wait, to be run again when the wait is over). Not a
/// failure: it is not logged as one, and the capability that unloaded the
/// instance knows what to do next.
#[derive(Debug, thiserror::Error)]
#[error("unloaded while waiting on other tasks")]
pub struct Unloaded;
