//! Static files, served the way browsers and CDNs expect.
//!
//! Written for Nubo rather than borrowed because its safety rule is Nubo's
//! own: a request can never read outside the declared directory — not with
//! `..`, not with percent-encoded variants of it, and not through a symlink
//! that points elsewhere (every path is canonicalised and checked against the
//! canonical root before it is opened). On top of that: content types from
//! the extension, ETag / If-None-Match and Last-Modified / If-Modified-Since,
//! single byte ranges with If-Range, `index.html` for directories, and
//! precompressed `.br` / `.gz` siblings when the client accepts them.

use crate::body::{Body, empty, full};
use crate::wire::decode_path;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

#[derive(Debug, Clone)]
pub struct StaticDir {
    root: PathBuf,
    recent: Recent,
}

impl StaticDir {
    /// `root` must exist; it is canonicalised once here.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        Ok(Self {
            root: root.canonicalize()?,
            recent: Recent::default(),
        })
    }

    /// The directory served, canonicalised.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Serves `rest`, the still percent-encoded request path below the route
    /// prefix (empty or starting with `/`). `full_path` is the request path,
    /// used for the trailing-slash redirect of directories.
    pub async fn serve(
        &self,
        method: &Method,
        full_path: &str,
        rest: &str,
        headers: &HeaderMap,
    ) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        // Every filesystem call of a request runs in one blocking-pool job:
        // tokio::fs sends each call to that pool separately, and the
        // hand-offs there and back cost more than the calls (a small file
        // took five of them, 6,500 requests/s against 13,600 for a
        // WebAssembly component).
        let accept = accepted_encodings(headers);
        if let Some(file) = self.recent.get(rest, &accept) {
            return self.file(method, file, headers).await;
        }
        let this = self.clone();
        let key = (rest.to_string(), accept);
        let full_path = full_path.to_string();
        let read = method == Method::GET
            && !headers.contains_key(header::IF_NONE_MATCH)
            && !headers.contains_key(header::IF_MODIFIED_SINCE);
        let found = tokio::task::spawn_blocking(move || {
            let found = this.find(&full_path, &key.0, &key.1, read);
            if let Lookup::File(file) = &found {
                this.recent.put(key, file);
            }
            found
        })
        .await
        .unwrap_or(Lookup::Missing);
        match found {
            Lookup::Missing => not_found(),
            Lookup::Redirect(local) => {
                let mut r = empty_response(StatusCode::PERMANENT_REDIRECT);
                if let Ok(v) = HeaderValue::from_str(&local) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
            Lookup::File(file) => self.file(method, *file, headers).await,
        }
    }

    /// The file a request names (blocking: runs on the blocking pool).
    /// `accept` lists the encodings whose precompressed sibling may stand
    /// in (empty for none); with `read`, a small file's bytes come too.
    fn find(&self, full_path: &str, rest: &str, accept: &str, read: bool) -> Lookup {
        let Some(path) = self.resolve(rest) else {
            return Lookup::Missing;
        };
        let (path, meta) = match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                if !full_path.ends_with('/') {
                    // One leading slash: `//host/dir` must not become a
                    // protocol-relative redirect to another site.
                    return Lookup::Redirect(format!("/{}/", full_path.trim_start_matches('/')));
                }
                let index = path.join("index.html");
                match self.inside(&index).map(|i| (std::fs::metadata(&i), i)) {
                    Some((Ok(m), index)) if m.is_file() => (index, m),
                    _ => return Lookup::Missing,
                }
            }
            Ok(m) if m.is_file() => (path, m),
            _ => return Lookup::Missing,
        };
        let mime = mime_guess::from_path(&path).first_or_octet_stream();
        // A precompressed sibling replaces the file when the client takes it.
        let (path, meta, encoding) = match self.precompressed(&path, accept) {
            Some((p, m, enc)) => (p, m, Some(enc)),
            None => (path, meta, None),
        };
        let bytes = (read && meta.len() <= SMALL_FILE)
            .then(|| std::fs::read(&path).ok().map(Bytes::from))
            .flatten();
        Lookup::File(Box::new(FoundFile {
            path,
            meta,
            mime,
            encoding,
            bytes,
        }))
    }

    /// Decodes and joins `rest` under the root; `None` if it would escape.
    fn resolve(&self, rest: &str) -> Option<PathBuf> {
        let mut path = self.root.clone();
        for seg in decode_path(rest)? {
            path.push(seg.as_ref());
        }
        self.inside(&path)
    }

    /// The canonical form of `path` if it exists and stays under the root.
    fn inside(&self, path: &Path) -> Option<PathBuf> {
        let canonical = std::fs::canonicalize(path).ok()?;
        canonical.starts_with(&self.root).then_some(canonical)
    }

    async fn file(&self, method: &Method, found: FoundFile, headers: &HeaderMap) -> Response<Body> {
        let FoundFile {
            path,
            meta,
            mime,
            encoding,
            bytes,
        } = found;
        let content_type = if mime.type_() == mime_guess::mime::TEXT
            || mime.subtype() == "javascript"
            || mime.subtype() == "json"
        {
            format!("{mime}; charset=utf-8")
        } else {
            mime.to_string()
        };
        let modified = meta.modified().ok();
        let etag = etag(&meta, modified, encoding);
        let mut base = HeaderMap::new();
        put(&mut base, header::CONTENT_TYPE, &content_type);
        put(&mut base, header::ETAG, &etag);
        put(&mut base, header::ACCEPT_RANGES, "bytes");
        put(&mut base, header::VARY, "Accept-Encoding");
        if let Some(m) = modified {
            put(
                &mut base,
                header::LAST_MODIFIED,
                &httpdate::fmt_http_date(m),
            );
        }
        if let Some(enc) = encoding {
            put(&mut base, header::CONTENT_ENCODING, enc);
        }

        if not_modified(headers, &etag, modified) {
            let mut r = empty_response(StatusCode::NOT_MODIFIED);
            for name in [header::ETAG, header::LAST_MODIFIED, header::VARY] {
                if let Some(v) = base.get(&name) {
                    r.headers_mut().insert(name, v.clone());
                }
            }
            return r;
        }

        let size = meta.len();
        let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
            Some(range) if if_range_ok(headers, &etag, modified) => {
                match parse_range(range, size) {
                    RangeResult::One(start, end) => Some((start, end)),
                    RangeResult::Ignore => None,
                    RangeResult::Unsatisfiable => {
                        let mut r =
                            text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
                        put(
                            r.headers_mut(),
                            header::CONTENT_RANGE,
                            &format!("bytes */{size}"),
                        );
                        return r;
                    }
                }
            }
            _ => None,
        };
        let (status, start, len) = match range {
            Some((start, end)) => {
                put(
                    &mut base,
                    header::CONTENT_RANGE,
                    &format!("bytes {start}-{end}/{size}"),
                );
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
            }
            None => (StatusCode::OK, 0, size),
        };
        put(&mut base, header::CONTENT_LENGTH, &len.to_string());
        let body = if method == Method::HEAD {
            empty()
        } else if let Some(bytes) = bytes.filter(|b| b.len() as u64 == size) {
            // `start + len <= size`, which is the length read.
            full(bytes.slice(start as usize..(start + len) as usize))
        } else {
            match open_body(&path, start, len).await {
                Ok(body) => body,
                Err(e) => {
                    tracing::warn!("cannot read {}: {e}", path.display());
                    return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot read file\n");
                }
            }
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        *r.headers_mut() = base;
        r
    }

    fn precompressed(
        &self,
        path: &Path,
        accept: &str,
    ) -> Option<(PathBuf, std::fs::Metadata, &'static str)> {
        if accept.is_empty() {
            return None;
        }
        for (ext, enc) in [("br", "br"), ("gz", "gzip")] {
            if !accepts(accept, enc) {
                continue;
            }
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".{ext}"));
            if let Some(p) = self.inside(Path::new(&name))
                && let Ok(m) = std::fs::metadata(&p)
                && m.is_file()
            {
                return Some((p, m, enc));
            }
        }
        None
    }
}

