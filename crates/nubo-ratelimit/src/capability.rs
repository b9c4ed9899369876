//! Rate limits as a capability of the node: the `[[rate_limit]]` section,
//! and each app's [`Limit`], which the gateway asks by app name.

use crate::cells::{Cells, MemoryCells, NatsCells};
use crate::gcra::{Decision, Rate};
use crate::section::{LimitSpec, RateLimitSection};
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt;
use nubo_gateway::{
    Body, GuardFuture, Limit, Limits, NUBO_AUTH, NUBO_USER_ID, TimedRequest, Verdict,
};
use nubo_manifest::RoutePattern;
use nubo_wasm::{BoxFuture, Capability, OpenEnv, OpenError, PerApp, RunningApp, Section, Services};
use std::net::IpAddr;
use std::sync::Arc;

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// One limit of an app, ready to count.
struct Rule {
    spec: LimitSpec,
    rate: Rate,
    /// Its `RateLimit-Policy` entry, and that entry alone as a header
    /// value (what a route covered by this one limit sends).
    policy: String,
    policy_value: Option<HeaderValue>,
    /// Its name in the `RateLimit` header (`"limit0"`).
    name: String,
    /// Where its cells are: the app, as a subject token, and its index.
    scope: String,
}

/// One app's limits.
struct AppLimits {
    app: String,
    rules: Vec<Rule>,
    cells: Arc<dyn Cells>,
}

/// The node's limits: each app's, and where TATs are kept.
struct LimitService {
    cells: Arc<dyn Cells>,
    apps: PerApp<AppLimits>,
}

impl Limits for LimitService {
    fn limit(&self, app: &str) -> Option<Arc<dyn Limit>> {
        self.apps.get(app).map(|l| l as Arc<dyn Limit>)
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Rule {
    fn covers(&self, route: &RoutePattern) -> bool {
        self.spec.route == "*" || route.is_written(&self.spec.route)
    }

    /// What this limit counts the request by: `ip:…`, `user:…` or
    /// `header:…`.
    fn client_key(&self, req: &TimedRequest, client: Option<IpAddr>) -> String {
        let h = req.headers();
        let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        let found = match self.spec.key.as_str() {
            "user" => text(NUBO_USER_ID).map(|u| ("user:", u)),
            "api_key" if text(NUBO_AUTH) == Some("api-key") => {
                text(NUBO_USER_ID).map(|k| ("user:", k))
            }
            "api_key" => None,
            k => k
                .strip_prefix("header:")
                .and_then(text)
                .map(|v| ("header:", v)),
        };
        match found {
            Some((kind, value)) => {
                let mut key = String::with_capacity(kind.len() + value.len());
                key.push_str(kind);
                key.push_str(value);
                key
            }
            // The address's bytes, one char each: unique, and no
            // formatting per request.
            None => {
                let mut key = String::with_capacity(20);
                key.push_str("ip:");
                match client {
                    Some(IpAddr::V4(a)) => key.extend(a.octets().map(char::from)),
                    Some(IpAddr::V6(a)) => key.extend(a.octets().map(char::from)),
                    None => {}
                }
                key
            }
        }
    }
}

impl Limit for AppLimits {
    fn check<'a>(
        &'a self,
        route: &'a RoutePattern,
        req: &'a TimedRequest,
        client: Option<IpAddr>,
    ) -> GuardFuture<'a, Verdict> {
        Box::pin(async move {
            let now = now_us();
            // The limit with the fewest requests left speaks for all.
            let mut tightest: Option<(&Rule, Decision)> = None;
            let mut counted: Vec<&Rule> = Vec::new();
            for rule in self.rules.iter().filter(|r| r.covers(route)) {
                let key = rule.client_key(req, client);
                let d = match self.cells.decide(&rule.scope, &key, rule.rate, now).await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(app = %self.app, error = %e, "rate limit unavailable: request let through");
                        continue;
                    }
                };
                if rule.spec.shadow {
                    if !d.allowed {
                        tracing::warn!(app = %self.app, %route, limit = %rule.spec.rate_text(), key = %rule.spec.key, "rate limit (shadow) would refuse this request");
                    }
                    continue;
                }
                counted.push(rule);
                if !d.allowed {
                    return Verdict::Refuse(refusal(rule, &d, &counted));
                }
                if tightest.is_none_or(|(_, t)| d.remaining < t.remaining) {
                    tightest = Some((rule, d));
                }
            }
            match tightest {
                Some((rule, d)) => Verdict::Pass(headers(rule, &d, &counted)),
                None => Verdict::Pass(Vec::new()),
            }
        })
    }
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers):
/// the policies of the limits `counted`, and the state of `rule`'s.
fn headers(rule: &Rule, d: &Decision, counted: &[&Rule]) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(2);
    let policy = match counted {
        [only] => only.policy_value.clone(),
        _ => {
            let all: Vec<&str> = counted.iter().map(|r| r.policy.as_str()).collect();
            HeaderValue::from_str(&all.join(", ")).ok()
        }
    };
    if let Some(v) = policy {
        out.push((RATELIMIT_POLICY, v));
    }
    let (mut r, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (r, t) = (
        r.format(d.remaining),
        t.format(d.reset_us.div_ceil(1_000_000)),
    );
    let mut state = String::with_capacity(rule.name.len() + r.len() + t.len() + 6);
    for part in [rule.name.as_str(), ";r=", r, ";t=", t] {
        state.push_str(part);
    }
    if let Ok(v) = HeaderValue::from_str(&state) {
        out.push((RATELIMIT, v));
    }
    out
}

