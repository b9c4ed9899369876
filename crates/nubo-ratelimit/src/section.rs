//! `[[rate_limit]]` in `nubo.toml`: how often a client may call a route.
//! Stored in the definition under `rate_limit`, as a list.

use crate::gcra::Rate;
use nubo_manifest::{Change, Declarations, Problem, RoutePattern, Section, SectionFile, Spanned};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest a key may have to wait for its whole burst: what the
/// cluster's bucket keeps keys for.
pub const MAX_WINDOW_S: u64 = 86_400;

/// One rate limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSpec {
    /// A route's pattern as `[[http]]` (or `[[websocket]]`, `[[sse]]`,
    /// `[[static]]`) writes it, or `*` for all of them.
    pub route: String,
    /// What a client is counted by: `ip`, `user`, `api_key`, `header:NAME`.
    pub key: String,
    /// `count` requests per `per_s` seconds…
    pub count: u64,
    pub per_s: u64,
    /// …of which `burst` may come at once.
    pub burst: u64,
    /// Log what would be refused; refuse nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

pub type LimitSpecs = Vec<LimitSpec>;

impl LimitSpec {
    pub fn rate(&self) -> Rate {
        Rate {
            interval_us: (self.per_s * 1_000_000 / self.count.max(1)).max(1),
            burst: self.burst.max(1),
        }
    }

    /// `100/min` as people write it.
    pub fn rate_text(&self) -> String {
        let unit = match self.per_s {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        format!("{}/{unit}", self.count)
    }

    pub fn problems(&self, auth: bool) -> Vec<Problem> {
        let mut out = Vec::new();
        match self.key.as_str() {
            "ip" => {}
            "user" | "api_key" if !auth => out.push(
                Problem::new(
                    "key",
                    format!(
                        "key = \"{}\" needs [auth]: without it no request has one",
                        self.key
                    ),
                )
                .hint("key = \"ip\", or add [auth]"),
            ),
            "user" | "api_key" => {}
            k => match k.strip_prefix("header:") {
                Some(name)
                    if http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                        && !name.is_empty() => {}
                _ => out.push(
                    Problem::new("key", format!("invalid key `{k}`"))
                        .hint("\"ip\", \"user\", \"api_key\" or \"header:NAME\""),
                ),
            },
        }
        if self.count == 0 {
            out.push(
                Problem::new("rate", "a rate of 0 refuses everything").hint("rate = \"100/min\""),
            );
        }
        if self.burst == 0 {
            out.push(Problem::new("burst", "`burst` must be at least 1"));
        }
        let r = self.rate();
        if r.interval_us.saturating_mul(r.burst) > MAX_WINDOW_S * 1_000_000 {
            out.push(Problem::new(
                "burst",
                "a whole burst would take over a day to come back; lower `burst` or raise the rate",
            ));
        }
        out
    }
}

/// `N/s`, `N/min`, `N/h` as (N, seconds).
pub fn parse_rate(s: &str) -> Option<(u64, u64)> {
    let (n, unit) = s.trim().split_once('/')?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        _ => return None,
    };
    Some((n.trim().replace('_', "").parse().ok()?, per))
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    rate_limit: Vec<Spanned<RawLimit>>,
    auth: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    http: Vec<RouteOnly>,
    #[serde(default)]
    websocket: Vec<RouteOnly>,
    #[serde(default)]
    sse: Vec<RouteOnly>,
    #[serde(default, rename = "static")]
    statics: Vec<RouteOnly>,
}

#[derive(Deserialize)]
struct RouteOnly {
    route: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    route: Spanned<String>,
    key: Option<Spanned<String>>,
    rate: Spanned<String>,
    burst: Option<Spanned<i64>>,
    mode: Option<Spanned<String>>,
}

/// The `[[rate_limit]]` section, stored as `rate_limit`.
pub struct RateLimitSection;

impl RateLimitSection {
    pub const KEY: &'static str = "rate_limit";

    pub fn of(
        sections: &std::collections::BTreeMap<String, Value>,
    ) -> Result<LimitSpecs, serde_json::Error> {
        nubo_manifest::section_value(sections.get(Self::KEY))
    }
}

/// Every route pattern the file declares, as the gateway names them.
fn declared_routes(file: &File) -> Vec<String> {
    let http = file.http.iter().chain(&file.websocket).chain(&file.sse);
    let mut out: Vec<String> = http
        .filter_map(|r| r.route.as_deref())
        .filter_map(|r| RoutePattern::parse_http(r).ok())
        .map(|p| p.to_string())
        .collect();
    out.extend(
        file.statics
            .iter()
            .filter_map(|r| r.route.as_deref())
            .filter_map(|r| RoutePattern::parse_static(r).ok())
            .map(|p| p.to_string()),
    );
    out
}

