//! Blob containers through the standard `wasi:blobstore` interface, plus
//! Nubo's content types, prefix listing and metadata.
//!
//! ```ignore
//! let photos = nubo_sdk::blob::Container::open("photos")?;
//! photos.put("cat.jpg", "image/jpeg", &bytes)?;
//! let mut w = photos.writer("big.bin", "application/octet-stream")?;
//! std::io::copy(&mut source, &mut w)?;   // streamed, never whole in memory
//! w.finish()?;                           // the object appears here
//! for name in photos.list("2026/")? { println!("{}", name?); }
//! ```
//!
//! A component reaches only the containers its `blob_containers` in
//! `nubo.toml` grants; containers are per app. [`Writer`] and [`Reader`]
//! are `std::io::Write` and `std::io::Read`, so `std::io::copy` streams an
//! HTTP body into a blob or a blob into a response.

use crate::bindings::nubo::platform::blob_ext;
use crate::bindings::wasi::blobstore::{blobstore, container, types};
use std::io::{Read, Write};

/// Why a blob call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The container is not in this component's `blob_containers`.
    AccessDenied(String),
    /// Anything else: a bad name, a full disk, an I/O failure.
    Other(String),
}

impl From<String> for Error {
    fn from(e: String) -> Self {
        if e.starts_with("access denied") {
            Error::AccessDenied(e)
        } else {
            Error::Other(e)
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Other(e.to_string())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::AccessDenied(e) | Error::Other(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Error {}

/// An object's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub size: u64,
    /// When it was written, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    pub content_type: String,
}

/// An open container.
pub struct Container(container::Container);

impl Container {
    /// Opens a container the component is granted (created on first use).
    pub fn open(name: &str) -> Result<Container, Error> {
        blobstore::get_container(name)
            .map(Container)
            .map_err(Error::from)
    }

    /// Stores `data` as `name`, replacing what was there.
    pub fn put(&self, name: &str, content_type: &str, data: &[u8]) -> Result<(), Error> {
        let mut w = self.writer(name, content_type)?;
        w.write_all(data)?;
        w.finish()
    }

    /// A writer for object `name`; the object appears (or is replaced) at
    /// [`Writer::finish`], and a writer dropped unfinished stores nothing.
    pub fn writer(&self, name: &str, content_type: &str) -> Result<Writer, Error> {
        let value = types::OutgoingValue::new_outgoing_value();
        let body = value
            .outgoing_value_write_body()
            .map_err(|()| Error::Other("the blob service could not start a write".into()))?;
        blob_ext::write_data_typed(&self.0, name, content_type, &value)?;
        Ok(Writer {
            body: Some(body),
            value: Some(value),
        })
    }

    /// The whole object, or `None` if there is none.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let Some(mut r) = self.reader(name)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(r.size() as usize);
        r.read_to_end(&mut out)?;
        Ok(Some(out))
    }

    /// A reader for the whole object, or `None` if there is none.
    pub fn reader(&self, name: &str) -> Result<Option<Reader>, Error> {
        self.reader_range(name, 0..u64::MAX)
    }

    /// A reader for bytes `range` of the object (clamped to its size).
    pub fn reader_range(
        &self,
        name: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Option<Reader>, Error> {
        if range.is_empty() {
            return Err(Error::Other(format!("empty range {range:?}")));
        }
        let value = match self.0.get_data(name, range.start, range.end - 1) {
            Ok(v) => v,
            Err(e) if e.starts_with("object not found") => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let size = value.size();
        let stream = types::IncomingValue::incoming_value_consume_async(value)?;
        Ok(Some(Reader { stream, size }))
    }

    /// Size, creation time and content type, or `None` if there is none.
    pub fn info(&self, name: &str) -> Result<Option<Info>, Error> {
        Ok(blob_ext::info(&self.0, name)?.map(|i| Info {
            name: i.name,
            size: i.size,
            created_ms: i.created_ms,
            content_type: i.content_type,
        }))
    }

    pub fn exists(&self, name: &str) -> Result<bool, Error> {
        Ok(self.0.has_object(name)?)
    }

    /// Names starting with `prefix`, in byte order, fetched page by page.
    pub fn list(&self, prefix: &str) -> Result<Names, Error> {
        let names = blob_ext::list_prefix(&self.0, prefix)?;
        Ok(Names {
            names,
            page: Vec::new().into_iter(),
            done: false,
        })
    }

    /// Deletes `name`; deleting what is not there is not an error.
    pub fn delete(&self, name: &str) -> Result<(), Error> {
        Ok(self.0.delete_object(name)?)
    }

    /// Copies `name` to `to_name` in container `to` (which may be this one).
    pub fn copy(&self, name: &str, to: &str, to_name: &str) -> Result<(), Error> {
        Ok(blobstore::copy_object(
            &self.id(name)?,
            &types::ObjectId {
                container: to.into(),
                object: to_name.into(),
            },
        )?)
    }

    /// Moves `name` to `to_name` in container `to` (which may be this one).
    pub fn rename(&self, name: &str, to: &str, to_name: &str) -> Result<(), Error> {
        Ok(blobstore::move_object(
            &self.id(name)?,
            &types::ObjectId {
                container: to.into(),
                object: to_name.into(),
            },
        )?)
    }

    fn id(&self, name: &str) -> Result<types::ObjectId, Error> {
        Ok(types::ObjectId {
            container: self.0.name()?,
            object: name.into(),
        })
    }
}

/// Writes an object as a stream; see [`Container::writer`].
pub struct Writer {
    body: Option<wasip2::io::streams::OutputStream>,
    value: Option<types::OutgoingValue>,
}

impl Writer {
    /// Stores what was written; the object is visible once this returns.
    pub fn finish(mut self) -> Result<(), Error> {
        if let Some(body) = self.body.take() {
            flush(&body)?;
        }
        match self.value.take() {
            Some(v) => Ok(types::OutgoingValue::finish(v)?),
            None => Err(Error::Other("already finished".into())),
        }
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.body.as_mut() {
            Some(b) => Write::write(b, buf),
            None => Err(std::io::Error::other("the writer is finished")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.body.as_ref() {
            Some(b) => flush(b),
            None => Ok(()),
        }
    }
}

/// Waits until `body` wrote everything; an error carries the host's
/// message (`wasip2`'s own `flush` keeps only the error's handle).
fn flush(body: &wasip2::io::streams::OutputStream) -> std::io::Result<()> {
    use wasip2::io::streams::StreamError;
    body.blocking_flush().map_err(|e| match e {
        StreamError::LastOperationFailed(e) => std::io::Error::other(e.to_debug_string()),
        StreamError::Closed => std::io::ErrorKind::BrokenPipe.into(),
    })
}

/// Reads an object as a stream; see [`Container::reader`].
pub struct Reader {
    stream: wasip2::io::streams::InputStream,
    size: u64,
}

impl Reader {
    /// Bytes this reader yields in all.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The underlying WASI stream, e.g. to splice into an HTTP body.
    pub fn into_stream(self) -> wasip2::io::streams::InputStream {
        self.stream
    }
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Read::read(&mut self.stream, buf)
    }
}

/// Object names from [`Container::list`].
pub struct Names {
    names: container::StreamObjectNames,
    page: std::vec::IntoIter<String>,
    done: bool,
}

impl Iterator for Names {
    type Item = Result<String, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(n) = self.page.next() {
                return Some(Ok(n));
            }
            if self.done {
                return None;
            }
            match self.names.read_stream_object_names(1000) {
                Ok((page, end)) => {
                    self.done = end || page.is_empty();
                    self.page = page.into_iter();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            }
        }
    }
}
