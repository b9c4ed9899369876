//! Records that nodes act on carry an HMAC made with the cluster key.
//!
//! Anyone who can write to NATS could otherwise put a definition into the
//! desired state (and every node would load and serve it) or cancel any
//! task. Each node is given the same secret (`--cluster-key`, distinct
//! from the control token); a record is written as `nubo1:MAC:BODY`, where
//! MAC is HMAC-SHA256 over what the record is for (its kind and key) and
//! its body, so a record can be neither forged nor moved to another key.
//! A node refuses, and logs, a record whose MAC does not check out.

use ring::hmac;

const PREFIX: &[u8] = b"nubo1:";
/// Hex digits of an HMAC-SHA256.
const MAC_HEX: usize = 64;

/// The shared secret of a cluster's nodes.
pub struct ClusterKey(hmac::Key);

/// A record without a valid MAC from this cluster's key.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what} is not signed with this cluster's key (a node with another --cluster-key, or written by someone else); ignored"
)]
pub struct Unauthenticated {
    pub what: String,
}

/// Why a cluster key was refused.
#[derive(Debug, thiserror::Error)]
#[error("the cluster key is too short: give at least 32 characters (e.g. `openssl rand -hex 32`)")]
pub struct WeakKey;

impl ClusterKey {
    /// The key from the secret every node is given. The secret is hashed
    /// with a label first, so that the same string used elsewhere (by
    /// mistake, as the control token) yields an unrelated key.
    pub fn new(secret: &str) -> Result<Self, WeakKey> {
        if secret.trim().len() < 32 {
            return Err(WeakKey);
        }
        let label = hmac::Key::new(hmac::HMAC_SHA256, b"nubo cluster key v1");
        let derived = hmac::sign(&label, secret.trim().as_bytes());
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())))
    }

    /// 32 bytes of key material for `purpose`, derived from the cluster
    /// key (every node derives the same), never the signing key itself.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.0, format!("nubo derived key\0{purpose}").as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(&tag.as_ref()[..32]);
        out
    }

    fn tag(&self, context: &str, body: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(context.as_bytes());
        ctx.update(&[0]);
        ctx.update(body);
        ctx.sign()
    }

    /// `body` as a sealed record for `context` (what it is, and its key).
    pub fn seal(&self, context: &str, body: &[u8]) -> Vec<u8> {
        let tag = self.tag(context, body);
        let mut out = Vec::with_capacity(PREFIX.len() + MAC_HEX + 1 + body.len());
        out.extend_from_slice(PREFIX);
        for b in tag.as_ref() {
            out.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        out.push(b':');
        out.extend_from_slice(body);
        out
    }

    /// The body of a record sealed for `context`, if its MAC checks out.
    pub fn open<'a>(&self, context: &str, sealed: &'a [u8]) -> Result<&'a [u8], Unauthenticated> {
        let refused = || Unauthenticated {
            what: context.to_string(),
        };
        let rest = sealed.strip_prefix(PREFIX).ok_or_else(refused)?;
        if rest.len() < MAC_HEX + 1 || rest[MAC_HEX] != b':' {
            return Err(refused());
        }
        let (hex, body) = (&rest[..MAC_HEX], &rest[MAC_HEX + 1..]);
        let mut mac = [0u8; MAC_HEX / 2];
        for (i, pair) in hex.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).map_err(|_| refused())?;
            mac[i] = u8::from_str_radix(s, 16).map_err(|_| refused())?;
        }
        let mut ctx = Vec::with_capacity(context.len() + 1 + body.len());
        ctx.extend_from_slice(context.as_bytes());
        ctx.push(0);
        ctx.extend_from_slice(body);
        hmac::verify(&self.0, &ctx, &mac).map_err(|_| refused())?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ClusterKey {
        ClusterKey::new(&s.repeat(32)).unwrap()
    }

    #[test]
    fn a_sealed_record_opens_only_with_its_key_and_context() {
        let k = key("a");
        let sealed = k.seal("app shop", b"{\"x\":1}");
        assert_eq!(k.open("app shop", &sealed).unwrap(), b"{\"x\":1}");
        // Another key, another context, a changed body, no seal at all.
        assert!(key("b").open("app shop", &sealed).is_err());
        assert!(k.open("app other", &sealed).is_err());
        let mut changed = sealed.clone();
        let last = changed.len() - 2;
        changed[last] = b'2';
        assert!(k.open("app shop", &changed).is_err());
        assert!(k.open("app shop", b"{\"x\":1}").is_err());
        assert!(k.open("app shop", b"nubo1:zz").is_err());
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(ClusterKey::new("secret").is_err());
        assert!(ClusterKey::new(&"x".repeat(32)).is_ok());
    }
}
