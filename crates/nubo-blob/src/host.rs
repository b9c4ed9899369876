//! `wasi:blobstore` and `nubo:platform/blob-ext` for one guest instance.
//!
//! Containers are declared by granting them: a component reaches exactly
//! the containers in its `blob_containers`, and those exist for it, so
//! `create-container` and `get-container` both open one (creating it on
//! first use), `container-exists` is true for them, and `delete-container`
//! empties one. Any other name answers an error that says which grant is
//! missing, and the node logs it.
//!
//! Writes follow the standard's shape: the guest makes an
//! `outgoing-value`, writes its body stream, names the destination with
//! `write-data`, and `finish` commits. Bytes go to the backend while the
//! guest writes, so nothing waits for the whole object in memory; the
//! object appears only at `finish`, and a value dropped unfinished is
//! discarded.

use crate::streams::{BlobBody, BlobInput, SharedSpool, Spool};
use crate::{BlobBackend, BlobError, BlobGrant, ContainerId, MAX_SYNC_READ, guess_content_type};
use std::collections::VecDeque;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nubo:platform/blob-host",
        imports: { default: async | trappable },
        with: {
            "wasi:io": wasmtime_wasi_io::bindings::wasi::io,
            "wasi:blobstore/container.container": super::ContainerHandle,
            "wasi:blobstore/container.stream-object-names": super::NameList,
            "wasi:blobstore/types.outgoing-value": super::Outgoing,
            "wasi:blobstore/types.incoming-value": super::Incoming,
        },
    });
}

use generated::nubo::platform::blob_ext;
use generated::wasi::blobstore::{blobstore, container, types};

/// An open container, as the guest holds it.
pub struct ContainerHandle {
    id: ContainerId,
    created_ms: u64,
}

/// A listing in progress.
pub struct NameList {
    id: ContainerId,
    prefix: String,
    cursor: Option<String>,
    buffered: VecDeque<String>,
    exhausted: bool,
}

/// A value being written: its spool, whether its body stream was taken,
/// and where `write-data` said it goes.
pub struct Outgoing {
    spool: Option<SharedSpool>,
    body_taken: bool,
    dest: Option<(ContainerId, String, String)>,
}

/// A value being read.
pub struct Incoming {
    reader: Box<dyn crate::BlobReader>,
    size: u64,
}

type R<T> = wasmtime::Result<Result<T, String>>;

/// What the bindings borrow from the store's data for one call.
struct BlobView<'a> {
    /// `None` for a component without the grant.
    grant: Option<&'a BlobGrant>,
    table: &'a mut ResourceTable,
    /// The instance's open readers and writers ([`crate::MAX_OPEN`]).
    open: Option<&'a crate::OpenObjects>,
    usage: nubo_wasm::usage::RunUsage,
}

/// One instance's blob state: its grant, and the objects it holds open.
struct BlobInstance {
    grant: Arc<BlobGrant>,
    open: crate::OpenObjects,
}

/// A component's blob grant, as the runtime holds it.
pub(crate) struct Granted(pub Arc<BlobGrant>);

impl nubo_wasm::Grant for Granted {
    fn instantiate(&self, _run: &nubo_wasm::Run<'_>, states: &mut nubo_wasm::States) {
        states.insert(BlobInstance {
            grant: self.0.clone(),
            open: Default::default(),
        });
    }
}

/// Calls a component made into wasi:blobstore: what the node's usage counts of
/// this capability ([`nubo_wasm::usage`]).
pub const BLOB_CALLS: nubo_wasm::Metric = nubo_wasm::Metric::sum("blob_calls");
/// Bytes of objects a component read (what it asked for) and wrote.
pub const BLOB_BYTES_READ: nubo_wasm::Metric = nubo_wasm::Metric::sum("blob_bytes_read");
pub const BLOB_BYTES_WRITTEN: nubo_wasm::Metric = nubo_wasm::Metric::sum("blob_bytes_written");

