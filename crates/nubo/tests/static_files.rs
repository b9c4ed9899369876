//! Static files through a real node: types, caching, ranges, compression,
//! and every way of trying to read outside the directory.

mod common;
use common::*;

fn site() -> AppDir {
    let app = AppDir::new(
        r#"
[app]
name = "site"

[[static]]
route = "/"
dir = "public"

[[static]]
route = "/assets"
dir = "assets"
"#,
    );
    app.write("public/index.html", "<p>index</p>");
    app.write("public/style.css", "body{}");
    app.write("public/app.js", "console.log(1)");
    app.write("public/docs/index.html", "<p>docs</p>");
    app.write("public/data.bin", (0u8..=255).collect::<Vec<u8>>());
    app.write("public/big.txt", "x".repeat(10_000));
    // Over the size read whole with the lookup: streamed from the file.
    app.write("public/large.bin", large());
    app.write("public/big.txt.gz", b"\x1f\x8bfake-gzip");
    app.write("public/big.txt.br", b"fake-brotli");
    app.write("assets/logo.svg", "<svg/>");
    app.write("secret.txt", "TOP SECRET");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(
            app.path().join("secret.txt"),
            app.path().join("public/link.txt"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            app.path().join("public/style.css"),
            app.path().join("public/inside-link.css"),
        )
        .unwrap();
    }
    app
}

/// 300,000 bytes, each its offset modulo 251.
fn large() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn content_types_and_index_files() {
    let app = site();
    let node = Node::up(app.path(), &[]);
    for (path, ty) in [
        ("/style.css", "text/css; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/data.bin", "application/octet-stream"),
        ("/assets/logo.svg", "image/svg+xml"),
    ] {
        let r = get(&node.url(path)).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(ty), "{path}");
    }
    assert_eq!(get(&node.url("/")).await.text(), "<p>index</p>");
    assert_eq!(get(&node.url("/docs/")).await.text(), "<p>docs</p>");
    let r = get(&node.url("/docs")).await;
    assert_eq!((r.status, r.header("location")), (308, Some("/docs/")));
    assert_eq!(get(&node.url("/missing.html")).await.status, 404);
    let r = request("HEAD", &node.url("/style.css"), &[], b"").await;
    assert_eq!(
        (r.status, r.header("content-length"), r.body.len()),
        (200, Some("6"), 0)
    );
    let r = request("POST", &node.url("/style.css"), &[], b"").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
}

#[tokio::test(flavor = "multi_thread")]
async fn etag_and_conditional_requests() {
    let app = site();
    let node = Node::up(app.path(), &[]);
    let r = get(&node.url("/style.css")).await;
    let etag = r.header("etag").unwrap().to_string();
    let modified = r.header("last-modified").unwrap().to_string();
    let r = request(
        "GET",
        &node.url("/style.css"),
        &[("if-none-match", &etag)],
        b"",
    )
    .await;
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = request(
        "GET",
        &node.url("/style.css"),
        &[("if-none-match", "\"other\"")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = request(
        "GET",
        &node.url("/style.css"),
        &[("if-modified-since", &modified)],
        b"",
    )
    .await;
    assert_eq!(r.status, 304);
}

#[tokio::test(flavor = "multi_thread")]
async fn byte_ranges() {
    let app = site();
    let node = Node::up(app.path(), &[]);
    let r = request(
        "GET",
        &node.url("/data.bin"),
        &[("range", "bytes=10-19")],
        b"",
    )
    .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, (10u8..=19).collect::<Vec<u8>>());
    assert_eq!(r.header("content-range"), Some("bytes 10-19/256"));
    let r = request("GET", &node.url("/data.bin"), &[("range", "bytes=-6")], b"").await;
    assert_eq!(
        (r.status, r.body.clone()),
        (206, (250u8..=255).collect::<Vec<u8>>())
    );
    let r = request(
        "GET",
        &node.url("/data.bin"),
        &[("range", "bytes=300-400")],
        b"",
    )
    .await;
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some("bytes */256"))
    );
    // If-Range with a stale validator: the whole file.
    let r = request(
        "GET",
        &node.url("/data.bin"),
        &[("range", "bytes=0-1"), ("if-range", "\"stale\"")],
        b"",
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, 256));
    // A large file, whole and in a range that starts past the first chunk.
    let r = request("GET", &node.url("/large.bin"), &[], b"").await;
    assert_eq!((r.status, r.body == large()), (200, true));
    let r = request(
        "GET",
        &node.url("/large.bin"),
        &[("range", "bytes=100000-200000")],
        b"",
    )
    .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, large()[100_000..=200_000]);
    assert_eq!(
        r.header("content-range"),
        Some("bytes 100000-200000/300000")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn precompressed_siblings() {
    let app = site();
    let node = Node::up(app.path(), &[]);
    let r = request(
        "GET",
        &node.url("/big.txt"),
        &[("accept-encoding", "gzip, br")],
        b"",
    )
    .await;
    assert_eq!(
        (r.header("content-encoding"), r.text()),
        (Some("br"), "fake-brotli".to_string())
    );
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    let r = request(
        "GET",
        &node.url("/big.txt"),
        &[("accept-encoding", "gzip")],
        b"",
    )
    .await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let r = request(
        "GET",
        &node.url("/big.txt"),
        &[("accept-encoding", "br;q=0, gzip;q=0")],
        b"",
    )
    .await;
    assert_eq!((r.header("content-encoding"), r.body.len()), (None, 10_000));
    let r = get(&node.url("/big.txt")).await;
    assert_eq!((r.header("content-encoding"), r.body.len()), (None, 10_000));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_path_ever_leaves_the_directory() {
    let app = site();
    let node = Node::up(app.path(), &[]);
    // Sent raw, so no client normalises the path first.
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/docs/../../secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/..%5csecret.txt",
        "/assets/../../secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/link.txt",
        "/%00",
    ] {
        let reply = raw_get(node.addr, path).await;
        assert!(!reply.contains("TOP SECRET"), "{path} leaked:\n{reply}");
        let status = reply.split_whitespace().nth(1).unwrap_or("");
        assert!(status == "404" || status == "400", "{path}: {reply}");
    }
    // A symlink that stays inside the directory is fine.
    assert_eq!(get(&node.url("/inside-link.css")).await.text(), "body{}");
}

async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}
