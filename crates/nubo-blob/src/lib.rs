//! Blob containers for components: `wasi:blobstore` (0.2.0-draft) plus
//! Nubo's `blob-ext` (content types, listing by prefix, metadata).
//!
//! Same three layers as every Nubo service. [`BlobBackend`] is the storage
//! contract; [`FileBlobs`] is the embedded backend (object bytes in files,
//! metadata in SQLite, both in the node's state dir); [`NatsBlobs`] is the
//! cluster backend, on a JetStream object store. [`host`] binds the
//! WASI interfaces to a backend for one guest instance and checks grants.
//!
//! Objects are streamed both ways: a writer takes chunks and makes the
//! object visible only at `commit`, a reader hands out chunks. Nothing in
//! this crate holds a whole object in memory, so a 1 GB upload costs a
//! few hundred kilobytes of buffers. Containers are namespaced by app.

mod api;
mod capability;
mod files;
mod host;
mod nats;
mod open;
mod streams;

pub use capability::{BlobGrant, Blobs};
pub use files::FileBlobs;
pub use nats::NatsBlobs;
pub use open::MAX_OPEN;
use open::OpenObjects;

use bytes::Bytes;

/// Longest object name accepted, in bytes.
pub const MAX_NAME: usize = 1024;
/// Reads of up to this many bytes are fetched whole when they open on
/// JetStream, so that a replace or delete cannot cut them short.
pub const EAGER_READ: u64 = 1 << 20;
/// Largest object `incoming-value-consume-sync` returns in one list;
/// bigger objects are read as a stream.
pub const MAX_SYNC_READ: u64 = 32 << 20;

/// A container of one app.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerId {
    pub app: String,
    pub container: String,
}

/// What is known about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub name: String,
    pub size: u64,
    /// When it was written, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    pub content_type: String,
}

/// A container and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStats {
    pub name: String,
    pub created_ms: u64,
    pub objects: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BlobError {
    #[error("{0}")]
    Invalid(String),
    #[error("object not found: {0}")]
    NotFound(String),
    /// The store underneath (SQLite, JetStream, the file system) failed.
    #[error("blob backend failed: {context}: {source}")]
    Backend {
        context: String,
        #[source]
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The object would take the app past its blob quota.
    #[error(
        "app `{app}` has used its blob quota of {} MiB (`blob_mb` in [quotas]); delete objects or raise the quota",
        quota >> 20
    )]
    OverQuota { app: String, quota: u64 },
    /// The node's disk has no room for the write, or is within the room
    /// the node keeps free; nothing was changed.
    #[error("the node's disk is full; nothing was written")]
    DiskFull,
}

impl BlobError {
    /// A failure of the store underneath: what was being done, and why
    /// it failed (an error, or a message for a condition without one).
    pub fn backend(
        context: impl Into<String>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            context: context.into(),
            source: std::sync::Arc::from(cause.into()),
        }
    }
}

/// Storage for blob containers. Async throughout so that a networked
/// backend fits; the embedded one works on local files.
#[async_trait::async_trait]
pub trait BlobBackend: Send + Sync + 'static {
    /// Makes sure the container exists; returns when it was created.
    async fn ensure_container(&self, c: &ContainerId) -> Result<u64, BlobError>;
    /// The app's containers that have been used, with their totals.
    async fn containers(&self, app: &str) -> Result<Vec<ContainerStats>, BlobError>;
    /// Deletes every object of the container and the container itself.
    async fn delete_container(&self, c: &ContainerId) -> Result<u64, BlobError>;
    /// A writer for a new object of `app`. Nothing is visible until
    /// [`BlobWriter::commit`] names it; dropping the writer discards it.
    /// Writing more than the app's whole quota fails at once.
    async fn writer(&self, app: &str) -> Result<Box<dyn BlobWriter>, BlobError>;
    /// Reads bytes `start..end` (`end` exclusive, clamped to the size) of
    /// an object; `None` if it does not exist. The reader keeps seeing
    /// these bytes even if the object is replaced or deleted meanwhile;
    /// on JetStream only for reads of up to [`EAGER_READ`] bytes, which
    /// are fetched whole when they open: a longer one fails with an error
    /// once the chunks it waits for are gone.
    async fn read(
        &self,
        c: &ContainerId,
        name: &str,
        start: u64,
        end: Option<u64>,
    ) -> Result<Option<(ObjectMeta, Box<dyn BlobReader>)>, BlobError>;
    async fn info(&self, c: &ContainerId, name: &str) -> Result<Option<ObjectMeta>, BlobError>;
    /// Up to `limit` objects whose names start with `prefix` and sort
    /// after `cursor`, in byte order; the cursor for the next page.
    async fn list(
        &self,
        c: &ContainerId,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ObjectMeta>, Option<String>), BlobError>;
    /// `true` if the object existed.
    async fn delete(&self, c: &ContainerId, name: &str) -> Result<bool, BlobError>;
    /// Copies (or, with `remove_source`, moves) an object, replacing the
    /// destination if it exists. `NotFound` if the source does not exist.
    async fn copy(
        &self,
        from: (&ContainerId, &str),
        to: (&ContainerId, &str),
        remove_source: bool,
    ) -> Result<(), BlobError>;
    /// How many object bytes `app` may store over all its containers; an
    /// app never set has no limit.
    fn set_quota(&self, app: &str, bytes: u64);
    /// Writes that add data are refused while the disk of an embedded
    /// store has less than `bytes` free ([`nubo_sqlite::Disk`]); a
    /// networked store has its own limits.
    fn keep_free(&self, _bytes: u64) {}
}

