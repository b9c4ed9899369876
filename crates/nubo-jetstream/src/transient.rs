//! Which failed NATS calls are worth making again: a call that timed out
//! or found no responder, and JetStream's answers that mean "not now" (a
//! cluster still forming, without a leader, or with a server missing).
//! Decided from async-nats's error kinds and JetStream's error codes, and
//! from the errors each was caused by, never from the message text.

use async_nats::jetstream::{self, ErrorCode, kv, object_store, stream};
use std::error::Error as StdError;

/// A failure that may not happen again if the call is made again soon.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

/// JetStream's error codes for a cluster that cannot place or serve a
/// stream yet: forming (no suitable peers, incomplete), without a leader
/// or a quorum (not available, not active, not leader, not assigned).
const NOT_NOW: [ErrorCode; 7] = [
    ErrorCode::CLUSTER_NO_PEERS,
    ErrorCode::CLUSTER_INCOMPLETE,
    ErrorCode::CLUSTER_NOT_AVAILABLE,
    ErrorCode::CLUSTER_NOT_ACTIVE,
    ErrorCode::CLUSTER_NOT_LEADER,
    ErrorCode::CLUSTER_NOT_ASSIGNED,
    ErrorCode::INSUFFICIENT_RESOURCES,
];

fn not_now(e: &jetstream::Error) -> bool {
    NOT_NOW.contains(&e.error_code())
}

