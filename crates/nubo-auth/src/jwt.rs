//! Bearer JWTs from the issuers `[auth] jwt` lists.
//!
//! A token names its issuer in `iss`; the issuer's entry says where its
//! keys are. Keys from a JWKS verify RS256/384/512, PS256/384/512,
//! ES256/384 and EdDSA; a secret verifies HS256/384/512, and only a
//! secret does, so a token cannot pass an RSA public key off as an HMAC
//! secret. `alg: none` is never taken. `exp` and `sub` are required;
//! `exp`, `nbf`, `iss` and `aud` (when the issuer sets an audience) are
//! checked with [`SKEW`] of clock difference.
//!
//! The identity: `sub` is the user id, `email` the email, and the
//! issuer's `roles_claim` (an array of strings, or one string of
//! space-separated names) the roles.

use crate::jwks::Jwks;
use crate::section::JwtSpec;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use nubo_gateway::{Carried, Identity};
use serde_json::Value;
use std::sync::Arc;

pub const SKEW: u64 = 60;

const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
const SYMMETRIC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

enum Keys {
    Secret(DecodingKey),
    Jwks(Jwks),
}

struct Issuer {
    spec: JwtSpec,
    keys: Keys,
}

/// The issuers of one app.
pub struct Issuers(Vec<Issuer>);

impl Issuers {
    /// The issuers of `specs`, with each secret as its variable renders
    /// it (`lookup`).
    pub fn new(specs: &[JwtSpec], lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut out = Vec::new();
        for spec in specs {
            let keys = match (&spec.jwks, &spec.secret) {
                (Some(url), _) => Keys::Jwks(Jwks::new(url.clone())),
                (None, Some(template)) => {
                    let secret = nubo_manifest::render_template(template, &lookup)
                        .map_err(|e| format!("issuer `{}`: secret: {e}", spec.issuer))?;
                    Keys::Secret(DecodingKey::from_secret(secret.as_bytes()))
                }
                (None, None) => return Err(format!("issuer `{}` has no keys", spec.issuer)),
            };
            out.push(Issuer {
                spec: spec.clone(),
                keys,
            });
        }
        Ok(Self(out))
    }

    pub fn none() -> Self {
        Self(Vec::new())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The identity `token` proves, or why it proves none.
    pub async fn verify(&self, token: &str) -> Carried {
        match self.check(token).await {
            Ok(identity) => Carried::Identity(Arc::new(identity)),
            Err(why) => Carried::Invalid(format!("the bearer token is not valid: {why}")),
        }
    }

    async fn check(&self, token: &str) -> Result<Identity, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| "its header is not a JWT header with an algorithm Nubo takes")?;
        let iss = unverified_issuer(token).ok_or("it has no `iss`")?;
        let issuer = self
            .0
            .iter()
            .find(|i| i.spec.issuer == iss)
            .ok_or_else(|| format!("issuer `{iss}` is not one the app takes"))?;
        let (allowed, key) = match &issuer.keys {
            Keys::Secret(k) => (SYMMETRIC, k.clone()),
            Keys::Jwks(jwks) => {
                let key = jwks
                    .key(header.kid.as_deref())
                    .await?
                    .ok_or("its key id is not among the issuer's keys")?;
                (ASYMMETRIC, key)
            }
        };
        if !allowed.contains(&header.alg) {
            return Err(format!(
                "algorithm {:?} is not one this issuer's keys verify",
                header.alg
            ));
        }
        let mut v = Validation::new(header.alg);
        v.leeway = SKEW;
        v.validate_nbf = true;
        v.set_issuer(&[&issuer.spec.issuer]);
        v.set_required_spec_claims(&["exp", "sub", "iss"]);
        match &issuer.spec.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| why(&e))?;
        Ok(identity(&data.claims, &issuer.spec.roles_claim))
    }
}

/// `iss` of a token's claims, read before its signature is checked only
/// to pick the issuer whose key checks it.
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

fn identity(claims: &Value, roles_claim: &str) -> Identity {
    let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
    let roles = match claims.get(roles_claim) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    };
    Identity::new(text("sub").unwrap_or_default(), text("email"), roles, "jwt")
}

fn why(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "it has expired".into(),
        K::ImmatureSignature => "it is not valid yet (`nbf`)".into(),
        K::InvalidAudience => "its audience (`aud`) is not this app's".into(),
        K::InvalidIssuer => "its issuer (`iss`) is wrong".into(),
        K::InvalidSignature => "its signature does not verify".into(),
        K::MissingRequiredClaim(c) => format!("it has no `{c}`"),
        K::InvalidAlgorithm => "its algorithm does not match the key".into(),
        _ => "it is malformed".into(),
    }
}