/// An object being written.
#[async_trait::async_trait]
pub trait BlobWriter: Send {
    async fn write(&mut self, data: Bytes) -> Result<(), BlobError>;
    /// Bytes written so far.
    fn written(&self) -> u64;
    /// Makes the object durable and visible as `name`, replacing any
    /// object of that name in one step: readers see the old bytes or the
    /// new, never a mix. After `Ok`, a crash does not lose it.
    async fn commit(
        self: Box<Self>,
        c: &ContainerId,
        name: &str,
        content_type: &str,
    ) -> Result<ObjectMeta, BlobError>;
}

/// An object being read.
#[async_trait::async_trait]
pub trait BlobReader: Send {
    /// Up to `max` more bytes; empty at the end.
    async fn read(&mut self, max: usize) -> Result<Bytes, BlobError>;
}

/// The bytes `start..end` of an object, handed out chunk by chunk: the
/// reader of both backends (a file, or a JetStream object).
/// How long a read may wait for its next bytes. A JetStream object that
/// is replaced or deleted while a large read is under way loses its
/// chunks, and the read would otherwise wait for them for ever.
const READ_STALL: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) struct Limited<R> {
    pub inner: R,
    /// Bytes still to hand out.
    pub left: u64,
    /// Most bytes per chunk.
    pub chunk: usize,
}

#[async_trait::async_trait]
impl<R: tokio::io::AsyncRead + Unpin + Send> BlobReader for Limited<R> {
    async fn read(&mut self, max: usize) -> Result<Bytes, BlobError> {
        use tokio::io::AsyncReadExt;
        let n = (max.min(self.chunk) as u64).min(self.left) as usize;
        if n == 0 {
            return Ok(Bytes::new());
        }
        let mut buf = vec![0u8; n];
        let got = tokio::time::timeout(READ_STALL, self.inner.read(&mut buf))
            .await
            .map_err(|_| {
                BlobError::backend(
                    "reading an object",
                    format!(
                        "no bytes came for {} s: the object was replaced or deleted while being read",
                        READ_STALL.as_secs()
                    ),
                )
            })?
            .map_err(|e| BlobError::backend("reading an object", e))?;
        if got == 0 {
            return Err(BlobError::backend(
                "reading an object",
                "the object is shorter than its recorded size",
            ));
        }
        buf.truncate(got);
        self.left -= got as u64;
        Ok(Bytes::from(buf))
    }
}

/// Checks an object name against Nubo's limits.
pub fn check_name(name: &str) -> Result<(), BlobError> {
    if name.is_empty() {
        return Err(BlobError::Invalid("the object name is empty".into()));
    }
    if name.len() > MAX_NAME {
        return Err(BlobError::Invalid(format!(
            "the object name is {} bytes; names may be at most {MAX_NAME}",
            name.len()
        )));
    }
    if name.contains('\0') {
        return Err(BlobError::Invalid(
            "the object name contains a NUL character".into(),
        ));
    }
    Ok(())
}

/// The content type stored when none is given: from the name's extension.
pub fn guess_content_type(name: &str) -> String {
    mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string()
}
