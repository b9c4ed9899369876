//! `wasi:io` streams over a [`BlobWriter`] and a [`BlobReader`].
//!
//! WASI streams are poll-based: `check-write`/`write`/`read` must not
//! block, and `ready` (what `subscribe` and the blocking variants wait on)
//! is where the I/O happens. So the output stream collects writes in a
//! bounded buffer that `ready` hands to the backend, and the input stream
//! serves reads from a chunk that `ready` fetched. Memory per open stream
//! is bounded by [`WRITE_BUFFER`] or one read chunk.

use crate::{BlobError, BlobReader, BlobWriter};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{InputStream, OutputStream, StreamError, StreamResult};

/// Bytes a guest may write before the stream makes it wait for the disk.
pub(crate) const WRITE_BUFFER: usize = 1 << 20;
/// Bytes fetched per read from the backend.
const READ_CHUNK: usize = 256 << 10;

/// The backend writer, or the task that has it while it writes a chunk.
/// Writes run in their own task so that a guest that stops waiting (a
/// `poll` that returned for another pollable) never cuts one in half.
enum Slot {
    Idle(Box<dyn BlobWriter>),
    Busy(JoinHandle<(Box<dyn BlobWriter>, Result<(), BlobError>)>),
    Gone,
}

/// What an `outgoing-value` and its body stream share.
pub(crate) struct Spool {
    slot: Slot,
    pending: BytesMut,
    failed: Option<BlobError>,
}

pub(crate) type SharedSpool = Arc<Mutex<Spool>>;

impl Spool {
    pub fn new(writer: Box<dyn BlobWriter>) -> SharedSpool {
        Arc::new(Mutex::new(Spool {
            slot: Slot::Idle(writer),
            pending: BytesMut::new(),
            failed: None,
        }))
    }

    fn open(&self) -> bool {
        !matches!(self.slot, Slot::Gone)
    }

    /// Hands every buffered byte to the backend and waits until written.
    pub async fn drain(&mut self) -> Result<(), BlobError> {
        loop {
            if let Some(e) = &self.failed {
                return Err(e.clone());
            }
            match &mut self.slot {
                Slot::Busy(task) => {
                    let done = task.await;
                    self.slot = Slot::Gone;
                    match done {
                        Ok((w, Ok(()))) => self.slot = Slot::Idle(w),
                        Ok((_, Err(e))) => self.failed = Some(e),
                        Err(e) => self.failed = Some(BlobError::backend("blob write task", e)),
                    }
                }
                Slot::Idle(_) if !self.pending.is_empty() => {
                    let Slot::Idle(mut w) = std::mem::replace(&mut self.slot, Slot::Gone) else {
                        continue;
                    };
                    let data = self.pending.split().freeze();
                    self.slot = Slot::Busy(tokio::spawn(async move {
                        let r = w.write(data).await;
                        (w, r)
                    }));
                }
                Slot::Idle(_) => return Ok(()),
                Slot::Gone => {
                    return Err(BlobError::Invalid("the value was already finished".into()));
                }
            }
        }
    }

    /// Drains and takes the writer, closing the body stream.
    pub async fn close(&mut self) -> Result<Box<dyn BlobWriter>, BlobError> {
        self.drain().await?;
        match std::mem::replace(&mut self.slot, Slot::Gone) {
            Slot::Idle(w) => Ok(w),
            _ => Err(BlobError::Invalid("the value was already finished".into())),
        }
    }
}

/// The `output-stream` of an `outgoing-value`.
pub(crate) struct BlobBody {
    pub spool: SharedSpool,
}

fn failed(e: &dyn std::fmt::Display) -> StreamError {
    StreamError::LastOperationFailed(wasmtime::format_err!("{e}"))
}

impl BlobBody {
    fn with<T>(&self, f: impl FnOnce(&mut Spool) -> StreamResult<T>) -> StreamResult<T> {
        // `ready` holds the lock only while it writes; a guest call in the
        // meantime is not possible (the guest waits on `ready`), so a busy
        // lock means another handle is finishing the value.
        let mut spool = self.spool.try_lock().map_err(|_| StreamError::Closed)?;
        if let Some(e) = &spool.failed {
            return Err(failed(e));
        }
        if !spool.open() {
            return Err(StreamError::Closed);
        }
        f(&mut spool)
    }
}

#[async_trait::async_trait]
impl Pollable for BlobBody {
    async fn ready(&mut self) {
        // An error is kept in the spool and reported by the next call.
        let _ = self.spool.lock().await.drain().await;
    }
}

#[async_trait::async_trait]
impl OutputStream for BlobBody {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.with(|s| {
            if s.pending.len() + bytes.len() > WRITE_BUFFER {
                return Err(StreamError::trap(
                    "write of more bytes than check-write permitted",
                ));
            }
            s.pending.extend_from_slice(&bytes);
            Ok(())
        })
    }

    fn flush(&mut self) -> StreamResult<()> {
        // `ready` writes everything buffered; nothing to start here.
        self.with(|_| Ok(()))
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.with(|s| Ok(WRITE_BUFFER.saturating_sub(s.pending.len())))
    }
}

type ReadTask = JoinHandle<(Box<dyn BlobReader>, Result<Bytes, BlobError>)>;

/// The `input-stream` of an `incoming-value`. Like writes, each backend
/// read runs in its own task, so an abandoned wait loses no bytes.
pub(crate) struct BlobInput {
    reader: Option<Box<dyn BlobReader>>,
    task: Option<ReadTask>,
    chunk: Bytes,
    done: bool,
    failed: Option<String>,
}

impl BlobInput {
    pub fn new(reader: Box<dyn BlobReader>) -> Self {
        Self {
            reader: Some(reader),
            task: None,
            chunk: Bytes::new(),
            done: false,
            failed: None,
        }
    }
}

#[async_trait::async_trait]
impl Pollable for BlobInput {
    async fn ready(&mut self) {
        if !self.chunk.is_empty() || self.done || self.failed.is_some() {
            return;
        }
        if self.task.is_none() {
            let Some(mut r) = self.reader.take() else {
                self.done = true;
                return;
            };
            self.task = Some(tokio::spawn(async move {
                let got = r.read(READ_CHUNK).await;
                (r, got)
            }));
        }
        let Some(task) = self.task.as_mut() else {
            return;
        };
        let done = task.await;
        self.task = None;
        match done {
            Ok((r, Ok(c))) => {
                self.reader = Some(r);
                if c.is_empty() {
                    self.done = true;
                } else {
                    self.chunk = c;
                }
            }
            Ok((_, Err(e))) => self.failed = Some(e.to_string()),
            Err(e) => self.failed = Some(format!("blob read task: {e}")),
        }
    }
}

#[async_trait::async_trait]
impl InputStream for BlobInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if !self.chunk.is_empty() {
            let n = size.min(self.chunk.len());
            return Ok(self.chunk.split_to(n));
        }
        if let Some(e) = self.failed.take() {
            return Err(failed(&e));
        }
        if self.done {
            return Err(StreamError::Closed);
        }
        Ok(Bytes::new())
    }
}
