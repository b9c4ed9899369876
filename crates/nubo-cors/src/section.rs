//! `[cors]` in `nubo.toml`: which other origins' pages may call the app.
//! Stored in the definition under `cors`.

use nubo_manifest::{Change, Declarations, Problem, Section, SectionFile, Spanned};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The app's cross-origin rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsSpec {
    /// `https://app.example`, `https://*.example.com`, or `*`.
    pub origins: Vec<String>,
    /// Methods a page may use.
    pub methods: Vec<String>,
    /// Request headers a page may send (lower-case), or `*`.
    pub headers: Vec<String>,
    /// Response headers a page may read.
    pub expose_headers: Vec<String>,
    /// Whether pages may send cookies and read answers to them.
    pub credentials: bool,
    /// How long a browser may keep a preflight's answer, in seconds.
    pub max_age_s: u64,
}

const DEFAULT_METHODS: [&str; 3] = ["GET", "HEAD", "POST"];
const DEFAULT_MAX_AGE: u64 = 600;
/// Browsers keep a preflight at most this long (Firefox: 24 h).
const MAX_MAX_AGE: u64 = 86_400;

/// Whether `o` is an origin, a `*.` pattern of one, or `*`.
fn is_origin(o: &str) -> bool {
    if o == "*" {
        return true;
    }
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    let host = rest.strip_prefix("*.").unwrap_or(rest);
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && !host.contains(['/', '*', ' ', '?', '#', '@'])
        && !o.ends_with('/')
}

impl CorsSpec {
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.origins.is_empty() {
            out.push(
                Problem::new("origins", "`origins` is empty: no origin may call the app")
                    .hint("origins = [\"https://app.example\"]"),
            );
        }
        for o in &self.origins {
            if !is_origin(o) {
                out.push(Problem::new("origins", format!("invalid origin `{o}`")).hint(
                    "a scheme and host, with no path: \"https://app.example\", \"http://localhost:5173\", \"https://*.example.com\", or \"*\"",
                ));
            }
        }
        if self.credentials && self.origins.iter().any(|o| o == "*") {
            out.push(
                Problem::new(
                    "credentials",
                    "credentials = true cannot go with origins = [\"*\"]: browsers refuse it",
                )
                .hint("list the origins that may send cookies"),
            );
        }
        for m in &self.methods {
            if http::Method::from_bytes(m.as_bytes()).is_err()
                || m.chars().any(|c| c.is_ascii_lowercase())
            {
                out.push(
                    Problem::new("methods", format!("invalid method `{m}`"))
                        .hint("upper-case, like \"PUT\""),
                );
            }
        }
        for h in self.headers.iter().chain(&self.expose_headers) {
            if h != "*" && http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                out.push(Problem::new(
                    "headers",
                    format!("invalid header name `{h}`"),
                ));
            }
        }
        if self.max_age_s > MAX_MAX_AGE {
            out.push(Problem::new(
                "max_age",
                "`max_age` is at most 24h (browsers keep a preflight no longer)",
            ));
        }
        out
    }
}

#[derive(Deserialize)]
struct File {
    cors: Option<Spanned<RawCors>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    origins: Option<Spanned<Vec<String>>>,
    methods: Option<Spanned<Vec<String>>>,
    headers: Option<Spanned<Vec<String>>>,
    expose_headers: Option<Spanned<Vec<String>>>,
    credentials: Option<Spanned<bool>>,
    max_age: Option<Spanned<String>>,
}

/// The `[cors]` section, stored as `cors`.
pub struct CorsSection;

impl CorsSection {
    pub const KEY: &'static str = "cors";

    pub fn of(
        sections: &std::collections::BTreeMap<String, Value>,
    ) -> Result<Option<CorsSpec>, serde_json::Error> {
        sections
            .get(Self::KEY)
            .map(CorsSpec::deserialize)
            .transpose()
    }
}

/// `10m`, `1h`, `90s` or `600` as seconds.
fn seconds(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let (n, mul) = match s.chars().last()? {
        's' => (&s[..s.len() - 1], 1),
        'm' => (&s[..s.len() - 1], 60),
        'h' => (&s[..s.len() - 1], 3600),
        _ => return None,
    };
    n.parse::<u64>().ok()?.checked_mul(mul)
}

