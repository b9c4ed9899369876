//! Nubo's HTTP gateway: the front door of every app.
//!
//! It owns the listener and decides, per request, whether a static directory
//! or a component answers. Components run through `nubo-wasm`; this crate
//! only routes and turns failures into statuses (503 busy, 504 time limit,
//! 500 trap or memory limit), so the node keeps serving whatever one
//! component does.

mod body;
mod edge;
mod listener;
mod mounts;
mod router;
mod server;
mod sockets;
mod static_files;

pub use body::{Body, BoxError};
pub use edge::INTERNAL_DOMAIN;
pub use listener::{
    BodyError, ConnLimits, MIN_BODY_RATE, SHUTDOWN_GRACE, TimedBody, TimedRequest,
    serve_connections,
};
pub use mounts::{Mount, Mounts};
pub use router::{Publish, PublishError, Router, Target};
pub use server::{Gateway, serve};
pub use sockets::Feed;
pub use static_files::StaticDir;

/// The gateway's parsers and encoders of bytes from outside, public for
/// the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::sockets::sse_event;
    pub use crate::static_files::decode_path;
}
