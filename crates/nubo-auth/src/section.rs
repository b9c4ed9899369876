//! `[auth]` in `nubo.toml`: how people sign in to the app. Stored in the
//! definition under `auth`.
//!
//! The section also checks the routes that ask for an identity (`auth`,
//! `roles` on `[[http]]`, `[[websocket]]`, `[[sse]]`): without `[auth]`
//! nothing could sign anyone in, so each is reported where it is written.

use nubo_manifest::{Change, Declarations, Problem, Section, SectionFile, Spanned};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::ops::Range;

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
    /// API keys made with `nubo auth keys create`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub api_keys: bool,
    /// Issuers whose JWTs are taken as bearer tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt: Vec<JwtSpec>,
}

/// One issuer of JWTs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSpec {
    /// The `iss` a token must carry.
    pub issuer: String,
    /// Where the issuer's public keys are (RS256, ES256, EdDSA…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// For HS256: the shared secret, as a template of a variable
    /// (`{{ jwt_secret }}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The `aud` a token must carry, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The claim that lists the identity's roles.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
}

fn default_roles_claim() -> String {
    "roles".into()
}

fn default_prefix() -> String {
    "/auth".into()
}

fn default_ttl() -> u64 {
    14 * 86_400
}

pub use nubo_manifest::parse_duration;

impl AuthSpec {
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if !self.accounts && !self.api_keys && self.jwt.is_empty() {
            out.push(
                Problem::new(
                    "accounts",
                    "[auth] signs no one in: it has no `accounts`, `api_keys` or `jwt`",
                )
                .hint("accounts = true: built-in email and password accounts"),
            );
        }
        for (i, j) in self.jwt.iter().enumerate() {
            if self.jwt[..i].iter().any(|o| o.issuer == j.issuer) {
                out.push(Problem::new(
                    "jwt",
                    format!("issuer `{}` is listed twice in `jwt`", j.issuer),
                ));
            }
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

impl JwtSpec {
    /// What is wrong with one issuer; `app` tells which variables exist.
    pub fn problems(&self, app: &dyn Declarations) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.issuer.trim().is_empty() {
            out.push(
                Problem::new("issuer", "`issuer` is empty")
                    .hint("the `iss` the tokens carry, like \"https://issuer.example/\""),
            );
        }
        match (&self.jwks, &self.secret) {
            (Some(_), Some(_)) | (None, None) => out.push(
                Problem::new("issuer", "an issuer needs one of `jwks` and `secret`")
                    .hint("jwks = \"https://issuer.example/.well-known/jwks.json\" for RS256, ES256 or EdDSA; secret = \"{{ jwt_secret }}\" for HS256"),
            ),
            (Some(url), None) => {
                if let Err(why) = crate::jwks::check_url(url) {
                    out.push(Problem::new("jwks", format!("`jwks` {why}")).hint(
                        "an https:// URL, or http:// to an IP address (http://127.0.0.1:8080/jwks)",
                    ));
                }
            }
            (None, Some(secret)) => out.extend(secret_problems(secret, app)),
        }
        if self.roles_claim.is_empty() {
            out.push(Problem::new("roles_claim", "`roles_claim` is empty"));
        }
        out
    }
}

/// A secret must come from a declared variable, never the file itself.
fn secret_problems(secret: &str, app: &dyn Declarations) -> Vec<Problem> {
    let vars = match nubo_manifest::template_variables(secret) {
        Ok(v) => v,
        Err(e) => return vec![Problem::new("secret", format!("`secret`: {e}"))],
    };
    if vars.is_empty() {
        return vec![
            Problem::new(
                "secret",
                "`secret` is written in nubo.toml; it must come from a variable",
            )
            .hint(
                "secret = \"{{ jwt_secret }}\", with jwt_secret = { secret = true } in [variables]",
            ),
        ];
    }
    vars.into_iter()
        .filter(|v| !app.has_variable(v))
        .map(|v| {
            Problem::new(
                "secret",
                format!("`secret` uses variable `{v}`, which is not declared"),
            )
        })
        .collect()
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
    api_keys: Option<Spanned<bool>>,
    jwt: Option<Spanned<Vec<Spanned<RawJwt>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    issuer: Spanned<String>,
    jwks: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
    audience: Option<Spanned<String>>,
    roles_claim: Option<Spanned<String>>,
}

impl RawJwt {
    fn spec(&self) -> JwtSpec {
        let get = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
        JwtSpec {
            issuer: self.issuer.get_ref().clone(),
            jwks: get(&self.jwks),
            secret: get(&self.secret),
            audience: get(&self.audience),
            roles_claim: get(&self.roles_claim).unwrap_or_else(default_roles_claim),
        }
    }

