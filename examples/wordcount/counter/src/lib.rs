//! Word counts over a generated corpus, one task per document.
//!
//! - `GET /api/count?docs=N`: counts N documents as N tasks and, for
//!   comparison, once more one after another in this request; answers
//!   both times, the totals (which must agree) and the top words.
//! - `POST /api/jobs?docs=N`: starts the same count as a background task
//!   and answers its id at once; follow it with
//!   `nubo tasks show wordcount ID`.

use nubo_sdk::tasks::{self, TaskFn};
use nubo_sdk::{Error, Json, Request, Response, Router, StatusCode};
use std::collections::BTreeMap;
use std::time::Instant;

/// Words the generated documents are made of.
const VOCABULARY: &[&str] = &[
    "cloud",
    "function",
    "thread",
    "task",
    "node",
    "queue",
    "durable",
    "spawn",
    "await",
    "core",
    "machine",
    "crash",
    "replay",
    "journal",
    "result",
    "parent",
    "child",
    "cancel",
    "limit",
    "retry",
    "wasm",
    "component",
    "sandbox",
    "gateway",
    "route",
    "blob",
    "key",
    "value",
    "cron",
    "socket",
    "topic",
    "metric",
    "log",
    "cost",
    "plan",
    "apply",
    "deploy",
    "scale",
    "cluster",
    "stream",
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "it",
    "that",
    "on",
];

/// Words per document: big enough that counting one is real work.
const WORDS_PER_DOC: usize = 200_000;

/// Document `n`: the same words for the same `n`, on every run.
fn document(n: u64) -> String {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut text = String::with_capacity(WORDS_PER_DOC * 6);
    for _ in 0..WORDS_PER_DOC {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Skewed, so some words are much more common than others.
        let r = (x % 1000) as usize;
        let i = (r * r / 1000) * VOCABULARY.len() / 1000;
        text.push_str(VOCABULARY[i]);
        text.push(' ');
    }
    text
}

/// The task: generate document `n` and count its words.
fn count_document(n: u64) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for w in document(n).split_whitespace() {
        *counts.entry(w.to_string()).or_insert(0) += 1;
    }
    counts
}

/// Task functions and the names their stored tasks call them by.
const COUNT_DOCUMENT: TaskFn<u64, BTreeMap<String, u64>> =
    TaskFn::new("count-document", count_document);
const COUNT_CORPUS: TaskFn<u64, BTreeMap<String, u64>> = TaskFn::new("count-corpus", count_corpus);

/// The whole job, as a task of its own: one task per document, merged.
fn count_corpus(docs: u64) -> BTreeMap<String, u64> {
    match tasks::parallel_map(COUNT_DOCUMENT, 0..docs) {
        Ok(parts) => merge(parts),
        Err(e) => panic!("a document failed: {e}"),
    }
}

fn merge(parts: Vec<BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for part in parts {
        for (w, n) in part {
            *total.entry(w).or_insert(0) += n;
        }
    }
    total
}

fn top(counts: &BTreeMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut v: Vec<_> = counts.iter().map(|(w, c)| (w.clone(), *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

fn docs(req: &Request) -> u64 {
    req.uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("docs=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
        .clamp(1, 10_000)
}

fn count(req: Request) -> Result<Json<serde_json::Value>, Error> {
    let n = docs(&req);
    let t = Instant::now();
    let parallel = merge(tasks::parallel_map(COUNT_DOCUMENT, 0..n)?);
    let parallel_ms = t.elapsed().as_millis() as u64;
    let t = Instant::now();
    let sequential = merge((0..n).map(count_document).collect());
    let sequential_ms = t.elapsed().as_millis() as u64;
    Ok(Json(serde_json::json!({
        "documents": n,
        "words": parallel.values().sum::<u64>(),
        "agree": parallel == sequential,
        "parallel_ms": parallel_ms,
        "sequential_ms": sequential_ms,
        "speedup": sequential_ms as f64 / parallel_ms.max(1) as f64,
        "top": top(&parallel, 10),
    })))
}

fn start_job(req: Request) -> Result<(StatusCode, Json<serde_json::Value>), Error> {
    let n = docs(&req);
    let job = tasks::spawn(COUNT_CORPUS, n)
        .map_err(|e| Error::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let started = serde_json::json!({ "id": job.id(), "documents": n });
    Ok((StatusCode::ACCEPTED, Json(started)))
}

fn handle(req: Request) -> Response {
    Router::new()
        .get("/api/count", count)
        .post("/api/jobs", start_job)
        .handle(req)
}

nubo_sdk::http_handler!(handle, tasks: [COUNT_DOCUMENT, COUNT_CORPUS]);
