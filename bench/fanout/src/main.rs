//! `fanout ADDR CLIENTS MESSAGES [GO_FILE]`
//!
//! Connects CLIENTS WebSockets to `ws://ADDR/ws`, then publishes MESSAGES
//! messages one after another through `GET /probe/ps-pub?chat=N` and
//! measures, for every client and message, the time from the publish
//! request being sent to the message arriving. Prints p50, p99 and max,
//! and the mean time until the last client has a message. With GO_FILE,
//! it prints `ready` once connected and waits for that file to exist
//! before publishing (so the caller can measure the node in between).

use futures_util::StreamExt;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: fanout ADDR CLIENTS MESSAGES [GO_FILE]");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let clients: usize = args[2].parse().unwrap_or(1000);
    let messages: usize = args[3].parse().unwrap_or(20);
    fanout::raise_fd_limit();

    let url = format!("ws://{addr}/ws");
    let mut sockets = Vec::with_capacity(clients);
    let mut connecting = futures_util::stream::iter(0..clients)
        .map(|_| {
            let url = url.clone();
            async move { tokio_tungstenite::connect_async(url).await.map(|c| c.0) }
        })
        .buffer_unordered(256);
    while let Some(c) = connecting.next().await {
        match c {
            Ok(s) => sockets.push(s),
            Err(e) => {
                eprintln!("connect: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("connected {clients}");
    // Wait for the node to report the connections, then read its memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(go) = args.get(4) {
        println!("ready");
        while !std::path::Path::new(go).exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let sent_at: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    for mut s in sockets {
        let sent_at = sent_at.clone();
        readers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(messages);
            while lat.len() < messages {
                match tokio::time::timeout(Duration::from_secs(30), s.next()).await {
                    Ok(Some(Ok(m))) if m.is_text() => {
                        let now = Instant::now();
                        let i: usize = m.to_text().unwrap_or("0").parse().unwrap_or(0);
                        let t0 = sent_at.lock().await.get(i).copied().unwrap_or(now);
                        lat.push(now.duration_since(t0));
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            lat
        }));
    }
    for i in 0..messages {
        sent_at.lock().await.push(Instant::now());
        if let Err(e) = publish(&addr, i) {
            eprintln!("publish: {e}");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut all = Vec::new();
    let mut last_per_message = vec![Duration::ZERO; messages];
    for r in readers {
        let lat = r.await.unwrap_or_default();
        for (i, l) in lat.iter().enumerate() {
            last_per_message[i] = last_per_message[i].max(*l);
        }
        all.extend(lat);
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let mean_last = last_per_message.iter().sum::<Duration>() / messages.max(1) as u32;
    println!(
        "deliveries {} of {}  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  last client (mean) {:.2} ms",
        all.len(),
        clients * messages,
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        all.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        mean_last.as_secs_f64() * 1e3
    );
}

fn publish(addr: &str, i: usize) -> Result<(), String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /probe/ps-pub?chat={i} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    if out.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(out)
    }
}
