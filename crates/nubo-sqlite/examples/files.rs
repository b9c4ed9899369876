//! Should the services share one database file or keep one each?
//!
//! Two services (a key-value-like table and a queue-like table) write at
//! once, each from `CALLERS` concurrent callers that each await
//! `WRITES` durable calls in turn, as requests do. Two layouts, run
//! alternately round by round:
//!
//! - `apart`: a [`GroupDb`] per service on a file of its own (what the
//!   node does: `kv.db`, `queues.db`, …);
//! - `shared`: both tables in one file behind one `GroupDb` (one WAL, one
//!   commit per group for both services).
//!
//! Run: `cargo run --release -p nubo-sqlite --example files [ROUNDS]`.
//! Prints each layout's writes per second and CPU per write, medians of
//! the rounds, and the ratio `shared / apart`.

use nubo_sqlite::{DbError, GroupDb, Pace};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CALLERS: usize = 32;
const WRITES: usize = 2_000;
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB);
                      CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY, body BLOB);";

/// One service's writes: `CALLERS` callers, `WRITES` awaited calls each.
async fn service(db: Arc<GroupDb>, table: &'static str) {
    let callers = (0..CALLERS).map(|c| {
        let db = db.clone();
        tokio::spawn(async move {
            for i in 0..WRITES {
                let key = format!("{c}-{i}");
                let sql = match table {
                    "kv" => "INSERT OR REPLACE INTO kv (k, v) VALUES (?1, x'00112233')",
                    _ => "INSERT INTO q (body) VALUES (?1)",
                };
                let done: Result<(), DbError> = db
                    .call(move |conn| {
                        conn.prepare_cached(sql)?.execute([key])?;
                        Ok(())
                    })
                    .await;
                if let Err(e) = done {
                    eprintln!("write failed: {e}");
                }
            }
        })
    });
    for c in callers.collect::<Vec<_>>() {
        let _ = c.await;
    }
}

/// This process's CPU time (user + system), from `/proc/self/stat` in
/// clock ticks of 10 ms: coarse, and enough for rounds of seconds.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Writes per second and CPU µs per write of one round of `layout`.
async fn round(layout: &str, dir: &std::path::Path) -> (f64, f64) {
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::create_dir_all(dir);
    let open =
        |file: &str| GroupDb::open(&dir.join(file), "bench-db", SCHEMA, Pace::Gather).map(Arc::new);
    let (kv, q) = match layout {
        "apart" => (open("kv.db"), open("q.db")),
        _ => {
            let one = open("all.db");
            (one.clone(), one)
        }
    };
    let (Ok(kv), Ok(q)) = (kv, q) else {
        eprintln!("cannot open the databases in {}", dir.display());
        return (0.0, 0.0);
    };
    let (t, c) = (Instant::now(), cpu());
    tokio::join!(service(kv, "kv"), service(q, "q"));
    let writes = (2 * CALLERS * WRITES) as f64;
    let secs = t.elapsed().as_secs_f64();
    let cpu_us = (cpu() - c).as_secs_f64() * 1e6;
    (writes / secs, cpu_us / writes)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let Ok(scratch) = tempfile::tempdir() else {
        eprintln!("no temp dir");
        return;
    };
    let mut results = std::collections::BTreeMap::<&str, (Vec<f64>, Vec<f64>)>::new();
    for r in 0..rounds {
        for layout in ["apart", "shared"] {
            let (rate, cpu) = round(layout, &scratch.path().join(layout)).await;
            println!("round {r} {layout:>6}: {rate:>9.0} writes/s, {cpu:.1} µs CPU/write");
            let e = results.entry(layout).or_default();
            e.0.push(rate);
            e.1.push(cpu);
        }
    }
    let m = |layout: &str, cpu: bool| {
        let (rates, cpus) = results[layout].clone();
        median(if cpu { cpus } else { rates })
    };
    println!(
        "median: apart {:.0} writes/s ({:.1} µs CPU), shared {:.0} writes/s ({:.1} µs CPU); \
         shared/apart: rate {:.2}×, CPU per write {:.2}×",
        m("apart", false),
        m("apart", true),
        m("shared", false),
        m("shared", true),
        m("shared", false) / m("apart", false),
        m("shared", true) / m("apart", true),
    );
}
