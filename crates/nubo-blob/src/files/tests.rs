use super::*;

fn cid(container: &str) -> ContainerId {
    ContainerId {
        app: "app".into(),
        container: container.into(),
    }
}

async fn put(b: &FileBlobs, c: &ContainerId, name: &str, data: &[u8]) -> ObjectMeta {
    let mut w = b.writer(&c.app).await.unwrap();
    for chunk in data.chunks(1000) {
        w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    w.commit(c, name, "text/plain").await.unwrap()
}

async fn read_all(
    b: &FileBlobs,
    c: &ContainerId,
    name: &str,
    start: u64,
    end: Option<u64>,
) -> Option<Vec<u8>> {
    let (_, mut r) = b.read(c, name, start, end).await.unwrap()?;
    let mut out = Vec::new();
    loop {
        let chunk = r.read(7000).await.unwrap();
        if chunk.is_empty() {
            return Some(out);
        }
        out.extend_from_slice(&chunk);
    }
}

fn open(dir: &Path) -> FileBlobs {
    FileBlobs::open(&dir.join("blobs.db"), &dir.join("blobs")).unwrap()
}

#[tokio::test]
async fn written_objects_read_back_whole_and_in_ranges() {
    let tmp = tempfile::tempdir().unwrap();
    let b = open(tmp.path());
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let meta = put(&b, &cid("c"), "a/b.txt", &data).await;
    assert_eq!(meta.size, 100_000);
    assert_eq!(
        read_all(&b, &cid("c"), "a/b.txt", 0, None).await.unwrap(),
        data
    );
    assert_eq!(
        read_all(&b, &cid("c"), "a/b.txt", 10, Some(20))
            .await
            .unwrap(),
        data[10..20]
    );
    // Ranges past the end are clamped, not errors.
    assert_eq!(
        read_all(&b, &cid("c"), "a/b.txt", 99_990, Some(1 << 40))
            .await
            .unwrap(),
        data[99_990..]
    );
    assert!(
        read_all(&b, &cid("other"), "a/b.txt", 0, None)
            .await
            .is_none()
    );
    let info = b.info(&cid("c"), "a/b.txt").await.unwrap().unwrap();
    assert_eq!(
        (info.size, info.content_type.as_str()),
        (100_000, "text/plain")
    );
}

#[tokio::test]
async fn a_reader_keeps_the_bytes_it_opened_while_the_object_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let b = open(tmp.path());
    put(&b, &cid("c"), "x", &[1u8; 50_000]).await;
    let (_, mut old) = b.read(&cid("c"), "x", 0, None).await.unwrap().unwrap();
    put(&b, &cid("c"), "x", &[2u8; 10]).await;
    let mut seen = Vec::new();
    loop {
        let chunk = old.read(4096).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        seen.extend_from_slice(&chunk);
    }
    assert_eq!(seen, vec![1u8; 50_000]);
    assert_eq!(
        read_all(&b, &cid("c"), "x", 0, None).await.unwrap(),
        vec![2u8; 10]
    );
    // The replaced file is gone from disk.
    assert_eq!(
        std::fs::read_dir(tmp.path().join("blobs")).unwrap().count(),
        1
    );
}

#[tokio::test]
async fn an_uncommitted_write_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let b = open(tmp.path());
    let mut w = b.writer("app").await.unwrap();
    w.write(Bytes::from_static(b"partial")).await.unwrap();
    drop(w);
    assert!(b.info(&cid("c"), "x").await.unwrap().is_none());
    assert_eq!(
        std::fs::read_dir(tmp.path().join("blobs")).unwrap().count(),
        0
    );
}

#[tokio::test]
async fn reopening_keeps_objects_and_removes_orphan_files() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let b = open(tmp.path());
        put(&b, &cid("c"), "kept", b"hello").await;
    }
    // What a crash mid-write leaves behind.
    std::fs::write(tmp.path().join("blobs").join("orphan"), b"junk").unwrap();
    let b = open(tmp.path());
    assert_eq!(
        read_all(&b, &cid("c"), "kept", 0, None).await.unwrap(),
        b"hello"
    );
    assert!(!tmp.path().join("blobs").join("orphan").exists());
}

#[tokio::test]
async fn list_pages_by_prefix_in_byte_order() {
    let tmp = tempfile::tempdir().unwrap();
    let b = open(tmp.path());
    for name in ["img/b", "img/a", "imh", "img/ä", "doc", "img/c"] {
        put(&b, &cid("c"), name, b"x").await;
    }
    let names = |v: Vec<ObjectMeta>| v.into_iter().map(|m| m.name).collect::<Vec<_>>();
    let (page, next) = b.list(&cid("c"), "img/", None, 2).await.unwrap();
    assert_eq!(names(page), ["img/a", "img/b"]);
    let (page, next) = b.list(&cid("c"), "img/", next.as_deref(), 2).await.unwrap();
    assert_eq!(names(page), ["img/c", "img/ä"]);
    assert!(next.is_none());
    let (all, _) = b.list(&cid("c"), "", None, 100).await.unwrap();
    assert_eq!(
        names(all),
        ["doc", "img/a", "img/b", "img/c", "img/ä", "imh"]
    );
}

