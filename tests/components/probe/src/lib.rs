//! Test component: each path exercises one host behaviour.

use nubo_sdk::{Request, Response, text};

fn handle(req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    // Dispatch on the last segment so the same component can sit behind
    // several routes with different limits.
    let op = path.rsplit('/').next().unwrap_or("");
    match op {
        "echo" => text(
            200,
            format!(
                "{} {} route={} info={} id={} body={}",
                req.method(),
                req.uri(),
                header(&req, "nubo-matched-route"),
                header(&req, "nubo-path-info"),
                header(&req, "x-request-id"),
                String::from_utf8_lossy(req.body())
            ),
        ),
        // Every `nubo-` header the request carries, one `name=value` a line.
        "nubo-headers" => {
            let mut lines: Vec<String> = req
                .headers()
                .iter()
                .filter(|(k, _)| k.as_str().starts_with("nubo-"))
                .map(|(k, v)| format!("{k}={}", v.to_str().unwrap_or("?")))
                .collect();
            lines.sort();
            text(200, lines.join("\n"))
        }
        "config" => match nubo_sdk::config::get(&query) {
            Some(v) => text(200, v),
            None => text(404, format!("no config key {query}")),
        },
        "config-all" => {
            let mut all = nubo_sdk::config::get_all();
            all.sort();
            let lines: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
            text(200, lines.join("\n"))
        }
        "log" => {
            println!("probe says {query}");
            eprintln!("probe warns {query}");
            text(200, "logged")
        }
        "outbound" => {
            let req = nubo_sdk::http::Request::get(query.as_str()).body(Vec::new());
            match req {
                Ok(req) => match nubo_sdk::outbound::send(req) {
                    Ok(resp) => text(
                        200,
                        format!(
                            "upstream said {}: {}",
                            resp.status(),
                            String::from_utf8_lossy(resp.body())
                        ),
                    ),
                    Err(e) => text(502, e.to_string()),
                },
                Err(e) => text(400, e.to_string()),
            }
        }
        // `MB,MS`: holds MB megabytes of written memory for MS milliseconds.
        "hoard" => {
            let (mb, ms) = query.split_once(',').unwrap_or((query.as_str(), "0"));
            let mb: usize = mb.parse().unwrap_or(1);
            let held = vec![1u8; mb << 20];
            std::thread::sleep(std::time::Duration::from_millis(ms.parse().unwrap_or(0)));
            text(
                200,
                format!("held {} MB", std::hint::black_box(&held).len() >> 20),
            )
        }
        "hold" => {
            let (url, n) = query.split_once(',').unwrap_or((query.as_str(), "1"));
            text(200, hold(url, n.parse().unwrap_or(1)))
        }
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        // `MS`: keeps the CPU busy for MS milliseconds.
        "burn" => {
            let ms: u64 = query.parse().unwrap_or(100);
            let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
            let mut n: u64 = 0;
            while std::time::Instant::now() < until {
                n = std::hint::black_box(n.wrapping_add(1));
            }
            text(200, format!("burned {ms} ms"))
        }
        "oom" => {
            // Grow memory in 1 MiB steps until the host says no.
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "panic" => panic!("probe panicked on purpose"),
        "big" => {
            let n: usize = query.parse().unwrap_or(1 << 20);
            nubo_sdk::response(200, "application/octet-stream", vec![b'x'; n])
        }
        "sleep" => {
            let ms: u64 = query.parse().unwrap_or(100);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            text(200, format!("slept {ms}"))
        }
        op if op.starts_with("kv-") => kv(op, &query),
        op if op.starts_with("q-") => queue(op, &query, &req),
        // `ps-pub?TOPIC=MESSAGE` publishes; `ws-in` (a WebSocket's handler)
        // answers each browser message on topic `chat`.
        "ps-pub" => {
            let (topic, msg) = query.split_once('=').unwrap_or((&query, ""));
            match nubo_sdk::pubsub::publish(topic, msg) {
                Ok(()) => text(200, "published"),
                Err(e) => text(500, format!("pubsub error: {e}")),
            }
        }
        "ws-in" => {
            let msg = format!("echo:{}", String::from_utf8_lossy(req.body()));
            match nubo_sdk::pubsub::publish("chat", msg) {
                Ok(()) => text(200, "ok"),
                Err(e) => text(500, format!("pubsub error: {e}")),
            }
        }
        _ => text(404, format!("probe has no {path}")),
    }
}

fn header(req: &Request, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string()
}

nubo_sdk::http_handler!(handle);

/// Key-value ops on store `default` (or the store named by `store=` for
/// `kv-open`). Errors come back as 500 with the guest-visible message.
fn kv(op: &str, query: &str) -> Response {
    use nubo_sdk::kv::Store;
    let (k, v) = query.split_once('=').unwrap_or((query, ""));
    let result = (|| -> Result<String, nubo_sdk::kv::Error> {
        if op == "kv-open" {
            Store::open(k)?;
            return Ok(format!("opened {k}"));
        }
        let kv = Store::open("default")?;
        Ok(match op {
            "kv-set" => {
                kv.set(k, v)?;
                "ok".into()
            }
            "kv-get" => match kv.get_string(k)? {
                Some(v) => v,
                None => return Ok("(absent)".into()),
            },
            "kv-del" => {
                kv.delete(k)?;
                "ok".into()
            }
            "kv-exists" => kv.exists(k)?.to_string(),
            "kv-incr" => kv.increment(k, v.parse().unwrap_or(1))?.to_string(),
            "kv-ttl" => {
                kv.set_with_ttl(
                    k,
                    "short-lived",
                    std::time::Duration::from_millis(v.parse().unwrap_or(200)),
                )?;
                "ok".into()
            }
            "kv-cas" => {
                // v is `expected:new`, expected `-` meaning absent.
                let (expected, new) = v.split_once(':').unwrap_or(("-", v));
                let expected = (expected != "-").then_some(expected.as_bytes());
                kv.compare_and_swap(k, expected, new)?.to_string()
            }
            "kv-append" => {
                // Read-modify-write through CAS retries: concurrent appends
                // must all land.
                let out = kv.update(k, |cur| {
                    let mut s = cur.map(|c| c.to_vec()).unwrap_or_default();
                    s.extend_from_slice(v.as_bytes());
                    s
                })?;
                String::from_utf8_lossy(&out).into_owned()
            }
            "kv-keys" => kv.keys()?.join(","),
            "kv-overlap" => {
                // A slow run that notices if another run of it is going.
                let running = kv.increment("running", 1)?;
                if running > 1 {
                    kv.set("overlapped", "yes")?;
                }
                kv.increment("runs", 1)?;
                std::thread::sleep(std::time::Duration::from_millis(v.parse().unwrap_or(1500)));
                kv.increment("running", -1)?;
                "ok".into()
            }
            "kv-batch" => {
                kv.set_many(&[("b1", b"1"), ("b2", b"2")])?;
                let got = kv.get_many(&["b1", "b2", "b3"])?;
                kv.delete_many(&["b1"])?;
                let shown: Vec<String> = got
                    .into_iter()
                    .map(|e| match e {
                        Some((k, v)) => format!("{k}={}", String::from_utf8_lossy(&v)),
                        None => "-".into(),
                    })
                    .collect();
                format!("{} then b1 exists={}", shown.join(","), kv.exists("b1")?)
            }
            "kv-big" => {
                kv.set(k, vec![b'x'; 2 << 20])?;
                "stored".into()
            }
            // `kv-fill?KEY=KIB`: a value of KIB kibibytes.
            "kv-fill" => {
                kv.set(k, vec![b'x'; v.parse::<usize>().unwrap_or(1) << 10])?;
                "stored".into()
            }
            other => return Ok(format!("no op {other}")),
        })
    })();
    match result {
        Ok(s) => text(200, s),
        Err(e) => text(500, format!("kv error: {e}")),
    }
}

/// Queue ops: `q-pub?QUEUE=BODY` publishes; `q-burst?QUEUE=N` publishes
/// `b0`..`bN-1` (and `bad` in the middle); `q-recv` (a consumer) appends
/// the body to kv `received`; `q-fail` always fails; `q-flaky` fails the
/// first attempt of each message; `q-each` consumes one message or a
/// batch through the SDK, records each body and the delivery's size in
/// kv `batches`, and fails the message `bad`; `q-each?slow` does the same
/// after a second's sleep.
fn queue(op: &str, query: &str, req: &Request) -> Response {
    use nubo_sdk::kv::Store;
    use nubo_sdk::queue::{Delivery, publish};
    let record = |key: &str, body: &[u8]| -> Response {
        let kv = match Store::open("default") {
            Ok(kv) => kv,
            Err(e) => return text(500, format!("kv: {e}")),
        };
        let mut entry = body.to_vec();
        entry.push(b',');
        match kv.update(key, |cur| [cur.unwrap_or_default(), &entry].concat()) {
            Ok(_) => text(200, "recorded"),
            Err(e) => text(500, format!("kv: {e}")),
        }
    };
    match op {
        "q-pub" => {
            let (q, body) = query.split_once('=').unwrap_or((query, ""));
            match publish(q, body) {
                Ok(id) => text(200, id.to_string()),
                Err(e) => text(500, format!("queue error: {e}")),
            }
        }
        "q-burst" => {
            let (q, n) = query.split_once('=').unwrap_or((query, "0"));
            let n: usize = n.parse().unwrap_or(0);
            for i in 0..n {
                let body = if i == n / 2 {
                    "bad".to_string()
                } else {
                    format!("b{i}")
                };
                if let Err(e) = publish(q, body) {
                    return text(500, format!("queue error: {e}"));
                }
            }
            text(200, "published")
        }
        "q-each" => {
            if query == "slow" {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            let n = nubo_sdk::queue::messages(req).map_or(0, |m| m.len());
            let _ = record("batches", n.to_string().as_bytes());
            nubo_sdk::queue::serve(req, |m| {
                if m.body == b"bad" {
                    return Err(format!("refused message {}", m.id));
                }
                match record("received", &m.body).status().as_u16() {
                    200 => Ok(()),
                    s => Err(format!("kv failed: {s}")),
                }
            })
        }
        "q-recv" => record("received", req.body()),
        "q-fail" => {
            let _ = record("failed", req.body());
            text(500, "consumer failed on purpose")
        }
        "q-flaky" => match Delivery::of(req) {
            Some(d) if d.attempt == 1 => text(503, "first attempt fails"),
            Some(_) => record("received", req.body()),
            None => text(400, "not a queue delivery"),
        },
        other => text(404, format!("no op {other}")),
    }
}

/// Sends `n` requests to `url` and keeps every response unread (each holds
/// its connection open); says how many were answered and why the next was
/// not, then drops them all and says how one more request fares.
fn hold(url: &str, n: usize) -> String {
    let mut held = Vec::new();
    let mut refused = String::from("none");
    for i in 0..n {
        match start(url) {
            Ok(r) => held.push(r),
            Err(e) => {
                refused = format!("#{i}: {e}");
                break;
            }
        }
    }
    let answered = held.len();
    drop(held);
    let after = match start(url) {
        Ok(_) => "answered".to_string(),
        Err(e) => e,
    };
    format!("held {answered}; refused {refused}; after dropping them: {after}")
}

/// One GET whose response comes back unread.
fn start(url: &str) -> Result<nubo_sdk::__private::wasip2::http::types::IncomingResponse, String> {
    use nubo_sdk::__private::wasip2::http::{outgoing_handler, types};
    let uri: nubo_sdk::http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let req = types::OutgoingRequest::new(types::Fields::new());
    let _ = req.set_scheme(Some(&types::Scheme::Http));
    let _ = req.set_authority(uri.authority().map(|a| a.as_str()));
    let _ = req.set_path_with_query(uri.path_and_query().map(|p| p.as_str()));
    let future = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    let result = loop {
        match future.get() {
            Some(r) => break r,
            None => future.subscribe().block(),
        }
    };
    match result {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(format!("{e:?}")),
        Err(()) => Err("taken".into()),
    }
}
