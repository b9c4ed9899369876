//! `kv-bench NUBO_ADDR REDIS_ADDR [OPS_PER_CALLER] [CALLERS]`
//!
//! The same key-value work two ways, in one run: through the `kvbench`
//! component on a Nubo node (the component times its own loop of
//! operations, so HTTP is not counted), and from this process to Redis
//! over loopback with the `redis` crate, one connection per caller, no
//! pipelining. Prints per-operation latency and throughput, and the ratio.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

/// Operations per request to the component.
const BATCH: usize = 500;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: kv-bench NUBO_ADDR REDIS_ADDR [OPS_PER_CALLER] [CALLERS]");
        std::process::exit(2);
    }
    let nubo = args[1].clone();
    let redis_url = format!("redis://{}/", args[2]);
    let ops: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let callers: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    let ops = ops.div_ceil(BATCH) * BATCH;

    println!(
        "| op | callers | nubo µs/op | redis µs/op | nubo ops/s | redis ops/s | nubo / redis (ops/s) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for op in ["set", "get"] {
        for c in [1, callers] {
            let (n_lat, n_rate) = run(c, |i| nubo_caller(&nubo, op, i, ops));
            let (r_lat, r_rate) = run(c, |i| redis_caller(&redis_url, op, i, ops));
            println!(
                "| {op} | {c} | {n_lat:.1} | {r_lat:.1} | {n_rate:.0} | {r_rate:.0} | {:.2}× |",
                n_rate / r_rate
            );
            if c == callers {
                break;
            }
        }
    }
}

/// Runs `callers` threads; each returns (operations, busy µs). Gives the
/// mean µs per operation and the total operations per second.
fn run(callers: usize, f: impl Fn(usize) -> (usize, f64) + Sync) -> (f64, f64) {
    let started = Instant::now();
    let results: Vec<(usize, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..callers)
            .map(|i| {
                let f = &f;
                s.spawn(move || f(i))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((0, 0.0)))
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let ops: usize = results.iter().map(|r| r.0).sum();
    let busy: f64 = results.iter().map(|r| r.1).sum();
    (busy / ops.max(1) as f64, ops as f64 / wall)
}

fn nubo_caller(addr: &str, op: &str, caller: usize, ops: usize) -> (usize, f64) {
    let mut micros = 0.0;
    for _ in 0..ops / BATCH {
        let path = format!("/?op={op}&n={BATCH}&prefix=c{caller}-");
        match http_get(addr, &path).and_then(|b| b.trim().parse::<f64>().map_err(|e| e.to_string()))
        {
            Ok(us) => micros += us,
            Err(e) => {
                eprintln!("nubo: {e}");
                std::process::exit(1);
            }
        }
    }
    (ops, micros)
}

fn redis_caller(url: &str, op: &str, caller: usize, ops: usize) -> (usize, f64) {
    let client = redis::Client::open(url).unwrap_or_else(|e| die(&e.to_string()));
    let mut con = client
        .get_connection()
        .unwrap_or_else(|e| die(&e.to_string()));
    let value = vec![b'v'; 100];
    let started = Instant::now();
    for i in 0..ops {
        let key = format!("c{caller}-{}", i % BATCH);
        let r: redis::RedisResult<()> = match op {
            "set" => redis::cmd("SET").arg(&key).arg(&value).query(&mut con),
            _ => redis::cmd("GET")
                .arg(&key)
                .query::<Option<Vec<u8>>>(&mut con)
                .map(|_| ()),
        };
        if let Err(e) = r {
            die(&e.to_string());
        }
    }
    (ops, started.elapsed().as_secs_f64() * 1e6)
}

fn die(msg: &str) -> ! {
    eprintln!("redis: {msg}");
    std::process::exit(1)
}

/// One HTTP/1.1 GET on a fresh connection; the body.
fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let (head, body) = out.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{head}\n{body}"));
    }
    // The component answers with chunked encoding: take the first chunk.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.split("\r\n").nth(1).unwrap_or("").to_string()
    } else {
        body.to_string()
    };
    Ok(body)
}
