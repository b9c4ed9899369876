//! The blob backend contract, written once and run against both backends:
//! files with SQLite metadata always, the JetStream object store on a real
//! nats-server.

use bytes::Bytes;
use nubo_blob::{BlobBackend, BlobError, ContainerId, FileBlobs, NatsBlobs};

fn container(app: &str, name: &str) -> ContainerId {
    ContainerId {
        app: app.into(),
        container: name.into(),
    }
}

/// Writes `chunks` as object `name` of `c`.
async fn put(blobs: &dyn BlobBackend, c: &ContainerId, name: &str, chunks: &[&[u8]]) {
    let mut w = blobs.writer(&c.app).await.unwrap();
    for chunk in chunks {
        w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    let meta = w.commit(c, name, "text/plain").await.unwrap();
    let size: usize = chunks.iter().map(|c| c.len()).sum();
    assert_eq!((meta.name.as_str(), meta.size), (name, size as u64));
}

/// Bytes `start..end` of an object, or `None` if it does not exist.
async fn get(
    blobs: &dyn BlobBackend,
    c: &ContainerId,
    name: &str,
    start: u64,
    end: Option<u64>,
) -> Option<Vec<u8>> {
    let (_, mut reader) = blobs.read(c, name, start, end).await.unwrap()?;
    let mut out = Vec::new();
    loop {
        let chunk = reader.read(64 << 10).await.unwrap();
        if chunk.is_empty() {
            return Some(out);
        }
        out.extend_from_slice(&chunk);
    }
}

async fn keeps_the_contract(blobs: &dyn BlobBackend) {
    let c = container("a", "files");
    blobs.ensure_container(&c).await.unwrap();
    assert_eq!(get(blobs, &c, "x", 0, None).await, None);

    // Written in chunks, read whole and by range; apps are apart.
    put(blobs, &c, "x", &[b"hello ", b"world"]).await;
    assert_eq!(get(blobs, &c, "x", 0, None).await.unwrap(), b"hello world");
    assert_eq!(get(blobs, &c, "x", 6, Some(9)).await.unwrap(), b"wor");
    assert_eq!(get(blobs, &c, "x", 6, Some(1000)).await.unwrap(), b"world");
    assert_eq!(
        get(blobs, &container("b", "files"), "x", 0, None).await,
        None
    );
    let info = blobs.info(&c, "x").await.unwrap().expect("exists");
    assert_eq!((info.size, info.content_type.as_str()), (11, "text/plain"));

    // A writer dropped before its commit leaves nothing.
    let mut w = blobs.writer("a").await.unwrap();
    w.write(Bytes::from_static(b"never")).await.unwrap();
    drop(w);
    assert_eq!(get(blobs, &c, "dropped", 0, None).await, None);

    // Replacing: a reader opened before keeps seeing the old bytes.
    let (_, mut old) = blobs.read(&c, "x", 0, None).await.unwrap().unwrap();
    put(blobs, &c, "x", &[b"new"]).await;
    assert_eq!(get(blobs, &c, "x", 0, None).await.unwrap(), b"new");
    let mut seen = Vec::new();
    loop {
        let chunk = old.read(4).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        seen.extend_from_slice(&chunk);
    }
    assert_eq!(seen, b"hello world");

    // Listing by prefix, in byte order, a page at a time.
    for i in 0..12 {
        put(blobs, &c, &format!("p/{i:02}"), &[b"v"]).await;
    }
    let (page, next) = blobs.list(&c, "p/", None, 5).await.unwrap();
    let names: Vec<_> = page.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["p/00", "p/01", "p/02", "p/03", "p/04"]);
    let next = next.expect("more pages");
    let (page, _) = blobs.list(&c, "p/", Some(&next), 5).await.unwrap();
    assert_eq!(page[0].name, "p/05");
    let (all, none) = blobs.list(&c, "p/", None, 100).await.unwrap();
    assert_eq!((all.len(), none), (12, None));

    // Copy, move, delete.
    let d = container("a", "other");
    blobs.ensure_container(&d).await.unwrap();
    blobs.copy((&c, "x"), (&d, "y"), false).await.unwrap();
    assert_eq!(get(blobs, &d, "y", 0, None).await.unwrap(), b"new");
    blobs.copy((&d, "y"), (&d, "z"), true).await.unwrap();
    assert_eq!(get(blobs, &d, "y", 0, None).await, None);
    assert_eq!(get(blobs, &d, "z", 0, None).await.unwrap(), b"new");
    let missing = blobs.copy((&c, "nope"), (&d, "w"), false).await;
    assert!(
        matches!(missing, Err(BlobError::NotFound(_))),
        "{missing:?}"
    );
    assert!(blobs.delete(&d, "z").await.unwrap());
    assert!(!blobs.delete(&d, "z").await.unwrap());

    // The app's containers with their totals; deleting one empties it.
    let stats = blobs.containers("a").await.unwrap();
    let files = stats.iter().find(|s| s.name == "files").expect("listed");
    assert_eq!((files.objects, files.bytes), (13, 3 + 12));
    blobs.delete_container(&d).await.unwrap();
    assert_eq!(blobs.delete_container(&c).await.unwrap(), 13);
    assert_eq!(get(blobs, &c, "x", 0, None).await, None);

    // A quota refuses the write past it; deleting gives room back.
    let q = container("c", "files");
    blobs.ensure_container(&q).await.unwrap();
    blobs.set_quota("c", 10);
    put(blobs, &q, "first", &[b"12345678"]).await;
    let mut w = blobs.writer("c").await.unwrap();
    let over = async {
        w.write(Bytes::from_static(b"12345")).await?;
        w.commit(&q, "second", "text/plain").await
    }
    .await;
    assert!(matches!(over, Err(BlobError::OverQuota { .. })), "{over:?}");
    assert!(blobs.delete(&q, "first").await.unwrap());
    let mut room = false;
    for _ in 0..30 {
        let mut w = blobs.writer("c").await.unwrap();
        let put = async {
            w.write(Bytes::from_static(b"12345")).await?;
            w.commit(&q, "second", "text/plain").await
        }
        .await;
        if put.is_ok() {
            room = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(room, "deleting gave the room back");
}

#[tokio::test]
async fn the_embedded_backend_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FileBlobs::open(&dir.path().join("blobs.db"), &dir.path().join("blobs")).unwrap();
    keeps_the_contract(&blobs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_jetstream_backend_keeps_the_contract() {
    let nats = nubo_testkit::nats::NatsCluster::start(1);
    let js = nats.jetstream().await;
    let spool = tempfile::tempdir().unwrap();
    let blobs = NatsBlobs::open(&js, 1, spool.path().to_path_buf())
        .await
        .unwrap();
    keeps_the_contract(&blobs).await;
}
