//! Cross-origin requests at the gateway, as a capability: `[cors]` in
//! `nubo.toml` says which other origins' pages may call the app, with
//! which methods and headers, and whether with cookies. The gateway
//! answers preflights itself, so no component runs for one
//! (`policy.rs`), and adds the CORS headers to every answer to an
//! allowed origin.

mod capability;
mod policy;
mod section;

pub use capability::CrossOrigin;
pub use section::{CorsSection, CorsSpec};
