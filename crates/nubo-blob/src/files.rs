//! The embedded backend: object bytes in files, metadata in SQLite.
//!
//! Every committed object is one immutable file named by a fresh id; the
//! `objects` table maps (app, container, name) to that file. A write goes
//! to a new file, is fsynced, and becomes visible in one SQLite
//! transaction (synchronous = FULL), so a replaced object flips from the
//! old bytes to the new at once and a killed node keeps every object whose
//! commit returned. Files that no row names (a write cut short by a crash,
//! a delete that committed but did not unlink yet) are removed when the
//! backend opens.
//!
//! Because files never change after commit, a copy is a hard link and a
//! move is an update of one row. A reader opens the file under the same
//! lock that commits use, and an open file survives unlinking, so a
//! reader sees the bytes that were current when it opened, to the end.
//!
//! Every call on the metadata runs on tokio's blocking pool
//! ([`nubo_sqlite::SharedDb::slow`]): commits sync the disk, and a call
//! that waits for the connection must not hold a tokio worker.

use crate::{
    BlobBackend, BlobError, BlobReader, BlobWriter, ContainerId, ContainerStats, ObjectMeta,
    check_name,
};
use bytes::Bytes;
use nubo_sqlite::{DbError, Limits, SharedDb, Synchronous, Usage};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// Largest chunk a reader hands out at once.
const READ_CHUNK: usize = 256 << 10;

pub struct FileBlobs {
    inner: Arc<Inner>,
}

struct Inner {
    db: SharedDb,
    dir: PathBuf,
    seq: AtomicU64,
    limits: Arc<Limits>,
}

/// Each app's object bytes, for its quota. A copy counts again, though
/// it shares the file: the quota is on what the app stores, not on how.
const USAGE: Usage = Usage {
    table: "blob_usage",
    source: "objects",
    size: "ROW.size",
    columns: "size",
};

impl Inner {
    fn over(&self, app: &str) -> BlobError {
        BlobError::OverQuota {
            app: app.to_owned(),
            quota: self.limits.quotas.of(app),
        }
    }
}

fn db_err(e: rusqlite::Error) -> BlobError {
    DbError::from(e).into()
}

impl From<DbError> for BlobError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::DiskFull => BlobError::DiskFull,
            e => BlobError::backend("SQLite", e),
        }
    }
}

fn io_err(what: &str, e: std::io::Error) -> BlobError {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => BlobError::DiskFull,
        _ => BlobError::backend(what, e),
    }
}

/// The smallest string greater than every string that starts with
/// `prefix`, if there is one: bounds a prefix scan in byte order.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

impl FileBlobs {
    /// Opens (creating) the metadata database at `db` and the object files
    /// in `dir`, and removes files that no object names.
    pub fn open(db: &Path, dir: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err("creating the blob directory", e))?;
        let schema = "CREATE TABLE IF NOT EXISTS containers (
                 app TEXT NOT NULL,
                 container TEXT NOT NULL,
                 created_ms INTEGER NOT NULL,
                 PRIMARY KEY (app, container)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS objects (
                 app TEXT NOT NULL,
                 container TEXT NOT NULL,
                 name TEXT NOT NULL,
                 file TEXT NOT NULL UNIQUE,
                 size INTEGER NOT NULL,
                 created_ms INTEGER NOT NULL,
                 content_type TEXT NOT NULL,
                 PRIMARY KEY (app, container, name)
             ) WITHOUT ROWID;";
        let schema = format!("{schema}\n{}", USAGE.checked_schema());
        let db = SharedDb::open(db, "blobs", &schema, Synchronous::Full)?;
        let limits = Limits::new(dir);
        db.blocking(|c| USAGE.install(c, limits.clone()))?;
        let inner = Inner {
            db,
            dir: dir.to_path_buf(),
            seq: AtomicU64::new(0),
            limits,
        };
        let removed = inner.sweep()?;
        if removed > 0 {
            tracing::info!(removed, "removed blob files that no object names");
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }
}

