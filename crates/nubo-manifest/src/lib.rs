//! `nubo.toml`, the definition file of a Nubo app.
//!
//! [`load`] reads the file, checks every rule a user can break, and returns
//! an [`AppSpec`] that the rest of Nubo trusts without checking again. All
//! problems are reported at once, each with `nubo.toml:LINE:COL` and a hint,
//! because a definition that is half right must never start half served.

mod error;
mod grant;
mod outbound;
mod principal;
mod quotas;
pub mod ranges;
mod raw;
mod route;
mod section;
mod spec;
mod template;
mod validate;

pub use error::{Diagnostic, ManifestError};
pub use grant::{Declarations, GrantKey, GrantProblem, Names, SAMPLE_GRANTS};
pub use outbound::{OutboundError, OutboundRule};
pub use principal::Principal;
pub use quotas::QuotasSpec;
pub use route::{RouteError, RoutePattern};
pub use section::{
    AppView, Change, ChangeKind, Problem, SampleApp, Schema, Section, SectionFile, Target,
    is_empty_value, sample_app, section_value,
};
pub use serde_spanned::Spanned;
pub use spec::{
    Access, AppSpec, AuthLevel, BuildSpec, ComponentSpec, Limits, RouteSpec, RouteTarget,
};
pub use template::TemplateError;

/// Delay before retry `attempt` (1-based) of a queue message or a task
/// whose `backoff_ms` is `base_ms`: `base_ms`, doubling, at most an hour.
pub fn backoff_ms(base_ms: u64, attempt: u32) -> u64 {
    let exp = attempt.saturating_sub(1).min(30);
    base_ms.saturating_mul(1u64 << exp).min(3_600_000)
}

/// `14d`, `12h`, `30m`, `90s` as seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: u64 = s[..s.len() - unit.len_utf8()].parse().ok()?;
    let mul = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(mul)
}

use std::path::Path;

/// The file name Nubo looks for in an app's folder.
pub const FILE_NAME: &str = "nubo.toml";

/// Whether component sources must already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before `nubo build`: a component with a `build` command may not have
    /// produced its `source` yet.
    BeforeBuild,
    /// Every `source` must exist.
    Built,
}

/// Where variable values come from, by variable name.
pub trait VariableSource {
    fn get(&self, name: &str) -> Option<String>;
}

/// Variables from the process environment: `api_key` is read from
/// `NUBO_VAR_API_KEY`.
pub struct EnvVariables;

impl EnvVariables {
    pub fn env_name(variable: &str) -> String {
        format!("NUBO_VAR_{}", variable.to_ascii_uppercase())
    }
}

impl VariableSource for EnvVariables {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(Self::env_name(name)).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> VariableSource for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Reads and validates the definition file at `path`.
pub fn load(
    path: &Path,
    vars: &dyn VariableSource,
    stage: Stage,
    schema: &Schema,
) -> Result<AppSpec, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
        path: path.to_path_buf(),
        diagnostics: vec![Diagnostic {
            line: 0,
            col: 0,
            message: format!("cannot read the definition file: {e}"),
            hint: Some(format!(
                "run `nubo` in a folder that has a {FILE_NAME}, or pass that folder"
            )),
        }],
    })?;
    load_str(path, &text, vars, stage, schema)
}

/// Validates definition-file text; `path` names it in errors and its folder
/// is the root that relative paths resolve against. `schema` holds what
/// the capabilities add: the grant keys of a component and their tables.
pub fn load_str(
    path: &Path,
    text: &str,
    vars: &dyn VariableSource,
    stage: Stage,
    schema: &Schema,
) -> Result<AppSpec, ManifestError> {
    validate::validate(path, text, vars, stage, schema)
}

/// App and component names: lower-case, digits and `-`, starting with a
/// letter, so that they work as host names and URL segments.
pub fn is_name(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Why a host or a base path cannot mount an app.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("invalid host `{0}`")]
    Host(String),
    #[error("invalid base `{base}`: {source}")]
    Base {
        base: String,
        #[source]
        source: RouteError,
    },
}

/// A host name as apps declare it and requests carry it: lower-cased, a
/// trailing dot dropped. Ports and wildcards are not accepted.
pub fn normalize_host(s: &str) -> Result<String, MountError> {
    let h = s.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) {
        return Err(MountError::Host(s.to_string()));
    }
    Ok(h)
}

/// An app's `base`: `/` or `/a/b` without a trailing slash.
pub fn normalize_base(s: &str) -> Result<String, MountError> {
    let route = RoutePattern::parse_static(s).map_err(|source| MountError::Base {
        base: s.to_string(),
        source,
    })?;
    match route {
        RoutePattern::Prefix(p) if p.is_empty() => Ok("/".to_string()),
        RoutePattern::Prefix(p) => Ok(p),
        RoutePattern::Exact(p) => Ok(p),
    }
}

/// Renders a `{{ variable }}` template with `lookup`; errors name a
/// malformed template or the first variable `lookup` does not know.
pub fn render_template(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    template::render(&template::parse(text)?, lookup)
}

/// The variables a template reads, or why it is malformed.
pub fn template_variables(text: &str) -> Result<Vec<String>, TemplateError> {
    Ok(template::parse(text)?
        .into_iter()
        .filter_map(|p| match p {
            template::Part::Var(v) => Some(v),
            template::Part::Text(_) => None,
        })
        .collect())
}

/// Store names (key-value, later blobs and queues): lower-case letters,
/// digits, `-` and `_`, starting with a letter, at most 63 characters.
pub fn is_store_name(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A browser origin as a WebSocket route may allow it: `*`, or
/// `http(s)://host` with an optional port and nothing after it.
pub fn is_origin(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (rest, None),
    };
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        && port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok())
}

/// Variable names: lower-case, digits and `_`, starting with a letter.
pub fn is_variable_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
