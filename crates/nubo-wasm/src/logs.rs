//! Guest stdout and stderr become log lines.
//!
//! A component's `println!` is the simplest log API there is, so Nubo keeps
//! it: every complete line is emitted as a `tracing` event tagged with the
//! app, the component and the request id. Output is split on newlines and
//! long unterminated output is cut into bounded lines, so a guest cannot make
//! the host buffer without limit.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

const MAX_LINE: usize = 16 * 1024;

/// Who wrote a line: attached to every log event.
#[derive(Debug, Clone)]
pub struct LogTags {
    pub app: Arc<str>,
    pub component: Arc<str>,
    pub request_id: Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// A line the node writes about the app (a cap reached), not the
    /// guest's output.
    Event,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Event => "event",
        }
    }
}

/// Where a node keeps guest log lines for `nubo logs`, besides `tracing`.
pub trait LogSink: Send + Sync {
    fn line(&self, tags: &LogTags, stream: Stream, line: &str);
}

/// One guest output stream. Clones share the line buffer, because the WASI
/// host asks for a fresh stream object on every `get-stdout`.
#[derive(Clone)]
pub(crate) struct LineStream(Arc<Inner>);

struct Inner {
    tags: LogTags,
    stream: Stream,
    sink: Option<Arc<dyn LogSink>>,
    buf: Mutex<Vec<u8>>,
}

impl LineStream {
    pub(crate) fn new(tags: LogTags, stream: Stream, sink: Option<Arc<dyn LogSink>>) -> Self {
        Self(Arc::new(Inner {
            tags,
            stream,
            sink,
            buf: Mutex::new(Vec::new()),
        }))
    }

    fn push(&self, data: &[u8]) {
        let Ok(mut buf) = self.0.buf.lock() else {
            return;
        };
        buf.extend_from_slice(data);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            self.0.emit(&line[..i]);
        }
        if buf.len() > MAX_LINE {
            let line: Vec<u8> = buf.drain(..).collect();
            self.0.emit(&line);
        }
    }
}

impl Inner {
    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        let t = &self.tags;
        if let Some(sink) = &self.sink {
            sink.line(t, self.stream, line);
        }
        match self.stream {
            Stream::Stdout => tracing::info!(
                target: "nubo::guest",
                app = %t.app, component = %t.component, request_id = %t.request_id,
                stream = "stdout", "{line}"
            ),
            // A guest's line is never an event; stderr is its nearest.
            Stream::Stderr | Stream::Event => tracing::warn!(
                target: "nubo::guest",
                app = %t.app, component = %t.component, request_id = %t.request_id,
                stream = "stderr", "{line}"
            ),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(buf) = self.buf.get_mut()
            && !buf.is_empty()
        {
            let rest = std::mem::take(buf);
            self.emit(&rest);
        }
    }
}

impl IsTerminal for LineStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LineStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for LineStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for LineStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
