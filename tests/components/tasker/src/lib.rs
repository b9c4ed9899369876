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
//! - `GET /slow?N`: the same with `slow_fan_out`, whose N children each
//!   take 50 ms (`slow_count`), so that every node holds some at any time.
//! - `GET /flood?N`: starts `nap(1500)` and N `hold` tasks waiting on it;
//!   answers how many spawns were refused, and why.
//! - `GET /spinning?N`: starts `tree(N)`, N busy-looping `spin` tasks.
//! - `GET /gated?N`: starts `gated(N)` and answers its id: a gate task
//!   (`nap` for 100 s, `ID.0`) and N `hold` tasks waiting on it; its
//!   result is how many were released when the gate ended.
//!
//! - `GET /nap?MS`: starts one task that sleeps MS ms on the host; its id.
//! - `GET /await?ID`: awaits task ID (of any app) and answers its raw result.
//! - `GET /whoami`: a task (`who`) that spawns another; each says who
//!   started it (`identity::caller`): answers `TASK>CHILD`.
//!
//! For `bench/tasks.sh`, timed inside the guest, JSON answers:
//! - `GET /rtt?N`: N sequential spawn+await round trips of `noop`.
//! - `GET /burst?N`: N `noop` tasks spawned at once (`spawn_all`), then
//!   awaited.
//! - `GET /cpu?K,W`: K calls of `burn(W)` one after another, then as K
//!   tasks at once; also the mean time of one call inline and in a task
//!   that runs alone.
//!
//! Every task function but `noop` and `timed_burn` prints `ran FUNCTION` first, so the node's log
//! shows each run of each task id.

use nubo_sdk::tasks::{self, TaskError, TaskFn};
use nubo_sdk::{Request, Response, text};

/// The task functions, by the names their tasks are stored under.
const COUNT_WORDS: TaskFn<String, usize> = TaskFn::new("count_words", count_words);
const FAN_OUT: TaskFn<usize, usize> = TaskFn::new("fan_out", fan_out);
const SLOW_COUNT: TaskFn<String, usize> = TaskFn::new("slow_count", slow_count);
const SLOW_FAN_OUT: TaskFn<usize, usize> = TaskFn::new("slow_fan_out", slow_fan_out);
const ALWAYS_TRAPS: TaskFn<u32, u32> = TaskFn::new("always_traps", always_traps);
const DIVE: TaskFn<u32, u32> = TaskFn::new("dive", dive);
const NAP: TaskFn<u64, u64> = TaskFn::new("nap", nap);
const HOLD: TaskFn<String, u32> = TaskFn::new("hold", hold);
const SPIN: TaskFn<u64, u64> = TaskFn::new("spin", spin);
const TREE: TaskFn<usize, u64> = TaskFn::new("tree", tree);
const GATED: TaskFn<usize, u32> = TaskFn::new("gated", gated);
const NOOP: TaskFn<u64, u64> = TaskFn::new("noop", noop);
const TIMED_BURN: TaskFn<u64, (u64, f64)> = TaskFn::new("timed_burn", timed_burn);
const WHO: TaskFn<u32, String> = TaskFn::new("who", who);

/// Who started this task, then, `depth` levels down, its child's answer.
fn who(depth: u32) -> String {
    let me = nubo_sdk::identity::caller().map_or_else(|| "nobody".to_string(), |u| u.id);
    if depth == 0 {
        return me;
    }
    let child = tasks::spawn(WHO, depth - 1)
        .and_then(|t| t.join())
        .unwrap_or_else(|e| describe(&e));
    format!("{me}>{child}")
}

