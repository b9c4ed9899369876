//! The queue batch wire format: a consumer's answer never makes the
//! reader panic, and a batch of any messages encodes to JSON that reads
//! back to the same ids, attempts, times and bodies.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use nubo_queue::{Message, batch};

fuzz_target!(|data: &[u8]| {
    let _ = batch::failures(true, data);
    // The same bytes cut into message bodies.
    let messages: Vec<Message> = data
        .split(|b| *b == 0xff)
        .enumerate()
        .map(|(i, body)| Message {
            id: i as u64 * 7919,
            attempt: (i % 5) as u32 + 1,
            published_at: i as i64 - 3,
            body: body.to_vec(),
            last_error: None,
            by: None,
        })
        .collect();
    let encoded = batch::encode(&messages);
    let v: serde_json::Value = serde_json::from_slice(&encoded).expect("a batch is JSON");
    let got = v["messages"].as_array().expect("a list of messages");
    assert_eq!(got.len(), messages.len());
    for (m, g) in messages.iter().zip(got) {
        assert_eq!(g["id"].as_u64(), Some(m.id));
        assert_eq!(g["attempt"].as_u64(), Some(u64::from(m.attempt)));
        assert_eq!(g["published_at"].as_i64(), Some(m.published_at));
        let body = match (g["body"].as_str(), g["body_base64"].as_str()) {
            (Some(text), None) => text.as_bytes().to_vec(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("valid base64"),
            other => panic!("a message carries one body: {other:?}"),
        };
        assert_eq!(body, m.body);
    }
});
