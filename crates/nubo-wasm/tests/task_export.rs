//! Tasks through a component's `task-handler` export, against real
//! components built from `tests/components`: the Rust SDK's `tasker` has
//! the export, the plain `wasi:http` component does not.

mod support;

use std::sync::Arc;
use support::{NoHooks, caller, load};

#[tokio::test(flavor = "multi_thread")]
async fn sdk_components_run_tasks_directly_and_others_do_not() {
    let (_runtime, tasker) = load(true, "tasker");
    let hooks: Arc<dyn nubo_tasks::WaitHooks> = Arc::new(NoHooks);

    let run = tasker.run_task("noop", b"7", caller(), hooks.clone()).await;
    assert_eq!(
        run.expect("tasker has the export").unwrap(),
        Ok(b"7".to_vec())
    );
    let run = tasker
        .run_task("count_words", b"\"a b c\"", caller(), hooks.clone())
        .await;
    assert_eq!(run.unwrap().unwrap(), Ok(b"3".to_vec()));
    // What the function cannot run is its failure, not a trap.
    let run = tasker
        .run_task("noop", b"not json", caller(), hooks.clone())
        .await;
    let err = run.unwrap().unwrap().unwrap_err();
    assert!(err.starts_with("bad payload for noop"), "{err}");
    let run = tasker.run_task("nope", b"1", caller(), hooks.clone()).await;
    let err = run.unwrap().unwrap().unwrap_err();
    assert!(err.contains("no task function `nope` here"), "{err}");
    // A trap is an error of the run (retried by the runner).
    let run = tasker
        .run_task("always_traps", b"1", caller(), hooks.clone())
        .await;
    assert!(run.unwrap().is_err());

    let (_runtime, plain) = load(true, "plain");
    assert!(
        plain
            .run_task("noop", b"7", caller(), hooks)
            .await
            .is_none()
    );
}
