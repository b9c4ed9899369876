//! Rate limits, as the gateway sees them.
//!
//! The gateway knows no limiting scheme: a capability (`nubo-ratelimit`)
//! gives it a [`Limit`] per app through [`Limits`]. After a request is
//! routed and admitted (so its identity, if any, is in its `nubo-user-*`
//! headers), the gateway asks the app's limit whether it may go on; a
//! refusal is the answer, and the headers of a pass are added to the
//! answer the route gives.

use crate::{Body, GuardFuture, TimedRequest};
use http::{HeaderName, HeaderValue, Response};
use nubo_manifest::RoutePattern;
use std::net::IpAddr;
use std::sync::Arc;

/// What a limit says of one request.
pub enum Verdict {
    /// It goes on; these headers go on its answer.
    Pass(Vec<(HeaderName, HeaderValue)>),
    /// It is answered with this (a `429`).
    Refuse(Response<Body>),
}

/// One app's rate limits.
pub trait Limit: Send + Sync {
    /// Counts `req` to `route` from `client` against the limits that
    /// cover it.
    fn check<'a>(
        &'a self,
        route: &'a RoutePattern,
        req: &'a TimedRequest,
        client: Option<IpAddr>,
    ) -> GuardFuture<'a, Verdict>;
}

/// Each app's limits; what the rate-limit capability puts in the node's
/// services.
pub trait Limits: Send + Sync {
    fn limit(&self, app: &str) -> Option<Arc<dyn Limit>>;
}
