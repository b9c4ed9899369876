//! Nubo's HTTP gateway: the front door of every app.
//!
//! It owns the listener and decides, per request, whether a static directory
//! or a component answers. Components run through `nubo-wasm`; this crate
//! only routes and turns failures into statuses (503 busy, 504 time limit,
//! 500 trap or memory limit), so the node keeps serving whatever one
//! component does.

//!
//! Everything but [`fuzzing`] is behind the `server` feature (on by
//! default); the fuzz targets build without it, and so without wasmtime.

mod wire;

#[cfg(feature = "server")]
mod body;
#[cfg(feature = "server")]
mod client;
#[cfg(feature = "server")]
mod cors;
#[cfg(feature = "server")]
mod edge;
#[cfg(feature = "server")]
mod gates;
#[cfg(feature = "server")]
mod guard;
#[cfg(feature = "server")]
mod limits;
#[cfg(feature = "server")]
mod listener;
#[cfg(feature = "server")]
mod metrics;
#[cfg(feature = "server")]
mod mounts;
#[cfg(feature = "server")]
mod router;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
mod sockets;
#[cfg(feature = "server")]
mod static_files;
#[cfg(feature = "server")]
mod tls;
#[cfg(feature = "server")]
mod usage;

#[cfg(feature = "server")]
pub use body::{Body, BoxError};
#[cfg(feature = "server")]
pub use client::TrustedProxies;
#[cfg(feature = "server")]
pub use cors::{Cors, CorsPolicies, CredentialedOrigin};
#[cfg(feature = "server")]
pub use edge::INTERNAL_DOMAIN;
#[cfg(feature = "server")]
pub use gates::Gates;
#[cfg(feature = "server")]
pub use guard::{
    Carried, Guard, GuardFuture, Guards, Identity, NUBO_AUTH, NUBO_USER_EMAIL, NUBO_USER_ID,
    NUBO_USER_ROLES,
};
#[cfg(feature = "server")]
pub use limits::{Limit, Limits, Verdict};
#[cfg(feature = "server")]
pub use listener::{
    BodyError, ConnLimits, MIN_BODY_RATE, OverTls, Peer, SHUTDOWN_GRACE, TimedBody, TimedRequest,
    serve_connections,
};
#[cfg(feature = "server")]
pub use mounts::{Mount, Mounts};
#[cfg(feature = "server")]
pub use router::{Publish, PublishError, Publishers, Route, Router, Target};
#[cfg(feature = "server")]
pub use server::{Gateway, serve};
#[cfg(feature = "server")]
pub use sockets::{Feed, Feeds};
#[cfg(feature = "server")]
pub use static_files::StaticDir;
#[cfg(feature = "server")]
pub use tls::{CertFiles, RELOAD_EVERY, TlsError};
#[cfg(feature = "server")]
pub use usage::{BYTES_OUT, REQUESTS_2XX, REQUESTS_3XX, REQUESTS_4XX, REQUESTS_5XX};

/// The gateway's parsers and encoders of bytes from outside, public for
/// the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::wire::{decode_path, sse_event};
}
