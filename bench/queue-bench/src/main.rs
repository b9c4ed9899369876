//! `queue-bench NUBO_HTTP NUBO_CONTROL TOKEN NATS_URL [MESSAGES] [PUBLISHERS]`
//!
//! The same durable queue work two ways, in one run. Each message carries
//! its publish time; `PUBLISHERS` tasks publish `MESSAGES` in all, each
//! waiting for the durable acknowledgement before its next publish, while
//! a consumer takes them and records publish→delivery latency.
//!
//! - Nubo: `POST /enqueue` on an `[[http]] queue = "jobs"` route (202 once
//!   the message is stored), delivered to the `qbench` component, which
//!   writes each delivery's latency counts to one key-value key; done when the queue is
//!   empty (`GET /v1/apps/qbench/queues`).
//! - JetStream: `publish` + wait for the `PubAck` on a file-backed stream,
//!   a durable pull consumer with explicit acks in this process.
//!
//! Throughput is messages / (last delivery − first publish).

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Latencies in buckets 5% wide, like the qbench component's.
#[derive(Default, Clone)]
struct Histogram(std::collections::BTreeMap<u32, u64>);

impl Histogram {
    fn bucket(us: u64) -> u32 {
        (20.0 * (us.max(1) as f64).ln()).floor() as u32
    }

    fn quantile(&self, q: f64) -> f64 {
        let total: u64 = self.0.values().sum();
        let want = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (b, n) in &self.0 {
            seen += n;
            if seen >= want {
                // The bucket's upper edge, in milliseconds.
                return ((*b + 1) as f64 / 20.0).exp() / 1000.0;
            }
        }
        0.0
    }
}

struct Outcome {
    rate: f64,
    hist: Histogram,
    /// CPU time per message of the server (when its pid is given) and of
    /// this client, in µs, over the timed part.
    cpu: (Option<f64>, Option<f64>),
}

/// CPU time (user + system) of process `pid` so far, in µs, from `/proc`.
fn cpu_us(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10_000.0) // 100 ticks per second on Linux
}

/// Measures CPU time per message of the server `pid_var` names (an
/// environment variable) and of this process, from now until `done`.
struct CpuMeter {
    server: Option<(String, f64)>,
    me: Option<f64>,
}

impl CpuMeter {
    fn start(pid_var: &str) -> Self {
        let server = std::env::var(pid_var)
            .ok()
            .and_then(|p| cpu_us(&p).map(|c| (p, c)));
        Self {
            server,
            me: cpu_us("self"),
        }
    }

    fn done(&self, messages: u64) -> (Option<f64>, Option<f64>) {
        let per = |before: f64, now: Option<f64>| now.map(|n| (n - before) / messages as f64);
        (
            self.server.as_ref().and_then(|(p, c)| per(*c, cpu_us(p))),
            self.me.and_then(|c| per(c, cpu_us("self"))),
        )
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!(
            "usage: queue-bench NUBO_HTTP NUBO_CONTROL TOKEN NATS_URL [MESSAGES] [PUBLISHERS]"
        );
        std::process::exit(2);
    }
    let messages: u64 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let publishers: u64 = args.get(6).and_then(|s| s.parse().ok()).unwrap_or(16);
    let nubo = nubo_run(&args[1], &args[2], &args[3], messages, publishers).await;
    let js = jetstream_run(&args[4], messages, publishers).await;
    println!("| system | messages | publishers | msgs/s | p50 latency ms | p99 latency ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, o) in [("nubo", &nubo), ("jetstream", &js)] {
        println!(
            "| {name} | {messages} | {publishers} | {:.0} | {:.2} | {:.2} |",
            o.rate,
            o.hist.quantile(0.5),
            o.hist.quantile(0.99)
        );
    }
    println!("\nnubo / jetstream throughput: {:.2}×", nubo.rate / js.rate);
    let us = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} µs"));
    println!(
        "CPU per message: server {} / {}, client {} / {} (nubo / jetstream; a server's needs NUBO_PID / NATS_PID)",
        us(nubo.cpu.0),
        us(js.cpu.0),
        us(nubo.cpu.1),
        us(js.cpu.1)
    );
}

async fn connect(addr: &str) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = stream.set_nodelay(true);
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap_or_else(|e| panic!("handshake {addr}: {e}"));
    tokio::spawn(conn);
    sender
}

async fn call(
    s: &mut Sender,
    method: &str,
    host: &str,
    path: &str,
    token: &str,
    body: Bytes,
) -> (u16, Bytes) {
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(body))
        .unwrap_or_else(|e| panic!("request: {e}"));
    let resp = s
        .send_request(req)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, body)
}

