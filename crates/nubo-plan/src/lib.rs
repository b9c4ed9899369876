//! The planner: turns the difference between two app definitions into the
//! control API's verbs, like `terraform plan`.
//!
//! [`desired`] makes the definition a node stores from a checked
//! `nubo.toml`.
//!
//! Three pieces, all pure: the stored model ([`AppDef`]), the verbs and what
//! each does to a model ([`Step`], [`apply`]), and [`plan`], which is tested
//! against `apply` for every pair of definitions a property test can
//! generate. [`validate`] is what a node checks before storing a result, so
//! a bad step list is refused whole rather than applied in part.

mod desired;
mod model;
mod plan;
mod step;
mod validate;

pub use desired::{Desired, ReadError, desired};
pub use model::{
    AppDef, AppSettings, ComponentDef, Route, RouteTarget, Variable, is_redacted, redact,
};
pub use plan::{plan, short};
pub use step::{Step, StepError, apply};
pub use validate::{conflicts, is_digest, validate};
