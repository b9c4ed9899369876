//! Cross-origin requests at the gateway, over real HTTP to a real node:
//! preflights answered without running a component, the CORS headers on
//! every answer to an allowed origin (refusals too), and cookies from an
//! origin `[cors]` lets send them, while other origins stay cross-site.

mod common;

use common::control::NodeProc;
use common::{AppDir, Reply, request, wasm};
use serde_json::json;

const HOST: &str = "api.test";
const PAGE: &str = "https://app.example";

fn app(cors: &str) -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "api"
hosts = ["{HOST}"]

[auth]
accounts = true

{cors}

[component.probe]
source = "{}"

[[http]]
route = "/probe/..."
component = "probe"

[[http]]
route = "/members/..."
component = "probe"
auth = "required"
"#,
        wasm("probe").display()
    ))
}

async fn call(node: &NodeProc, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut h = vec![("host", HOST)];
    h.extend_from_slice(headers);
    request(method, &node.url(path), &h, b"").await
}

#[tokio::test(flavor = "multi_thread")]
async fn preflights_and_answers_follow_cors() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app(
        "[cors]\norigins = [\"https://app.example\", \"https://*.preview.example\"]\nmethods = [\"GET\", \"POST\", \"PUT\"]\nheaders = [\"content-type\", \"x-csrf\"]\nexpose_headers = [\"x-request-id\"]\ncredentials = true\nmax_age = \"1h\"\n",
    ));

    // A preflight: answered by the gateway (the probe would echo).
    let pre = [
        ("origin", PAGE),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "Content-Type, X-CSRF"),
    ];
    let r = call(&node, "OPTIONS", "/probe/echo", &pre).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some(PAGE));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, POST, PUT")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type, x-csrf")
    );
    assert_eq!(r.header("access-control-max-age"), Some("3600"));
    assert!(r.text().is_empty());
    // Also for a route that needs sign-in: a preflight carries no cookie.
    let r = call(&node, "OPTIONS", "/members/echo", &pre).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = call(
        &node,
        "OPTIONS",
        "/probe/echo",
        &[
            ("origin", "https://pr-7.preview.example"),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://pr-7.preview.example")
    );

    // Refused preflights say why.
    for (headers, why) in [
        (
            vec![
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
            "origin https://evil.example may not",
        ),
        (
            vec![
                ("origin", PAGE),
                ("access-control-request-method", "DELETE"),
            ],
            "method DELETE",
        ),
        (
            vec![
                ("origin", PAGE),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "x-other"),
            ],
            "`x-other`",
        ),
    ] {
        let r = call(&node, "OPTIONS", "/probe/echo", &headers).await;
        assert_eq!(r.status, 403, "{why}");
        assert!(r.text().contains(why), "{}", r.text());
        assert!(r.header("access-control-allow-origin").is_none());
    }

    // Actual requests: the headers for an allowed origin, none for another.
    let r = call(&node, "GET", "/probe/echo", &[("origin", PAGE)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(PAGE));
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = call(
        &node,
        "GET",
        "/probe/echo",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_none());
    assert_eq!(r.header("vary"), Some("Origin"));
    // A refusal carries them too, so the page can read it.
    let r = call(&node, "GET", "/members/echo", &[("origin", PAGE)]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("access-control-allow-origin"), Some(PAGE));

    // Cookies: from the allowed origin they count; from another, not.
    let creds = json!({ "email": "ada@example.com", "password": "correct horse" }).to_string();
    let r = request(
        "POST",
        &node.url("/auth/signup"),
        &[("host", HOST), ("origin", PAGE)],
        creds.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let cookie = r
        .header("set-cookie")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let r = call(
        &node,
        "POST",
        "/members/echo",
        &[("origin", PAGE), ("cookie", &cookie)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(
        &node,
        "POST",
        "/members/echo",
        &[("origin", "https://evil.example"), ("cookie", &cookie)],
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_cors_options_reach_the_component_and_wildcards_omit_credentials() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app(""));
    let pre = [("origin", PAGE), ("access-control-request-method", "GET")];
    let r = call(&node, "OPTIONS", "/probe/echo", &pre).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("OPTIONS"), "{}", r.text());
    assert!(r.header("access-control-allow-origin").is_none());

    node.apply(&app("[cors]\norigins = [\"*\"]\n"));
    let r = call(&node, "OPTIONS", "/probe/echo", &pre).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r.header("access-control-allow-credentials").is_none());
    let r = call(
        &node,
        "GET",
        "/probe/echo",
        &[("origin", "https://anyone.example")],
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}