    fn span(&self, field: &str) -> Option<Range<usize>> {
        match field {
            "issuer" => Some(self.issuer.span()),
            "jwks" => self.jwks.as_ref().map(Spanned::span),
            "secret" => self.secret.as_ref().map(Spanned::span),
            "roles_claim" => self.roles_claim.as_ref().map(Spanned::span),
            _ => None,
        }
    }
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
        let jwt: &[Spanned<RawJwt>] = a.jwt.as_ref().map_or(&[], |j| j.get_ref());
        for j in jwt {
            let problems = j.get_ref().spec().problems(f.app());
            f.report(problems, j.span(), |field| j.get_ref().span(field));
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
            api_keys: a.api_keys.as_ref().is_some_and(|v| *v.get_ref()),
            jwt: jwt.iter().map(|j| j.get_ref().spec()).collect(),
        };
        f.report(spec.problems(), raw.span(), |field| match field {
            "accounts" => a.accounts.as_ref().map(Spanned::span),
            "jwt" => a.jwt.as_ref().map(Spanned::span),
            "prefix" => a.prefix.as_ref().map(Spanned::span),
            "session" => a.session.as_ref().map(Spanned::span),
            _ => None,
        });
        serde_json::to_value(spec).ok()
    }

    fn check(&self, value: &Value, app: &dyn Declarations) -> Vec<String> {
        match AuthSpec::deserialize(value) {
            Ok(spec) => spec
                .problems()
                .into_iter()
                .chain(spec.jwt.iter().flat_map(|j| j.problems(app)))
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
        let err = load("[auth]\naccounts = true\nsession = { ttl = \"soon\" }\n").unwrap_err();
        assert!(
            err.contains("nubo.toml:9:19: invalid duration `soon`"),
            "{err}"
        );
    }

    #[test]
    fn an_issuer_takes_keys_from_a_jwks_url_or_a_secret_variable() {
        let app = load(
            "[variables]\nsig = { default = \"s3cret-s3cret\", secret = true }\n[auth]\napi_keys = true\njwt = [{ issuer = \"https://a.example/\", jwks = \"https://a.example/jwks.json\", audience = \"api\" }, { issuer = \"tests\", secret = \"{{ sig }}\" }]\n",
        )
        .unwrap();
        let spec = AuthSection::of(&app.sections).unwrap().unwrap();
        assert!(spec.api_keys && !spec.accounts);
        assert_eq!(spec.jwt[0].audience.as_deref(), Some("api"));
        assert_eq!(spec.jwt[1].roles_claim, "roles");
        let err = load(
            "[auth]\njwt = [{ issuer = \"a\", secret = \"plain\" }, { issuer = \"b\", jwks = \"http://issuer.example/jwks\" }, { issuer = \"c\", secret = \"{{ nope }}\" }, { issuer = \"d\" }]\n",
        )
        .unwrap_err();
        for want in [
            "nubo.toml:8:33: `secret` is written in nubo.toml",
            "nubo.toml:8:67: `jwks` plain http:// needs an IP address",
            "nubo.toml:8:124: `secret` uses variable `nope`",
            "nubo.toml:8:151: an issuer needs one of `jwks` and `secret`",
        ] {
            assert!(err.contains(want), "{want}\n{err}");
        }
    }
}