impl Section for CorsSection {
    fn table(&self) -> &'static str {
        "cors"
    }

    fn key(&self) -> &'static str {
        Self::KEY
    }

    fn read(&self, f: &mut SectionFile<'_, '_>) -> Option<Value> {
        let file: File = f.parse()?;
        let raw = file.cors?;
        let c = raw.get_ref();
        let list = |v: &Option<Spanned<Vec<String>>>| v.as_ref().map(|l| l.get_ref().clone());
        let max_age_s = match &c.max_age {
            None => DEFAULT_MAX_AGE,
            Some(m) => seconds(m.get_ref()).unwrap_or_else(|| {
                f.error_hint(
                    m.span(),
                    format!("invalid duration `{}`", m.get_ref()),
                    "\"10m\", \"1h\" or seconds",
                );
                DEFAULT_MAX_AGE
            }),
        };
        let spec = CorsSpec {
            origins: list(&c.origins).unwrap_or_default(),
            methods: list(&c.methods).unwrap_or_else(|| DEFAULT_METHODS.map(String::from).to_vec()),
            headers: list(&c.headers)
                .unwrap_or_else(|| vec!["content-type".into()])
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            expose_headers: list(&c.expose_headers).unwrap_or_default(),
            credentials: c.credentials.as_ref().is_some_and(|v| *v.get_ref()),
            max_age_s,
        };
        f.report(spec.problems(), raw.span(), |field| match field {
            "origins" => c.origins.as_ref().map(Spanned::span),
            "methods" => c.methods.as_ref().map(Spanned::span),
            "headers" => c
                .headers
                .as_ref()
                .or(c.expose_headers.as_ref())
                .map(Spanned::span),
            "credentials" => c.credentials.as_ref().map(Spanned::span),
            "max_age" => c.max_age.as_ref().map(Spanned::span),
            _ => None,
        });
        serde_json::to_value(spec).ok()
    }

    fn check(&self, value: &Value, _app: &dyn Declarations) -> Vec<String> {
        match CorsSpec::deserialize(value) {
            Ok(spec) => spec
                .problems()
                .into_iter()
                .map(|p| format!("cors: {}", p.message))
                .collect(),
            Err(e) => vec![format!("cors: {e}")],
        }
    }

    fn declares(&self, _value: &Value, _name: &str) -> bool {
        false
    }

    fn describe(&self, old: Option<&Value>, new: Option<&Value>) -> Vec<Change> {
        let origins = |v: &Value| {
            CorsSpec::deserialize(v)
                .map(|s| s.origins.join(", "))
                .unwrap_or_default()
        };
        match (old, new) {
            (None, Some(n)) => vec![Change::added(format!(
                "cross-origin requests from {}",
                origins(n)
            ))],
            (Some(_), None) => vec![Change::removed("cross-origin requests ([cors])")],
            (Some(a), Some(b)) if a != b => {
                vec![Change::changed(
                    format!("cross-origin requests from {}", origins(b)),
                    String::new(),
                )]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str) -> Result<nubo_manifest::AppSpec, String> {
        nubo_manifest::sample_app(vec![&CorsSection], extra)
    }

    #[test]
    fn origins_methods_and_credentials_are_checked() {
        let app = load("[cors]\norigins = [\"https://app.example\"]\nheaders = [\"Content-Type\", \"X-Csrf\"]\ncredentials = true\nmax_age = \"1h\"\n").unwrap();
        let spec = CorsSection::of(&app.sections).unwrap().unwrap();
        assert_eq!(spec.methods, ["GET", "HEAD", "POST"]);
        assert_eq!(spec.headers, ["content-type", "x-csrf"]);
        assert_eq!(spec.max_age_s, 3600);
        let err = load("[cors]\norigins = [\"*\", \"app.example\", \"https://a.example/\"]\nmethods = [\"get\"]\ncredentials = true\n").unwrap_err();
        for want in [
            "nubo.toml:8:11: invalid origin `app.example`",
            "nubo.toml:8:11: invalid origin `https://a.example/`",
            "nubo.toml:9:11: invalid method `get`",
            "nubo.toml:10:15: credentials = true cannot go with origins = [\"*\"]",
        ] {
            assert!(err.contains(want), "{want}\n{err}");
        }
    }
}
