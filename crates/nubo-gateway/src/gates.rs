//! Whether an app takes requests now. The gateway knows no reason to
//! close an app: a capability that has one (usage caps) gives it a
//! [`Gates`], and a closed app's every request gets the gate's answer
//! before it is routed; other apps are not touched.

use crate::Body;
use http::Response;

pub trait Gates: Send + Sync {
    /// The answer to a request of `app` while it is closed; `None` while
    /// it is open.
    fn closed(&self, app: &str) -> Option<Response<Body>>;
}
