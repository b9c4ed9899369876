//! The task store contract, written once and run against both backends:
//! the embedded SQLite store always, JetStream on a real nats-server. What
//! the runner relies on (a task is taken once, a respawn finds its stored
//! outcome, a cancellation reaches every descendant, a finished tree
//! expires whole) holds for either, or fails here.
//!
//! Where the backends differ by design, each keeps its own test:
//! `max_queued` counts queued tasks only on JetStream, and `recover` hands
//! a restarted node's tasks back to its own runner on SQLite but to the
//! shared queue on JetStream.

use nubo_tasks::{NatsTasks, NewTask, SqliteTasks, Start, State, TaskError, TaskStore};

fn new(app: &str, id: &str) -> NewTask {
    NewTask {
        id: id.into(),
        app: app.into(),
        component: "c".into(),
        function: "f".into(),
        payload: b"p".to_vec(),
        depth: id.matches('.').count() as u32,
        starts: false,
        by: None,
    }
}

async fn spawn(s: &dyn TaskStore, t: NewTask) -> Result<bool, TaskError> {
    let mut r = s.spawn_all(vec![t], 100).await.expect("store answers");
    r.pop().expect("one answer per task")
}

async fn state(s: &dyn TaskStore, id: &str) -> Option<(State, u32)> {
    let t = s.get("a", id).await.expect("store answers")?;
    Some((t.state, t.attempts))
}

