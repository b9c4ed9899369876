//! Caps: each app's usage held against its `[caps]` every time usage is
//! stored ([`crate::FLUSH_EVERY`]), and the app degraded in steps:
//!
//! 1. at `warn_at` of a cap (80%), a warning in the node's log, once per
//!    cap and period;
//! 2. at `pause_background_at` (90%), its background work pauses: queue
//!    deliveries, task runs and cron runs wait ([`nubo_wasm::Pauses`]),
//!    stored, and go on when the app is back under;
//! 3. at the cap, its HTTP requests are answered `503` with `Retry-After`
//!    and a body naming the cap and when it resets ([`nubo_gateway::Gates`]).
//!
//! Per-day caps reset at midnight UTC, per-month caps on the first of the
//! month; raising a cap (an apply) is held against the usage at once.

use crate::capability::Metered;
use crate::section::{CapsSpec, Prices};
use crate::store::By;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt;
use nubo_gateway::{Body, Gates};
use nubo_wasm::{Pauses, PerApp};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

/// One app's caps and prices.
pub(crate) struct AppCaps {
    pub(crate) caps: CapsSpec,
    pub(crate) prices: Prices,
}

/// Where an app stands against one of its caps.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Standing {
    /// The cap's name in `[caps]`.
    pub cap: &'static str,
    /// Its limit and what was used of it, as text with units.
    pub limit: String,
    pub used: String,
    /// Used over limit.
    pub share: f64,
    /// When its period ends.
    pub resets: DateTime<Utc>,
}

/// The node's caps: each app's, and which apps are closed now.
pub(crate) struct CapService {
    pub(crate) metered: Arc<Metered>,
    pub(crate) pauses: Arc<Pauses>,
    pub(crate) apps: PerApp<AppCaps>,
    closed: RwLock<HashMap<String, Standing>>,
    /// (app, cap, period start) already warned of.
    warned: Mutex<HashSet<(String, &'static str, i64)>>,
    /// The node's log of each app, for the steps it takes.
    events: Option<Arc<dyn nubo_wasm::LogSink>>,
}

impl CapService {
    pub(crate) fn new(
        metered: Arc<Metered>,
        pauses: Arc<Pauses>,
        events: Option<Arc<dyn nubo_wasm::LogSink>>,
    ) -> Self {
        Self {
            metered,
            pauses,
            apps: PerApp::default(),
            closed: RwLock::default(),
            warned: Mutex::default(),
            events,
        }
    }

    /// Holds every app with caps against its usage now.
    pub(crate) async fn check_all(&self) {
        for (app, caps) in self.apps.all() {
            self.check(&app, Some(&caps)).await;
        }
    }