fn refusal(rule: &Rule, d: &Decision, counted: &[&Rule]) -> Response<Body> {
    let wait = d.retry_after_us.div_ceil(1_000_000).max(1);
    let s = &rule.spec;
    let text = format!(
        "too many requests: the limit is {} per {} on {} (burst {}); try again in {wait} s\n",
        s.rate_text(),
        s.key.replace('_', " "),
        s.route,
        s.burst
    );
    let body = http_body_util::Full::new(bytes::Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let h = r.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(wait));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.extend(headers(rule, d, counted));
    r
}

/// Rate limits as a capability of the runtime. It links nothing:
/// components see its work only as `429`s before they run.
pub struct RateLimits;

impl Capability for RateLimits {
    fn name(&self) -> &'static str {
        "rate_limit"
    }

    fn section(&self) -> Option<&'static dyn Section> {
        Some(&RateLimitSection)
    }

    /// On a cluster, TATs go in JetStream; on one node, in memory.
    fn open<'a>(
        &'a self,
        _env: &'a OpenEnv<'a>,
        services: &'a mut Services,
    ) -> Option<BoxFuture<'a, Result<(), OpenError>>> {
        Some(Box::pin(async move {
            let cells: Arc<dyn Cells> = match services.get::<nubo_cluster::ClusterJoin>() {
                Some(c) => Arc::new(
                    NatsCells::open(c.cluster.jetstream().clone(), c.cluster.replicas())
                        .await
                        .map_err(|e| OpenError::new("rate_limit", e))?,
                ),
                None => Arc::new(MemoryCells::default()),
            };
            let service = Arc::new(LimitService {
                cells,
                apps: PerApp::default(),
            });
            services.insert(service.clone() as Arc<dyn Limits>);
            services.insert(service);
            Ok(())
        }))
    }

    fn configure(&self, services: &Services, app: &RunningApp<'_>) {
        let Some(service) = services.get::<Arc<LimitService>>() else {
            return;
        };
        let specs = app
            .section(RateLimitSection::KEY, |s| RateLimitSection::of(s).map(Some))
            .unwrap_or_default();
        if specs.is_empty() {
            service.apps.set(app.name, None);
            return;
        }
        let app_token = nubo_jetstream::token(app.name);
        let rules = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let rate = spec.rate();
                let window = (rate.interval_us * rate.burst).div_ceil(1_000_000);
                let name = format!("\"limit{i}\"");
                let policy = format!("{name};q={};w={window}", rate.burst);
                Rule {
                    policy_value: HeaderValue::from_str(&policy).ok(),
                    policy,
                    name,
                    scope: format!("{app_token}.{i}"),
                    rate,
                    spec,
                }
            })
            .collect();
        let limits = AppLimits {
            app: app.name.to_string(),
            rules,
            cells: service.cells.clone(),
        };
        service.apps.set(app.name, Some(limits));
    }
}
