//! `[usage]` and `[caps]` in `nubo.toml`: the prices that turn usage into
//! an estimated cost, and the caps at which an app degrades.
//!
//! ```toml
//! [usage.prices]                 # per unit; any currency
//! million_requests = 0.50
//! cpu_second = 0.00002
//! gb_out = 0.09
//!
//! [caps]
//! requests_per_day = 1_000_000
//! cpu_seconds_per_day = 3600
//! egress_gb_per_month = 50
//! spend_per_month = 20.00        # needs [usage.prices]
//! warn_at = 0.8
//! pause_background_at = 0.9
//! ```

use nubo_manifest::{Change, Declarations, Problem, Section, SectionFile, Spanned};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Prices per unit of usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub million_requests: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gb_out: Option<f64>,
    /// Per GB held for a second (`memory_mb_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gb_second: Option<f64>,
    /// Per million calls into any capability (`*_calls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub million_calls: Option<f64>,
}

impl Prices {
    /// What `usage` (metric → amount) costs.
    pub fn cost(&self, usage: &BTreeMap<String, u64>) -> f64 {
        let sum = |pred: &dyn Fn(&str) -> bool| -> f64 {
            usage
                .iter()
                .filter(|(k, _)| pred(k))
                .map(|(_, v)| *v as f64)
                .sum()
        };
        let mut cost = 0.0;
        if let Some(p) = self.million_requests {
            cost += p * sum(&|k| k.starts_with("requests_")) / 1e6;
        }
        if let Some(p) = self.cpu_second {
            cost += p * sum(&|k| k == "cpu_us") / 1e6;
        }
        if let Some(p) = self.gb_out {
            cost += p * sum(&|k| k == "bytes_out") / 1e9;
        }
        if let Some(p) = self.gb_second {
            cost += p * sum(&|k| k == "memory_mb_ms") / 1e6;
        }
        if let Some(p) = self.million_calls {
            cost += p * sum(&|k| k.ends_with("_calls")) / 1e6;
        }
        cost
    }

    fn problems(&self) -> Vec<Problem> {
        let all = [
            ("million_requests", self.million_requests),
            ("cpu_second", self.cpu_second),
            ("gb_out", self.gb_out),
            ("gb_second", self.gb_second),
            ("million_calls", self.million_calls),
        ];
        all.into_iter()
            .filter(|(_, v)| v.is_some_and(|v| !(v.is_finite() && v >= 0.0)))
            .map(|(k, _)| Problem::new(k, format!("price `{k}` must be a number of 0 or more")))
            .collect()
    }
}

/// `[usage]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageSpec {
    #[serde(default)]
    pub prices: Prices,
}

/// `[caps]`. Every cap is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_day: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds_per_day: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_gb_per_month: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend_per_month: Option<f64>,
    /// The share of a cap at which the app is warned (logged once).
    #[serde(default = "default_warn")]
    pub warn_at: f64,
    /// The share of a cap at which queues, tasks and cron pause.
    #[serde(default = "default_pause")]
    pub pause_background_at: f64,
}

fn default_warn() -> f64 {
    0.8
}

fn default_pause() -> f64 {
    0.9
}

impl CapsSpec {
    pub fn problems(&self, prices: Option<&Prices>) -> Vec<Problem> {
        let mut out = Vec::new();
        let positive = [
            ("requests_per_day", self.requests_per_day.map(|v| v as f64)),
            (
                "cpu_seconds_per_day",
                self.cpu_seconds_per_day.map(|v| v as f64),
            ),
            ("egress_gb_per_month", self.egress_gb_per_month),
            ("spend_per_month", self.spend_per_month),
        ];
        for (k, v) in positive {
            if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                out.push(Problem::new(k, format!("cap `{k}` must be more than 0")));
            }
        }
        for (k, v) in [
            ("warn_at", self.warn_at),
            ("pause_background_at", self.pause_background_at),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                out.push(Problem::new(
                    k,
                    format!("`{k}` is a share of each cap: more than 0, at most 1"),
                ));
            }
        }
        if self.spend_per_month.is_some() && prices.is_none_or(|p| *p == Prices::default()) {
            out.push(Problem::new(
                "spend_per_month",
                "`spend_per_month` needs prices: add [usage.prices] (million_requests, cpu_second, gb_out, gb_second, million_calls)",
            ));
        }
        out
    }
}

