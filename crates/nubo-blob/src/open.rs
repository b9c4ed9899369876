//! How many objects one instance may hold open at once.
//!
//! An open reader holds a file (or a JetStream fetch) and a writer a spool
//! file: host resources outside the guest's memory limit. Without a bound,
//! a component that opens objects in a loop would run the whole node out
//! of file descriptors. Each instance gets [`MAX_OPEN`]; past it, opening
//! one more is an error the guest sees, and the instance can close some.

use crate::{BlobError, BlobReader, BlobWriter, ContainerId, ObjectMeta};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Readers and writers one instance may hold open at once.
pub const MAX_OPEN: usize = 64;

/// The open objects of one instance.
#[derive(Clone, Default)]
pub struct OpenObjects(Arc<AtomicUsize>);

/// One open object's place in [`OpenObjects`]; given back when dropped.
pub(crate) struct Slot(Arc<AtomicUsize>);

impl OpenObjects {
    /// A place for one more, or why not.
    pub(crate) fn take(&self) -> Result<Slot, BlobError> {
        let taken = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_OPEN).then_some(n + 1)
            })
            .is_ok();
        if taken {
            Ok(Slot(self.0.clone()))
        } else {
            Err(BlobError::Invalid(format!(
                "this instance has {MAX_OPEN} blob readers and writers open, its limit: finish or drop some first"
            )))
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A reader or writer that holds its slot for as long as it lives.
pub(crate) struct Counted<T> {
    pub inner: T,
    pub _slot: Slot,
}

#[async_trait::async_trait]
impl BlobReader for Counted<Box<dyn BlobReader>> {
    async fn read(&mut self, max: usize) -> Result<Bytes, BlobError> {
        self.inner.read(max).await
    }
}

#[async_trait::async_trait]
impl BlobWriter for Counted<Box<dyn BlobWriter>> {
    async fn write(&mut self, data: Bytes) -> Result<(), BlobError> {
        self.inner.write(data).await
    }

    fn written(&self) -> u64 {
        self.inner.written()
    }

    async fn commit(
        self: Box<Self>,
        c: &ContainerId,
        name: &str,
        content_type: &str,
    ) -> Result<ObjectMeta, BlobError> {
        self.inner.commit(c, name, content_type).await
    }
}
