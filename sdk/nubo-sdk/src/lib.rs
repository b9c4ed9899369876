//! Write Nubo components in plain Rust.
//!
//! ```ignore
//! use nubo_sdk::{Request, Response};
//!
//! fn hello(req: Request) -> Response {
//!     let greeting = nubo_sdk::config::get("greeting").unwrap_or("Hello".into());
//!     nubo_sdk::text(200, format!("{greeting} from {}\n", req.uri().path()))
//! }
//!
//! nubo_sdk::http_handler!(hello);
//! ```
//!
//! The result is a standard `wasi:http/proxy` component: it runs on Nubo and
//! on any other host that implements WASI 0.2 (`wasmtime serve -Scli`, Spin,
//! wasmCloud). A component with task functions also exports
//! `nubo:platform/task-handler`, and a queue consumer
//! `nubo:platform/queue-handler`, through which Nubo runs them without an
//! HTTP request each; other hosts ignore them. Requests and responses are
//! the `http` crate's types with the
//! body collected into a `Vec<u8>`, which keeps handlers simple; components
//! that stream huge bodies can use the `wasip2` crate directly.

mod bindings {
    // The WIT lives at the repository root, shared with the host.
    wit_bindgen::generate!({
        path: "../../wit",
        world: "nubo:platform/guest",
        // Blob bodies are the same WASI streams as HTTP bodies.
        with: {
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
        },
        generate_all,
    });
}

pub mod blob;
pub mod config;
mod convert;
pub mod identity;
pub mod kv;
pub mod outbound;
pub mod pubsub;
pub mod queue;
pub mod sql;
pub mod stream;
pub mod tasks;
mod web;

pub use http;
pub use http::StatusCode;
pub use web::{Error, Json, Router, param, query, redirect};

/// A request with its body read into memory.
pub type Request = http::Request<Vec<u8>>;
/// A response whose body is sent after the handler returns.
pub type Response = http::Response<Vec<u8>>;

/// Anything a handler may return.
pub trait IntoResponse {
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for http::Response<String> {
    fn into_response(self) -> Response {
        self.map(String::into_bytes)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        text(200, self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        text(200, self)
    }
}

/// `Err` becomes a 500 whose body is the error's message; the message is
/// also written to stderr, which Nubo logs with the request id.
impl<T: IntoResponse, E: std::fmt::Display> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(r) => r.into_response(),
            Err(e) => {
                eprintln!("handler error: {e}");
                text(500, format!("{e}\n"))
            }
        }
    }
}

/// A `text/plain` response.
pub fn text(status: u16, body: impl Into<String>) -> Response {
    response(
        status,
        "text/plain; charset=utf-8",
        body.into().into_bytes(),
    )
}

/// A response with a content type; an invalid status becomes 500.
pub fn response(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    let mut r = http::Response::new(body);
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// Exports `handler` as the component's `wasi:http/incoming-handler`.
/// `handler` is any `fn(Request) -> impl IntoResponse`. With
/// `tasks: [F, G]` ([`tasks::TaskFn`]s), the component also runs those
/// functions as tasks (see [`tasks`]).
#[macro_export]
macro_rules! http_handler {
    ($handler:path, tasks: [$($task:path),* $(,)?]) => {
        struct __NuboTaskRunner;
        impl $crate::tasks::export::Guest for __NuboTaskRunner {
            fn run(
                function: ::std::string::String,
                payload: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                $(
                    if function == $task.name() {
                        return $task.call(&payload).map_err(|e| e.to_string());
                    }
                )*
                Err($crate::tasks::unknown_message(&function))
            }
        }
        $crate::tasks::export::_export_task_runner!(
            __NuboTaskRunner with_types_in $crate::tasks::export
        );
        fn __nubo_with_tasks(req: $crate::Request) -> $crate::Response {
            if let Some(f) = $crate::tasks::requested(&req) {
                $(
                    if f == $task.name() {
                        return $task.serve(&req);
                    }
                )*
                return $crate::tasks::unknown(f);
            }
            $crate::IntoResponse::into_response($handler(req))
        }
        $crate::http_handler!(__nubo_with_tasks);
    };
    ($handler:path) => {
        struct __NuboHttpHandler;
        impl $crate::__private::Guest for __NuboHttpHandler {
            fn handle(
                request: $crate::__private::IncomingRequest,
                out: $crate::__private::ResponseOutparam,
            ) {
                $crate::__private::serve(request, out, $handler)
            }
        }
        $crate::__private::wasip2::http::proxy::export!(
            __NuboHttpHandler with_types_in $crate::__private::wasip2
        );
    };
}

/// Exports `handler` as a queue consumer: `fn(&queue::Message) ->
/// Result<(), E>`, called once per message whether the queue delivers
/// one at a time or in batches (`batch_size`). An `Err` fails only that
/// message, which is retried by the queue's backoff.
#[macro_export]
macro_rules! queue_handler {
    ($handler:path) => {
        $crate::__queue_export!(each, $handler);
        fn __nubo_queue_handler(req: $crate::Request) -> $crate::Response {
            $crate::queue::serve(&req, $handler)
        }
        $crate::http_handler!(__nubo_queue_handler);
    };
}

/// Exports `handler` as a queue consumer that takes each delivery whole:
/// `fn(&[queue::Message]) -> Result<(), E>`, called once per delivery
/// (one message, or up to the queue's `batch_size`). An `Err` fails every
/// message of the delivery; use [`queue_handler!`] to fail them one by one.
#[macro_export]
macro_rules! queue_batch_handler {
    ($handler:path) => {
        $crate::__queue_export!(whole, $handler);
        fn __nubo_queue_batch_handler(req: $crate::Request) -> $crate::Response {
            $crate::queue::serve_batch(&req, $handler)
        }
        $crate::http_handler!(__nubo_queue_batch_handler);
    };
}

/// The `nubo:platform/queue-handler` export, running `handler` through
/// `queue::export::$run`.
#[doc(hidden)]
#[macro_export]
macro_rules! __queue_export {
    ($run:ident, $handler:path) => {
        struct __NuboQueueConsumer;
        impl $crate::queue::export::Guest for __NuboQueueConsumer {
            fn handle(
                _queue: ::std::string::String,
                messages: ::std::vec::Vec<$crate::queue::export::Message>,
            ) -> ::std::result::Result<
                ::std::vec::Vec<$crate::queue::export::Failure>,
                ::std::string::String,
            > {
                $crate::queue::export::$run(messages, $handler)
            }
        }
        $crate::queue::export::_export_queue_consumer!(
            __NuboQueueConsumer with_types_in $crate::queue::export
        );
    };
}

/// Exports task functions only: a worker component with no HTTP routes of
/// its own.
#[macro_export]
macro_rules! task_handler {
    ($($task:path),* $(,)?) => {
        fn __nubo_tasks_only(_: $crate::Request) -> $crate::Response {
            $crate::text(404, "this component only runs tasks")
        }
        $crate::http_handler!(__nubo_tasks_only, tasks: [$($task),*]);
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::convert::serve;
    pub use wasip2;
    pub use wasip2::exports::http::incoming_handler::Guest;
    pub use wasip2::http::types::{IncomingRequest, ResponseOutparam};
}