impl Section for RateLimitSection {
    fn table(&self) -> &'static str {
        "rate_limit"
    }

    fn key(&self) -> &'static str {
        Self::KEY
    }

    fn read(&self, f: &mut SectionFile<'_, '_>) -> Option<Value> {
        let file: File = f.parse()?;
        let routes = declared_routes(&file);
        let mut out = LimitSpecs::new();
        for raw in &file.rate_limit {
            let r = raw.get_ref();
            let route = match r.route.get_ref().as_str() {
                "*" => "*".to_string(),
                given => match RoutePattern::parse_http(given)
                    .or_else(|_| RoutePattern::parse_static(given))
                {
                    Ok(p) if routes.contains(&p.to_string()) => p.to_string(),
                    _ => {
                        let known = if routes.is_empty() {
                            "none".into()
                        } else {
                            routes.join(", ")
                        };
                        f.error_hint(
                            r.route.span(),
                            format!("no route `{given}` in this file"),
                            format!("a route as its [[http]] entry writes it, or \"*\" for all; the routes: {known}"),
                        );
                        continue;
                    }
                },
            };
            let Some((count, per_s)) = parse_rate(r.rate.get_ref()) else {
                f.error_hint(
                    r.rate.span(),
                    format!("invalid rate `{}`", r.rate.get_ref()),
                    "a number per s, min or h: \"100/min\"",
                );
                continue;
            };
            let shadow = match r.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
                None | Some(("enforce", _)) => false,
                Some(("shadow", _)) => true,
                Some((other, span)) => {
                    f.error_hint(
                        span,
                        format!("invalid mode `{other}`"),
                        "\"enforce\" (the default) or \"shadow\"",
                    );
                    false
                }
            };
            let spec = LimitSpec {
                route,
                key: r
                    .key
                    .as_ref()
                    .map_or_else(|| "ip".into(), |k| k.get_ref().clone()),
                count,
                per_s,
                burst: match &r.burst {
                    None => count,
                    Some(b) => u64::try_from(*b.get_ref()).unwrap_or(0),
                },
                shadow,
            };
            f.report(
                spec.problems(file.auth.is_some()),
                raw.span(),
                |field| match field {
                    "key" => r.key.as_ref().map(Spanned::span),
                    "rate" => Some(r.rate.span()),
                    "burst" => r.burst.as_ref().map(Spanned::span),
                    _ => None,
                },
            );
            out.push(spec);
        }
        (!out.is_empty())
            .then(|| serde_json::to_value(out).ok())
            .flatten()
    }

    /// A stored definition's limits; a `user` key without `[auth]`
    /// counts by address at run time, so it is not checked here.
    fn check(&self, value: &Value, _app: &dyn Declarations) -> Vec<String> {
        match LimitSpecs::deserialize(value) {
            Ok(specs) => specs
                .iter()
                .flat_map(|s| s.problems(true))
                .map(|p| format!("rate_limit: {}", p.message))
                .collect(),
            Err(e) => vec![format!("rate_limit: {e}")],
        }
    }

    fn declares(&self, _value: &Value, _name: &str) -> bool {
        false
    }

    fn describe(&self, old: Option<&Value>, new: Option<&Value>) -> Vec<Change> {
        let read = |v| nubo_manifest::section_value::<LimitSpecs>(v).unwrap_or_default();
        let (old, new) = (read(old), read(new));
        let show = |s: &LimitSpec| {
            format!(
                "rate limit {} by {}: {} (burst {}){}",
                s.route,
                s.key,
                s.rate_text(),
                s.burst,
                if s.shadow { ", shadow" } else { "" }
            )
        };
        let mut out = Vec::new();
        for s in new.iter().filter(|s| !old.contains(s)) {
            out.push(Change::added(show(s)));
        }
        for s in old.iter().filter(|s| !new.contains(s)) {
            out.push(Change::removed(show(s)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str) -> Result<nubo_manifest::AppSpec, String> {
        nubo_manifest::sample_app(vec![&RateLimitSection], extra)
    }

    #[test]
    fn limits_name_declared_routes() {
        let app = load(
            "[[http]]\nroute = \"/api/...\"\ncomponent = \"web\"\n[[rate_limit]]\nroute = \"/api/...\"\nrate = \"100/min\"\nburst = 20\n[[rate_limit]]\nroute = \"*\"\nkey = \"header:x-tenant\"\nrate = \"5/s\"\nmode = \"shadow\"\n",
        )
        .unwrap();
        let specs = RateLimitSection::of(&app.sections).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(
            (specs[0].count, specs[0].per_s, specs[0].burst),
            (100, 60, 20)
        );
        assert_eq!(specs[0].rate().interval_us, 600_000);
        assert!(specs[1].shadow && specs[1].burst == 5);
        let err = load(
            "[[http]]\nroute = \"/api/...\"\ncomponent = \"web\"\n[[rate_limit]]\nroute = \"/apx/...\"\nrate = \"1/min\"\n[[rate_limit]]\nroute = \"*\"\nrate = \"ten/min\"\n[[rate_limit]]\nroute = \"*\"\nkey = \"user\"\nrate = \"1/h\"\n",
        )
        .unwrap_err();
        for want in [
            "nubo.toml:11:9: no route `/apx/...` in this file",
            "nubo.toml:15:8: invalid rate `ten/min`",
            "nubo.toml:18:7: key = \"user\" needs [auth]",
        ] {
            assert!(err.contains(want), "{want}\n{err}");
        }
    }
}
