//! The wire format of a batched delivery (`batch_size > 1`).
//!
//! A batch is one `POST` whose body is JSON, so a consumer in any language
//! reads it with the JSON parser it already has:
//!
//! ```json
//! {"messages": [
//!   {"id": 12, "attempt": 1, "published_at": 1763700000000, "body": "text"},
//!   {"id": 13, "attempt": 2, "published_at": 1763700000001, "body_base64": "AAEC"}
//! ]}
//! ```
//!
//! A body that is UTF-8 travels as `body`; any other as `body_base64`.
//! The consumer answers 2xx to acknowledge the whole batch, or 2xx with
//! `{"failed": [{"id": 13, "error": "why"}]}` (content type JSON) to
//! acknowledge all but those; they are retried alone, by the queue's
//! backoff. Any other answer fails every message of the batch. This is
//! the shape of AWS Lambda's partial batch responses for SQS
//! (`batchItemFailures`), which users of queues already know.

use crate::Message;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Bodies in one batch, in bytes (a single larger message goes alone).
pub const MAX_BATCH_BYTES: usize = 4 << 20;

#[derive(Serialize)]
struct Out<'a> {
    messages: Vec<OutMessage<'a>>,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    id: u64,
    attempt: u32,
    published_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

/// The request body for `messages`.
pub fn encode(messages: &[Message]) -> Vec<u8> {
    let out = Out {
        messages: messages
            .iter()
            .map(|m| {
                let text = std::str::from_utf8(&m.body).ok();
                OutMessage {
                    id: m.id,
                    attempt: m.attempt,
                    published_at: m.published_at,
                    body: text,
                    body_base64: match text {
                        Some(_) => None,
                        None => Some(base64::engine::general_purpose::STANDARD.encode(&m.body)),
                    },
                }
            })
            .collect(),
    };
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_vec(&out).unwrap_or_default()
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    failed: Vec<Failed>,
}

#[derive(Deserialize)]
struct Failed {
    id: u64,
    #[serde(default)]
    error: Option<String>,
}

/// A batch's JSON answer that does not say which messages failed.
#[derive(Debug, thiserror::Error)]
#[error("unreadable batch answer (want {{\"failed\": [{{\"id\": N, \"error\": \"...\"}}]}}): {0}")]
pub struct UnreadableAnswer(#[source] serde_json::Error);

/// The messages a 2xx answer reports as failed, with why. `json` says
/// whether the answer's content type is JSON; any other 2xx answer
/// acknowledges the whole batch.
pub fn failures(json: bool, body: &[u8]) -> Result<Vec<(u64, String)>, UnreadableAnswer> {
    if !json || body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let a: Answer = serde_json::from_slice(body).map_err(UnreadableAnswer)?;
    Ok(a.failed
        .into_iter()
        .map(|f| (f.id, f.error.unwrap_or_else(|| "failed".into())))
        .collect())
}

/// Splits `messages` into batches of at most `size` messages and
/// [`MAX_BATCH_BYTES`], each as full as it can be: a short backlog goes
/// out as one delivery at once (one instance, not many), and the free
/// slots take what is published meanwhile. Spreading a backlog over all
/// free slots instead made batches of one or two under steady load, and
/// halved throughput. A batch holds the messages of one publisher only
/// (who signed in to the request that published them, or nobody), since
/// its run is started by them.
pub fn split(messages: Vec<Message>, size: usize) -> Vec<Vec<Message>> {
    let per = size.max(1);
    let mut out: Vec<Vec<Message>> = Vec::new();
    let mut bytes = 0;
    for m in messages {
        let full = out.last().is_none_or(|b| {
            b.len() >= per
                || bytes + m.body.len() > MAX_BATCH_BYTES
                || b.first().is_some_and(|f| f.by != m.by)
        });
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += m.body.len();
        if let Some(b) = out.last_mut() {
            b.push(m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u64, body: &[u8]) -> Message {
        Message {
            id,
            body: body.to_vec(),
            attempt: 1,
            published_at: 7,
            last_error: None,
            by: None,
        }
    }

    #[test]
    fn text_bodies_stay_text_and_others_are_base64() {
        let v: serde_json::Value =
            serde_json::from_slice(&encode(&[msg(1, b"hi"), msg(2, &[0xff, 0])])).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"messages": [
                {"id": 1, "attempt": 1, "published_at": 7, "body": "hi"},
                {"id": 2, "attempt": 1, "published_at": 7, "body_base64": "/wA="},
            ]})
        );
    }

    #[test]
    fn answers_name_the_failed_messages() {
        assert_eq!(failures(false, b"ok").ok(), Some(vec![]));
        assert_eq!(failures(true, b" ").ok(), Some(vec![]));
        assert_eq!(
            failures(true, br#"{"failed":[{"id":3,"error":"bad"},{"id":4}]}"#).ok(),
            Some(vec![(3, "bad".into()), (4, "failed".into())])
        );
        assert!(failures(true, b"{\"failed\": 3}").is_err());
    }

    #[test]
    fn batches_fill_up_to_both_limits() {
        let ids = |b: &Vec<Vec<Message>>| -> Vec<Vec<u64>> {
            b.iter().map(|b| b.iter().map(|m| m.id).collect()).collect()
        };
        let ms = |n: u64| (1..=n).map(|i| msg(i, b"x")).collect::<Vec<_>>();
        assert_eq!(ids(&split(ms(5), 100)), vec![vec![1, 2, 3, 4, 5]]);
        assert_eq!(ids(&split(ms(5), 1)).len(), 5);
        assert_eq!(
            ids(&split(ms(10), 4)),
            vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9, 10]]
        );
        let big = vec![b'x'; MAX_BATCH_BYTES / 2 + 1];
        let b = split(vec![msg(1, &big), msg(2, &big), msg(3, b"y")], 10);
        assert_eq!(ids(&b), vec![vec![1], vec![2, 3]]);
        // One publisher per batch.
        let mut by_ada = msg(2, b"x");
        by_ada.by = Some(nubo_wasm::Principal {
            id: "ada".into(),
            email: None,
            roles: Vec::new(),
            how: "session".into(),
        });
        let b = split(vec![msg(1, b"x"), by_ada.clone(), by_ada, msg(4, b"x")], 10);
        assert_eq!(ids(&b), vec![vec![1], vec![2, 2], vec![4]]);
    }
}
