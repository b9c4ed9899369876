//! Rate limits at the gateway, as a capability: `[[rate_limit]]` in
//! `nubo.toml`, each limit a GCRA per client key (address, user, API key
//! or a header), held by the gateway before a component runs.
//!
//! - `section.rs`: the section and its checks;
//! - `gcra.rs`: the algorithm, one number per key;
//! - `cells.rs`: where those numbers live (memory, or JetStream on a
//!   cluster, exact across nodes);
//! - `capability.rs`: each app's limits for the gateway, and the `429`.

mod capability;
mod cells;
mod gcra;
mod section;

pub use capability::RateLimits;
pub use gcra::{Decision, Rate};
pub use section::{LimitSpec, RateLimitSection, parse_rate};
