//! `/put/NAME`, `/get/NAME`, `/info/NAME`, `/list?prefix=P`, `/del/NAME`,
//! `/copy/NAME?to=C/N`, `/move/NAME?to=C/N`, `/hoard/NAME` (readers of
//! NAME opened until one is refused) on container `files`, and
//! `/open?c=NAME` to try any container, and `/broken`: a response that
//! traps 300 ms after its headers and 64 KiB of body.

use nubo_sdk::blob::Container;
use nubo_sdk::stream::{Body, Request, Response, response};
use std::io::Write;

fn text(status: u16, s: impl Into<String>) -> Response {
    response(status, "text/plain", s.into())
}

fn query<'a>(req: &'a Request, key: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v)
    })
}

/// A body that yields `n` bytes of `x` and then panics.
struct Broken(usize);

impl std::io::Read for Broken {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            // Long enough for the client to have the head and some body.
            std::thread::sleep(std::time::Duration::from_millis(300));
            panic!("the body broke on purpose");
        }
        let n = buf.len().min(self.0).min(8192);
        buf[..n].fill(b'x');
        self.0 -= n;
        Ok(n)
    }
}

fn handle(mut req: Request) -> Response {
    // What follows the route's `/...`, whatever the app's base path.
    let path = req
        .headers()
        .get("nubo-path-info")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    let (op, name) = path.split_once('/').unwrap_or((path.as_str(), ""));
    if op == "broken" {
        // Headers and 64 KiB of body, then a trap.
        return response(200, "text/plain", Body::reader(Broken(64 * 1024)));
    }
    if op == "open" {
        return match Container::open(query(&req, "c").unwrap_or("")) {
            Ok(_) => text(200, "opened"),
            Err(e) => text(403, e.to_string()),
        };
    }
    let files = match Container::open("files") {
        Ok(c) => c,
        Err(e) => return text(500, e.to_string()),
    };
    let r: Result<Response, nubo_sdk::blob::Error> = (|| match op {
        "put" => {
            let ct = query(&req, "type")
                .unwrap_or("application/octet-stream")
                .to_string();
            let mut w = files.writer(name, &ct)?;
            let n = std::io::copy(req.body_mut(), &mut w)?;
            if query(&req, "abandon").is_some() {
                // Dropped unfinished: nothing may be stored.
                drop(w);
                return Ok(text(200, "abandoned"));
            }
            w.flush()?;
            w.finish()?;
            Ok(text(201, n.to_string()))
        }
        "get" => {
            let reader = match query(&req, "range").and_then(|r| r.split_once('-')) {
                Some((a, b)) => {
                    let (a, b): (u64, u64) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
                    files.reader_range(name, a..b)?
                }
                None => files.reader(name)?,
            };
            let Some(reader) = reader else {
                return Ok(text(404, format!("no {name}")));
            };
            let ct = files
                .info(name)?
                .map(|i| i.content_type)
                .unwrap_or_default();
            Ok(response(200, &ct, Body::reader(reader)))
        }
        // Opens readers of NAME until one is refused (or 2000 are open).
        "hoard" => {
            let mut open = Vec::new();
            let why = loop {
                if open.len() == 2000 {
                    break "none refused".to_string();
                }
                match files.reader(name) {
                    Ok(Some(r)) => open.push(r),
                    Ok(None) => break format!("no {name}"),
                    Err(e) => break e.to_string(),
                }
            };
            Ok(text(200, format!("{} open; {why}", open.len())))
        }
        "info" => Ok(match files.info(name)? {
            Some(i) => text(200, format!("{} {} {}", i.name, i.size, i.content_type)),
            None => text(404, format!("no {name}")),
        }),
        "list" => {
            let names: Result<Vec<String>, _> =
                files.list(query(&req, "prefix").unwrap_or(""))?.collect();
            Ok(text(200, names?.join("\n")))
        }
        "del" => {
            files.delete(name)?;
            Ok(text(200, "deleted"))
        }
        "copy" | "move" => {
            let to = query(&req, "to").unwrap_or("");
            let (c, n) = to.split_once('/').unwrap_or(("files", to));
            if op == "copy" {
                files.copy(name, c, n)?;
            } else {
                files.rename(name, c, n)?;
            }
            Ok(text(200, "ok"))
        }
        _ => Ok(text(404, format!("no op {op}"))),
    })();
    match r {
        Ok(resp) => resp,
        Err(e) => text(500, format!("blob error: {e}")),
    }
}

nubo_sdk::stream_handler!(handle);
