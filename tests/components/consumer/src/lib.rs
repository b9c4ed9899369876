//! A queue consumer written with the SDK's `queue_handler!`: each message's
//! body goes to key `got-ID` of store `default`, and who published it
//! (`identity::caller`, or `nobody`) to `by-ID`, except a body `fail`,
//! which fails its message alone ("told to fail"), and a body `spin`,
//! which never returns (a hostile consumer).

use nubo_sdk::queue::Message;

fn handle(m: &Message) -> Result<(), String> {
    if m.body == b"fail" {
        return Err("told to fail".into());
    }
    if m.body == b"spin" {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    let kv = nubo_sdk::kv::Store::open("default").map_err(|e| e.to_string())?;
    let by = nubo_sdk::identity::caller().map_or_else(|| "nobody".to_string(), |u| u.id);
    kv.set(&format!("by-{}", m.id), by.as_bytes())
        .map_err(|e| e.to_string())?;
    kv.set(&format!("got-{}", m.id), &m.body)
        .map_err(|e| e.to_string())
}

nubo_sdk::queue_handler!(handle);