async fn nubo_run(
    http: &str,
    control: &str,
    token: &str,
    messages: u64,
    publishers: u64,
) -> Outcome {
    let cpu = CpuMeter::start("NUBO_PID");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let http = http.to_string();
        let n = messages / publishers + u64::from(p < messages % publishers);
        tasks.push(tokio::spawn(async move {
            let mut s = connect(&http).await;
            for _ in 0..n {
                let (status, body) = call(
                    &mut s,
                    "POST",
                    &http,
                    "/enqueue",
                    "",
                    Bytes::from(now_us().to_string()),
                )
                .await;
                assert_eq!(status, 202, "publish: {}", String::from_utf8_lossy(&body));
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    // Done when nothing is waiting or in flight. A fresh connection per
    // control call: the control API is not what is measured.
    let (finished, cpu) = loop {
        let mut c = connect(control).await;
        let (status, body) = call(
            &mut c,
            "GET",
            control,
            "/v1/apps/qbench/queues",
            token,
            Bytes::new(),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let q = v
            .as_array()
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or_default();
        if q["ready"] == 0 && q["in_flight"] == 0 {
            break (started.elapsed(), cpu.done(messages));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // One key per delivery (see tests/components/qbench), a page of keys
    // at a time.
    let mut hist = Histogram::default();
    let mut deliveries = 0u64;
    let mut cursor: Option<String> = None;
    loop {
        let page = match &cursor {
            None => "/v1/apps/qbench/kv/default?prefix=lat-&limit=10000".to_string(),
            Some(k) => format!("/v1/apps/qbench/kv/default?prefix=lat-&limit=10000&cursor={k}"),
        };
        let (_, body) = call(
            &mut connect(control).await,
            "GET",
            control,
            &page,
            token,
            Bytes::new(),
        )
        .await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        for key in v["keys"].as_array().cloned().unwrap_or_default() {
            let key = key.as_str().unwrap_or("");
            deliveries += 1;
            let (_, counts) = call(
                &mut connect(control).await,
                "GET",
                control,
                &format!("/v1/apps/qbench/kv/default/{key}"),
                token,
                Bytes::new(),
            )
            .await;
            for pair in String::from_utf8_lossy(&counts).trim().split(',') {
                if let Some((b, n)) = pair.split_once(':') {
                    *hist.0.entry(b.parse().unwrap_or(0)).or_default() += n.parse().unwrap_or(0);
                }
            }
        }
        cursor = v["cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    let counted: u64 = hist.0.values().sum();
    assert_eq!(counted, messages, "nubo delivered {counted} of {messages}");
    println!(
        "nubo: {deliveries} deliveries, {:.1} messages each on average",
        messages as f64 / deliveries.max(1) as f64
    );
    Outcome {
        rate: messages as f64 / finished.as_secs_f64(),
        hist,
        cpu,
    }
}

async fn jetstream_run(url: &str, messages: u64, publishers: u64) -> Outcome {
    let client = async_nats::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let js = async_nats::jetstream::new(client);
    let _ = js.delete_stream("QBENCH").await;
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "QBENCH".into(),
            subjects: vec!["qbench".into()],
            storage: async_nats::jetstream::stream::StorageType::File,
            retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create stream: {e}"));
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("work".into()),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create consumer: {e}"));
    let cpu = CpuMeter::start("NATS_PID");
    let started = Instant::now();
    let consume = tokio::spawn(async move {
        let mut hist = Histogram::default();
        let mut msgs = consumer
            .messages()
            .await
            .unwrap_or_else(|e| panic!("consume: {e}"));
        let mut n = 0;
        while let Some(Ok(m)) = msgs.next().await {
            let sent: u64 = std::str::from_utf8(&m.payload)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            *hist
                .0
                .entry(Histogram::bucket(now_us().saturating_sub(sent)))
                .or_default() += 1;
            let _ = m.ack().await;
            n += 1;
            if n == messages {
                break;
            }
        }
        (hist, started.elapsed())
    });
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let js = js.clone();
        let n = messages / publishers + u64::from(p < messages % publishers);
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                let ack = js
                    .publish("qbench", Bytes::from(now_us().to_string()))
                    .await
                    .unwrap_or_else(|e| panic!("publish: {e}"));
                ack.await.unwrap_or_else(|e| panic!("publish ack: {e}"));
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let (hist, finished) = consume.await.unwrap_or_else(|e| panic!("consumer: {e}"));
    let cpu = cpu.done(messages);
    let _ = js.delete_stream("QBENCH").await;
    Outcome {
        rate: messages as f64 / finished.as_secs_f64(),
        hist,
        cpu,
    }
}
