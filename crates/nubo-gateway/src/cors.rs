//! Cross-origin requests, as the gateway sees them.
//!
//! A capability (`nubo-cors`) gives the gateway a [`Cors`] per app
//! through [`CorsPolicies`]. The gateway asks it first whether a request
//! is a preflight it answers (before sign-in and routing, so no component
//! runs for one), then for the headers every answer to an allowed origin
//! carries, refusals included, so that a page can read why it was
//! refused. A request from an origin the app allows with credentials is
//! marked [`CredentialedOrigin`], which a sign-in guard reads as "not a
//! forged cross-site request".

use crate::{Body, TimedRequest};
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use std::sync::Arc;

/// Put in a request's extensions when its `Origin` is one the app lets
/// send credentials.
#[derive(Debug, Clone, Copy)]
pub struct CredentialedOrigin;

/// One app's cross-origin rules.
pub trait Cors: Send + Sync {
    /// The answer to `req` if it is a preflight (`OPTIONS` with `Origin`
    /// and `Access-Control-Request-Method`).
    fn preflight(&self, req: &TimedRequest) -> Option<Response<Body>>;
    /// The headers an answer to a request with these headers carries;
    /// none if its origin is not allowed (or it has none).
    fn headers(&self, request: &HeaderMap) -> Vec<(HeaderName, HeaderValue)>;
    /// Whether requests from the origin in `request` may carry cookies.
    fn credentialed(&self, request: &HeaderMap) -> bool;
}

/// Each app's rules; what the CORS capability puts in the node's services.
pub trait CorsPolicies: Send + Sync {
    fn cors(&self, app: &str) -> Option<Arc<dyn Cors>>;
}
