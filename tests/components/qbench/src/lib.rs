//! A queue consumer whose message bodies are their publish times
//! (microseconds since the Unix epoch, as text). Each delivery writes one
//! key of store `default`, `lat-ID-ATTEMPT` (its first message's id and
//! attempt), whose value counts its messages per latency bucket as
//! `BUCKET:COUNT` pairs separated by commas, a bucket being 5% wide:
//! `BUCKET = floor(20 · ln(latency µs))`. One write per delivery keeps the
//! consumer's own work small beside the queue's, as the JetStream side of
//! the bench keeps its histogram in memory. Written with
//! `queue_batch_handler!`, so the node delivers through the component's
//! queue export.

use nubo_sdk::queue::Message;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

fn handle(messages: &[Message]) -> Result<(), String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let mut buckets = BTreeMap::<u32, i64>::new();
    for m in messages {
        let sent: u64 = m.text().and_then(|s| s.trim().parse().ok()).unwrap_or(now);
        let latency = now.saturating_sub(sent).max(1);
        *buckets
            .entry((20.0 * (latency as f64).ln()).floor() as u32)
            .or_default() += 1;
    }
    let kv = nubo_sdk::kv::Store::open("default").map_err(|e| e.to_string())?;
    let Some(first) = messages.first() else {
        return Ok(());
    };
    let counts: Vec<String> = buckets.iter().map(|(b, n)| format!("{b}:{n}")).collect();
    kv.set(
        &format!("lat-{}-{}", first.id, first.attempt),
        counts.join(","),
    )
    .map_err(|e| e.to_string())
}

nubo_sdk::queue_batch_handler!(handle);
