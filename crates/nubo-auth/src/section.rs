//! `[auth]` in `nubo.toml`: how people sign in to the app. Stored in the
//! definition under `auth`.
//!
//! The section also checks the routes that ask for an identity (`auth`,
//! `roles` on `[[http]]`, `[[websocket]]`, `[[sse]]`): without `[auth]`
//! nothing could sign anyone in, so each is reported where it is written.

use nubo_manifest::{Change, Declarations, Problem, Section, SectionFile, Spanned};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The app's sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthSpec {
    /// Built-in email and password accounts.
    #[serde(default)]
    pub accounts: bool,
    /// Where the gateway serves `signup`, `login`, `logout`, `password`, `me`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How long a session lasts after sign-in, in seconds.
    #[serde(default = "default_ttl")]
    pub session_ttl_s: u64,
}

fn default_prefix() -> String {
    "/auth".into()
}

fn default_ttl() -> u64 {
    14 * 86_400
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

impl AuthSpec {
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if !self.accounts {
            out.push(
                Problem::new("accounts", "[auth] signs no one in: `accounts` is not on")
                    .hint("accounts = true: built-in email and password accounts"),
            );
        }
        if !nubo_manifest::ranges::is_request_path(&self.prefix) || self.prefix.ends_with('/') {
            out.push(
                Problem::new("prefix", format!("invalid prefix `{}`", self.prefix))
                    .hint("an absolute path without a trailing `/`, like \"/auth\""),
            );
        }
        if !(1..=366 * 86_400).contains(&self.session_ttl_s) {
            out.push(
                Problem::new(
                    "session",
                    "a session's ttl must be between 1 second and 366 days",
                )
                .hint("session = { ttl = \"14d\" }"),
            );
        }
        out
    }
}

#[derive(Deserialize)]
struct File {
    auth: Option<Spanned<RawAuth>>,
    #[serde(default)]
    http: Vec<RouteAccess>,
    #[serde(default)]
    websocket: Vec<RouteAccess>,
    #[serde(default)]
    sse: Vec<RouteAccess>,
}

/// The keys of a route this section reads; the app reads the rest.
#[derive(Deserialize)]
struct RouteAccess {
    auth: Option<Spanned<String>>,
    roles: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    accounts: Option<Spanned<bool>>,
    prefix: Option<Spanned<String>>,
    session: Option<Spanned<RawSession>>,
    /// Keys this version knows but does not take yet.
    jwt: Option<Spanned<serde::de::IgnoredAny>>,
    api_keys: Option<Spanned<serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    ttl: Option<Spanned<String>>,
}

/// The `[auth]` section, stored as `auth`.
pub struct AuthSection;

impl AuthSection {
    pub const KEY: &'static str = "auth";

    /// The app's sign-in among the sections of a stored definition.
    pub fn of(
        sections: &std::collections::BTreeMap<String, Value>,
    ) -> Result<Option<AuthSpec>, serde_json::Error> {
        sections
            .get(Self::KEY)
            .map(AuthSpec::deserialize)
            .transpose()
    }
}

impl Section for AuthSection {
    fn table(&self) -> &'static str {
        "auth"
    }

    fn key(&self) -> &'static str {
        Self::KEY
    }

    fn read(&self, f: &mut SectionFile<'_, '_>) -> Option<Value> {
        let file: File = f.parse()?;
        let routes = file.http.iter().chain(&file.websocket).chain(&file.sse);
        let Some(raw) = &file.auth else {
            for r in routes {
                let needs = r
                    .auth
                    .as_ref()
                    .filter(|a| a.get_ref() != "public")
                    .map(Spanned::span);
                if let Some(span) = needs.or_else(|| r.roles.as_ref().map(Spanned::span)) {
                    f.error_hint(
                        span,
                        "this route needs a signed-in identity, and the app has no [auth]",
                        "[auth] accounts = true",
                    );
                }
            }
            return None;
        };
        let a = raw.get_ref();
        for (key, given) in [
            ("jwt", a.jwt.as_ref().map(Spanned::span)),
            ("api_keys", a.api_keys.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = given {
                f.error_hint(
                    span,
                    format!("`{key}` in [auth] is not available on this node yet"),
                    "use accounts = true (email and password, cookie sessions)",
                );
            }
        }
        let ttl = match a.session.as_ref().and_then(|s| s.get_ref().ttl.as_ref()) {
            None => default_ttl(),
            Some(t) => match parse_duration(t.get_ref()) {
                Some(s) => s,
                None => {
                    f.error_hint(
                        t.span(),
                        format!("invalid duration `{}`", t.get_ref()),
                        "a number and a unit: \"14d\", \"12h\", \"30m\"",
                    );
                    default_ttl()
                }
            },
        };
        let spec = AuthSpec {
            accounts: a.accounts.as_ref().is_some_and(|v| *v.get_ref()),
            prefix: a
                .prefix
                .as_ref()
                .map_or_else(default_prefix, |p| p.get_ref().clone()),
            session_ttl_s: ttl,
        };
        f.report(spec.problems(), raw.span(), |field| match field {
            "accounts" => a.accounts.as_ref().map(Spanned::span),
            "prefix" => a.prefix.as_ref().map(Spanned::span),
            "session" => a.session.as_ref().map(Spanned::span),
            _ => None,
        });
        serde_json::to_value(spec).ok()
    }

    fn check(&self, value: &Value, _app: &dyn Declarations) -> Vec<String> {
        match AuthSpec::deserialize(value) {
            Ok(spec) => spec
                .problems()
                .into_iter()
                .map(|p| format!("auth: {}", p.message))
                .collect(),
            Err(e) => vec![format!("auth: {e}")],
        }
    }

    fn declares(&self, _value: &Value, _name: &str) -> bool {
        false
    }

    fn describe(&self, old: Option<&Value>, new: Option<&Value>) -> Vec<Change> {
        match (old, new) {
            (None, Some(_)) => vec![Change::added("sign-in ([auth])")],
            (Some(_), None) => vec![Change::removed("sign-in ([auth])")],
            (Some(a), Some(b)) if a != b => {
                vec![Change::changed("sign-in ([auth])", String::new())]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str) -> Result<nubo_manifest::AppSpec, String> {
        nubo_manifest::sample_app(vec![&AuthSection], extra)
    }

    #[test]
    fn accounts_and_a_session_ttl_are_read() {
        let app = load("[auth]\naccounts = true\nsession = { ttl = \"2h\" }\n").unwrap();
        let spec = AuthSection::of(&app.sections).unwrap().unwrap();
        assert_eq!(spec.session_ttl_s, 7200);
        assert_eq!(spec.prefix, "/auth");
        assert!(parse_duration("14d") == Some(1_209_600) && parse_duration("x").is_none());
    }

    #[test]
    fn a_route_that_needs_sign_in_needs_auth() {
        let err =
            load("[[http]]\nroute = \"/api/...\"\ncomponent = \"web\"\nauth = \"required\"\n")
                .unwrap_err();
        assert!(
            err.contains(
                "nubo.toml:10:8: this route needs a signed-in identity, and the app has no [auth]"
            ),
            "{err}"
        );
        let err =
            load("[auth]\naccounts = true\nsession = { ttl = \"soon\" }\njwt = []\n").unwrap_err();
        assert!(
            err.contains("nubo.toml:9:19: invalid duration `soon`"),
            "{err}"
        );
        assert!(
            err.contains("nubo.toml:10:7: `jwt` in [auth] is not available"),
            "{err}"
        );
    }
}