#[derive(Deserialize)]
struct File {
    caps: Option<Spanned<RawCaps>>,
    usage: Option<Spanned<UsageSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaps {
    requests_per_day: Option<Spanned<u64>>,
    cpu_seconds_per_day: Option<Spanned<u64>>,
    egress_gb_per_month: Option<Spanned<f64>>,
    spend_per_month: Option<Spanned<f64>>,
    warn_at: Option<Spanned<f64>>,
    pause_background_at: Option<Spanned<f64>>,
}

/// The `[usage]` table, stored as `usage`.
pub struct UsageSection;

impl UsageSection {
    pub const KEY: &'static str = "usage";

    pub fn of(sections: &BTreeMap<String, Value>) -> Result<Option<UsageSpec>, serde_json::Error> {
        nubo_manifest::section_value(sections.get(Self::KEY))
    }
}

impl Section for UsageSection {
    fn table(&self) -> &'static str {
        "usage"
    }

    fn key(&self) -> &'static str {
        Self::KEY
    }

    fn read(&self, f: &mut SectionFile<'_, '_>) -> Option<Value> {
        let file: File = f.parse()?;
        let usage = file.usage?;
        f.report(usage.get_ref().prices.problems(), usage.span(), |_| None);
        serde_json::to_value(usage.get_ref()).ok()
    }

    fn check(&self, value: &Value, _app: &dyn Declarations) -> Vec<String> {
        match UsageSpec::deserialize(value) {
            Ok(u) => u
                .prices
                .problems()
                .into_iter()
                .map(|p| format!("usage: {}", p.message))
                .collect(),
            Err(e) => vec![format!("usage: {e}")],
        }
    }

    fn declares(&self, _value: &Value, _name: &str) -> bool {
        false
    }

    fn describe(&self, old: Option<&Value>, new: Option<&Value>) -> Vec<Change> {
        let read = |v| nubo_manifest::section_value::<Option<UsageSpec>>(v).unwrap_or_default();
        changes(
            "usage.prices",
            &read(old).map(|u| u.prices),
            &read(new).map(|u| u.prices),
        )
    }
}

/// The `[caps]` table, stored as `caps`.
pub struct CapsSection;

impl CapsSection {
    pub const KEY: &'static str = "caps";

    pub fn of(sections: &BTreeMap<String, Value>) -> Result<Option<CapsSpec>, serde_json::Error> {
        nubo_manifest::section_value(sections.get(Self::KEY))
    }
}

