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

use nubo_sdk::kv::Store;
use nubo_sdk::{Error, Json, Request, Response, Router, StatusCode, param, redirect};
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

fn store() -> Result<Store, Error> {
    Ok(Store::open("default")?)
}

fn create(req: Request) -> Result<(StatusCode, Json<serde_json::Value>), Error> {
    let Json(new) = Json::<NewLink>::from_request(&req)?;
    let web = new.url.starts_with("https://") || new.url.starts_with("http://");
    if !web || new.url.len() > 2000 {
        return Err(Error::bad_request(
            "the url must start with http:// or https://",
        ));
    }
    let kv = store()?;
    let code = base36(kv.increment("next", 1)? as u64);
    kv.set(&format!("link:{code}"), &new.url)?;
    let made = serde_json::json!({ "code": code, "short": format!("/s/{code}") });
    Ok((StatusCode::CREATED, Json(made)))
}

fn follow(req: Request) -> Result<Response, Error> {
    let code = param(&req, "code").unwrap_or_default();
    let Some(url) = store()?.get_string(&format!("link:{code}"))? else {
        return Err(Error::not_found(format!("no link {code}")));
    };
    // Counted later by the queue's consumer: the visitor does not wait.
    if let Err(e) = nubo_sdk::queue::publish("clicks", code) {
        eprintln!("click for {code} not counted: {e}");
    }
    Ok(redirect(&url))
}

fn links(kv: &Store) -> Result<Vec<Link>, Error> {
    let mut out = Vec::new();
    for key in kv.keys()? {
        let Some(code) = key.strip_prefix("link:") else {
            continue;
        };
        let clicks = kv.get_string(&format!("clicks:{code}"))?;
        out.push(Link {
            code: code.to_string(),
            url: kv.get_string(&key)?.unwrap_or_default(),
            clicks: clicks.and_then(|c| c.parse().ok()).unwrap_or(0),
        });
    }
    Ok(out)
}

fn stats(_: Request) -> Result<Response, Error> {
    let stats = store()?.get_string("stats")?.unwrap_or_else(|| "{}".into());
    Ok(nubo_sdk::response(
        200,
        "application/json",
        stats.into_bytes(),
    ))
}

/// The queue's consumer: one click.
fn click(req: Request) -> Result<String, Error> {
    let code = String::from_utf8_lossy(req.body()).into_owned();
    let n = store()?.increment(&format!("clicks:{code}"), 1)?;
    // Every open page updates at once; nobody listening is fine too.
    let update = serde_json::json!({ "code": code, "clicks": n });
    let _ = nubo_sdk::pubsub::publish("live", update.to_string());
    Ok(format!("{code}: {n}"))
}

/// The cron job: totals the clicks.
fn total(_: Request) -> Result<&'static str, Error> {
    let kv = store()?;
    let all = links(&kv)?;
    let clicks: i64 = all.iter().map(|l| l.clicks).sum();
    let stats = serde_json::json!({ "links": all.len(), "clicks": clicks });
    kv.set("stats", stats.to_string())?;
    Ok("ok")
}

fn handle(req: Request) -> Response {
    Router::new()
        .post("/api/links", create)
        .get("/api/links", |_| links(&store()?).map(Json))
        .get("/api/stats", stats)
        .get("/s/:code", follow)
        .post("/jobs/click", click)
        .post("/jobs/stats", total)
        .handle(req)
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
