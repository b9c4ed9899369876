use super::*;

fn new(id: &str) -> NewTask {
    NewTask {
        id: id.into(),
        app: "a".into(),
        component: "c".into(),
        function: "f".into(),
        payload: b"p".to_vec(),
        depth: id.matches('.').count() as u32,
        starts: false,
        by: None,
    }
}

impl SqliteTasks {
    async fn spawn(&self, t: NewTask, max_queued: u32) -> Result<bool, TaskError> {
        self.spawn_all(vec![t], max_queued)
            .await
            .unwrap()
            .pop()
            .unwrap()
    }
}

/// A task given run slots at its spawn is stored running, its first
/// attempt counted, and is not started a second time.
#[tokio::test]
async fn a_task_that_starts_at_its_spawn_is_stored_running() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteTasks::open(&dir.path().join("t.db")).unwrap();
    let t = NewTask {
        starts: true,
        ..new("t1")
    };
    assert!(s.spawn(t, 10).await.unwrap());
    let t = s.get("t1").await.unwrap().unwrap();
    assert_eq!((t.state, t.attempts), (State::Running, 1));
    assert!(s.start("t1", Start::Attempt).await.unwrap().is_none());
    let recovered = s.recover().await.unwrap();
    assert_eq!(
        recovered.iter().map(|t| &t.id[..]).collect::<Vec<_>>(),
        ["t1"]
    );
}

/// Starts share writes; each task's finish still lands after its
/// start, however the threads interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starts_share_writes_and_precede_their_finish() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(SqliteTasks::open(&dir.path().join("t.db")).unwrap());
    let ids: Vec<String> = (0..2000).map(|i| format!("t{i}")).collect();
    let all = s.spawn_all(ids.iter().map(|i| new(i)).collect(), 10_000);
    assert!(all.await.unwrap().into_iter().all(|r| r == Ok(true)));
    let runs = ids.iter().cloned().map(|id| {
        let s = s.clone();
        tokio::spawn(async move {
            s.started(&id);
            s.finish(&id, Ok(id.clone().into_bytes())).await.unwrap();
        })
    });
    for r in runs.collect::<Vec<_>>() {
        r.await.unwrap();
    }
    for id in &ids {
        let t = s.get(id).await.unwrap().unwrap();
        assert_eq!((t.state, t.attempts), (State::Done, 1), "{id}");
        assert_eq!(t.result.as_deref(), Some(id.as_bytes()));
    }
}

#[tokio::test]
async fn a_respawn_finds_the_task_and_its_stored_result() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteTasks::open(&dir.path().join("t.db")).unwrap();
    assert!(s.spawn(new("t1"), 10).await.unwrap());
    assert_eq!(s.get("t1").await.unwrap().unwrap().state, State::Queued);
    assert_eq!(
        s.start("t1", Start::Attempt)
            .await
            .unwrap()
            .unwrap()
            .attempts,
        1
    );
    assert!(
        s.start("t1", Start::Attempt).await.unwrap().is_none(),
        "taken twice"
    );
    s.finish("t1", Ok(b"42".to_vec())).await.unwrap();
    assert!(!s.spawn(new("t1"), 10).await.unwrap());
    assert_eq!(
        s.get("t1").await.unwrap().unwrap().outcome(),
        Some(Ok(b"42".to_vec()))
    );
    // A re-run that starts another function under the same id is told so.
    let mut other = new("t1");
    other.function = "g".into();
    let e = s.spawn(other, 10).await.unwrap_err();
    assert!(e.to_string().contains("same order"), "{e}");
}

#[tokio::test]
async fn limits_cancellation_of_descendants_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteTasks::open(&dir.path().join("t.db")).unwrap();
    for id in ["t1", "t1.0", "t1.0.3", "t1.1", "t10", "t2"] {
        s.spawn(new(id), 10).await.unwrap();
    }
    let e = s.spawn(new("t3"), 6).await.unwrap_err();
    assert!(e.to_string().contains("max_queued"), "{e}");
    s.start("t1.1", Start::Attempt).await.unwrap();
    let mut cancelled = s.cancel("a", "t1").await.unwrap();
    cancelled.sort();
    assert_eq!(cancelled, vec!["t1", "t1.0", "t1.0.3", "t1.1"]);
    assert_eq!(
        s.get("t1.0.3").await.unwrap().unwrap().outcome(),
        Some(Err(TaskError::Cancelled))
    );
    // t10 is not a child of t1.
    assert_eq!(s.get("t10").await.unwrap().unwrap().state, State::Queued);
    // The cancelled four no longer count against the limit.
    s.spawn(new("t3"), 6).await.unwrap();
    // A waiting task resumes in the same attempt, once.
    s.start("t3", Start::Attempt).await.unwrap();
    assert!(s.unload("t3").await.unwrap());
    assert!(s.start("t3", Start::Attempt).await.unwrap().is_none());
    let resumed = s.start("t3", Start::Resume).await.unwrap().unwrap();
    assert_eq!((resumed.state, resumed.attempts), (State::Running, 1));
    assert!(s.unload("t3").await.unwrap());
    s.start("t2", Start::Attempt).await.unwrap();
    drop(s);
    let s = SqliteTasks::open(&dir.path().join("t.db")).unwrap();
    let queued: Vec<String> = s
        .recover()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    for id in ["t2", "t10", "t3"] {
        assert!(queued.contains(&id.to_string()), "{id} not in {queued:?}");
    }
    assert_eq!(queued.len(), 3, "{queued:?}");
    // The reopen rebuilt the count from the table: t2, t3 and t10 are
    // unfinished, so one more fits under a limit of 4.
    s.spawn(new("t4"), 4).await.unwrap();
    assert!(s.spawn(new("t5"), 4).await.is_err());
}