impl Section for CapsSection {
    fn table(&self) -> &'static str {
        "caps"
    }

    fn key(&self) -> &'static str {
        Self::KEY
    }

    fn read(&self, f: &mut SectionFile<'_, '_>) -> Option<Value> {
        let file: File = f.parse()?;
        let raw = file.caps?;
        let r = raw.get_ref();
        let get = |v: &Option<Spanned<f64>>| v.as_ref().map(|s| *s.get_ref());
        let spec = CapsSpec {
            requests_per_day: r.requests_per_day.as_ref().map(|s| *s.get_ref()),
            cpu_seconds_per_day: r.cpu_seconds_per_day.as_ref().map(|s| *s.get_ref()),
            egress_gb_per_month: get(&r.egress_gb_per_month),
            spend_per_month: get(&r.spend_per_month),
            warn_at: get(&r.warn_at).unwrap_or_else(default_warn),
            pause_background_at: get(&r.pause_background_at).unwrap_or_else(default_pause),
        };
        let prices = file.usage.as_ref().map(|u| &u.get_ref().prices);
        f.report(spec.problems(prices), raw.span(), |field| match field {
            "requests_per_day" => r.requests_per_day.as_ref().map(Spanned::span),
            "cpu_seconds_per_day" => r.cpu_seconds_per_day.as_ref().map(Spanned::span),
            "egress_gb_per_month" => r.egress_gb_per_month.as_ref().map(Spanned::span),
            "spend_per_month" => r.spend_per_month.as_ref().map(Spanned::span),
            "warn_at" => r.warn_at.as_ref().map(Spanned::span),
            "pause_background_at" => r.pause_background_at.as_ref().map(Spanned::span),
            _ => None,
        });
        serde_json::to_value(spec).ok()
    }

    /// Prices are another section's: a stored `spend_per_month` is
    /// checked against them when the app runs (`nubo check` checks both).
    fn check(&self, value: &Value, _app: &dyn Declarations) -> Vec<String> {
        match CapsSpec::deserialize(value) {
            Ok(c) => c
                .problems(Some(&Prices {
                    million_requests: Some(0.0),
                    ..Prices::default()
                }))
                .into_iter()
                .map(|p| format!("caps: {}", p.message))
                .collect(),
            Err(e) => vec![format!("caps: {e}")],
        }
    }

    fn declares(&self, _value: &Value, _name: &str) -> bool {
        false
    }

    fn describe(&self, old: Option<&Value>, new: Option<&Value>) -> Vec<Change> {
        let read = |v| nubo_manifest::section_value::<Option<CapsSpec>>(v).unwrap_or_default();
        changes("caps", &read(old), &read(new))
    }
}

/// One change line per key of a table whose value changed.
fn changes<T: Serialize>(table: &str, old: &Option<T>, new: &Option<T>) -> Vec<Change> {
    let flat = |v: &Option<T>| -> BTreeMap<String, Value> {
        match v.as_ref().map(serde_json::to_value) {
            Some(Ok(Value::Object(m))) => m.into_iter().collect(),
            _ => BTreeMap::new(),
        }
    };
    let (old, new) = (flat(old), flat(new));
    let mut out = Vec::new();
    for (k, v) in &new {
        match old.get(k) {
            None => out.push(Change::added(format!("{table}.{k} = {v}"))),
            Some(o) if o != v => {
                out.push(Change::changed(
                    format!("{table}.{k}"),
                    format!("{o} → {v}"),
                ));
            }
            Some(_) => {}
        }
    }
    for (k, v) in old.iter().filter(|(k, _)| !new.contains_key(*k)) {
        out.push(Change::removed(format!("{table}.{k} = {v}")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str) -> Result<nubo_manifest::AppSpec, String> {
        nubo_manifest::sample_app(vec![&CapsSection, &UsageSection], extra)
    }

    #[test]
    fn caps_and_prices_are_read_and_checked_where_written() {
        let app = load(
            "[usage.prices]\nmillion_requests = 0.5\ncpu_second = 0.00002\n[caps]\nrequests_per_day = 1_000_000\nspend_per_month = 20.0\n",
        )
        .unwrap();
        let caps = CapsSection::of(&app.sections).unwrap().unwrap();
        assert_eq!(caps.requests_per_day, Some(1_000_000));
        assert_eq!((caps.warn_at, caps.pause_background_at), (0.8, 0.9));
        let usage = UsageSection::of(&app.sections).unwrap().unwrap();
        let cost = usage.prices.cost(&BTreeMap::from([
            ("requests_2xx".into(), 2_000_000),
            ("cpu_us".into(), 10_000_000),
        ]));
        assert!((cost - (1.0 + 0.0002)).abs() < 1e-9, "{cost}");

        let err = load("[caps]\nrequests_per_day = 0\nspend_per_month = 5.0\nwarn_at = 1.5\n")
            .unwrap_err();
        for want in [
            "nubo.toml:8:20: cap `requests_per_day` must be more than 0",
            "nubo.toml:9:19: `spend_per_month` needs prices",
            "nubo.toml:10:11: `warn_at` is a share of each cap",
        ] {
            assert!(err.contains(want), "{want}\n{err}");
        }
        let err = load("[caps]\nrequests_per_hour = 5\n").unwrap_err();
        assert!(err.contains("requests_per_hour"), "{err}");
    }
}
