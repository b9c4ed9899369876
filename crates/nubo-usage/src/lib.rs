//! Usage metering: what every app used, as it ran, stored durably.
//!
//! The runtime, the gateway and each capability count usage into the
//! node's [`nubo_wasm::Meter`] as the work happens ([`nubo_wasm::usage`]
//! says what is counted and how). This capability takes what was counted
//! every [`FLUSH_EVERY`] and adds it to the node's usage database
//! (`store.rs`: a row per minute and per hour of each app, component,
//! route, user and metric), and serves it to `nubo usage` and the control
//! API (`api.rs`). A node that stops cleanly stores what it counted last
//! before it exits ([`nubo_wasm::Capability::close`]). `[usage.prices]`
//! turns usage into a cost, and `[caps]` (`caps.rs`) degrades an app that
//! reaches one of its caps (`section.rs` reads both tables).

mod api;
mod capability;
mod caps;
mod caps_api;
mod section;
mod store;

pub use capability::{Caps, FLUSH_EVERY, Metering};
pub use caps::Standing;
pub use section::{CapsSection, CapsSpec, Prices, UsageSection, UsageSpec};
pub use store::{By, KEEP_HOURS, KEEP_MINUTES, Row, UsageDb};
