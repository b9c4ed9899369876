//! The OpenAPI document and the router describe the same API: every
//! method and path the router serves is documented, and every documented
//! one is served. The router is read from its source (`router` in
//! `mod.rs`), because axum cannot list its routes; schemathesis then
//! checks the answers against the document on a running node
//! (`crates/nubo/tests/api_schema.rs`).

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

/// Every `.route("PATH", METHODS)` call in `mod.rs`, with the methods
/// its method router names (`get(…)`, `.put(…)`, …).
fn routed() -> Routes {
    let src = include_str!("mod.rs");
    let mut out = Routes::new();
    let mut rest = src;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let Some(open) = rest.find('"') else { break };
        let after = &rest[open + 1..];
        let Some(close) = after.find('"') else { break };
        let path = after[..close].replace("{*", "{");
        // The call ends where its parentheses balance.
        let mut depth = 1;
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = i;
                break;
            }
        }
        let call = &rest[..end];
        for method in ["get", "put", "post", "delete", "head"] {
            let named = call.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0 || !call[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            if named {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn the_openapi_document_matches_the_router() {
    let (doc, router) = (documented(), routed());
    assert!(router.len() > 30, "the router was not read: {router:?}");
    let undocumented: Vec<_> = router.difference(&doc).collect();
    let unserved: Vec<_> = doc.difference(&router).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "served but not in openapi.json: {undocumented:?}\nin openapi.json but not served: {unserved:?}"
    );
}