fn view(host: &mut nubo_wasm::Host) -> BlobView<'_> {
    host.count(BLOB_CALLS, 1);
    let usage = host.usage();
    let (state, table) = host.state_and_table::<BlobInstance>();
    let (grant, open) = match state {
        Some(BlobInstance { grant, open }) => (Some(&**grant), Some(&*open)),
        None => (None, None),
    };
    BlobView {
        grant,
        table,
        open,
        usage,
    }
}

impl BlobView<'_> {
    /// A place for one more open reader or writer.
    fn take_slot(&self) -> Result<crate::open::Slot, BlobError> {
        match self.open {
            Some(open) => open.take(),
            None => Err(BlobError::Invalid(
                "access denied: this component has no blob_containers grant".into(),
            )),
        }
    }

    /// The container `name`, if granted; an error naming the grant if not.
    fn granted(&self, name: &str) -> Result<(Arc<dyn BlobBackend>, ContainerId), String> {
        match self.grant {
            Some(g) if g.containers.iter().any(|c| c == name) => Ok((
                g.backend.clone(),
                ContainerId {
                    app: g.app.clone(),
                    container: name.to_string(),
                },
            )),
            _ => {
                tracing::warn!(container = %name, "component used a blob container it is not granted (blob_containers in nubo.toml)");
                Err(format!(
                    "access denied: container `{name}` is not in this component's `blob_containers` in nubo.toml"
                ))
            }
        }
    }

    fn backend(&self) -> Result<Arc<dyn BlobBackend>, String> {
        self.grant
            .map(|g| g.backend.clone())
            .ok_or_else(|| "access denied: this component has no `blob_containers`".to_string())
    }

    /// The app whose quota the instance's writes count against.
    fn app(&self) -> &str {
        self.grant.map_or("", |g| g.app.as_str())
    }

    fn container(&self, c: &Resource<ContainerHandle>) -> R<(Arc<dyn BlobBackend>, ContainerId)> {
        let id = self.table.get(c)?.id.clone();
        Ok(self.backend().map(|b| (b, id)))
    }

    async fn open(&mut self, name: String) -> R<Resource<ContainerHandle>> {
        let (backend, id) = match self.granted(&name) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let created_ms = match backend.ensure_container(&id).await {
            Ok(t) => t,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(Ok(self.table.push(ContainerHandle { id, created_ms })?))
    }

    /// Records where a value goes; `finish` commits it there.
    fn bind(
        &mut self,
        c: &Resource<ContainerHandle>,
        name: String,
        content_type: String,
        data: &Resource<Outgoing>,
    ) -> R<()> {
        if let Err(e) = crate::check_name(&name) {
            return Ok(Err(e.to_string()));
        }
        let id = self.table.get(c)?.id.clone();
        self.table.get_mut(data)?.dest = Some((id, name, content_type));
        Ok(Ok(()))
    }
}

/// Errors of a backend call, as the guest sees them.
fn guest<T>(r: Result<T, BlobError>) -> wasmtime::Result<Result<T, String>> {
    Ok(r.map_err(|e| e.to_string()))
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(e.to_string())),
        }
    };
}

struct HasBlob;

impl HasData for HasBlob {
    type Data<'a> = BlobView<'a>;
}

/// Adds the blob interfaces to `linker`. `wasi:io` must be linked too
/// (the runtime's WASI adds it).
pub(crate) fn add_to_linker(linker: &mut Linker<nubo_wasm::Host>) -> wasmtime::Result<()> {
    blobstore::add_to_linker::<_, HasBlob>(linker, view)?;
    container::add_to_linker::<_, HasBlob>(linker, view)?;
    types::add_to_linker::<_, HasBlob>(linker, view)?;
    blob_ext::add_to_linker::<_, HasBlob>(linker, view)?;
    Ok(())
}

