//! Sign-in at the gateway, over real HTTP to a real node: accounts,
//! cookie sessions, routes with `auth` and `roles`, the identity headers a
//! component sees (and a client can never forge), cross-site requests,
//! and guessing slowed.

mod common;

use common::control::NodeProc;
use common::{AppDir, Reply, request, wasm};
use serde_json::json;

fn app(name: &str, host: &str, ttl: &str) -> AppDir {
    AppDir::new(&format!(
        r#"
[app]
name = "{name}"
hosts = ["{host}"]

[auth]
accounts = true
session = {{ ttl = "{ttl}" }}

[component.probe]
source = "{}"

[[http]]
route = "/probe/..."
component = "probe"

[[http]]
route = "/members/..."
component = "probe"
auth = "required"

[[http]]
route = "/admin/..."
component = "probe"
roles = ["admin"]
"#,
        wasm("probe").display()
    ))
}

/// The `nubo_session=…` of an answer's `Set-Cookie`.
fn session(r: &Reply) -> String {
    let cookie = r.header("set-cookie").unwrap_or_default();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_sessions_and_routes_that_need_them() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app("club", "club.test", "14d"));
    let call =
        |method: &'static str, path: &str, headers: Vec<(&'static str, String)>, body: String| {
            let url = node.url(path);
            async move {
                let mut h: Vec<(&str, &str)> = vec![("host", "club.test")];
                h.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
                request(method, &url, &h, body.as_bytes()).await
            }
        };
    let creds = json!({ "email": "Ada@Example.com", "password": "correct horse" }).to_string();

    // A required route without an identity.
    let r = call("GET", "/members/nubo-headers", vec![], String::new()).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("www-authenticate").is_some());

    // Sign up: signed in at once.
    let r = call("POST", "/auth/signup", vec![], creds.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(
        r.text().contains("\"email\":\"ada@example.com\""),
        "{}",
        r.text()
    );
    let first = session(&r);
    let again = call("POST", "/auth/signup", vec![], creds.clone()).await;
    assert_eq!(again.status, 409, "{}", again.text());

    // The component sees who it is, and how.
    let r = call(
        "GET",
        "/members/nubo-headers",
        vec![("cookie", first.clone())],
        String::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.text();
    assert!(seen.contains("nubo-auth=session"), "{seen}");
    assert!(seen.contains("nubo-user-email=ada@example.com"), "{seen}");
    assert!(seen.contains("nubo-user-id="), "{seen}");

    // A client's own `nubo-user-*` never reaches a component.
    let forged = vec![
        ("nubo-user-id", "admin".to_string()),
        ("nubo-user-roles", "admin".to_string()),
    ];
    let r = call("GET", "/probe/nubo-headers", forged.clone(), String::new()).await;
    assert_eq!(r.status, 200);
    assert!(!r.text().contains("nubo-user"), "{}", r.text());
    let r = call("GET", "/members/nubo-headers", forged, String::new()).await;
    assert_eq!(r.status, 401);

    // A role the identity lacks.
    let r = call(
        "GET",
        "/admin/nubo-headers",
        vec![("cookie", first.clone())],
        String::new(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());

    // A wrong password and an unknown email get the same answer.
    let wrong = call(
        "POST",
        "/auth/login",
        vec![],
        json!({ "email": "ada@example.com", "password": "wrong horse" }).to_string(),
    )
    .await;
    let unknown = call(
        "POST",
        "/auth/login",
        vec![],
        json!({ "email": "bob@example.com", "password": "wrong horse" }).to_string(),
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.text()),
        (unknown.status, unknown.text())
    );
    assert_eq!(wrong.status, 401);

    // Signing in again (a form, as an HTML page sends it) makes a new session.
    let r = call(
        "POST",
        "/auth/login",
        vec![("content-type", "application/x-www-form-urlencoded".into())],
        "email=ada%40example.com&password=correct+horse".into(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let second = session(&r);
    assert_ne!(first, second);

    // A cross-site request carries no identity from its cookie.
    let r = call(
        "POST",
        "/members/echo",
        vec![
            ("cookie", second.clone()),
            ("origin", "https://evil.example".into()),
        ],
        String::new(),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = call(
        "POST",
        "/members/echo",
        vec![
            ("cookie", second.clone()),
            ("origin", "http://club.test".into()),
        ],
        String::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Signing out ends the session; the other one lives on.
    let r = call(
        "POST",
        "/auth/logout",
        vec![("cookie", second.clone())],
        String::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(
        "GET",
        "/members/nubo-headers",
        vec![("cookie", second)],
        String::new(),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = call("GET", "/auth/me", vec![("cookie", first)], String::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Guessing is slowed: past ten failures, sign-in waits.
    let mut last = None;
    for _ in 0..11 {
        last = Some(
            call(
                "POST",
                "/auth/login",
                vec![],
                json!({ "email": "eve@example.com", "password": "guess guess" }).to_string(),
            )
            .await,
        );
    }
    let last = last.unwrap();
    assert_eq!(last.status, 429, "{}", last.text());
    assert!(last.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_ends_at_its_ttl() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&app("brief", "brief.test", "1s"));
    let creds = json!({ "email": "ada@example.com", "password": "correct horse" }).to_string();
    let h = [("host", "brief.test")];
    let r = request("POST", &node.url("/auth/signup"), &h, creds.as_bytes()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let cookie = session(&r);
    let with = [("host", "brief.test"), ("cookie", cookie.as_str())];
    let r = request("GET", &node.url("/members/echo"), &with, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let r = request("GET", &node.url("/members/echo"), &with, b"").await;
    assert_eq!(r.status, 401, "{}", r.text());
}

/// An app under a base path signs in under it, and its cookie stays there.
#[tokio::test(flavor = "multi_thread")]
async fn sign_in_lives_under_the_apps_base() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let app = app("based", "based.test", "1h");
    let toml = std::fs::read_to_string(app.path().join("nubo.toml")).unwrap();
    app.write(
        "nubo.toml",
        toml.replace("hosts = [\"based.test\"]", "base = \"/club\""),
    );
    node.apply(&app);
    let creds = json!({ "email": "ada@example.com", "password": "correct horse" }).to_string();
    let r = request(
        "POST",
        &node.url("/club/auth/signup"),
        &[],
        creds.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let cookie = r.header("set-cookie").unwrap_or_default().to_string();
    assert!(cookie.contains("Path=/club;"), "{cookie}");
    let token = session(&r);
    let r = request(
        "GET",
        &node.url("/club/members/echo"),
        &[("cookie", token.as_str())],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}
