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

#[tokio::test(flavor = "multi_thread")]
async fn links_example_shortens_redirects_and_counts_clicks_later() {
    let node = Node::up(&repo_root().join("examples/links"), &[]);
    let r = request(
        "POST",
        &node.url("/api/links"),
        &[],
        br#"{"url":"https://example.com/docs"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let made: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let short = made["short"].as_str().unwrap().to_string();
    let code = made["code"].as_str().unwrap().to_string();
    // The page's live feed: each counted click arrives on the WebSocket.
    let live_url = node.url("/live").replace("http://", "ws://");
    let (mut live, _) = tokio_tungstenite::connect_async(live_url).await.unwrap();
    for _ in 0..3 {
        let r = get(&node.url(&short)).await;
        assert_eq!(r.status, 302);
        assert_eq!(r.header("location"), Some("https://example.com/docs"));
    }
    // The clicks are counted by the queue's consumer, after the redirects.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let links: serde_json::Value =
            serde_json::from_slice(&get(&node.url("/api/links")).await.body).unwrap();
        let clicks = links
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["code"] == code.as_str())
            .map(|l| l["clicks"].as_i64().unwrap_or(0))
            .unwrap_or(0);
        if clicks == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "clicks = {clicks}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    use futures_util::StreamExt;
    let pushed = tokio::time::timeout(std::time::Duration::from_secs(10), live.next())
        .await
        .expect("a live update")
        .expect("open")
        .expect("a frame");
    assert!(
        pushed.to_string().contains(&format!("\"code\":\"{code}\"")),
        "{pushed}"
    );
    // The consumer's path is not routed to the component (the static site
    // owns it and refuses POST): the outside cannot fake clicks.
    assert_eq!(
        request("POST", &node.url("/jobs/click"), &[], code.as_bytes())
            .await
            .status,
        405
    );
    let bad = request(
        "POST",
        &node.url("/api/links"),
        &[],
        br#"{"url":"ftp://x"}"#,
    )
    .await;
    assert_eq!(bad.status, 400);
    let page = get(&node.url("/")).await;
    assert!(page.text().contains("Short links"));
}

