//! The cluster backend: every container of every app in one JetStream
//! object store, `nubo_blobs`, replicated by NATS.
//!
//! An object is stored as `APP/CONTAINER/NAME` (app and container as
//! subject tokens, so the `/` cannot be forged); its content type and
//! creation time ride in the object's metadata. A container's creation
//! time is a key of the `nubo_blob_containers` bucket.
//!
//! Writes spool to a file in the node's state dir and are put when
//! committed, so a 1 GB object is never in memory and a half-written one
//! is never visible. Reads stream chunk by chunk. Two differences from the
//! embedded backend, both the object store's: a reader of an object that
//! is replaced meanwhile may fail instead of finishing the old bytes, and
//! listing walks the names of every object in the store (fine for tens of
//! thousands, slow for millions).

use crate::{
    BlobBackend, BlobError, BlobReader, BlobWriter, ContainerId, ContainerStats, ObjectMeta,
    check_name,
};
use async_nats::jetstream::{self, kv, object_store};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUCKET: &str = "nubo_blobs";
const CONTAINERS: &str = "nubo_blob_containers";
const READ_CHUNK: usize = 64 * 1024;

fn err(what: &str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BlobError {
    BlobError::backend(what, e)
}

fn prefix(c: &ContainerId) -> String {
    format!(
        "{}/{}/",
        nubo_jetstream::token(&c.app),
        nubo_jetstream::token(&c.container)
    )
}

fn container_key(c: &ContainerId) -> String {
    format!(
        "{}.{}",
        nubo_jetstream::token(&c.app),
        nubo_jetstream::token(&c.container)
    )
}

fn meta(info: &object_store::ObjectInfo, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.to_string(),
        size: info.size as u64,
        created_ms: info
            .metadata
            .get("created_ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        content_type: info
            .metadata
            .get("content_type")
            .cloned()
            .unwrap_or_else(|| "application/octet-stream".into()),
    }
}

pub struct NatsBlobs {
    store: object_store::ObjectStore,
    containers: kv::Store,
    spool: PathBuf,
    account: Arc<Account>,
}

/// Each app's object bytes, as a total every node shares
/// ([`nubo_jetstream::Usage`]), and its quota. A write counts the size it
/// adds before it stores and takes it back if the store fails.
struct Account {
    usage: nubo_jetstream::Usage,
    quotas: nubo_sqlite::Quotas,
}

const USAGE: &str = "blob";

impl Account {
    async fn add(&self, app: &str, delta: i64) -> Result<(), BlobError> {
        let quota = self.quotas.of(app);
        match self.usage.add(app, USAGE, delta, quota).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(BlobError::OverQuota {
                app: app.to_owned(),
                quota,
            }),
            Err(e) => Err(err("usage", e)),
        }
    }

    /// Counts `delta`, runs `store`, and takes the count back if it failed.
    async fn counted<T>(
        &self,
        app: &str,
        delta: i64,
        store: impl std::future::Future<Output = Result<T, BlobError>>,
    ) -> Result<T, BlobError> {
        self.add(app, delta).await?;
        let out = store.await;
        if out.is_err() {
            self.add(app, -delta).await?;
        }
        out
    }
}

impl NatsBlobs {
    /// `spool`: a directory of this node for objects being written.
    pub async fn open(
        js: &jetstream::Context,
        replicas: usize,
        spool: PathBuf,
    ) -> Result<Self, BlobError> {
        std::fs::create_dir_all(&spool).map_err(|e| err("spool dir", e))?;
        let store = nubo_jetstream::open_object_store(js, BUCKET, replicas)
            .await
            .map_err(|e| BlobError::backend("JetStream", e))?;
        let containers = nubo_jetstream::open_kv(
            js,
            kv::Config {
                bucket: CONTAINERS.into(),
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| BlobError::backend("JetStream", e))?;
        let usage = nubo_jetstream::Usage::open(js, replicas)
            .await
            .map_err(|e| BlobError::backend("JetStream", e))?;
        Ok(Self {
            store,
            containers,
            spool,
            account: Arc::new(Account {
                usage,
                quotas: Default::default(),
            }),
        })
    }

    /// Every live object under `prefix`, by full name.
    async fn objects(&self, prefix: &str) -> Result<Vec<object_store::ObjectInfo>, BlobError> {
        let mut list = nubo_jetstream::retry(|| self.store.list())
            .await
            .map_err(|e| err("list", e))?;
        let mut out = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| err("list", e))?;
            if !info.deleted && info.name.starts_with(prefix) {
                out.push(info);
            }
        }
        Ok(out)
    }

    async fn object_info(&self, full: &str) -> Result<Option<object_store::ObjectInfo>, BlobError> {
        match nubo_jetstream::retry(|| self.store.info(full)).await {
            Ok(info) if !info.deleted => Ok(Some(info)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(err("info", e)),
        }
    }
}

#[async_trait::async_trait]
impl BlobBackend for NatsBlobs {
    fn set_quota(&self, app: &str, bytes: u64) {
        self.account.quotas.set(app, bytes);
    }