/// Whether `e`, or any error it was caused by, is a timeout, a request
/// nobody answered, or JetStream saying "not now".
pub(crate) fn caused_transiently(e: &(dyn StdError + 'static)) -> bool {
    use jetstream::context::{PublishErrorKind, RequestErrorKind as JsRequest};
    let mut next = Some(e);
    while let Some(e) = next {
        let hit = if let Some(e) = e.downcast_ref::<jetstream::Error>() {
            not_now(e)
        } else if let Some(e) = e.downcast_ref::<async_nats::RequestError>() {
            use async_nats::RequestErrorKind as Core;
            matches!(e.kind(), Core::TimedOut | Core::NoResponders)
        } else if let Some(e) = e.downcast_ref::<jetstream::context::RequestError>() {
            matches!(e.kind(), JsRequest::TimedOut | JsRequest::NoResponders)
        } else if let Some(e) = e.downcast_ref::<jetstream::context::PublishError>() {
            // A publish nobody answered is reported as "stream not found":
            // what a stream whose leader is being elected looks like.
            matches!(
                e.kind(),
                PublishErrorKind::TimedOut
                    | PublishErrorKind::BrokenPipe
                    | PublishErrorKind::StreamNotFound
            )
        } else if let Some(e) = e.downcast_ref::<stream::DirectGetError>() {
            // A direct get nobody can serve yet answers 503.
            match e.kind() {
                stream::DirectGetErrorKind::TimedOut => true,
                stream::DirectGetErrorKind::ErrorResponse(status, _) => status.as_u16() == 503,
                _ => false,
            }
        } else if let Some(e) = e.downcast_ref::<std::io::Error>() {
            e.kind() == std::io::ErrorKind::TimedOut
        } else {
            false
        };
        if hit {
            return true;
        }
        next = e.source();
    }
    false
}

/// `Transient` for an async-nats error type from its kind: `$kind` is
/// matched against it, and any other kind is transient if what caused
/// the error is.
macro_rules! transient {
    ($($error:ty => |$k:ident| $by_kind:expr;)*) => {$(
        impl Transient for $error {
            fn is_transient(&self) -> bool {
                let $k = self.kind();
                let by_kind: bool = $by_kind;
                by_kind || caused_transiently(self)
            }
        }
    )*};
}

transient! {
    jetstream::context::RequestError => |k| matches!(
        k,
        jetstream::context::RequestErrorKind::TimedOut
            | jetstream::context::RequestErrorKind::NoResponders
    );
    kv::EntryError => |k| k == kv::EntryErrorKind::TimedOut;
    kv::UpdateError => |k| k == kv::UpdateErrorKind::TimedOut;
    kv::PutError => |_k| false;
    object_store::GetError => |k| k == object_store::GetErrorKind::TimedOut;
    object_store::InfoError => |k| k == object_store::InfoErrorKind::TimedOut;
    object_store::PutError => |k| k == object_store::PutErrorKind::TimedOut;
    object_store::WatchError => |k| k == object_store::WatchErrorKind::TimedOut;
    object_store::DeleteError => |k| k == object_store::DeleteErrorKind::TimedOut;
    kv::WatchError => |k| k == kv::WatchErrorKind::TimedOut;
    jetstream::context::KeyValueError => |_k| false;
    jetstream::context::CreateKeyValueError =>
        |k| k == jetstream::context::CreateKeyValueErrorKind::TimedOut;
    stream::PurgeError => |k| match k {
        stream::PurgeErrorKind::TimedOut => true,
        stream::PurgeErrorKind::JetStream(e) => not_now(&e),
        _ => false,
    };
    stream::ConsumerError => |k| match k {
        stream::ConsumerErrorKind::TimedOut => true,
        stream::ConsumerErrorKind::JetStream(e) => not_now(&e),
        _ => false,
    };
    jetstream::context::CreateStreamError => |k| {
        use jetstream::context::CreateStreamErrorKind as K;
        match k {
            K::TimedOut | K::JetStreamUnavailable => true,
            K::JetStream(e) => not_now(&e),
            _ => false,
        }
    };
    jetstream::context::GetStreamError => |k| match k {
        jetstream::context::GetStreamErrorKind::JetStream(e) => not_now(&e),
        _ => false,
    };
}

impl Transient for crate::JsError {
    fn is_transient(&self) -> bool {
        match self {
            crate::JsError::Nats { transient, .. } | crate::JsError::Bucket { transient, .. } => {
                *transient
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_a_forming_cluster_are_transient_and_a_refusal_is_not() {
        let timed_out = kv::EntryError::new(kv::EntryErrorKind::TimedOut);
        assert!(timed_out.is_transient());
        let bad_key = kv::EntryError::new(kv::EntryErrorKind::InvalidKey);
        assert!(!bad_key.is_transient());
        // A put whose publish was never acknowledged, by cause.
        let publish =
            jetstream::context::PublishError::new(jetstream::context::PublishErrorKind::TimedOut);
        let put = kv::PutError::with_source(kv::PutErrorKind::Publish, publish);
        assert!(put.is_transient());
        // A publish nobody answered (a leader being elected).
        let unanswered = jetstream::context::PublishError::new(
            jetstream::context::PublishErrorKind::StreamNotFound,
        );
        let put = kv::PutError::with_source(kv::PutErrorKind::Publish, unanswered);
        assert!(put.is_transient());
        // A direct get nobody can serve yet, and one that is refused.
        let status = |code: u16| async_nats::StatusCode::from_u16(code).expect("a status");
        let unavailable = stream::DirectGetError::new(stream::DirectGetErrorKind::ErrorResponse(
            status(503),
            "no leader".into(),
        ));
        let get = kv::EntryError::with_source(kv::EntryErrorKind::Other, unavailable);
        assert!(get.is_transient());
        let refused = stream::DirectGetError::new(stream::DirectGetErrorKind::ErrorResponse(
            status(400),
            "bad request".into(),
        ));
        let get = kv::EntryError::with_source(kv::EntryErrorKind::Other, refused);
        assert!(!get.is_transient());
        let nobody = async_nats::RequestError::new(async_nats::RequestErrorKind::NoResponders);
        let other = kv::EntryError::with_source(kv::EntryErrorKind::Other, nobody);
        assert!(other.is_transient());

        // JetStream's answers, by code, as nats-server sends them.
        let answer = |code: u64| -> jetstream::Error {
            let json = format!(r#"{{"code":400,"err_code":{code},"description":"x"}}"#);
            serde_json::from_str(&json).expect("an API error")
        };
        use jetstream::context::{CreateStreamError, CreateStreamErrorKind as K};
        let forming = CreateStreamError::new(K::JetStream(answer(10005)));
        assert!(forming.is_transient());
        let in_use = CreateStreamError::new(K::JetStream(answer(10058)));
        assert!(!in_use.is_transient());

        // The node's own error keeps what the NATS error said.
        let call = crate::JsError::call("purge keys", forming);
        assert!(call.is_transient());
        assert!(!crate::JsError::nats("encode", "bad").is_transient());
    }
}