impl Inner {
    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A file name no other object or writer uses.
    fn fresh_file(&self) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{nanos:x}-{n:x}")
    }

    fn sweep(&self) -> Result<usize, BlobError> {
        let named: HashSet<String> = self.db.blocking(|db| {
            let mut stmt = db.prepare("SELECT file FROM objects").map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect::<Result<HashSet<_>, _>>())
                .map_err(db_err)?;
            Ok::<_, BlobError>(rows)
        })?;
        let mut removed = 0;
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| io_err("reading the blob directory", e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !named.contains(&name) && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn unlink(&self, file: &str) {
        if let Err(e) = std::fs::remove_file(self.path(file)) {
            tracing::warn!(file, "could not remove a replaced blob file: {e}");
        }
    }

    fn meta_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ObjectMeta, String)> {
        Ok((
            ObjectMeta {
                name: r.get(0)?,
                size: r.get::<_, i64>(1)? as u64,
                created_ms: r.get::<_, i64>(2)? as u64,
                content_type: r.get(3)?,
            },
            r.get(4)?,
        ))
    }

    fn lookup(
        db: &Connection,
        c: &ContainerId,
        name: &str,
    ) -> Result<Option<(ObjectMeta, String)>, BlobError> {
        db.prepare_cached(
            "SELECT name, size, created_ms, content_type, file FROM objects
             WHERE app = ?1 AND container = ?2 AND name = ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![c.app, c.container, name], Self::meta_row)
                .optional()
        })
        .map_err(db_err)
    }

    fn ensure(db: &Connection, c: &ContainerId, now: u64) -> Result<u64, BlobError> {
        db.prepare_cached(
            "INSERT INTO containers (app, container, created_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![c.app, c.container, now as i64]))
        .map_err(db_err)?;
        db.prepare_cached("SELECT created_ms FROM containers WHERE app = ?1 AND container = ?2")
            .and_then(|mut s| s.query_row(params![c.app, c.container], |r| r.get::<_, i64>(0)))
            .map(|v| v as u64)
            .map_err(db_err)
    }

    /// Points `name` at `file` in one transaction, unless that takes the
    /// app past its quota or the disk is within its reserve; returns the
    /// file it pointed at before, which the caller unlinks.
    fn put_row(
        &self,
        db: &mut Connection,
        c: &ContainerId,
        meta: &ObjectMeta,
        file: &str,
    ) -> Result<Option<String>, BlobError> {
        let tx = db.transaction().map_err(db_err)?;
        let old = self
            .limits
            .within(|| Self::name(&tx, c, meta, file), || self.over(&c.app))?;
        tx.commit().map_err(db_err)?;
        Ok(old)
    }

    /// Points `name` at `file`; the file it pointed at before.
    fn name(
        tx: &Connection,
        c: &ContainerId,
        meta: &ObjectMeta,
        file: &str,
    ) -> Result<Option<String>, BlobError> {
        Self::ensure(tx, c, meta.created_ms)?;
        let old = Self::lookup(tx, c, &meta.name)?.map(|(_, f)| f);
        tx.execute(
            "INSERT INTO objects (app, container, name, file, size, created_ms, content_type)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (app, container, name) DO UPDATE SET
                 file = ?4, size = ?5, created_ms = ?6, content_type = ?7",
            params![
                c.app,
                c.container,
                meta.name,
                file,
                meta.size as i64,
                meta.created_ms as i64,
                meta.content_type
            ],
        )
        .map_err(db_err)?;
        Ok(old)
    }
}

impl FileBlobs {
    /// Runs `f` on the metadata database, on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, &mut Connection) -> Result<T, BlobError> + Send + 'static,
    ) -> Result<T, BlobError> {
        let inner = self.inner.clone();
        self.inner.db.slow(move |db| f(&inner, db)).await
    }
}

#[async_trait::async_trait]
impl BlobBackend for FileBlobs {
    async fn ensure_container(&self, c: &ContainerId) -> Result<u64, BlobError> {
        let c = c.clone();
        self.with(move |_, db| Inner::ensure(db, &c, nubo_sqlite::now_ms() as u64))
            .await
    }

    fn set_quota(&self, app: &str, bytes: u64) {
        self.inner.limits.quotas.set(app, bytes);
    }

    fn keep_free(&self, bytes: u64) {
        self.inner.limits.disk.keep_free(bytes);
    }