fn chunk(i: usize) -> String {
    (0..(i % 7) + 1)
        .map(|w| format!("w{i}x{w}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn count_words(chunk: String) -> usize {
    println!("ran count_words");
    chunk.split_whitespace().count()
}

fn noop(x: u64) -> u64 {
    x
}

/// Deterministic CPU work: an FNV-1a-like hash over 0..w. Never inlined:
/// the sequential loop and a task must run the same compiled function, or
/// the fan-out compares two different programs.
#[inline(never)]
fn burn(w: u64) -> u64 {
    let mut h: u64 = 2_166_136_261;
    for i in 0..w {
        h = ((h ^ i).wrapping_mul(16_777_619)) & 0xffff_ffff;
    }
    h
}

fn micros(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

fn rtt(n: usize) -> Result<String, TaskError> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = std::time::Instant::now();
        let back = tasks::spawn(NOOP, i)?.join()?;
        lat.push(micros(t));
        assert_eq!(back, i);
    }
    lat.sort_by(f64::total_cmp);
    let mean = lat.iter().sum::<f64>() / n.max(1) as f64;
    let at = |q: f64| lat[((n as f64 * q) as usize).min(n.saturating_sub(1))];
    Ok(format!(
        r#"{{"mean_us":{mean:.1},"p50_us":{:.1},"p99_us":{:.1}}}"#,
        at(0.5),
        at(0.99)
    ))
}

fn burst(n: usize) -> Result<String, TaskError> {
    let t = std::time::Instant::now();
    let handles = tasks::spawn_all(NOOP, 0..n as u64)?;
    let spawned = micros(t) / 1e6;
    let back = tasks::join_all(handles)?;
    let secs = micros(t) / 1e6;
    assert_eq!(back, (0..n as u64).collect::<Vec<_>>());
    Ok(format!(
        r#"{{"tasks":{n},"secs":{secs:.3},"spawn_secs":{spawned:.3},"tasks_per_s":{:.0}}}"#,
        n as f64 / secs
    ))
}

/// `burn(w)` and the microseconds it took, measured where it runs.
fn timed_burn(w: u64) -> (u64, f64) {
    let t = std::time::Instant::now();
    let h = burn(w);
    (h, micros(t))
}

/// K calls of `burn(W)` one after another, then as K tasks at once (the
/// fan-out's wall-clock time), then as K tasks one after another. Each
/// call is also timed around itself: inline, and inside a task that runs
/// alone, which is its CPU time as nothing else runs. Their ratio shows
/// whether a task runs the same work slower (its code, its instance),
/// apart from the cost of spawning and awaiting.
fn cpu(k: usize, w: u64) -> Result<String, TaskError> {
    let t = std::time::Instant::now();
    let inline: Vec<(u64, f64)> = (0..k).map(|_| timed_burn(w)).collect();
    let seq_s = micros(t) / 1e6;
    let t = std::time::Instant::now();
    let par = tasks::parallel_map(TIMED_BURN, std::iter::repeat_n(w, k))?;
    let par_s = micros(t) / 1e6;
    let alone = (0..k)
        .map(|_| tasks::spawn(TIMED_BURN, w)?.join())
        .collect::<Result<Vec<_>, _>>()?;
    let hashes = |v: &[(u64, f64)]| v.iter().map(|r| r.0).collect::<Vec<_>>();
    assert_eq!(hashes(&inline), hashes(&par));
    assert_eq!(hashes(&inline), hashes(&alone));
    let mean = |v: &[(u64, f64)]| v.iter().map(|r| r.1).sum::<f64>() / k.max(1) as f64;
    let (inline_us, task_us) = (mean(&inline), mean(&alone));
    Ok(format!(
        r#"{{"chunks":{k},"work":{w},"seq_s":{seq_s:.3},"par_s":{par_s:.3},"speedup":{:.2},"inline_us":{inline_us:.0},"task_us":{task_us:.0},"task_vs_inline":{:.3}}}"#,
        seq_s / par_s,
        task_us / inline_us
    ))
}

fn nap(ms: u64) -> u64 {
    println!("ran nap");
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

fn hold(id: String) -> u32 {
    println!("ran hold");
    // Released however the gate ended.
    tasks::join_raw(&[id]).len() as u32
}

fn gated(n: usize) -> u32 {
    println!("ran gated");
    let gate = match tasks::spawn(NAP, 100_000u64) {
        Ok(t) => t,
        Err(e) => panic!("no gate: {e}"),
    };
    let id = gate.id().to_string();
    match tasks::parallel_map(HOLD, std::iter::repeat_n(id, n)) {
        Ok(v) => v.iter().sum(),
        Err(e) => panic!("holds failed: {e}"),
    }
}

fn spin(ms: u64) -> u64 {
    println!("ran spin");
    let start = std::time::Instant::now();
    let mut x = 0u64;
    while start.elapsed().as_millis() < u128::from(ms) {
        for i in 0..100_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
    }
    x
}

fn tree(n: usize) -> u64 {
    println!("ran tree");
    match tasks::parallel_map(SPIN, std::iter::repeat_n(50_000u64, n)) {
        Ok(v) => v.iter().fold(0, |a, b| a ^ b),
        Err(e) => panic!("spin failed: {e}"),
    }
}

fn flood(n: usize) -> String {
    let gate = match tasks::spawn(NAP, 1500u64) {
        Ok(t) => t,
        Err(e) => return format!("gate refused: {e}"),
    };
    let (mut held, mut refused, mut why) = (Vec::new(), 0, String::new());
    for _ in 0..n {
        match tasks::spawn(HOLD, gate.id().to_string()) {
            Ok(t) => held.push(t),
            Err(e) => {
                refused += 1;
                why = describe(&e);
            }
        }
    }
    let spawned = held.len();
    let done: u32 = tasks::join_all(held).map(|v| v.iter().sum()).unwrap_or(0);
    format!("spawned={spawned} done={done} refused={refused} {why}")
}

fn fan_out(n: usize) -> usize {
    println!("ran fan_out");
    match tasks::parallel_map(COUNT_WORDS, (0..n).map(chunk)) {
        Ok(counts) => counts.iter().sum(),
        Err(e) => panic!("children failed: {e}"),
    }
}

fn slow_count(chunk: String) -> usize {
    println!("ran slow_count");
    std::thread::sleep(std::time::Duration::from_millis(50));
    chunk.split_whitespace().count()
}

fn slow_fan_out(n: usize) -> usize {
    println!("ran slow_fan_out");
    match tasks::parallel_map(SLOW_COUNT, (0..n).map(chunk)) {
        Ok(counts) => counts.iter().sum(),
        Err(e) => panic!("children failed: {e}"),
    }
}

fn always_traps(_: u32) -> u32 {
    println!("ran always_traps");
    panic!("this task always traps")
}

fn dive(depth: u32) -> u32 {
    println!("ran dive");
    match tasks::spawn(DIVE, depth + 1).and_then(|t| t.join()) {
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
        "wc" => tasks::parallel_map(COUNT_WORDS, (0..n).map(chunk)).map(|counts| {
            let sequential: usize = (0..n).map(|i| count_words(chunk(i))).sum();
            format!(
                "parallel={} sequential={sequential}",
                counts.iter().sum::<usize>()
            )
        }),
        "nested" => tasks::spawn(FAN_OUT, n)
            .and_then(|t| t.join())
            .map(|total| format!("total={total}")),
        "trap" => tasks::spawn(ALWAYS_TRAPS, 1u32)
            .and_then(|t| t.join())
            .map(|v| format!("unexpected {v}")),
        "unknown" => tasks::spawn_on("", "no_such_function", b"{}").and_then(|id| {
            tasks::join_raw(&[id])
                .pop()
                .unwrap_or(Err(TaskError::Cancelled))
                .map(|_| "unexpected".to_string())
        }),
        // A spawn whose payload is N bytes (of a function nobody has).
        "heavy" => tasks::spawn_on("", "no_such_function", &vec![7u8; n]).map(|_| "spawned".into()),
        // A task on `plain`, which has no task export: run over HTTP.
        "plain" => tasks::spawn_on("plain", "echo", b"hi").and_then(|id| {
            tasks::join_raw(&[id])
                .pop()
                .unwrap_or(Err(TaskError::Cancelled))
                .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        }),
        // One child, awaited at once: the awaiter runs it itself.
        "one" => tasks::spawn(SPIN, n as u64)
            .and_then(|t| t.join())
            .map(|_| "spun".to_string()),
        "deep" => tasks::spawn(DIVE, 0u32)
            .and_then(|t| t.join())
            .map(|d| format!("deepest={d}")),
        "start" => tasks::spawn(FAN_OUT, n).map(|t| t.id().to_string()),
        "slow" => tasks::spawn(SLOW_FAN_OUT, n).map(|t| t.id().to_string()),
        "spinning" => tasks::spawn(TREE, n).map(|t| t.id().to_string()),
        "gated" => tasks::spawn(GATED, n).map(|t| t.id().to_string()),
        // Starts a task that sleeps N ms on the host; its id.
        "nap" => tasks::spawn(NAP, n as u64).map(|t| t.id().to_string()),
        // The raw result of any task id the query names.
        "await" => {
            let id = req.uri().query().unwrap_or("").to_string();
            tasks::join_raw(&[id])
                .pop()
                .unwrap_or(Err(TaskError::Cancelled))
                .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        }
        "rtt" => rtt(n),
        "burst" => burst(n),
        "cpu" => {
            let q = req.uri().query().unwrap_or("");
            let (k, w) = q.split_once(',').unwrap_or(("8", "100000000"));
            cpu(k.parse().unwrap_or(8), w.parse().unwrap_or(100_000_000))
        }
        "flood" => Ok(flood(n)),
        "whoami" => tasks::spawn(WHO, 1u32).and_then(|t| t.join()),
        other => return text(404, format!("no route {other}")),
    };
    match r {
        Ok(s) => text(200, s),
        Err(e) => text(500, describe(&e)),
    }
}

nubo_sdk::http_handler!(
    handle,
    tasks: [
        COUNT_WORDS, FAN_OUT, SLOW_COUNT, SLOW_FAN_OUT, ALWAYS_TRAPS, DIVE, NAP, HOLD, SPIN, TREE, GATED,
        NOOP, TIMED_BURN, WHO
    ]
);