impl blobstore::Host for BlobView<'_> {
    async fn create_container(&mut self, name: String) -> R<Resource<ContainerHandle>> {
        self.open(name).await
    }

    async fn get_container(&mut self, name: String) -> R<Resource<ContainerHandle>> {
        self.open(name).await
    }

    async fn delete_container(&mut self, name: String) -> R<()> {
        let (backend, id) = tri!(self.granted(&name));
        guest(backend.delete_container(&id).await.map(|_| ()))
    }

    async fn container_exists(&mut self, name: String) -> R<bool> {
        tri!(self.granted(&name));
        Ok(Ok(true))
    }

    async fn copy_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> R<()> {
        self.copy(src, dest, false).await
    }

    async fn move_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> R<()> {
        self.copy(src, dest, true).await
    }
}

impl BlobView<'_> {
    async fn copy(&mut self, src: types::ObjectId, dest: types::ObjectId, mv: bool) -> R<()> {
        let (backend, from) = tri!(self.granted(&src.container));
        let (_, to) = tri!(self.granted(&dest.container));
        guest(
            backend
                .copy((&from, &src.object), (&to, &dest.object), mv)
                .await,
        )
    }
}

impl container::HostContainer for BlobView<'_> {
    async fn name(&mut self, c: Resource<ContainerHandle>) -> R<String> {
        Ok(Ok(self.table.get(&c)?.id.container.clone()))
    }

    async fn info(&mut self, c: Resource<ContainerHandle>) -> R<types::ContainerMetadata> {
        let h = self.table.get(&c)?;
        Ok(Ok(types::ContainerMetadata {
            name: h.id.container.clone(),
            created_at: h.created_ms / 1000,
        }))
    }

    async fn get_data(
        &mut self,
        c: Resource<ContainerHandle>,
        name: String,
        start: u64,
        end: u64,
    ) -> R<Resource<Incoming>> {
        let (backend, id) = tri!(self.container(&c)?);
        if start > end {
            return Ok(Err(format!(
                "start {start} is after end {end} (both are inclusive offsets)"
            )));
        }
        let found = tri!(
            backend
                .read(&id, &name, start, Some(end.saturating_add(1)))
                .await
        );
        let Some((meta, reader)) = found else {
            return Ok(Err(BlobError::NotFound(name).to_string()));
        };
        let reader: Box<dyn crate::BlobReader> = Box::new(crate::open::Counted {
            inner: reader,
            _slot: tri!(self.take_slot()),
        });
        let size = meta.size.min(end.saturating_add(1)).saturating_sub(start);
        self.usage.count(BLOB_BYTES_READ, size);
        Ok(Ok(self.table.push(Incoming { reader, size })?))
    }

    async fn write_data(
        &mut self,
        c: Resource<ContainerHandle>,
        name: String,
        data: Resource<Outgoing>,
    ) -> R<()> {
        let content_type = guess_content_type(&name);
        self.bind(&c, name, content_type, &data)
    }

    async fn list_objects(&mut self, c: Resource<ContainerHandle>) -> R<Resource<NameList>> {
        let id = self.table.get(&c)?.id.clone();
        Ok(Ok(self.table.push(NameList::new(id, String::new()))?))
    }

    async fn delete_object(&mut self, c: Resource<ContainerHandle>, name: String) -> R<()> {
        let (backend, id) = tri!(self.container(&c)?);
        guest(backend.delete(&id, &name).await.map(|_| ()))
    }

    async fn delete_objects(&mut self, c: Resource<ContainerHandle>, names: Vec<String>) -> R<()> {
        let (backend, id) = tri!(self.container(&c)?);
        for name in names {
            tri!(backend.delete(&id, &name).await);
        }
        Ok(Ok(()))
    }

    async fn has_object(&mut self, c: Resource<ContainerHandle>, name: String) -> R<bool> {
        let (backend, id) = tri!(self.container(&c)?);
        guest(backend.info(&id, &name).await.map(|m| m.is_some()))
    }

    async fn object_info(
        &mut self,
        c: Resource<ContainerHandle>,
        name: String,
    ) -> R<types::ObjectMetadata> {
        let (backend, id) = tri!(self.container(&c)?);
        match tri!(backend.info(&id, &name).await) {
            Some(m) => Ok(Ok(types::ObjectMetadata {
                name: m.name,
                container: id.container,
                created_at: m.created_ms / 1000,
                size: m.size,
            })),
            None => Ok(Err(BlobError::NotFound(name).to_string())),
        }
    }

    async fn clear(&mut self, c: Resource<ContainerHandle>) -> R<()> {
        let (backend, id) = tri!(self.container(&c)?);
        tri!(backend.delete_container(&id).await);
        guest(backend.ensure_container(&id).await.map(|_| ()))
    }

    async fn drop(&mut self, c: Resource<ContainerHandle>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

impl NameList {
    fn new(id: ContainerId, prefix: String) -> Self {
        Self {
            id,
            prefix,
            cursor: None,
            buffered: VecDeque::new(),
            exhausted: false,
        }
    }
}

impl BlobView<'_> {
    /// Up to `n` more names of a listing, and whether it has ended.
    async fn next_names(&mut self, l: &Resource<NameList>, n: u64) -> R<Vec<String>> {
        let backend = tri!(self.backend());
        let want = usize::try_from(n).unwrap_or(usize::MAX).min(10_000);
        let list = self.table.get_mut(l)?;
        while list.buffered.len() < want && !list.exhausted {
            let (page, next) = tri!(
                backend
                    .list(&list.id, &list.prefix, list.cursor.as_deref(), 1000)
                    .await
            );
            list.buffered.extend(page.into_iter().map(|m| m.name));
            list.exhausted = next.is_none();
            list.cursor = next;
        }
        let take = want.min(list.buffered.len());
        Ok(Ok(list.buffered.drain(..take).collect()))
    }

    fn ended(&self, l: &Resource<NameList>) -> wasmtime::Result<bool> {
        let list = self.table.get(l)?;
        Ok(list.exhausted && list.buffered.is_empty())
    }
}

