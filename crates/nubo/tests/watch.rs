//! `nubo up --watch`: a change to nubo.toml or the sources is applied to
//! the running node; a broken change is reported and the old version
//! keeps serving.

mod common;

use common::control::probe_app;
use common::{Node, get};
use std::time::{Duration, Instant};

async fn wait_for(url: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = get(url).await.text();
        if got == want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_reapplies_changes_and_keeps_serving_through_a_broken_one() {
    let app = probe_app("watched", "");
    let node = Node::up(app.path(), &["--watch", "--no-build"]);
    assert!(node.stdout.lock().unwrap().contains("watching for changes"));
    let url = node.url("/probe/config?greeting");
    assert_eq!(get(&url).await.text(), "hello");

    let toml = app.path().join("nubo.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("default = \"hello\"", "default = \"edited\""),
    )
    .unwrap();
    assert_eq!(wait_for(&url, "edited").await, "edited");
    let out = node.stdout.lock().unwrap().clone();
    assert!(
        out.contains("applied: app `watched` is at revision 2"),
        "{out}"
    );

    std::fs::write(&toml, text.replace("[[http]]", "[[htttp]]")).unwrap();
    let err = node.wait_log("the previous version keeps serving");
    assert!(err.contains("unknown table `htttp`"), "{err}");
    assert!(err.contains("did you mean `http`?"), "{err}");
    assert_eq!(get(&url).await.text(), "edited");

    // Fixed again: applied again.
    std::fs::write(
        &toml,
        text.replace("default = \"hello\"", "default = \"fixed\""),
    )
    .unwrap();
    assert_eq!(wait_for(&url, "fixed").await, "fixed");
}

#[tokio::test(flavor = "multi_thread")]
async fn up_again_after_a_rename_serves_the_renamed_app_alone() {
    let app = probe_app("first", "");
    let node = Node::up(app.path(), &["--no-build"]);
    assert_eq!(get(&node.url("/probe/config?greeting")).await.status, 200);
    drop(node);
    let toml = app.path().join("nubo.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, text.replace("name = \"first\"", "name = \"second\"")).unwrap();
    let node = Node::up(app.path(), &["--no-build"]);
    let out = node.stdout.lock().unwrap().clone();
    assert!(out.contains("removed app `first`"), "{out}");
    assert!(out.contains("serving app `second`"), "{out}");
    assert_eq!(
        get(&node.url("/probe/config?greeting")).await.text(),
        "hello"
    );
}