    async fn containers(&self, app: &str) -> Result<Vec<ContainerStats>, BlobError> {
        let app = app.to_owned();
        self.with(move |_, db| {
            let mut stmt = db
                .prepare_cached(
                    "SELECT c.container, c.created_ms, count(o.name), coalesce(sum(o.size), 0)
                     FROM containers c LEFT JOIN objects o
                       ON o.app = c.app AND o.container = c.container
                     WHERE c.app = ?1 GROUP BY c.container ORDER BY c.container",
                )
                .map_err(db_err)?;
            stmt.query_map([&app], |r| {
                Ok(ContainerStats {
                    name: r.get(0)?,
                    created_ms: r.get::<_, i64>(1)? as u64,
                    objects: r.get::<_, i64>(2)? as u64,
                    bytes: r.get::<_, i64>(3)? as u64,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(db_err)
        })
        .await
    }

    async fn delete_container(&self, c: &ContainerId) -> Result<u64, BlobError> {
        let c = c.clone();
        let files: Vec<String> = self
            .with(move |_, db| {
                let tx = db.transaction().map_err(db_err)?;
                let files = tx
                    .prepare("SELECT file FROM objects WHERE app = ?1 AND container = ?2")
                    .and_then(|mut s| {
                        s.query_map(params![c.app, c.container], |r| r.get(0))
                            .and_then(|rows| rows.collect())
                    })
                    .map_err(db_err)?;
                tx.execute(
                    "DELETE FROM objects WHERE app = ?1 AND container = ?2",
                    params![c.app, c.container],
                )
                .map_err(db_err)?;
                tx.execute(
                    "DELETE FROM containers WHERE app = ?1 AND container = ?2",
                    params![c.app, c.container],
                )
                .map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                Ok(files)
            })
            .await?;
        for f in &files {
            self.inner.unlink(f);
        }
        Ok(files.len() as u64)
    }

    async fn writer(&self, app: &str) -> Result<Box<dyn BlobWriter>, BlobError> {
        let file_name = self.inner.fresh_file();
        let path = self.inner.path(&file_name);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| io_err("creating a blob file", e))?;
        Ok(Box::new(FileWriter {
            inner: self.inner.clone(),
            app: app.to_owned(),
            file: Some(file),
            file_name,
            written: 0,
            committed: false,
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
        // Open under the lock that commits take, so that the file cannot
        // be replaced and unlinked between the lookup and the open.
        let (c, name) = (c.clone(), name.to_owned());
        let found = self
            .with(move |inner, db| {
                let Some((meta, file)) = Inner::lookup(db, &c, &name)? else {
                    return Ok(None);
                };
                let f = std::fs::File::open(inner.path(&file))
                    .map_err(|e| io_err("opening a blob file", e))?;
                Ok(Some((meta, f)))
            })
            .await?;
        let Some((meta, file)) = found else {
            return Ok(None);
        };
        let end = end.unwrap_or(meta.size).min(meta.size);
        let start = start.min(end);
        let mut file = tokio::fs::File::from_std(file);
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| io_err("seeking in a blob file", e))?;
        }
        let reader = crate::Limited {
            inner: file,
            left: end - start,
            chunk: READ_CHUNK,
        };
        Ok(Some((meta, Box::new(reader))))
    }

    async fn info(&self, c: &ContainerId, name: &str) -> Result<Option<ObjectMeta>, BlobError> {
        check_name(name)?;
        let (c, name) = (c.clone(), name.to_owned());
        self.with(move |_, db| Inner::lookup(db, &c, &name).map(|o| o.map(|(m, _)| m)))
            .await
    }

    async fn list(
        &self,
        c: &ContainerId,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ObjectMeta>, Option<String>), BlobError> {
        let limit = limit.clamp(1, 10_000);
        // Names compare as text in byte order: start at the later of the
        // prefix and the cursor, stop where the prefix ends, so the primary
        // key index reads only the rows returned.
        let end = prefix_end(prefix);
        let (c, prefix) = (c.clone(), prefix.to_owned());
        let cursor = cursor.unwrap_or("").to_owned();
        self.with(move |_, db| {
            let mut stmt = db
                .prepare_cached(
                    "SELECT name, size, created_ms, content_type, file FROM objects
                     WHERE app = ?1 AND container = ?2 AND name >= ?3 AND name > ?4
                       AND (?5 IS NULL OR name < ?5)
                     ORDER BY name LIMIT ?6",
                )
                .map_err(db_err)?;
            let mut page: Vec<ObjectMeta> = stmt
                .query_map(
                    params![c.app, c.container, prefix, cursor, end, (limit + 1) as i64],
                    |r| Inner::meta_row(r).map(|(m, _)| m),
                )
                .and_then(|rows| rows.collect())
                .map_err(db_err)?;
            if page.len() > limit {
                page.truncate(limit);
                let next = page.last().map(|m| m.name.clone());
                Ok((page, next))
            } else {
                Ok((page, None))
            }
        })
        .await
    }

    async fn delete(&self, c: &ContainerId, name: &str) -> Result<bool, BlobError> {
        check_name(name)?;
        let (c, name) = (c.clone(), name.to_owned());
        let file = self
            .with(move |_, db| {
                let Some((_, file)) = Inner::lookup(db, &c, &name)? else {
                    return Ok(None);
                };
                db.execute(
                    "DELETE FROM objects WHERE app = ?1 AND container = ?2 AND name = ?3",
                    params![c.app, c.container, name],
                )
                .map_err(db_err)?;
                Ok(Some(file))
            })
            .await?;
        match file {
            Some(f) => {
                self.inner.unlink(&f);
                Ok(true)
            }
            None => Ok(false),
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
        if from.0 == to.0 && from.1 == to.1 {
            return Ok(());
        }
        let from = (from.0.clone(), from.1.to_owned());
        let to = (to.0.clone(), to.1.to_owned());
        let replaced = self
            .with(move |inner, db| {
                let mut linked = None;
                let tx = db.transaction().map_err(db_err)?;
                let out = inner.limits.within(
                    || {
                        let Some((mut meta, file)) = Inner::lookup(&tx, &from.0, &from.1)? else {
                            return Err(BlobError::NotFound(from.1.to_string()));
                        };
                        // A move keeps the file; a copy links a second name
                        // to it, as committed files never change.
                        let target = if remove_source {
                            tx.execute(
                                "DELETE FROM objects WHERE app = ?1 AND container = ?2 AND name = ?3",
                                params![from.0.app, from.0.container, from.1],
                            )
                            .map_err(db_err)?;
                            file
                        } else {
                            let fresh = inner.fresh_file();
                            std::fs::hard_link(inner.path(&file), inner.path(&fresh))
                                .map_err(|e| io_err("linking a blob file", e))?;
                            linked = Some(fresh.clone());
                            fresh
                        };
                        meta.name = to.1.clone();
                        meta.created_ms = nubo_sqlite::now_ms() as u64;
                        Inner::name(&tx, &to.0, &meta, &target)
                    },
                    || inner.over(&to.0.app),
                );
                let out = out.and_then(|old| tx.commit().map(|()| old).map_err(db_err));
                if let (Err(_), Some(f)) = (&out, linked) {
                    inner.unlink(&f);
                }
                out
            })
            .await?;
        if let Some(f) = replaced {
            self.inner.unlink(&f);
        }
        Ok(())
    }
}

struct FileWriter {
    inner: Arc<Inner>,
    app: String,
    file: Option<tokio::fs::File>,
    file_name: String,
    written: u64,
    committed: bool,
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if !self.committed {
            // Unfinished: nothing names this file.
            let _ = std::fs::remove_file(self.inner.path(&self.file_name));
        }
    }
}

#[async_trait::async_trait]
impl BlobWriter for FileWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), BlobError> {
        let Some(file) = self.file.as_mut() else {
            return Err(BlobError::Invalid(
                "the object was already committed".into(),
            ));
        };
        if self.written + data.len() as u64 > self.inner.limits.quotas.of(&self.app) {
            return Err(self.inner.over(&self.app));
        }
        self.inner.limits.disk.room()?;
        file.write_all(&data)
            .await
            .map_err(|e| io_err("writing a blob file", e))?;
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
        file.flush()
            .await
            .map_err(|e| io_err("writing a blob file", e))?;
        file.sync_all()
            .await
            .map_err(|e| io_err("syncing a blob file", e))?;
        drop(file);
        // The new file's directory entry must be durable too.
        let dir = self.inner.dir.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()))
            .await
            .map_err(|e| BlobError::backend("syncing the blob directory", e))?
            .map_err(|e| io_err("syncing the blob directory", e))?;
        let meta = ObjectMeta {
            name: name.to_string(),
            size: self.written,
            created_ms: nubo_sqlite::now_ms() as u64,
            content_type: content_type.to_string(),
        };
        let (c, row, file) = (c.clone(), meta.clone(), self.file_name.clone());
        let old = self
            .inner
            .db
            .slow::<_, BlobError, _>({
                let inner = self.inner.clone();
                move |db| inner.put_row(db, &c, &row, &file)
            })
            .await?;
        self.committed = true;
        if let Some(f) = old {
            self.inner.unlink(&f);
        }
        Ok(meta)
    }
}

#[cfg(test)]
mod tests;
