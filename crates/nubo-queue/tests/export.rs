//! Queue deliveries through a component's `queue-handler` export, against
//! real components built from `tests/components`: the Rust SDK's
//! `consumer` (`queue_handler!`) and `qbench` (`queue_batch_handler!`)
//! have the export, the plain `wasi:http` component does not.

use nubo_queue::Message;
use nubo_queue::export::deliver;
use nubo_wasm::{Capability, Component, ComponentSettings, HandleError, Runtime, RuntimeOptions};
use std::sync::Arc;

/// A runtime with the capabilities the test components import (the
/// consumers open key-value stores), and component `name` loaded in it
/// with `limits` and no grants.
fn load(name: &str, limits: nubo_manifest::Limits) -> (Runtime, Component) {
    let caps: [Arc<dyn Capability>; 2] =
        [Arc::new(nubo_queue::Queues), Arc::new(nubo_kv::KeyValue)];
    let runtime = Runtime::new(RuntimeOptions::default(), &caps).expect("runtime");
    let settings = ComponentSettings {
        app: "t".into(),
        component: name.into(),
        limits,
        ..Default::default()
    };
    let component = runtime
        .load_http(&nubo_testkit::wasm(name), settings)
        .expect("load the component");
    (runtime, component)
}

fn message(id: u64, body: &[u8]) -> Message {
    Message {
        id,
        body: body.to_vec(),
        attempt: 1,
        published_at: 0,
        last_error: None,
        by: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_consumers_take_deliveries_directly_and_others_do_not() {
    // One function per message: only the message that fails is reported.
    // (Nothing is granted here, so a message it handles fails too, on
    // opening its key-value store; the one told to fail never gets there.)
    let (_runtime, consumer) = load("consumer", Default::default());
    let out = deliver(
        &consumer,
        "jobs",
        &[message(7, b"fail")],
        nubo_wasm::Invocation::request("queue-7-1"),
    )
    .await;
    assert_eq!(
        out.expect("consumer has the export").unwrap(),
        Ok(vec![(7, "told to fail".to_string())])
    );
    let out = deliver(
        &consumer,
        "jobs",
        &[message(8, b"fail"), message(9, b"x")],
        nubo_wasm::Invocation::request("q"),
    )
    .await;
    let failed = out.unwrap().unwrap().unwrap();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[0], (8, "told to fail".to_string()));
    assert!(failed[1].1.starts_with("access denied"), "{failed:?}");

    // One function per delivery: its error fails the whole delivery.
    let (_runtime, qbench) = load("qbench", Default::default());
    let out = deliver(
        &qbench,
        "jobs",
        &[message(1, b"5"), message(2, b"6")],
        nubo_wasm::Invocation::request("q"),
    )
    .await;
    let why = out.expect("qbench has the export").unwrap().unwrap_err();
    assert!(why.starts_with("access denied"), "{why}");

    let (_runtime, plain) = load("plain", Default::default());
    assert!(
        deliver(
            &plain,
            "jobs",
            &[message(1, b"x")],
            nubo_wasm::Invocation::request("q")
        )
        .await
        .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_that_never_returns_is_cut_at_its_timeout() {
    let limits = nubo_manifest::Limits {
        timeout_ms: 300,
        ..Default::default()
    };
    let (_runtime, consumer) = load("consumer", limits);
    let out = deliver(
        &consumer,
        "jobs",
        &[message(1, b"spin")],
        nubo_wasm::Invocation::request("q"),
    )
    .await;
    assert!(
        matches!(out, Some(Err(HandleError::Timeout(300)))),
        "{out:?}"
    );
    // The next delivery runs as usual.
    let out = deliver(
        &consumer,
        "jobs",
        &[message(2, b"fail")],
        nubo_wasm::Invocation::request("q"),
    )
    .await;
    assert_eq!(
        out.unwrap().unwrap(),
        Ok(vec![(2, "told to fail".to_string())])
    );
}
