//! A link shortener on Nubo's built-in services.
//!
//! POST /api/links  {"url": "https://..."}  → {"code": "k3", "short": "/s/k3"}
//! GET  /api/links                          → every link with its clicks
//! GET  /api/stats                          → totals, refreshed by cron
//! GET  /s/{code}                           → 302 to the URL; a click is queued
//! POST /jobs/click   (queue consumer)      → counts one click
//! POST /jobs/stats   (cron)                → totals the clicks
//! WS   /live                               → {"code", "clicks"} after each click
//!
//! Keys in store `default`: `next` (a counter), `link:{code}` (the URL),
//! `clicks:{code}` (a counter), `stats` (JSON).

use nubo_sdk::http::{Method, StatusCode};
use nubo_sdk::kv::Store;
use nubo_sdk::{Request, Response, response, text};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct NewLink {
    url: String,
}

#[derive(Serialize)]
struct Link {
    code: String,
    url: String,
    clicks: i64,
}

fn json(status: u16, v: &impl Serialize) -> Response {
    let body = serde_json::to_vec_pretty(v).unwrap_or_default();
    response(status, "application/json", body)
}

fn handle(req: Request) -> Result<Response, String> {
    let kv = Store::open("default").map_err(|e| e.to_string())?;
    let path = req.uri().path().to_string();
    Ok(match (req.method().clone(), path.as_str()) {
        (Method::POST, "/api/links") => create(&kv, &req)?,
        (Method::GET, "/api/links") => json(200, &links(&kv)?),
        (Method::GET, "/api/stats") => {
            let stats = kv.get_string("stats").map_err(|e| e.to_string())?;
            response(
                200,
                "application/json",
                stats.unwrap_or_else(|| "{}".into()).into_bytes(),
            )
        }
        (Method::GET, p) if p.starts_with("/s/") => follow(&kv, &p[3..])?,
        (Method::POST, "/jobs/click") => {
            let code = String::from_utf8_lossy(req.body()).into_owned();
            let n = kv
                .increment(&format!("clicks:{code}"), 1)
                .map_err(|e| e.to_string())?;
            // Every open page updates at once; nobody listening is fine too.
            let update = serde_json::json!({ "code": code, "clicks": n });
            let _ = nubo_sdk::pubsub::publish("live", update.to_string());
            text(200, format!("{code}: {n}"))
        }
        (Method::POST, "/jobs/stats") => {
            let all = links(&kv)?;
            let total: i64 = all.iter().map(|l| l.clicks).sum();
            let stats = serde_json::json!({ "links": all.len(), "clicks": total });
            kv.set("stats", stats.to_string())
                .map_err(|e| e.to_string())?;
            text(200, "ok")
        }
        _ => text(404, "not found\n"),
    })
}

fn create(kv: &Store, req: &Request) -> Result<Response, String> {
    let Ok(new) = serde_json::from_slice::<NewLink>(req.body()) else {
        return Ok(text(400, "expected {\"url\": \"https://...\"}\n"));
    };
    if !(new.url.starts_with("https://") || new.url.starts_with("http://")) || new.url.len() > 2000
    {
        return Ok(text(400, "the url must start with http:// or https://\n"));
    }
    let n = kv.increment("next", 1).map_err(|e| e.to_string())?;
    let code = base36(n as u64);
    kv.set(&format!("link:{code}"), &new.url)
        .map_err(|e| e.to_string())?;
    Ok(json(
        201,
        &serde_json::json!({ "code": code, "short": format!("/s/{code}") }),
    ))
}

fn follow(kv: &Store, code: &str) -> Result<Response, String> {
    let Some(url) = kv
        .get_string(&format!("link:{code}"))
        .map_err(|e| e.to_string())?
    else {
        return Ok(text(404, format!("no link {code}\n")));
    };
    // Counted later by the queue's consumer: the visitor does not wait.
    if let Err(e) = nubo_sdk::queue::publish("clicks", code) {
        eprintln!("click for {code} not counted: {e}");
    }
    let mut r = text(302, format!("→ {url}\n"));
    *r.status_mut() = StatusCode::FOUND;
    if let Ok(v) = url.parse() {
        r.headers_mut().insert("location", v);
    }
    Ok(r)
}

fn links(kv: &Store) -> Result<Vec<Link>, String> {
    let mut out = Vec::new();
    for key in kv.keys().map_err(|e| e.to_string())? {
        let Some(code) = key.strip_prefix("link:") else {
            continue;
        };
        let url = kv
            .get_string(&key)
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let clicks = kv
            .get_string(&format!("clicks:{code}"))
            .map_err(|e| e.to_string())?
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        out.push(Link {
            code: code.to_string(),
            url,
            clicks,
        });
    }
    Ok(out)
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    loop {
        s.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

nubo_sdk::http_handler!(handle);