/// Files up to this size are read whole with the lookup; larger ones are
/// streamed.
const SMALL_FILE: u64 = 64 * 1024;

enum Lookup {
    Missing,
    /// A directory asked for without its trailing slash: where to go.
    Redirect(String),
    File(Box<FoundFile>),
}

#[derive(Clone)]
struct FoundFile {
    path: PathBuf,
    meta: std::fs::Metadata,
    mime: mime_guess::Mime,
    encoding: Option<&'static str>,
    /// The whole file, if small and wanted.
    bytes: Option<Bytes>,
}

/// Small files found recently, by request path and Accept-Encoding.
///
/// Even one trip to the blocking pool and back costs more than serving a
/// small file. A hit costs one `stat` on the worker thread instead (a
/// local file's metadata is in the kernel's cache; nginx's
/// `open_file_cache` does the same), and is used only while the file's
/// size, modification time and inode are unchanged. A node serves an
/// immutable copy of each revision's files, so this is a guard, not the
/// rule: a new revision gets a new `StaticDir`. A cached path was checked
/// to lie inside the root when it was found.
#[derive(Clone, Default)]
struct Recent(Arc<Mutex<HashMap<(String, String), FoundFile>>>);

/// Files remembered per directory (each at most [`SMALL_FILE`]).
const RECENT_FILES: usize = 256;

impl std::fmt::Debug for Recent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recent")
    }
}

impl Recent {
    fn get(&self, rest: &str, accept: &str) -> Option<FoundFile> {
        let key = (rest.to_string(), accept.to_string());
        let file = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)?
            .clone();
        match std::fs::metadata(&file.path) {
            Ok(now) if same_file(&now, &file.meta) => Some(FoundFile { meta: now, ..file }),
            _ => {
                let mut files = self.0.lock().unwrap_or_else(|p| p.into_inner());
                files.remove(&key);
                None
            }
        }
    }

    fn put(&self, key: (String, String), file: &FoundFile) {
        if file.bytes.is_none() {
            return;
        }
        let mut files = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if files.len() >= RECENT_FILES {
            files.clear();
        }
        files.insert(key, file.clone());
    }
}

fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if a.ino() != b.ino() || a.dev() != b.dev() {
            return false;
        }
    }
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

/// The Accept-Encoding values, joined; empty when a precompressed sibling
/// must not be used: none accepted, or a range request (those get the
/// identity representation, which download managers and media players
/// expect).
fn accepted_encodings(headers: &HeaderMap) -> String {
    if headers.contains_key(header::RANGE) {
        return String::new();
    }
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether an Accept-Encoding list accepts `coding` (q=0 refuses it).
fn accepts(accept: &str, coding: &str) -> bool {
    accept.split(',').any(|item| {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        (name.eq_ignore_ascii_case(coding) || name == "*") && !refused
    })
}

fn etag(meta: &std::fs::Metadata, modified: Option<SystemTime>, encoding: Option<&str>) -> String {
    let nanos = modified
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    match encoding {
        Some(enc) => format!("\"{:x}-{nanos:x}-{enc}\"", meta.len()),
        None => format!("\"{:x}-{nanos:x}\"", meta.len()),
    }
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

fn not_modified(headers: &HeaderMap, etag: &str, modified: Option<SystemTime>) -> bool {
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        return etag_matches(inm, etag);
    }
    match (
        headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok()),
        modified,
    ) {
        (Some(since), Some(modified)) => httpdate::parse_http_date(since)
            .map(|since| httpdate::HttpDate::from(modified) <= httpdate::HttpDate::from(since))
            .unwrap_or(false),
        _ => false,
    }
}

fn if_range_ok(headers: &HeaderMap, etag: &str, modified: Option<SystemTime>) -> bool {
    let Some(v) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if v.starts_with('"') {
        return v == etag;
    }
    match (httpdate::parse_http_date(v), modified) {
        (Ok(date), Some(m)) => httpdate::HttpDate::from(m) == httpdate::HttpDate::from(date),
        _ => false,
    }
}

enum RangeResult {
    One(u64, u64),
    /// Malformed or multi-range: serve the whole file (RFC 9110 allows it).
    Ignore,
    Unsatisfiable,
}

fn parse_range(value: &str, size: u64) -> RangeResult {
    match http_range_header::parse_range_header(value) {
        Ok(parsed) => match parsed.validate(size) {
            Ok(ranges) if ranges.len() == 1 => {
                let r = &ranges[0];
                RangeResult::One(*r.start(), *r.end())
            }
            Ok(_) => RangeResult::Ignore,
            Err(_) => RangeResult::Unsatisfiable,
        },
        Err(_) => RangeResult::Ignore,
    }
}

async fn open_body(path: &Path, start: u64, len: u64) -> std::io::Result<Body> {
    let mut file = tokio::fs::File::open(path).await?;
    if start > 0 {
        file.seek(SeekFrom::Start(start)).await?;
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 64 * 1024)
        .map(|chunk| chunk.map(Frame::data).map_err(Into::into));
    Ok(StreamBody::new(stream).boxed_unsync())
}

fn put(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

fn empty_response(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    r
}

fn text(status: StatusCode, msg: &'static str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from_static(msg.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "not found\n")
}

#[cfg(test)]
mod tests {
    use super::{StaticDir, accepts, etag_matches};
    use http::{HeaderMap, Method};
    use http_body_util::BodyExt;

    /// Status and body of `GET path` from `dir`.
    async fn get(dir: &StaticDir, path: &str) -> (u16, String) {
        let r = dir.serve(&Method::GET, path, path, &HeaderMap::new()).await;
        let status = r.status().as_u16();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_remembered_file_that_changes_is_looked_up_again() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("a.css");
        std::fs::write(&file, "body{color:red}").unwrap();
        let dir = StaticDir::new(root.path()).unwrap();
        assert_eq!(get(&dir, "/a.css").await, (200, "body{color:red}".into()));
        assert!(dir.recent.get("/a.css", "").is_some(), "not remembered");
        // Replaced by a rename, as editors save, with the same length.
        std::fs::write(root.path().join("new.css"), "body{color:tan}").unwrap();
        std::fs::rename(root.path().join("new.css"), &file).unwrap();
        assert_eq!(get(&dir, "/a.css").await, (200, "body{color:tan}".into()));
        // Written in place.
        std::fs::write(&file, "body{}").unwrap();
        assert_eq!(get(&dir, "/a.css").await, (200, "body{}".into()));
        std::fs::remove_file(&file).unwrap();
        assert_eq!(get(&dir, "/a.css").await.0, 404);
    }

    #[test]
    fn accept_encoding() {
        assert!(accepts("gzip, deflate, br", "br"));
        assert!(accepts("gzip;q=0.5", "gzip"));
        assert!(!accepts("gzip;q=0", "gzip"));
        assert!(!accepts("deflate", "gzip"));
        assert!(accepts("*", "br"));
    }

    #[test]
    fn if_none_match_lists() {
        assert!(etag_matches("\"a\", \"b\"", "\"b\""));
        assert!(etag_matches("W/\"b\"", "\"b\""));
        assert!(etag_matches("*", "\"x\""));
        assert!(!etag_matches("\"a\"", "\"b\""));
    }
}
