//! Routes that know what they serve. axum cannot list a router's routes,
//! so each one added here is also written down as (method, path), and
//! the node's test compares that list with `openapi.json`.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, head, patch, post, put};

/// An axum router and the (method, path) of each route in it.
pub struct Routes<S = ()> {
    router: Router<S>,
    served: Vec<(Method, String)>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            served: Vec::new(),
        }
    }

    fn add(mut self, method: Method, path: &str, route: MethodRouter<S>) -> Self {
        // axum merges the methods of one path into one method router.
        self.router = self.router.route(path, route);
        self.served.push((method, path.to_string()));
        self
    }

    pub fn get<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::GET, path, get(handler))
    }

    pub fn put<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::PUT, path, put(handler))
    }

    pub fn post<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::POST, path, post(handler))
    }

    pub fn patch<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::PATCH, path, patch(handler))
    }

    pub fn delete<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::DELETE, path, delete(handler))
    }

    pub fn head<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::HEAD, path, head(handler))
    }

    /// Applies `f` to the router so far (a layer, such as a body limit).
    pub fn map(mut self, f: impl FnOnce(Router<S>) -> Router<S>) -> Self {
        self.router = f(self.router);
        self
    }

    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.served.extend(other.served);
        self
    }

    /// The routes with their state given: what a capability hands the node.
    pub fn with_state<S2: Clone + Send + Sync + 'static>(self, state: S) -> Routes<S2> {
        Routes {
            router: self.router.with_state(state),
            served: self.served,
        }
    }

    /// Every (method, path) served, paths as axum writes them
    /// (`/v1/apps/{app}/kv/{store}/{*key}`).
    pub fn served(&self) -> &[(Method, String)] {
        &self.served
    }

    pub fn into_router(self) -> Router<S> {
        self.router
    }
}
