//! The OpenAPI document and the router describe the same API: every
//! method and path the router serves (the node's own routes and each
//! capability's, as [`nubo_api::Routes`] lists them) is documented, and
//! every documented one is served. schemathesis then checks the answers
//! against the document on a running node (`crates/nubo/tests/api_schema.rs`).

use std::collections::BTreeSet;

/// (METHOD, path) pairs, with axum's `{*rest}` written `{rest}`.
type Routes = BTreeSet<(String, String)>;

fn documented() -> Routes {
    let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
    let mut out = Routes::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "head", "patch"].contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_matches_the_router() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = crate::change_tests::node(dir.path()).await;
    let (behind_token, open) = (super::routes(&node), super::open());
    let router: Routes = behind_token
        .served()
        .iter()
        .chain(open.served())
        .map(|(m, p)| (m.to_string(), p.replace("{*", "{")))
        .collect();
    // The node's own routes and those of key-value, blobs, queues, tasks.
    for path in [
        "/v1/apps",
        "/v1/apps/{app}/kv/{store}",
        "/v1/apps/{app}/blobs",
        "/v1/apps/{app}/queues",
        "/v1/apps/{app}/tasks",
    ] {
        assert!(
            router.contains(&("GET".to_string(), path.to_string())),
            "{path} is not served: {router:?}"
        );
    }
    let doc = documented();
    let undocumented: Vec<_> = router.difference(&doc).collect();
    let unserved: Vec<_> = doc.difference(&router).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "served but not in openapi.json: {undocumented:?}\nin openapi.json but not served: {unserved:?}"
    );
}
