//! Tasks through a component's `task-handler` export, against real
//! components built from `tests/components`: the Rust SDK's `tasker` has
//! the export, the plain `wasi:http` component does not.

use nubo_tasks::export::run;
use nubo_tasks::{Caller, TaskRun, WaitHooks};
use nubo_wasm::{Capability, Component, ComponentSettings, Runtime, RuntimeOptions};
use std::sync::Arc;

/// A runtime with the task capability, and component `name` loaded in it
/// with no grants.
fn load(name: &str) -> (Runtime, Component) {
    let caps: [Arc<dyn Capability>; 1] = [Arc::new(nubo_tasks::DurableTasks)];
    let runtime = Runtime::new(RuntimeOptions::default(), &caps).expect("runtime");
    let settings = ComponentSettings {
        app: "t".into(),
        component: name.into(),
        ..Default::default()
    };
    let component = runtime
        .load_http(&nubo_testkit::wasm(name), settings)
        .expect("load the component");
    (runtime, component)
}

/// Wait hooks of a task that waits on nothing.
struct NoHooks;

#[async_trait::async_trait]
impl WaitHooks for NoHooks {
    async fn waiting(&self) {}
    async fn resumed(&self) {}
}

/// A root task's run, as the node passes it.
fn task() -> TaskRun {
    TaskRun {
        caller: Caller {
            app: "t".into(),
            task: Some("t1".into()),
            depth: 0,
        },
        hooks: Arc::new(NoHooks),
        by: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_components_run_tasks_directly_and_others_do_not() {
    let (_runtime, tasker) = load("tasker");

    let out = run(&tasker, "noop", b"7", task()).await;
    assert_eq!(
        out.expect("tasker has the export").unwrap(),
        Ok(b"7".to_vec())
    );
    let out = run(&tasker, "count_words", b"\"a b c\"", task()).await;
    assert_eq!(out.unwrap().unwrap(), Ok(b"3".to_vec()));
    // What the function cannot run is its failure, not a trap.
    let out = run(&tasker, "noop", b"not json", task()).await;
    let err = out.unwrap().unwrap().unwrap_err();
    assert!(err.starts_with("bad payload for noop"), "{err}");
    let out = run(&tasker, "nope", b"1", task()).await;
    let err = out.unwrap().unwrap().unwrap_err();
    assert!(err.contains("no task function `nope` here"), "{err}");
    // A trap is an error of the run (retried by the runner).
    let out = run(&tasker, "always_traps", b"1", task()).await;
    assert!(out.unwrap().is_err());

    let (_runtime, plain) = load("plain");
    assert!(run(&plain, "noop", b"7", task()).await.is_none());
}
