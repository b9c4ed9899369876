//! The key-value backend contract, written once and run against both
//! backends: the embedded SQLite store always, JetStream on a real
//! nats-server. A backend that drifts from what `KvBackend` promises fails
//! here, whichever it is.

use nubo_kv::{KvBackend, KvError, MAX_VALUE, Namespace, NatsKv, SqliteKv};
use std::time::Duration;

fn ns(app: &str, store: &str) -> Namespace {
    Namespace {
        app: app.into(),
        store: store.into(),
    }
}

/// Everything a guest relies on, in one pass over a fresh backend.
async fn keeps_the_contract(kv: &dyn KvBackend) {
    let a = ns("a", "default");
    // Values by app and store, apart from each other.
    assert_eq!(kv.get(&a, "k").await.unwrap(), None);
    kv.set(&a, "k", b"1", None).await.unwrap();
    assert_eq!(kv.get(&a, "k").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(kv.get(&ns("b", "default"), "k").await.unwrap(), None);
    assert_eq!(kv.get(&ns("a", "other"), "k").await.unwrap(), None);
    assert!(kv.exists(&a, "k").await.unwrap());
    kv.set(&a, "k", b"2", None).await.unwrap();
    assert_eq!(kv.get(&a, "k").await.unwrap(), Some(b"2".to_vec()));
    kv.delete(&a, "k").await.unwrap();
    assert!(!kv.exists(&a, "k").await.unwrap());
    kv.delete(&a, "never-set").await.unwrap();

    // A value with a time to live is gone once it has passed.
    kv.set(&a, "short", b"x", Some(Duration::from_millis(200)))
        .await
        .unwrap();
    assert!(kv.exists(&a, "short").await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!kv.exists(&a, "short").await.unwrap());
    assert_eq!(kv.get(&a, "short").await.unwrap(), None);

    // Counters and compare-and-swap.
    assert_eq!(kv.increment(&a, "n", 5).await.unwrap(), 5);
    assert_eq!(kv.increment(&a, "n", -2).await.unwrap(), 3);
    kv.set(&a, "text", b"abc", None).await.unwrap();
    assert!(kv.increment(&a, "text", 1).await.is_err());
    assert!(kv.compare_and_swap(&a, "c", None, b"1").await.unwrap());
    assert!(!kv.compare_and_swap(&a, "c", None, b"2").await.unwrap());
    assert!(
        !kv.compare_and_swap(&a, "c", Some(b"0"), b"2")
            .await
            .unwrap()
    );
    assert!(
        kv.compare_and_swap(&a, "c", Some(b"1"), b"2")
            .await
            .unwrap()
    );
    assert_eq!(kv.get(&a, "c").await.unwrap(), Some(b"2".to_vec()));

    // Listing by prefix, in key order, a page at a time.
    for i in 0..25 {
        kv.set(&a, &format!("p/{i:02}"), b"v", None).await.unwrap();
    }
    kv.delete(&a, "p/05").await.unwrap();
    let (page, next) = kv.list_keys(&a, "p/", None, 10).await.unwrap();
    assert_eq!(page.len(), 10);
    assert_eq!((page[0].as_str(), page[5].as_str()), ("p/00", "p/06"));
    let next = next.expect("more pages");
    let (page2, _) = kv.list_keys(&a, "p/", Some(&next), 10).await.unwrap();
    assert_eq!(page2[0], "p/11");
    let (all, none) = kv.list_keys(&a, "p/", None, 100).await.unwrap();
    assert_eq!((all.len(), none), (24, None));

    // Batches.
    let pairs = [
        ("x".to_string(), b"1".to_vec()),
        ("y".into(), b"2".to_vec()),
    ];
    kv.set_many(&a, &pairs).await.unwrap();
    let got = kv.get_many(&a, &["x".into(), "nope".into()]).await.unwrap();
    assert_eq!(got, vec![Some(b"1".to_vec()), None]);
    kv.delete_many(&a, &["x".into(), "y".into()]).await.unwrap();
    assert!(!kv.exists(&a, "x").await.unwrap());

    // Limits, refused the same way by every backend.
    let invalid = |r: Result<(), KvError>| matches!(r, Err(KvError::Invalid(_)));
    assert!(invalid(kv.set(&a, "", b"v", None).await));
    assert!(invalid(kv.set(&a, &"k".repeat(2000), b"v", None).await));
    assert!(invalid(
        kv.set(&a, "big", &vec![0; MAX_VALUE + 1], None).await
    ));
    kv.set(&a, "largest", &vec![7; MAX_VALUE], None)
        .await
        .unwrap();
    assert_eq!(
        kv.get(&a, "largest").await.unwrap().map(|v| v.len()),
        Some(MAX_VALUE)
    );
}

#[tokio::test]
async fn the_embedded_backend_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let kv = SqliteKv::open(&dir.path().join("kv.db")).unwrap();
    keeps_the_contract(&kv).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_jetstream_backend_keeps_the_contract() {
    let nats = nubo_testkit::nats::NatsCluster::start(1);
    let js = nats.jetstream().await;
    let kv = NatsKv::open(&js, 1).await.unwrap();
    keeps_the_contract(&kv).await;
}
