//! Blob containers through `wasi:blobstore`, from a real component that
//! streams HTTP bodies into blobs and back, on a real node; `nubo blob`
//! from the CLI; and what survives a SIGKILL.

mod common;

use bytes::Bytes;
use common::control::NodeProc;
use common::{AppDir, request, wasm};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use std::pin::Pin;
use std::task::{Context, Poll};

/// An app with the blobs component at `/b/...`, granted `containers`.
fn blob_app(name: &str, base: &str, containers: &str, memory_mb: u32) -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "{name}"
base = "{base}"
[component.blobs]
source = "{}"
blob_containers = [{containers}]
limits = {{ memory_mb = {memory_mb} }}
[[http]]
route = "/b/..."
component = "blobs"
"#,
        wasm("blobs").display()
    ))
}

async fn call(node: &NodeProc, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let r = request(method, &node.url(path), &[], body).await;
    (r.status, r.text())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_stores_reads_lists_and_deletes_blobs() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&blob_app("a", "/a", "\"files\", \"archive\"", 64));
    node.apply(&blob_app("other", "/o", "\"files\"", 64));

    assert_eq!(
        call(
            &node,
            "PUT",
            "/a/b/put/notes/one.txt?type=text/plain",
            b"hello blobs"
        )
        .await,
        (201, "11".into())
    );
    let r = request("GET", &node.url("/a/b/get/notes/one.txt"), &[], b"").await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello blobs"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    // Byte ranges, end exclusive in the SDK.
    assert_eq!(
        call(&node, "GET", "/a/b/get/notes/one.txt?range=6-10", b"").await,
        (200, "blob".into())
    );
    assert_eq!(
        call(&node, "GET", "/a/b/info/notes/one.txt", b"").await,
        (200, "notes/one.txt 11 text/plain".into())
    );
    // Replacing is atomic and keeps one object.
    assert_eq!(
        call(&node, "PUT", "/a/b/put/notes/one.txt", b"v2").await.0,
        201
    );
    assert_eq!(
        call(&node, "GET", "/a/b/get/notes/one.txt", b"").await.1,
        "v2"
    );
    assert_eq!(
        call(&node, "GET", "/a/b/info/notes/one.txt", b"").await.1,
        "notes/one.txt 2 application/octet-stream"
    );

    for name in ["notes/two.txt", "pics/cat.jpg", "notes/three.txt"] {
        assert_eq!(
            call(&node, "PUT", &format!("/a/b/put/{name}"), b"x")
                .await
                .0,
            201
        );
    }
    assert_eq!(
        call(&node, "GET", "/a/b/list?prefix=notes/", b"").await.1,
        "notes/one.txt\nnotes/three.txt\nnotes/two.txt"
    );
    assert_eq!(
        call(&node, "GET", "/a/b/list", b"").await.1.lines().count(),
        4
    );

    // Copy and move, within the container and to another granted one.
    assert_eq!(
        call(
            &node,
            "POST",
            "/a/b/copy/pics/cat.jpg?to=archive/cat-1.jpg",
            b""
        )
        .await,
        (200, "ok".into())
    );
    assert_eq!(
        call(
            &node,
            "POST",
            "/a/b/move/notes/two.txt?to=files/old/two.txt",
            b""
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(&node, "GET", "/a/b/get/notes/two.txt", b"").await.0,
        404
    );
    assert_eq!(call(&node, "GET", "/a/b/get/old/two.txt", b"").await.1, "x");
    let denied = call(&node, "POST", "/a/b/copy/pics/cat.jpg?to=secret/x", b"").await;
    assert!(denied.1.contains("access denied"), "{denied:?}");

    // Delete; deleting what is gone is fine.
    assert_eq!(
        call(&node, "POST", "/a/b/del/pics/cat.jpg", b"").await.0,
        200
    );
    assert_eq!(
        call(&node, "POST", "/a/b/del/pics/cat.jpg", b"").await.0,
        200
    );
    assert_eq!(
        call(&node, "GET", "/a/b/get/pics/cat.jpg", b"").await.0,
        404
    );

    // A write dropped unfinished stores nothing.
    assert_eq!(
        call(&node, "PUT", "/a/b/put/half.bin?abandon=1", &[7u8; 100_000]).await,
        (200, "abandoned".into())
    );
    assert_eq!(call(&node, "GET", "/a/b/info/half.bin", b"").await.0, 404);

    // Containers are per app, and only granted ones open.
    assert_eq!(call(&node, "GET", "/o/b/get/old/two.txt", b"").await.0, 404);
    let denied = call(&node, "GET", "/a/b/open?c=secret", b"").await;
    assert_eq!(denied.0, 403);
    assert!(
        denied
            .1
            .contains("container `secret` is not in this component's `blob_containers`"),
        "{}",
        denied.1
    );
    // Bad names are errors for the guest, not crashes of the node.
    let long = "n".repeat(2000);
    let bad = call(&node, "PUT", &format!("/a/b/put/{long}"), b"x").await;
    assert_eq!(bad.0, 500);
    assert!(bad.1.contains("at most 1024"), "{}", bad.1);
    assert_eq!(call(&node, "GET", "/a/b/get/old/two.txt", b"").await.1, "x");
}