    /// Holds `app` against `caps` (none: it has no caps, and is opened and
    /// resumed).
    pub(crate) async fn check(&self, app: &str, caps: Option<&AppCaps>) {
        let standing = match caps {
            Some(c) => match self.standing(app, c, Utc::now()).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(app, error = %e, "caps not checked: usage could not be read");
                    return;
                }
            },
            None => None,
        };
        self.apply(app, caps.map(|c| &c.caps), standing);
    }

    /// The tightest of `app`'s caps, as of `now`.
    async fn standing(
        &self,
        app: &str,
        c: &AppCaps,
        now: DateTime<Utc>,
    ) -> Result<Option<Standing>, nubo_sqlite::DbError> {
        let all = self.standings(app, c, now).await?;
        Ok(all.into_iter().max_by(|a, b| a.share.total_cmp(&b.share)))
    }

    /// For `/metrics`: the apps paused and refused at a cap, and how much
    /// of each cap each app used in its current period.
    pub(crate) async fn readings(&self) -> Vec<nubo_wasm::metrics::Reading> {
        use nubo_wasm::metrics::Reading;
        let all = self.apps.all();
        let paused = all
            .iter()
            .filter(|(app, _)| self.pauses.why(app).is_some())
            .count();
        let mut out = vec![
            Reading::gauge(
                "nubo_apps_paused_at_cap",
                "apps whose queues, tasks and cron wait because they near a cap",
                paused as f64,
            ),
            Reading::gauge(
                "nubo_apps_refused_at_cap",
                "apps whose requests are answered 503 because they reached a cap",
                self.refused_count() as f64,
            ),
        ];
        for (app, caps) in &all {
            let Ok(standings) = self.standings(app, caps, Utc::now()).await else {
                continue;
            };
            out.extend(standings.into_iter().map(|s| {
                Reading::gauge(
                    "nubo_cap_used_ratio",
                    "what an app used of a cap in its current period, over the cap",
                    s.share,
                )
                .with(vec![("app", app.clone()), ("cap", s.cap.to_string())])
            }));
        }
        out
    }

    /// How many apps are refused now.
    pub(crate) fn refused_count(&self) -> usize {
        self.closed.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether `app`'s requests are refused now.
    pub(crate) fn is_closed(&self, app: &str) -> bool {
        let closed = self.closed.read().unwrap_or_else(|p| p.into_inner());
        closed.contains_key(app)
    }

    /// Each of `app`'s caps with what was used of it, as of `now`.
    pub(crate) async fn standings(
        &self,
        app: &str,
        c: &AppCaps,
        now: DateTime<Utc>,
    ) -> Result<Vec<Standing>, nubo_sqlite::DbError> {
        let minute = (now.timestamp() / 60) as u64;
        let day = now.date_naive().and_hms_opt(0, 0, 0).map(|d| d.and_utc());
        let month = Utc
            .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
            .single();
        let (Some(day), Some(month)) = (day, month) else {
            return Ok(Vec::new());
        };
        let next_day = day + chrono::Duration::days(1);
        let next_month = if now.month() == 12 {
            Utc.with_ymd_and_hms(now.year() + 1, 1, 1, 0, 0, 0)
        } else {
            Utc.with_ymd_and_hms(now.year(), now.month() + 1, 1, 0, 0, 0)
        }
        .single()
        .unwrap_or(next_day);
        let used = |since: DateTime<Utc>| async move {
            let rows = self
                .metered
                .db
                .query(
                    app,
                    (since.timestamp() / 60) as u64,
                    minute + 1,
                    By::App,
                    minute,
                )
                .await?;
            Ok::<_, nubo_sqlite::DbError>(
                rows.into_iter().next().map(|r| r.usage).unwrap_or_default(),
            )
        };
        let caps = &c.caps;
        let needs_day = caps.requests_per_day.is_some() || caps.cpu_seconds_per_day.is_some();
        let needs_month = caps.egress_gb_per_month.is_some() || caps.spend_per_month.is_some();
        let today = if needs_day {
            used(day).await?
        } else {
            BTreeMap::new()
        };
        let this_month = if needs_month {
            used(month).await?
        } else {
            BTreeMap::new()
        };
        let sum = |u: &BTreeMap<String, u64>, pred: fn(&str) -> bool| -> u64 {
            u.iter().filter(|(k, _)| pred(k)).map(|(_, v)| *v).sum()
        };
        let mut all = Vec::new();
        if let Some(limit) = caps.requests_per_day {
            let n = sum(&today, |k| k.starts_with("requests_"));
            all.push(Standing {
                cap: "requests_per_day",
                limit: format!("{limit} requests a day"),
                used: format!("{n} today"),
                share: n as f64 / limit as f64,
                resets: next_day,
            });
        }
        if let Some(limit) = caps.cpu_seconds_per_day {
            let s = sum(&today, |k| k == "cpu_us") as f64 / 1e6;
            all.push(Standing {
                cap: "cpu_seconds_per_day",
                limit: format!("{limit} CPU seconds a day"),
                used: format!("{s:.1} s today"),
                share: s / limit as f64,
                resets: next_day,
            });
        }
        if let Some(limit) = caps.egress_gb_per_month {
            let gb = sum(&this_month, |k| k == "bytes_out") as f64 / 1e9;
            all.push(Standing {
                cap: "egress_gb_per_month",
                limit: format!("{limit} GB sent a month"),
                used: format!("{gb:.3} GB this month"),
                share: gb / limit,
                resets: next_month,
            });
        }
        if let Some(limit) = caps.spend_per_month {
            let cost = c.prices.cost(&this_month);
            all.push(Standing {
                cap: "spend_per_month",
                limit: format!("{limit:.2} a month"),
                used: format!("{cost:.2} this month"),
                share: cost / limit,
                resets: next_month,
            });
        }
        Ok(all)
    }

    /// Opens or closes, pauses or resumes `app` as `standing` says, and
    /// logs each step once.
    fn apply(&self, app: &str, caps: Option<&CapsSpec>, standing: Option<Standing>) {
        let (Some(caps), Some(s)) = (caps, standing) else {
            self.open(app);
            return;
        };
        if s.share >= caps.warn_at {
            let period = s.resets.timestamp();
            if lock(&self.warned).insert((app.to_string(), s.cap, period)) {
                self.tell(app, true, format!(
                    "app has used {:.0}% of its cap of {} ({}); at {:.0}% its queues, tasks and cron pause, at 100% its requests are refused until {}",
                    s.share * 100.0,
                    s.limit,
                    s.used,
                    caps.pause_background_at * 100.0,
                    s.resets.to_rfc3339()
                ));
            }
        }
        if s.share >= caps.pause_background_at {
            let why = format!("{} at {:.0}% of {}", s.cap, s.share * 100.0, s.limit);
            if self.pauses.pause(app, why) {
                self.tell(app, true, format!(
                    "background work paused ({}): queues, tasks and cron wait (stored) until {} or until the cap is raised",
                    s.cap,
                    s.resets.to_rfc3339()
                ));
            }
        } else if self.pauses.resume(app) {
            self.tell(
                app,
                false,
                "background work resumed: the app is under its caps".into(),
            );
        }
        let mut closed = self.closed.write().unwrap_or_else(|p| p.into_inner());
        if s.share >= 1.0 {
            if closed.insert(app.to_string(), s.clone()).is_none() {
                self.tell(
                    app,
                    true,
                    format!(
                        "requests refused (503): the app reached its cap of {} ({}) until {}",
                        s.limit,
                        s.used,
                        s.resets.to_rfc3339()
                    ),
                );
            }
        } else if closed.remove(app).is_some() {
            self.tell(
                app,
                false,
                "requests served again: the app is under its caps".into(),
            );
        }
    }

    /// Says `text` of `app` in the node's log and, as an event, in the
    /// app's own (`nubo logs APP`).
    fn tell(&self, app: &str, warn: bool, text: String) {
        if warn {
            tracing::warn!(app, "{text}");
        } else {
            tracing::info!(app, "{text}");
        }
        if let Some(sink) = &self.events {
            let tags = nubo_wasm::LogTags {
                app: app.into(),
                component: "caps".into(),
                request_id: "".into(),
            };
            sink.line(&tags, nubo_wasm::LogStream::Event, &text);
        }
    }

    fn open(&self, app: &str) {
        self.pauses.resume(app);
        let mut closed = self.closed.write().unwrap_or_else(|p| p.into_inner());
        closed.remove(app);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Gates for CapService {
    fn closed(&self, app: &str) -> Option<Response<Body>> {
        let closed = self.closed.read().unwrap_or_else(|p| p.into_inner());
        let s = closed.get(app)?;
        let wait = (s.resets - Utc::now()).num_seconds().max(1);
        let text = format!(
            "app `{app}` reached its cap `{}`: {} ({}). It resets at {} (in {}); its owner can raise it in [caps] in nubo.toml.\n",
            s.cap,
            s.limit,
            s.used,
            s.resets.to_rfc3339(),
            human(wait)
        );
        let body = http_body_util::Full::new(bytes::Bytes::from(text))
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut r = Response::new(body);
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Some(r)
    }
}

fn human(secs: i64) -> String {
    match secs {
        ..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}