    async fn ensure_container(&self, c: &ContainerId) -> Result<u64, BlobError> {
        let key = container_key(c);
        if let Some(v) = nubo_jetstream::retry(|| self.containers.get(&key))
            .await
            .map_err(|e| err("container", e))?
        {
            return Ok(String::from_utf8_lossy(&v).parse().unwrap_or(0));
        }
        let now = nubo_sqlite::now_ms() as u64;
        // Two nodes may create it at once; either time will do.
        nubo_jetstream::retry(|| self.containers.put(&key, now.to_string().into()))
            .await
            .map_err(|e| err("container", e))?;
        Ok(now)
    }

    async fn containers(&self, app: &str) -> Result<Vec<ContainerStats>, BlobError> {
        let under = format!("{}.", nubo_jetstream::token(app));
        let keys = nubo_jetstream::keys(&self.containers, &under)
            .await
            .map_err(|e| BlobError::backend("JetStream", e))?;
        let objects = self
            .objects(&format!("{}/", nubo_jetstream::token(app)))
            .await?;
        let mut totals: HashMap<String, (u64, u64)> = HashMap::new();
        for o in &objects {
            if let Some(container) = o.name.split('/').nth(1) {
                let t = totals.entry(container.to_string()).or_default();
                t.0 += 1;
                t.1 += o.size as u64;
            }
        }
        let mut out = Vec::new();
        for key in keys {
            let Some(token) = key.strip_prefix(&under) else {
                continue;
            };
            let Some(name) = nubo_jetstream::untoken(token) else {
                continue;
            };
            let Some(created) = self
                .containers
                .get(&key)
                .await
                .map_err(|e| err("container", e))?
            else {
                continue;
            };
            let (objects, bytes) = totals.get(token).copied().unwrap_or_default();
            out.push(ContainerStats {
                name,
                created_ms: String::from_utf8_lossy(&created).parse().unwrap_or(0),
                objects,
                bytes,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn delete_container(&self, c: &ContainerId) -> Result<u64, BlobError> {
        let objects = self.objects(&prefix(c)).await?;
        for o in &objects {
            self.store
                .delete(&o.name)
                .await
                .map_err(|e| err("delete", e))?;
            self.account.add(&c.app, -(o.size as i64)).await?;
        }
        self.containers
            .purge(container_key(c))
            .await
            .map_err(|e| err("delete the container", e))?;
        Ok(objects.len() as u64)
    }

    async fn writer(&self, app: &str) -> Result<Box<dyn BlobWriter>, BlobError> {
        let path = self.spool.join(format!(
            "{:016x}{:08x}.part",
            nubo_sqlite::now_ms() as u64,
            rand_u32()
        ));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| err("spool a blob", e))?;
        Ok(Box::new(NatsWriter {
            store: self.store.clone(),
            account: self.account.clone(),
            app: app.to_owned(),
            file: Some(file),
            path,
            written: 0,
        }))
    }

    async fn read(
        &self,
        c: &ContainerId,
        name: &str,
        start: u64,
        end: Option<u64>,
    ) -> Result<Option<(ObjectMeta, Box<dyn BlobReader>)>, BlobError> {
        check_name(name)?;
        let full = format!("{}{name}", prefix(c));
        let mut object = match nubo_jetstream::retry(|| self.store.get(&full)).await {
            Ok(o) => o,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err("read", e)),
        };
        let m = meta(object.info(), name);
        let end = end.unwrap_or(m.size).min(m.size);
        let start = start.min(end);
        // The object store reads from the start: skip what is not wanted.
        let mut skip = start;
        let mut sink = vec![0u8; READ_CHUNK];
        while skip > 0 {
            let n = object
                .read(&mut sink[..(skip as usize).min(READ_CHUNK)])
                .await
                .map_err(|e| err("read", e))?;
            if n == 0 {
                break;
            }
            skip -= n as u64;
        }
        let left = end - start;
        if left <= crate::EAGER_READ {
            // Whole now: a replace or delete purges the chunks a lazy
            // read would still be waiting for.
            use tokio::io::AsyncReadExt;
            let mut bytes = Vec::with_capacity(left as usize);
            (&mut object)
                .take(left)
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| err("read", e))?;
            let inner = std::io::Cursor::new(bytes);
            let reader = crate::Limited {
                inner,
                left,
                chunk: READ_CHUNK,
            };
            return Ok(Some((m, Box::new(reader))));
        }
        Ok(Some((
            m,
            Box::new(crate::Limited {
                inner: object,
                left,
                chunk: READ_CHUNK,
            }),
        )))
    }

    async fn info(&self, c: &ContainerId, name: &str) -> Result<Option<ObjectMeta>, BlobError> {
        check_name(name)?;
        let full = format!("{}{name}", prefix(c));
        Ok(self.object_info(&full).await?.map(|i| meta(&i, name)))
    }

    async fn list(
        &self,
        c: &ContainerId,
        prefix_: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ObjectMeta>, Option<String>), BlobError> {
        let limit = limit.clamp(1, 10_000);
        let under = prefix(c);
        let mut found: Vec<ObjectMeta> = self
            .objects(&format!("{under}{prefix_}"))
            .await?
            .iter()
            .filter_map(|i| {
                let name = i.name.strip_prefix(&under)?;
                cursor.is_none_or(|cur| name > cur).then(|| meta(i, name))
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        let next = (found.len() > limit).then(|| found[limit - 1].name.clone());
        found.truncate(limit);
        Ok((found, next))
    }

    async fn delete(&self, c: &ContainerId, name: &str) -> Result<bool, BlobError> {
        check_name(name)?;
        let full = format!("{}{name}", prefix(c));
        let Some(info) = self.object_info(&full).await? else {
            return Ok(false);
        };
        match self.store.delete(&full).await {
            Ok(()) => {
                self.account.add(&c.app, -(info.size as i64)).await?;
                Ok(true)
            }
            Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(false),
            Err(e) => Err(err("delete", e)),
        }
    }

    async fn copy(
        &self,
        from: (&ContainerId, &str),
        to: (&ContainerId, &str),
        remove_source: bool,
    ) -> Result<(), BlobError> {
        check_name(from.1)?;
        check_name(to.1)?;
        let source = format!("{}{}", prefix(from.0), from.1);
        let mut object = match self.store.get(&source).await {
            Ok(o) => o,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => {
                return Err(BlobError::NotFound(from.1.to_string()));
            }
            Err(e) => return Err(err("copy", e)),
        };
        let m = meta(object.info(), to.1);
        let size = m.size as i64;
        let dest = format!("{}{}", prefix(to.0), to.1);
        let replaced = self.object_info(&dest).await?.map_or(0, |i| i.size as i64);
        let target = object_store::ObjectMetadata {
            name: dest,
            metadata: HashMap::from([
                ("content_type".to_string(), m.content_type),
                (
                    "created_ms".to_string(),
                    (nubo_sqlite::now_ms() as u64).to_string(),
                ),
            ]),
            ..Default::default()
        };
        let put = async {
            self.store
                .put(target, &mut object)
                .await
                .map_err(|e| err("copy", e))
        };
        self.account
            .counted(&to.0.app, size - replaced, put)
            .await?;
        if remove_source && source != format!("{}{}", prefix(to.0), to.1) {
            self.store
                .delete(&source)
                .await
                .map_err(|e| err("move", e))?;
            self.account.add(&from.0.app, -size).await?;
        }
        Ok(())
    }
}

/// A spool write that failed; a full disk is named as such.
fn spool_err(e: std::io::Error) -> BlobError {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => BlobError::DiskFull,
        _ => err("spool a blob", e),
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(nubo_sqlite::now_ms() as u64);
    h.finish() as u32
}

struct NatsWriter {
    store: object_store::ObjectStore,
    account: Arc<Account>,
    app: String,
    file: Option<tokio::fs::File>,
    path: PathBuf,
    written: u64,
}

impl Drop for NatsWriter {
    fn drop(&mut self) {
        // Committed or not, the spool file has served its purpose.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[async_trait::async_trait]
impl BlobWriter for NatsWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), BlobError> {
        let Some(file) = self.file.as_mut() else {
            return Err(BlobError::Invalid(
                "the object was already committed".into(),
            ));
        };
        if self.written + data.len() as u64 > self.account.quotas.of(&self.app) {
            return Err(BlobError::OverQuota {
                app: self.app.clone(),
                quota: self.account.quotas.of(&self.app),
            });
        }
        file.write_all(&data).await.map_err(spool_err)?;
        self.written += data.len() as u64;
        Ok(())
    }

    fn written(&self) -> u64 {
        self.written
    }

    async fn commit(
        mut self: Box<Self>,
        c: &ContainerId,
        name: &str,
        content_type: &str,
    ) -> Result<ObjectMeta, BlobError> {
        check_name(name)?;
        let Some(mut file) = self.file.take() else {
            return Err(BlobError::Invalid(
                "the object was already committed".into(),
            ));
        };
        file.flush().await.map_err(|e| err("spool a blob", e))?;
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| err("spool a blob", e))?;
        let meta = ObjectMeta {
            name: name.to_string(),
            size: self.written,
            created_ms: nubo_sqlite::now_ms() as u64,
            content_type: content_type.to_string(),
        };
        let target = object_store::ObjectMetadata {
            name: format!("{}{name}", prefix(c)),
            metadata: HashMap::from([
                ("content_type".to_string(), meta.content_type.clone()),
                ("created_ms".to_string(), meta.created_ms.to_string()),
            ]),
            ..Default::default()
        };
        let replaced = match nubo_jetstream::retry(|| self.store.info(&target.name)).await {
            Ok(info) if !info.deleted => info.size as i64,
            Ok(_) => 0,
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => 0,
            Err(e) => return Err(err("info", e)),
        };
        // Acknowledged by JetStream (replicated) before this returns.
        let put = async {
            self.store
                .put(target, &mut file)
                .await
                .map_err(|e| err("store a blob", e))
        };
        self.account
            .counted(&c.app, meta.size as i64 - replaced, put)
            .await?;
        Ok(meta)
    }
}