/// The byte at `i` of a generated object.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 13)) as u8
}

/// A request body of `len` generated bytes, made as it is sent.
struct Generated {
    at: u64,
    len: u64,
}

impl Body for Generated {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let n = (self.len - self.at).min(256 << 10);
        if n == 0 {
            return Poll::Ready(None);
        }
        let chunk: Vec<u8> = (self.at..self.at + n).map(pattern).collect();
        self.at += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

async fn connect(url: &str) -> hyper::client::conn::http1::SendRequest<Generated> {
    let uri: http::Uri = url.parse().unwrap();
    let addr = format!("{}:{}", uri.host().unwrap(), uri.port_u16().unwrap());
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_object_streams_through_a_small_component_in_bounded_memory() {
    const LEN: u64 = 256 << 20;
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    // 16 MiB of guest memory for a 256 MiB object: only streaming fits.
    node.apply(&blob_app("big", "/", "\"files\"", 16));
    // Warm up, so that the peak below is what the transfer adds.
    assert_eq!(call(&node, "PUT", "/b/put/small", b"x").await.0, 201);
    assert_eq!(call(&node, "GET", "/b/get/small", b"").await.1, "x");
    let before = peak_rss(node.child.id());

    let url = node.url("/b/put/big.bin");
    let mut sender = connect(&url).await;
    let req = http::Request::put("/b/put/big.bin")
        .header("host", "localhost")
        .header("content-length", LEN.to_string())
        .body(Generated { at: 0, len: LEN })
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!((status, &body[..]), (201, LEN.to_string().as_bytes()));

    // Read it back as a stream and check every byte.
    let mut sender = connect(&url).await;
    let req = http::Request::get("/b/get/big.bin")
        .header("host", "localhost")
        .body(Generated { at: 0, len: 0 })
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.into_body();
    let mut at = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        if let Ok(data) = frame.into_data() {
            for (k, b) in data.iter().enumerate() {
                assert_eq!(*b, pattern(at + k as u64), "byte {} differs", at + k as u64);
            }
            at += data.len() as u64;
        }
    }
    assert_eq!(at, LEN);
    let grew = peak_rss(node.child.id()).saturating_sub(before);
    assert!(
        grew < 96 << 20,
        "the node's peak memory grew by {} MiB for a {} MiB object",
        grew >> 20,
        LEN >> 20
    );
    let info = node.json("/v1/apps/big/blobs/files").await;
    assert_eq!(info["objects"][0]["name"], "big.bin");
    assert_eq!(info["objects"][0]["size"], LEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn nubo_blob_lists_uploads_downloads_and_removes() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&blob_app("cli", "/", "\"files\"", 64));
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..3_000_000u64).map(pattern).collect();
    let src = dir.path().join("photo.jpg");
    std::fs::write(&src, &data).unwrap();
    let src = src.to_str().unwrap();

