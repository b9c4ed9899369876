//! `[queue.NAME]` in `nubo.toml`: an app's durable queues and who
//! consumes them. Stored in the app's definition under `queues`, by name.
//!
//! Each rule is written once, over [`QueueSpec`]: the file reader reports
//! it at the key it concerns, the control API's validator by queue name.

use nubo_manifest::ranges::{Range, is_request_path};
use nubo_manifest::{Change, Declarations, Problem, Section, SectionFile, Spanned};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A durable queue and who consumes it: each message is sent as
/// `POST path` to the consumer's HTTP handler until it answers 2xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSpec {
    pub consumer: String,
    pub path: String,
    /// Deliveries in progress at once.
    pub concurrency: u32,
    /// Deliveries of one message before it goes to the dead-letter queue.
    pub max_attempts: u32,
    /// A delivery not answered within this is retried (at least once).
    pub visibility_timeout_ms: u64,
    /// Wait before the first retry; doubles on each further one.
    pub backoff_ms: u64,
    /// Most messages in one delivery. 1 (the default): one message per
    /// request, its body as the request body. More: a JSON batch, and
    /// the consumer answers for each message.
    #[serde(default = "one")]
    pub batch_size: u32,
}

fn one() -> u32 {
    1
}

/// The app's queues by name: the section's stored value.
pub type QueueSpecs = BTreeMap<String, QueueSpec>;

pub const CONCURRENCY: Range = Range::new("concurrency", 1, 1000);
pub const MAX_ATTEMPTS: Range = Range::new("max_attempts", 1, 100);
pub const VISIBILITY_MS: Range = Range::new("visibility_timeout_ms", 100, 86_400_000);
pub const BACKOFF_MS: Range = Range::new("backoff_ms", 0, 3_600_000);
pub const BATCH_SIZE: Range = Range::new("batch_size", 1, 1000);

impl QueueSpec {
    /// Every problem of the queue `name` in `app`; `name` is the field of
    /// a problem with the name itself.
    pub fn problems(&self, name: &str, app: &dyn Declarations) -> Vec<Problem> {
        let mut out = Vec::new();
        if !nubo_manifest::is_store_name(name) {
            out.push(
                Problem::new("name", format!("invalid queue name `{name}`"))
                    .hint("use lower-case letters, digits, `-` and `_`, starting with a letter"),
            );
        }
        if !app.has_component(&self.consumer) {
            out.push(Problem::new(
                "consumer",
                format!("unknown component `{}`", self.consumer),
            ));
        }
        let numbers = [
            (CONCURRENCY, u64::from(self.concurrency)),
            (MAX_ATTEMPTS, self.max_attempts.into()),
            (VISIBILITY_MS, self.visibility_timeout_ms),
            (BACKOFF_MS, self.backoff_ms),
            (BATCH_SIZE, self.batch_size.into()),
        ];
        for (range, v) in numbers {
            if range.check(v).is_some() {
                out.push(Problem::range(range, v));
            }
        }
        if !is_request_path(&self.path) {
            out.push(
                Problem::new("path", format!("invalid queue path `{}`", self.path))
                    .hint("an absolute path without spaces, like \"/jobs/mail\""),
            );
        }
        out
    }

    /// `concurrency 4, max_attempts 5` (and `batch_size` when it batches).
    pub fn settings(&self) -> String {
        let mut s = format!(
            "concurrency {}, max_attempts {}",
            self.concurrency, self.max_attempts
        );
        if self.batch_size > 1 {
            s.push_str(&format!(", batch_size {}", self.batch_size));
        }
        s
    }
}

/// `[queue.NAME]` as written.
#[derive(Deserialize)]
struct File {
    #[serde(default)]
    queue: BTreeMap<Spanned<String>, Spanned<RawQueue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    consumer: Spanned<String>,
    path: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
    max_attempts: Option<Spanned<i64>>,
    visibility_timeout_ms: Option<Spanned<i64>>,
    backoff_ms: Option<Spanned<i64>>,
    batch_size: Option<Spanned<i64>>,
}