async fn keeps_the_contract(s: &dyn TaskStore) {
    // Who started a task is kept with it.
    let by = nubo_wasm::Principal {
        id: "u1".into(),
        email: Some("ada@example.com".into()),
        roles: vec!["admin".into()],
        how: "session".into(),
    };
    let mut signed = new("z", "t0");
    signed.by = Some(by.clone());
    assert_eq!(spawn(s, signed).await, Ok(true));
    let got = s.get("z", "t0").await.unwrap().and_then(|t| t.by);
    assert_eq!(got, Some(by));
    let started = s.start("t0", "z", Start::Attempt).await.unwrap();
    assert_eq!(started.and_then(|t| t.by).map(|p| p.id), Some("u1".into()));
    s.finish("t0", "z", Ok(Vec::new())).await.unwrap();

    // A spawn is stored once; a respawn of its id finds it.
    assert_eq!(spawn(s, new("a", "t1")).await, Ok(true));
    assert_eq!(spawn(s, new("a", "t1")).await, Ok(false));
    assert_eq!(state(s, "t1").await, Some((State::Queued, 0)));
    assert_eq!(s.get("b", "t1").await.unwrap().map(|t| t.id), None);
    let mut other = new("a", "t1");
    other.function = "g".into();
    assert!(matches!(
        spawn(s, other).await,
        Err(TaskError::Refused { .. })
    ));

    // Taken once; its outcome is stored and found by a respawn.
    let t = s.start("t1", "a", Start::Attempt).await.unwrap();
    assert_eq!(t.map(|t| (t.state, t.attempts)), Some((State::Running, 1)));
    assert!(s.start("t1", "a", Start::Attempt).await.unwrap().is_none());
    s.finish("t1", "a", Ok(b"42".to_vec())).await.unwrap();
    assert_eq!(state(s, "t1").await, Some((State::Done, 1)));
    assert_eq!(spawn(s, new("a", "t1")).await, Ok(false));
    let outcomes = s
        .outcomes("a", vec!["t1".into(), "nope".into()])
        .await
        .unwrap();
    assert_eq!(outcomes[0], Some(Ok(b"42".to_vec())));
    assert!(matches!(outcomes[1], Some(Err(TaskError::Refused { .. }))));

    // A retry is a new attempt; a waiting task resumes in the same one.
    spawn(s, new("a", "t2")).await.unwrap();
    s.start("t2", "a", Start::Attempt).await.unwrap();
    assert!(s.requeue("t2", "a").await.unwrap());
    assert_eq!(state(s, "t2").await, Some((State::Queued, 1)));
    let again = s.start("t2", "a", Start::Attempt).await.unwrap();
    assert_eq!(again.map(|t| t.attempts), Some(2));
    assert!(s.unload("t2", "a").await.unwrap());
    assert_eq!(state(s, "t2").await, Some((State::Waiting, 2)));
    assert!(s.start("t2", "a", Start::Attempt).await.unwrap().is_none());
    let resumed = s.start("t2", "a", Start::Resume).await.unwrap();
    assert_eq!(resumed.map(|t| t.attempts), Some(2));
    let failed = TaskError::Failed {
        message: "no".into(),
    };
    s.finish("t2", "a", Err(failed.clone())).await.unwrap();
    let outcome = s.outcomes("a", vec!["t2".into()]).await.unwrap();
    assert_eq!(outcome, vec![Some(Err(failed))]);

    // Cancelling a task cancels its unfinished descendants and no others;
    // a finish that comes after leaves it cancelled.
    for id in ["t3", "t3.0", "t3.0.1", "t3.1", "t30"] {
        spawn(s, new("a", id)).await.unwrap();
    }
    s.start("t3.1", "a", Start::Attempt).await.unwrap();
    let mut cancelled = s.cancel("a", "t3").await.unwrap();
    cancelled.sort();
    assert_eq!(cancelled, ["t3", "t3.0", "t3.0.1", "t3.1"]);
    s.finish("t3.1", "a", Ok(b"late".to_vec())).await.unwrap();
    let outcome = s.outcomes("a", vec!["t3.1".into()]).await.unwrap();
    assert_eq!(outcome, vec![Some(Err(TaskError::Cancelled))]);
    assert_eq!(state(s, "t30").await, Some((State::Queued, 0)));

    // Listing, newest first and by state, and the counts by state.
    let queued = s.list("a", Some(State::Queued), 10).await.unwrap();
    assert_eq!(
        queued.iter().map(|t| &t.id[..]).collect::<Vec<_>>(),
        ["t30"]
    );
    assert_eq!(s.list("a", None, 100).await.unwrap().len(), 7);
    let counts = s.counts("a").await.unwrap();
    let count = |st: State| counts.iter().find(|(s, _)| *s == st).map_or(0, |c| c.1);
    assert_eq!(
        (
            count(State::Done),
            count(State::Failed),
            count(State::Cancelled)
        ),
        (1, 1, 4)
    );

    // A tree expires whole, once every task in it finished before the
    // cutoff; one with an unfinished task stays.
    let later = nubo_tasks::now_ms() + 60_000;
    assert_eq!(s.expire("a", later).await.unwrap(), 6);
    assert_eq!(state(s, "t1").await, None);
    assert_eq!(state(s, "t30").await, Some((State::Queued, 0)));

    // Removing the app removes its tasks and names the unfinished ones.
    spawn(s, new("b", "t1")).await.unwrap();
    let (gone, unfinished) = s.purge_app("a").await.unwrap();
    assert_eq!((gone, unfinished), (1, vec!["t30".to_string()]));
    assert!(s.list("a", None, 100).await.unwrap().is_empty());
    assert!(s.get("b", "t1").await.unwrap().is_some());
}

#[tokio::test]
async fn the_embedded_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteTasks::open(&dir.path().join("tasks.db")).unwrap();
    keeps_the_contract(&s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_jetstream_store_keeps_the_contract() {
    let nats = nubo_testkit::nats::NatsCluster::start(1);
    let js = nats.jetstream().await;
    let secret = "a-test-secret-of-at-least-32-characters!";
    let key = std::sync::Arc::new(nubo_cluster::ClusterKey::new(secret).unwrap());
    let s = NatsTasks::open(&js, 1, "node-1", key).await.unwrap();
    keeps_the_contract(&s).await;
}
