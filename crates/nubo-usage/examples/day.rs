//! How much disk one app's day of usage takes in `usage.db`: a day of
//! points written as a node writes them (one batch every 2 s), for an app
//! of 3 components and 4 routes, without signed-in users and with 100
//! users active every minute. Run by `bench/usage.sh`.

use nubo_usage::UsageDb;
use nubo_wasm::usage::{Dims, Metric, Point};
use std::sync::Arc;

const COMPONENTS: [&str; 3] = ["api", "web", "worker"];
const ROUTES: [&str; 4] = ["/api/...", "/", "/static/...", "/hooks/..."];
const GATEWAY: [&str; 3] = ["requests_2xx", "requests_4xx", "bytes_out"];
const RUNTIME: [&str; 5] = [
    "runs",
    "cpu_us",
    "memory_peak_bytes",
    "memory_mb_ms",
    "kv_calls",
];

fn minute_points(minute: u64, users: usize) -> Vec<Point> {
    let mut out = Vec::new();
    let user_ids: Vec<Arc<str>> = (0..users.max(1))
        .map(|u| {
            if users == 0 {
                "".into()
            } else {
                format!("u{u:05}").into()
            }
        })
        .collect();
    for user in &user_ids {
        for (i, route) in ROUTES.iter().enumerate() {
            let dims = Dims {
                app: "shop".into(),
                component: COMPONENTS[i % 3].into(),
                route: (*route).into(),
                user: user.clone(),
            };
            for m in GATEWAY {
                out.push(Point {
                    minute,
                    dims: dims.clone(),
                    metric: Metric::sum(m),
                    value: 17,
                });
            }
        }
        for c in COMPONENTS {
            let dims = Dims {
                app: "shop".into(),
                component: c.into(),
                route: "".into(),
                user: user.clone(),
            };
            for m in RUNTIME {
                let metric = if m == "memory_peak_bytes" {
                    Metric::peak(m)
                } else {
                    Metric::sum(m)
                };
                out.push(Point {
                    minute,
                    dims: dims.clone(),
                    metric,
                    value: 1234,
                });
            }
        }
    }
    out
}

#[tokio::main]
async fn main() {
    for users in [0, 100] {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = UsageDb::open(dir.path()).expect("usage.db opens");
        let start = 29_000_000;
        let mut rows = 0;
        for minute in start..start + 1440 {
            let points = minute_points(minute, users);
            rows += points.len();
            // A node storing every 2 s writes 30 batches a minute, each
            // adding to the same rows: the size is that of one.
            db.add(points).await.expect("points are stored");
        }
        drop(db);
        let size: u64 = std::fs::read_dir(dir.path())
            .expect("the folder lists")
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        println!(
            "usage store, one app's day, {users} signed-in users a minute: {} points a minute, {:.1} MiB on disk",
            rows / 1440,
            size as f64 / 1_048_576.0,
        );
    }
}