#[tokio::test(flavor = "multi_thread")]
async fn wordcount_example_counts_in_parallel_and_agrees() {
    let node = Node::up(&repo_root().join("examples/wordcount"), &[]);
    let r = get(&node.url("/api/count?docs=8")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["agree"], true, "{v}");
    assert_eq!(v["words"], 8 * 200_000, "{v}");
    assert_eq!(v["top"].as_array().unwrap().len(), 10, "{v}");
    let r = request("POST", &node.url("/api/jobs?docs=2"), &[], b"").await;
    assert_eq!(r.status, 202, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with('t'), "{v}");
    let page = get(&node.url("/")).await;
    assert!(page.text().contains("Word count"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bookmarks_example_tags_searches_and_keeps_its_schema() {
    let state = tempfile::tempdir().unwrap();
    let node = Node::up(
        &repo_root().join("examples/bookmarks"),
        &["--state", state.path().to_str().unwrap()],
    );
    let log = node.wait_log("002_search.sql");
    assert!(log.contains("migration applied"), "{log}");
    let add = |url: &str, title: &str, notes: &str, tags: &[&str]| {
        let body = serde_json::json!({ "url": url, "title": title, "notes": notes, "tags": tags });
        let url = node.url("/api/bookmarks");
        async move { request("POST", &url, &[], body.to_string().as_bytes()).await }
    };
    let r = add(
        "https://webassembly.org",
        "WebAssembly",
        "the spec and its proposals",
        &["wasm", "Spec"],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = add(
        "https://www.rust-lang.org",
        "Rust",
        "builds wasm32-wasip2 components",
        &["rust", "wasm"],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = add(
        "https://sqlite.org/fts5.html",
        "SQLite FTS5",
        "full-text search",
        &["sqlite"],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // The same address twice is a conflict; nothing of it is kept.
    let r = add("https://sqlite.org/fts5.html", "again", "", &["dupe"]).await;
    assert_eq!(r.status, 409, "{}", r.text());

    let list = |query: &str| {
        let url = node.url(&format!("/api/bookmarks{query}"));
        async move {
            let v: serde_json::Value = serde_json::from_slice(&get(&url).await.body).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|b| b["title"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    // Newest first; a tag filters through the join; search is by word
    // prefix over titles, notes and addresses.
    assert_eq!(list("").await, ["SQLite FTS5", "Rust", "WebAssembly"]);
    assert_eq!(list("?tag=wasm").await, ["Rust", "WebAssembly"]);
    assert_eq!(list("?q=compon").await, ["Rust"]);
    assert_eq!(list("?q=web&tag=wasm").await, ["WebAssembly"]);
    assert_eq!(list("?q=sqlite%22+OR(").await, ["SQLite FTS5"]);
    let tags: serde_json::Value =
        serde_json::from_slice(&get(&node.url("/api/tags")).await.body).unwrap();
    assert_eq!(
        tags[0],
        serde_json::json!({ "name": "wasm", "count": 2 }),
        "{tags}"
    );
    assert!(!tags.to_string().contains("dupe"), "{tags}");

    // A deleted bookmark leaves the list, the search index and the counts.
    let all: serde_json::Value =
        serde_json::from_slice(&get(&node.url("/api/bookmarks?q=rust")).await.body).unwrap();
    let id = all[0]["id"].as_i64().unwrap();
    let r = request(
        "DELETE",
        &node.url(&format!("/api/bookmarks/{id}")),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 204);
    assert!(list("?q=rust").await.is_empty());
    let tags: serde_json::Value =
        serde_json::from_slice(&get(&node.url("/api/tags")).await.body).unwrap();
    assert_eq!(tags[0]["count"], 1, "{tags}");
    let page = get(&node.url("/")).await;
    assert!(page.text().contains("<h1>Bookmarks</h1>"));
}

/// The notes example: two people sign up through the gateway, each sees
/// only their own notes, and the API refuses anyone not signed in.
#[tokio::test(flavor = "multi_thread")]
async fn notes_example_keeps_each_persons_notes_apart() {
    let state = tempfile::tempdir().unwrap();
    let node = Node::up(
        &repo_root().join("examples/notes"),
        &["--state", state.path().to_str().unwrap()],
    );
    let sign_up = |email: &str| {
        let url = node.url("/auth/signup");
        let body = serde_json::json!({ "email": email, "password": "correct horse" }).to_string();
        async move {
            let r = request("POST", &url, &[], body.as_bytes()).await;
            assert_eq!(r.status, 201, "{}", r.text());
            let cookie = r.header("set-cookie").unwrap_or_default();
            cookie.split(';').next().unwrap_or_default().to_string()
        }
    };
    let (ada, bob) = (
        sign_up("ada@example.com").await,
        sign_up("bob@example.com").await,
    );
    let call = |method: &'static str, path: &str, cookie: &str, body: &str| {
        let url = node.url(path);
        let (cookie, body) = (cookie.to_string(), body.to_string());
        async move {
            request(
                method,
                &url,
                &[("cookie", cookie.as_str())],
                body.as_bytes(),
            )
            .await
        }
    };
    let r = call("POST", "/api/notes", &ada, r#"{"text":"ada's secret"}"#).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let ada_note: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let r = call("POST", "/api/notes", &bob, r#"{"text":"bob's plan"}"#).await;
    assert_eq!(r.status, 201, "{}", r.text());

    let notes = |cookie: &str| {
        let f = call("GET", "/api/notes", cookie, "");
        async move {
            let r = f.await;
            assert_eq!(r.status, 200, "{}", r.text());
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|n| n["text"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(notes(&ada).await, ["ada's secret"]);
    assert_eq!(notes(&bob).await, ["bob's plan"]);
    // Bob cannot delete Ada's note; nobody reaches the API signed out.
    let path = format!("/api/notes/{}", ada_note["id"]);
    assert_eq!(call("DELETE", &path, &bob, "").await.status, 404);
    assert_eq!(get(&node.url("/api/notes")).await.status, 401);
    assert_eq!(call("DELETE", &path, &ada, "").await.status, 204);
    assert!(notes(&ada).await.is_empty());
    let page = get(&node.url("/")).await;
    assert!(page.text().contains("<h1>Notes</h1>"));
}