impl RawQueue {
    fn span(&self, field: &str) -> Option<std::ops::Range<usize>> {
        let num = |v: &Option<Spanned<i64>>| v.as_ref().map(Spanned::span);
        match field {
            "consumer" => Some(self.consumer.span()),
            "path" => self.path.as_ref().map(Spanned::span),
            "concurrency" => num(&self.concurrency),
            "max_attempts" => num(&self.max_attempts),
            "visibility_timeout_ms" => num(&self.visibility_timeout_ms),
            "backoff_ms" => num(&self.backoff_ms),
            "batch_size" => num(&self.batch_size),
            _ => None,
        }
    }

    /// The typed queue: defaults for what is not written, and for what is
    /// out of range (reported here, at the value).
    fn spec(&self, f: &mut SectionFile<'_, '_>) -> QueueSpec {
        QueueSpec {
            consumer: self.consumer.get_ref().clone(),
            path: self
                .path
                .as_ref()
                .map_or_else(|| "/".to_string(), |p| p.get_ref().clone()),
            concurrency: f.ranged(&self.concurrency, CONCURRENCY, 1) as u32,
            max_attempts: f.ranged(&self.max_attempts, MAX_ATTEMPTS, 5) as u32,
            visibility_timeout_ms: f.ranged(&self.visibility_timeout_ms, VISIBILITY_MS, 30_000),
            backoff_ms: f.ranged(&self.backoff_ms, BACKOFF_MS, 1000),
            batch_size: f.ranged(&self.batch_size, BATCH_SIZE, 1) as u32,
        }
    }
}

/// The `[queue.NAME]` section, stored as `queues`.
pub struct QueueSection;

impl QueueSection {
    pub const KEY: &'static str = "queues";

    /// The app's queues among the sections of a stored definition.
    pub fn of(sections: &BTreeMap<String, Value>) -> Result<QueueSpecs, serde_json::Error> {
        nubo_manifest::section_value(sections.get(Self::KEY))
    }
}

impl Section for QueueSection {
    fn table(&self) -> &'static str {
        "queue"
    }

    fn key(&self) -> &'static str {
        Self::KEY
    }

    fn read(&self, f: &mut SectionFile<'_, '_>) -> Option<Value> {
        let file: File = f.parse()?;
        let mut out = QueueSpecs::new();
        for (name, raw) in &file.queue {
            let spec = raw.get_ref().spec(f);
            let problems = spec.problems(name.get_ref(), f.app());
            f.report(problems, raw.span(), |field| match field {
                "name" => Some(name.span()),
                _ => raw.get_ref().span(field),
            });
            out.insert(name.get_ref().clone(), spec);
        }
        serde_json::to_value(out).ok()
    }

    fn check(&self, value: &Value, app: &dyn Declarations) -> Vec<String> {
        let queues: QueueSpecs = match QueueSpecs::deserialize(value) {
            Ok(q) => q,
            Err(e) => return vec![format!("queues: {e}")],
        };
        let mut out = Vec::new();
        for (name, q) in &queues {
            for p in q.problems(name, app) {
                out.push(format!("queue `{name}`: {}", p.message));
            }
        }
        out
    }

    fn describe(&self, old: Option<&Value>, new: Option<&Value>) -> Vec<Change> {
        let read = |v| nubo_manifest::section_value::<QueueSpecs>(v).unwrap_or_default();
        let (old, new) = (read(old), read(new));
        let mut out = Vec::new();
        for (name, q) in &new {
            let what = format!(
                "queue {name} → POST {} on component {} ({})",
                q.path,
                q.consumer,
                q.settings()
            );
            match old.get(name) {
                None => out.push(Change::added(what)),
                Some(o) if o != q => out.push(Change::changed(what, changes(o, q))),
                Some(_) => {}
            }
        }
        for name in old.keys().filter(|k| !new.contains_key(*k)) {
            out.push(Change::removed(format!(
                "queue {name} (its messages are kept)"
            )));
        }
        out
    }
}

