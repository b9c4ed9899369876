//! Sign-in at the gateway, as a capability: `[auth]` in `nubo.toml`,
//! email and password accounts with argon2id hashes, cookie sessions, and
//! the identity every request of a signed-in person carries to the
//! components (`nubo-user-id`, `nubo-user-email`, `nubo-user-roles`,
//! `nubo-auth`), held to each route's `auth` and `roles` by the gateway.
//!
//! The gateway knows no sign-in scheme: this crate gives it a
//! [`nubo_gateway::Guard`] per app (see `guard.rs`). Accounts and sessions
//! are kept in the app's key-value namespace (`store.rs`), so on a
//! cluster any node accepts a session another made.

mod api;
mod capability;
mod form;
mod guard;
mod jwks;
mod jwt;
mod password;
mod section;
mod store;
mod throttle;

pub use capability::Auth;
pub use section::{AuthSection, AuthSpec, JwtSpec, parse_duration};

/// 32 random bytes, base64url: a session token or an id; `None` if the
/// system gives no randomness.
pub(crate) fn random_token() -> Option<String> {
    use base64::Engine as _;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}
