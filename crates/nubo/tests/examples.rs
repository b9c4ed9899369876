//! The README's first command must work: `nubo up` builds each example from
//! source and serves it.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn hello_example_builds_and_serves() {
    let node = Node::up(&repo_root().join("examples/hello"), &[]);
    let out = node.stdout.lock().unwrap().clone();
    assert!(out.contains("building `web`"), "{out}");
    assert!(out.contains("/api/...  → component `web`"), "{out}");
    let r = get(&node.url("/api/hello?name=Ada")).await;
    assert_eq!((r.status, r.text()), (200, "Hello, Ada!\n".to_string()));
    let r = get(&node.url("/")).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("Hello from Nubo"));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_api_example_serves_json() {
    let node = Node::up_with(
        &repo_root().join("examples/json-api"),
        &[],
        &[("NUBO_VAR_CURRENCY", "USD")],
    );
    let r = get(&node.url("/")).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"currency\": \"USD\""), "{}", r.text());
    let r = get(&node.url("/products/3")).await;
    assert!(r.text().contains("WASM hoodie"), "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = request(
        "POST",
        &node.url("/quote"),
        &[],
        br#"{"items":[{"id":1,"qty":2},{"id":3,"qty":1}]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("\"subtotal_cents\": 7300"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("\"tax_cents\": 1460"), "{}", r.text());
    let r = request("POST", &node.url("/quote"), &[], b"{not json").await;
    assert_eq!(r.status, 400);
    assert_eq!(get(&node.url("/products/99")).await.status, 404);
}
