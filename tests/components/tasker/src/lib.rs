//! Durable tasks under test.
//!
//! Routed under any prefix; the last path segment names the operation.
//!
//! - `GET /wc?N`: a deterministic text of N chunks, counted by one task per
//!   chunk (`count_words`) and sequentially; answers `parallel=X sequential=Y`.
//! - `GET /nested?N`: one task (`fan_out`) that itself spawns N `count_words`.
//! - `GET /trap`: a task that always panics; answers the error it ends with.
//! - `GET /unknown`: a task for a function the component lacks.
//! - `GET /deep`: a task that spawns itself without end (`dive`).
//! - `GET /start?N`: starts `fan_out(N)` and answers its id at once.

use nubo_sdk::tasks::{self, TaskError};
use nubo_sdk::{Request, Response, text};

fn chunk(i: usize) -> String {
    (0..(i % 7) + 1)
        .map(|w| format!("w{i}x{w}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn count_words(chunk: String) -> usize {
    chunk.split_whitespace().count()
}

fn fan_out(n: usize) -> usize {
    match tasks::parallel_map(count_words, (0..n).map(chunk)) {
        Ok(counts) => counts.iter().sum(),
        Err(e) => panic!("children failed: {e}"),
    }
}

fn always_traps(_: u32) -> u32 {
    panic!("this task always traps")
}

fn dive(depth: u32) -> u32 {
    match tasks::spawn(dive, depth + 1).and_then(|t| t.join()) {
        Ok(d) => d,
        Err(TaskError::Refused(m)) => {
            println!("dive stopped at depth {depth}: {m}");
            depth
        }
        Err(e) => panic!("{e}"),
    }
}

fn describe(e: &TaskError) -> String {
    match e {
        TaskError::Failed(m) => format!("failed: {m}"),
        TaskError::Trapped(m) => format!("trapped: {m}"),
        TaskError::TimedOut(m) => format!("timed-out: {m}"),
        TaskError::Cancelled => "cancelled".into(),
        TaskError::Refused(m) => format!("refused: {m}"),
    }
}

fn handle(req: Request) -> Response {
    let n: usize = req.uri().query().and_then(|q| q.parse().ok()).unwrap_or(10);
    // Routed under any prefix: the last segment names the operation.
    let op = req.uri().path().rsplit('/').next().unwrap_or("");
    let r = match op {
        "wc" => tasks::parallel_map(count_words, (0..n).map(chunk)).map(|counts| {
            let sequential: usize = (0..n).map(|i| count_words(chunk(i))).sum();
            format!(
                "parallel={} sequential={sequential}",
                counts.iter().sum::<usize>()
            )
        }),
        "nested" => tasks::spawn(fan_out, n)
            .and_then(|t| t.join())
            .map(|total| format!("total={total}")),
        "trap" => tasks::spawn(always_traps, 1u32)
            .and_then(|t| t.join())
            .map(|v| format!("unexpected {v}")),
        "unknown" => tasks::spawn_on("", "no_such_function", b"{}").and_then(|id| {
            tasks::join_raw(&[id])
                .pop()
                .unwrap_or(Err(TaskError::Cancelled))
                .map(|_| "unexpected".to_string())
        }),
        "deep" => tasks::spawn(dive, 0u32)
            .and_then(|t| t.join())
            .map(|d| format!("deepest={d}")),
        "start" => tasks::spawn(fan_out, n).map(|t| t.id().to_string()),
        other => return text(404, format!("no route {other}")),
    };
    match r {
        Ok(s) => text(200, s),
        Err(e) => text(500, describe(&e)),
    }
}

nubo_sdk::http_handler!(handle, tasks: [count_words, fan_out, always_traps, dive]);