#[tokio::test]
async fn copy_move_delete_and_containers() {
    let tmp = tempfile::tempdir().unwrap();
    let b = open(tmp.path());
    put(&b, &cid("a"), "x", b"one").await;
    b.copy((&cid("a"), "x"), (&cid("b"), "y"), false)
        .await
        .unwrap();
    b.copy((&cid("a"), "x"), (&cid("a"), "z"), true)
        .await
        .unwrap();
    assert!(b.info(&cid("a"), "x").await.unwrap().is_none());
    assert_eq!(read_all(&b, &cid("a"), "z", 0, None).await.unwrap(), b"one");
    assert_eq!(read_all(&b, &cid("b"), "y", 0, None).await.unwrap(), b"one");
    // Deleting one name of a copied file leaves the other intact.
    assert!(b.delete(&cid("a"), "z").await.unwrap());
    assert!(!b.delete(&cid("a"), "z").await.unwrap());
    assert_eq!(read_all(&b, &cid("b"), "y", 0, None).await.unwrap(), b"one");
    let missing = b.copy((&cid("a"), "nope"), (&cid("b"), "q"), false).await;
    assert!(
        matches!(&missing, Err(BlobError::NotFound(n)) if n == "nope"),
        "{missing:?}"
    );
    let stats = b.containers("app").await.unwrap();
    let summary: Vec<_> = stats
        .iter()
        .map(|s| (s.name.as_str(), s.objects, s.bytes))
        .collect();
    assert_eq!(summary, [("a", 0, 0), ("b", 1, 3)]);
    assert_eq!(b.delete_container(&cid("b")).await.unwrap(), 1);
    assert_eq!(b.containers("app").await.unwrap().len(), 1);
    assert_eq!(
        std::fs::read_dir(tmp.path().join("blobs")).unwrap().count(),
        0
    );
}

#[test]
fn prefix_end_bounds_every_name_with_the_prefix() {
    assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
    assert_eq!(prefix_end(""), None);
    assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
    assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
    assert_eq!(prefix_end("\u{10FFFF}"), None);
}

#[tokio::test]
async fn bad_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let b = open(tmp.path());
    let w = b.writer("a").await.unwrap();
    let long = "n".repeat(crate::MAX_NAME + 1);
    assert!(matches!(
        w.commit(&cid("c"), &long, "x").await,
        Err(BlobError::Invalid(_))
    ));
    assert!(matches!(
        b.info(&cid("c"), "").await,
        Err(BlobError::Invalid(_))
    ));
}

#[tokio::test]
async fn an_app_stores_objects_up_to_its_quota() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.set_quota("app", 10_000);
    let (c, d) = (cid("c"), cid("d"));
    put(&b, &c, "one", &[1; 6000]).await;
    // Committing past the quota: refused, nothing named, the file gone.
    let mut w = b.writer("app").await.unwrap();
    w.write(Bytes::from(vec![2; 6000])).await.unwrap();
    let over = w.commit(&d, "two", "text/plain").await.unwrap_err();
    assert!(matches!(over, BlobError::OverQuota { .. }), "{over}");
    assert!(b.info(&d, "two").await.unwrap().is_none());
    // A writer stops as soon as it passes the whole quota.
    let mut w = b.writer("app").await.unwrap();
    let early = w.write(Bytes::from(vec![3; 10_001])).await.unwrap_err();
    assert!(matches!(early, BlobError::OverQuota { .. }), "{early}");
    drop(w);
    // A copy counts too; a move does not add.
    let copy = b.copy((&c, "one"), (&d, "copy"), false).await.unwrap_err();
    assert!(matches!(copy, BlobError::OverQuota { .. }), "{copy}");
    b.copy((&c, "one"), (&d, "moved"), true).await.unwrap();
    // Replacing with a smaller object, or deleting, frees room.
    put(&b, &d, "moved", &[1; 1000]).await;
    put(&b, &c, "two", &[2; 8000]).await;
    assert!(b.delete(&c, "two").await.unwrap());
    put(&b, &c, "three", &[3; 9000]).await;
    // Another app is not limited by this one's quota.
    let other = ContainerId {
        app: "other".into(),
        container: "c".into(),
    };
    put(&b, &other, "big", &[4; 50_000]).await;
    // Files left by the refused writes were removed.
    let files = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
    assert_eq!(files, 3, "one file per stored object");
}