/// What a queue change changes, old value first, as "concurrency 4 → 16,
/// batch_size 1 → 100", by each setting's nubo.toml name.
fn changes(old: &QueueSpec, new: &QueueSpec) -> String {
    macro_rules! settings {
        ($($f:ident),*) => {
            [$((stringify!($f), old.$f.to_string(), new.$f.to_string())),*]
        };
    }
    settings!(
        consumer,
        path,
        concurrency,
        max_attempts,
        visibility_timeout_ms,
        backoff_ms,
        batch_size
    )
    .into_iter()
    .filter(|(_, a, b)| a != b)
    .map(|(name, a, b)| format!("{name} {a} → {b}"))
    .collect::<Vec<_>>()
    .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str) -> Result<nubo_manifest::AppSpec, String> {
        nubo_manifest::sample_app(vec![&QueueSection], extra)
    }

    #[test]
    fn a_queue_gets_its_defaults_and_routes_and_grants_may_name_it() {
        let app = load(
            "queues = [\"jobs\"]\n\n[queue.jobs]\nconsumer = \"web\"\n\n[[http]]\nroute = \"/enqueue\"\nqueue = \"jobs\"\n",
        )
        .unwrap();
        let queues = QueueSection::of(&app.sections).unwrap();
        assert_eq!(queues["jobs"].max_attempts, 5);
        assert_eq!(queues["jobs"].batch_size, 1);
        assert_eq!(queues["jobs"].path, "/");
        assert_eq!(app.components["web"].grants["queues"], ["jobs"]);
        assert_eq!(
            app.routes[0].target,
            nubo_manifest::RouteTarget::Queue("jobs".into())
        );
        // No table, no section: the same definition as before queues.
        assert!(load("").unwrap().sections.is_empty());
    }

    #[test]
    fn each_problem_is_reported_where_it_is_written() {
        let err = load(
            "\n[queue.Jobs]\nconsumer = \"wbe\"\npath = \"/a b\"\nbatch_size = 5000\nvisibility_timeout_ms = 5\n",
        )
        .unwrap_err();
        for expected in [
            "nubo.toml:8:8: invalid queue name `Jobs`",
            "nubo.toml:9:12: unknown component `wbe`",
            "nubo.toml:10:8: invalid queue path `/a b`",
            "nubo.toml:11:14: `batch_size` must be between 1 and 1000, got 5000",
            "nubo.toml:12:25: `visibility_timeout_ms` must be between 100 and 86400000, got 5",
        ] {
            assert!(err.contains(expected), "{expected}\n{err}");
        }
        let err = load("\n[queue.jobs]\nconsumer = \"web\"\nretries = 3\n").unwrap_err();
        assert!(
            err.contains("nubo.toml:10:1: unknown field `retries`"),
            "{err}"
        );
    }

    /// What `nubo check` refuses, the control API refuses too.
    #[test]
    fn stored_queues_obey_the_rules_of_nubo_check() {
        let q = |consumer: &str, path: &str, batch_size: u32| QueueSpec {
            consumer: consumer.into(),
            path: path.into(),
            concurrency: 1,
            max_attempts: 5,
            visibility_timeout_ms: 30_000,
            backoff_ms: 1000,
            batch_size,
        };
        let check = |queues: QueueSpecs| {
            QueueSection.check(
                &serde_json::to_value(queues).unwrap(),
                &nubo_manifest::SampleApp,
            )
        };
        assert!(check([("jobs".into(), q("web", "/", 1))].into()).is_empty());
        let errs = check(
            [
                ("a".into(), q("api", "/", 1)),
                ("b".into(), q("web", "/x\r\ny", 0)),
            ]
            .into(),
        );
        assert_eq!(
            errs,
            [
                "queue `a`: unknown component `api`",
                "queue `b`: `batch_size` must be between 1 and 1000, got 0",
                "queue `b`: invalid queue path `/x\r\ny`",
            ]
        );
        let errs = QueueSection.check(
            &serde_json::json!({"jobs": {"consumer": "web"}}),
            &nubo_manifest::SampleApp,
        );
        assert!(errs[0].starts_with("queues: missing field"), "{errs:?}");
    }
}