impl container::HostStreamObjectNames for BlobView<'_> {
    async fn read_stream_object_names(
        &mut self,
        l: Resource<NameList>,
        len: u64,
    ) -> R<(Vec<String>, bool)> {
        let names = tri!(self.next_names(&l, len).await?);
        Ok(Ok((names, self.ended(&l)?)))
    }

    async fn skip_stream_object_names(
        &mut self,
        l: Resource<NameList>,
        num: u64,
    ) -> R<(u64, bool)> {
        let names = tri!(self.next_names(&l, num).await?);
        Ok(Ok((names.len() as u64, self.ended(&l)?)))
    }

    async fn drop(&mut self, l: Resource<NameList>) -> wasmtime::Result<()> {
        self.table.delete(l)?;
        Ok(())
    }
}

impl container::Host for BlobView<'_> {}

impl types::HostOutgoingValue for BlobView<'_> {
    async fn new_outgoing_value(&mut self) -> wasmtime::Result<Resource<Outgoing>> {
        // The backend writer is made when the body is first asked for, so
        // a value that is never written costs nothing.
        Ok(self.table.push(Outgoing {
            spool: None,
            body_taken: false,
            dest: None,
        })?)
    }

    async fn outgoing_value_write_body(
        &mut self,
        v: Resource<Outgoing>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, ()>> {
        let Ok(backend) = self.backend() else {
            return Ok(Err(()));
        };
        if self.table.get(&v)?.body_taken {
            return Ok(Err(()));
        }
        let slot = match self.take_slot() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("{e}");
                return Ok(Err(()));
            }
        };
        let writer = match backend.writer(self.app()).await {
            Ok(w) => w,
            Err(e) => {
                tracing::error!("blob backend: {e}");
                return Ok(Err(()));
            }
        };
        let writer: Box<dyn crate::BlobWriter> = Box::new(crate::open::Counted {
            inner: writer,
            _slot: slot,
        });
        let spool = Spool::new(writer);
        let out = self.table.get_mut(&v)?;
        out.body_taken = true;
        out.spool = Some(spool.clone());
        let stream: DynOutputStream = Box::new(BlobBody { spool });
        Ok(Ok(self.table.push(stream)?))
    }

    async fn finish(&mut self, v: Resource<Outgoing>) -> R<()> {
        let out = self.table.delete(v)?;
        let Some((id, name, content_type)) = out.dest else {
            return Ok(Err(
                "finish without write-data: call container.write-data(name, value) first".into(),
            ));
        };
        let writer = match out.spool {
            Some(spool) => tri!(spool.lock().await.close().await),
            // Never written: an empty object.
            None => tri!(tri!(self.backend()).writer(self.app()).await),
        };
        let meta = tri!(writer.commit(&id, &name, &content_type).await);
        self.usage.count(BLOB_BYTES_WRITTEN, meta.size);
        Ok(Ok(()))
    }

    async fn drop(&mut self, v: Resource<Outgoing>) -> wasmtime::Result<()> {
        self.table.delete(v)?;
        Ok(())
    }
}