    let (code, out, err) = node.cli(&["blob", "put", "cli", "files", src], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("stored files/photo.jpg (2.9 MiB, image/jpeg)"),
        "{err}"
    );
    let (code, _, err) = node.cli(
        &[
            "blob",
            "put",
            "cli",
            "files",
            src,
            "--as",
            "raw/1",
            "--content-type",
            "application/x-raw",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    // The guest sees what the CLI stored.
    assert_eq!(
        call(&node, "GET", "/b/info/raw/1", b"").await,
        (200, "raw/1 3000000 application/x-raw".into())
    );

    let (_, out, _) = node.cli(&["blob", "ls", "cli"], &[]);
    assert!(out.starts_with("files"), "{out}");
    assert!(out.contains("2 objects"), "{out}");
    let (_, out, _) = node.cli(&["blob", "ls", "cli", "files", "--prefix", "raw/"], &[]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("application/x-raw") && out.trim_end().ends_with("raw/1"),
        "{out}"
    );

    let copy = dir.path().join("copy.jpg");
    let (code, _, err) = node.cli(
        &[
            "blob",
            "get",
            "cli",
            "files",
            "photo.jpg",
            "-o",
            copy.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        std::fs::read(&copy).unwrap() == data,
        "downloaded bytes differ"
    );
    call(
        &node,
        "PUT",
        "/b/put/hello.txt?type=text/plain",
        b"hi from the guest",
    )
    .await;
    let (_, out, _) = node.cli(&["blob", "get", "cli", "files", "hello.txt"], &[]);
    assert_eq!(out, "hi from the guest");

    let (code, _, err) = node.cli(&["blob", "rm", "cli", "files", "photo.jpg"], &[]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = node.cli(&["blob", "rm", "cli", "files", "photo.jpg"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("no object `photo.jpg`"), "{err}");
    let (code, _, err) = node.cli(&["blob", "get", "cli", "files", "photo.jpg"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no object `photo.jpg` in container `files` of app `cli`"),
        "{err}"
    );
    let (code, _, err) = node.cli(&["blob", "ls", "cli", "Bad Name"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid container name `Bad Name`"), "{err}");
    let (code, _, err) = node.cli(&["blob", "put", "cli", "files", "-"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("--as NAME"), "{err}");
    // A typo is an error, not a new container filled quietly.
    let (code, _, err) = node.cli(&["blob", "put", "cli", "flies", src], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("app `cli` has no blob container `flies`: it has `files`"),
        "{err}"
    );
    let (code, _, err) = node.cli(&["blob", "ls", "clii"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("no app `clii` on this node"), "{err}");
    let (code, _, err) = node.cli(&["blob", "put", "cli", "files", src, "--as", ""], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("the object name is empty"), "{err}");
    let (_, out, _) = node.cli(&["blob", "ls", "cli"], &[]);
    assert!(!out.contains("flies"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_blob_survives_sigkill_under_load() {
    let s = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(s.path(), &[]);
    node.apply(&blob_app("load", "/", "\"files\"", 64));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6u64 {
        let base = node.url("/b/put");
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("w{w}-{i}");
                let len = 1000 + (w * 7919 + i * 104_729) % 300_000;
                let body: Vec<u8> = (0..len).map(|k| pattern(k + i)).collect();
                let Ok(Ok(r)) = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    tokio::spawn({
                        let url = format!("{base}/{name}");
                        async move { request("PUT", &url, &[], &body).await }
                    }),
                )
                .await
                else {
                    break;
                };
                if r.status == 201 {
                    acked.push((name, i, len));
                }
                i += 1;
            }
            acked
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    node.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap_or_default());
    }
    assert!(acked.len() > 20, "the writers barely ran: {}", acked.len());

    let node = NodeProc::start(s.path(), &[]);
    for (name, i, len) in &acked {
        let r = request("GET", &node.url(&format!("/b/get/{name}")), &[], b"").await;
        assert_eq!(r.status, 200, "acknowledged blob {name} lost: {}", r.text());
        let want: Vec<u8> = (0..*len).map(|k| pattern(k + i)).collect();
        assert!(r.body == want, "acknowledged blob {name} is corrupt");
    }
    // Files of writes cut short were removed when the node came back.
    let objects = node.json("/v1/apps/load/blobs").await["containers"][0]["objects"]
        .as_u64()
        .unwrap();
    let files = std::fs::read_dir(s.path().join("blobs")).unwrap().count() as u64;
    assert_eq!(files, objects, "orphan blob files were left behind");
}

/// A component that opens readers in a loop is refused past its limit
/// (each holds a file), and the node serves on.
#[tokio::test(flavor = "multi_thread")]
async fn open_readers_are_bounded_per_instance() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&blob_app("h", "/h", "\"files\"", 64));
    assert_eq!(call(&node, "PUT", "/h/b/put/x", b"abc").await.0, 201);
    let (status, body) = call(&node, "GET", "/h/b/hoard/x", b"").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("64 open;") && body.contains("64 blob readers and writers open"),
        "{body}"
    );
    // Each instance starts with none open.
    let (status, body) = call(&node, "GET", "/h/b/hoard/x", b"").await;
    assert!(status == 200 && body.starts_with("64 open;"), "{body}");
    assert_eq!(
        call(&node, "GET", "/h/b/get/x", b"").await,
        (200, "abc".into())
    );
}