impl types::HostIncomingValue for BlobView<'_> {
    async fn incoming_value_consume_sync(&mut self, v: Resource<Incoming>) -> R<Vec<u8>> {
        let Incoming { mut reader, size } = self.table.delete(v)?;
        if size > MAX_SYNC_READ {
            return Ok(Err(format!(
                "the value is {size} bytes; consume-sync returns at most {MAX_SYNC_READ}: use incoming-value-consume-async to stream it"
            )));
        }
        let mut out = Vec::with_capacity(size as usize);
        loop {
            let chunk = tri!(reader.read(1 << 20).await);
            if chunk.is_empty() {
                return Ok(Ok(out));
            }
            out.extend_from_slice(&chunk);
        }
    }

    async fn incoming_value_consume_async(
        &mut self,
        v: Resource<Incoming>,
    ) -> R<Resource<DynInputStream>> {
        let Incoming { reader, .. } = self.table.delete(v)?;
        let stream: DynInputStream = Box::new(BlobInput::new(reader));
        Ok(Ok(self.table.push(stream)?))
    }

    async fn size(&mut self, v: Resource<Incoming>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&v)?.size)
    }

    async fn drop(&mut self, v: Resource<Incoming>) -> wasmtime::Result<()> {
        self.table.delete(v)?;
        Ok(())
    }
}

impl types::Host for BlobView<'_> {}

impl blob_ext::Host for BlobView<'_> {
    async fn write_data_typed(
        &mut self,
        c: Resource<ContainerHandle>,
        name: String,
        content_type: String,
        data: Resource<Outgoing>,
    ) -> R<()> {
        if content_type.len() > 255 || content_type.chars().any(char::is_control) {
            return Ok(Err(format!(
                "invalid content type `{}`",
                content_type.escape_debug()
            )));
        }
        self.bind(&c, name, content_type, &data)
    }

    async fn list_prefix(
        &mut self,
        c: Resource<ContainerHandle>,
        prefix: String,
    ) -> R<Resource<NameList>> {
        let id = self.table.get(&c)?.id.clone();
        Ok(Ok(self.table.push(NameList::new(id, prefix))?))
    }

    async fn info(
        &mut self,
        c: Resource<ContainerHandle>,
        name: String,
    ) -> R<Option<blob_ext::ObjectInfo>> {
        let (backend, id) = tri!(self.container(&c)?);
        guest(backend.info(&id, &name).await.map(|m| {
            m.map(|m| blob_ext::ObjectInfo {
                name: m.name,
                size: m.size,
                created_ms: m.created_ms,
                content_type: m.content_type,
            })
        }))
    }
}
