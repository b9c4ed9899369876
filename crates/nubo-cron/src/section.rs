//! `[[cron]]` in `nubo.toml`: an app's scheduled runs. Stored in the app's
//! definition under `crons`, in declaration order.
//!
//! Each rule is written once, over [`CronSpec`]: the file reader reports
//! it at the key it concerns, the control API's validator by schedule.

use crate::Schedule;
use nubo_manifest::ranges::is_request_path;
use nubo_manifest::{Change, Declarations, Problem, Section, SectionFile, Spanned};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A scheduled run: the node sends `POST path` to the component's HTTP
/// handler at every time `schedule` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronSpec {
    pub schedule: String,
    pub component: String,
    pub path: String,
    pub timezone: String,
    pub missed: Missed,
}

/// What to do about runs that fell in a time the node was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Missed {
    /// Forget them; carry on with the next scheduled time.
    #[default]
    Skip,
    /// Run once at start-up if any run was missed.
    RunOnce,
}

impl CronSpec {
    /// Every problem of the entry in `app`: its schedule in its time zone,
    /// its path and its component. (Whether another entry is the same is
    /// the section's rule, [`same_run`](Self::same_run).)
    pub fn problems(&self, app: &dyn Declarations) -> Vec<Problem> {
        let mut out = Vec::new();
        match Schedule::parse(&self.schedule, &self.timezone) {
            Ok(_) => {}
            Err(e @ crate::ScheduleError::TimeZone(_)) => {
                out.push(Problem::new("timezone", e.to_string()));
            }
            Err(e) => out.push(Problem::new("schedule", e.to_string()).hint(
                "e.g. \"*/5 * * * *\" (every five minutes) or \"0 3 * * MON\" (Mondays at 03:00)",
            )),
        }
        if !is_request_path(&self.path) {
            out.push(
                Problem::new("path", format!("invalid cron path `{}`", self.path))
                    .hint("a path like \"/tasks/cleanup\" (a query is allowed)"),
            );
        }
        if !app.has_component(&self.component) {
            out.push(Problem::new(
                "component",
                format!("unknown component `{}`", self.component),
            ));
        }
        out
    }

    /// Whether `other` runs the same thing at the same times: the same
    /// schedule, component and path (one of them is redundant).
    pub fn same_run(&self, other: &CronSpec) -> bool {
        self.schedule == other.schedule
            && self.component == other.component
            && self.path == other.path
    }

    /// `"0 3 * * *" (UTC) → POST /nightly on component web`.
    pub fn line(&self) -> String {
        let missed = match self.missed {
            Missed::Skip => "",
            Missed::RunOnce => ", missed: run-once",
        };
        format!(
            "\"{}\" ({}) → POST {} on component {}{missed}",
            self.schedule, self.timezone, self.path, self.component
        )
    }
}

const TWICE: &str = "the same schedule, component and path are declared twice";

/// `[[cron]]` as written.
#[derive(Deserialize)]
struct File {
    #[serde(default)]
    cron: Vec<Spanned<RawCron>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCron {
    schedule: Spanned<String>,
    component: Spanned<String>,
    path: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    missed: Option<Spanned<String>>,
}

impl RawCron {
    fn span(&self, field: &str) -> Option<std::ops::Range<usize>> {
        let opt = |v: &Option<Spanned<String>>| v.as_ref().map(Spanned::span);
        match field {
            "schedule" => Some(self.schedule.span()),
            "component" => Some(self.component.span()),
            "path" => opt(&self.path),
            // An unknown zone may come from the default; point at the
            // schedule then.
            "timezone" => opt(&self.timezone).or(Some(self.schedule.span())),
            "missed" => opt(&self.missed),
            _ => None,
        }
    }

    fn spec(&self, f: &mut SectionFile<'_, '_>) -> CronSpec {
        let or = |v: &Option<Spanned<String>>, d: &str| {
            v.as_ref()
                .map_or_else(|| d.to_string(), |v| v.get_ref().clone())
        };
        let missed = match &self.missed {
            None => Missed::Skip,
            Some(m) => match m.get_ref().as_str() {
                "skip" => Missed::Skip,
                "run-once" => Missed::RunOnce,
                other => {
                    f.error_hint(
                        m.span(),
                        format!("unknown missed-run policy `{other}`"),
                        "write \"skip\" or \"run-once\"",
                    );
                    Missed::Skip
                }
            },
        };
        CronSpec {
            schedule: self.schedule.get_ref().clone(),
            component: self.component.get_ref().clone(),
            path: or(&self.path, "/"),
            timezone: or(&self.timezone, "UTC"),
            missed,
        }
    }
}

/// The `[[cron]]` section, stored as `crons`.
pub struct CronSection;

impl CronSection {
    pub const KEY: &'static str = "crons";

    /// The app's entries among the sections of a stored definition.
    pub fn of(sections: &BTreeMap<String, Value>) -> Result<Vec<CronSpec>, serde_json::Error> {
        nubo_manifest::section_value(sections.get(Self::KEY))
    }
}

impl Section for CronSection {
    fn table(&self) -> &'static str {
        "cron"
    }

    fn key(&self) -> &'static str {
        Self::KEY
    }

    fn read(&self, f: &mut SectionFile<'_, '_>) -> Option<Value> {
        let file: File = f.parse()?;
        let mut out: Vec<CronSpec> = Vec::new();
        for raw in &file.cron {
            let spec = raw.get_ref().spec(f);
            let mut problems = spec.problems(f.app());
            if out.iter().any(|o| o.same_run(&spec)) {
                problems.push(Problem::new("schedule", TWICE));
            }
            f.report(problems, raw.span(), |field| raw.get_ref().span(field));
            out.push(spec);
        }
        serde_json::to_value(out).ok()
    }

    fn check(&self, value: &Value, app: &dyn Declarations) -> Vec<String> {
        let crons: Vec<CronSpec> = match Vec::deserialize(value) {
            Ok(c) => c,
            Err(e) => return vec![format!("crons: {e}")],
        };
        let mut out = Vec::new();
        for (i, c) in crons.iter().enumerate() {
            for p in c.problems(app) {
                out.push(format!("cron `{}`: {}", c.schedule, p.message));
            }
            if crons[..i].iter().any(|o| o.same_run(c)) {
                out.push(format!("cron `{}`: {TWICE}", c.schedule));
            }
        }
        out
    }

    fn describe(&self, old: Option<&Value>, new: Option<&Value>) -> Vec<Change> {
        let read = |v| nubo_manifest::section_value::<Vec<CronSpec>>(v).unwrap_or_default();
        let (old, new) = (read(old), read(new));
        let added = new.iter().filter(|c| !old.contains(c));
        let removed = old.iter().filter(|c| !new.contains(c));
        let mut out: Vec<Change> = added
            .map(|c| Change::added(format!("cron {}", c.line())))
            .collect();
        out.extend(removed.map(|c| Change::removed(format!("cron {}", c.line()))));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `nubo check` refuses in `[[cron]]`, the control API refuses
    /// too: a path with a space or a line break, and an entry twice.
    #[test]
    fn stored_entries_obey_the_rules_of_nubo_check() {
        let entry = |path: &str| CronSpec {
            schedule: "*/5 * * * *".into(),
            component: "web".into(),
            path: path.into(),
            timezone: "UTC".into(),
            missed: Missed::Skip,
        };
        let check = |c: Vec<CronSpec>| {
            CronSection.check(&serde_json::to_value(c).unwrap(), &nubo_manifest::SampleApp)
        };
        assert!(check(vec![entry("/ok")]).is_empty());
        let errs = check(vec![
            entry("/a b"),
            entry("/a\r\nx: y"),
            entry("/ok"),
            entry("/ok"),
        ]);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].contains("invalid cron path `/a b`"), "{errs:?}");
        assert!(errs[1].contains("invalid cron path"), "{errs:?}");
        assert!(errs[2].contains("declared twice"), "{errs:?}");
        let mut other = entry("/ok");
        other.component = "api".into();
        assert_eq!(
            check(vec![other]),
            ["cron `*/5 * * * *`: unknown component `api`"]
        );
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    fn load(extra: &str) -> Result<Vec<CronSpec>, String> {
        let app = nubo_manifest::sample_app(vec![&CronSection], extra)?;
        Ok(CronSection::of(&app.sections).unwrap())
    }

    #[test]
    fn entries_are_checked_where_they_are_written() {
        let err = load(concat!(
            "\n[[cron]]\nschedule = \"*/5 * * *\"\ncomponent = \"web\"\n",
            "\n[[cron]]\nschedule = \"0 3 * * *\"\ncomponent = \"api\"\ntimezone = \"Mars/Base\"\nmissed = \"always\"\npath = \"/a b\"\n",
            "\n[[cron]]\nschedule = \"* * * * *\"\ncomponent = \"web\"\n",
            "\n[[cron]]\nschedule = \"* * * * *\"\ncomponent = \"web\"\n",
        ))
        .unwrap_err();
        for expected in [
            "nubo.toml:9:12: cron expression `*/5 * * *` has 4 fields",
            "nubo.toml:14:13: unknown component `api`",
            "nubo.toml:15:12: unknown time zone `Mars/Base`",
            "nubo.toml:16:10: unknown missed-run policy `always`",
            "nubo.toml:17:8: invalid cron path `/a b`",
            "nubo.toml:24:12: the same schedule, component and path are declared twice",
        ] {
            assert!(err.contains(expected), "{expected}\n{err}");
        }
    }

    #[test]
    fn an_entry_gets_its_defaults() {
        let crons = load(
            "\n[[cron]]\nschedule = \"0 3 * * MON\"\ncomponent = \"web\"\npath = \"/tasks/weekly\"\nmissed = \"run-once\"\n",
        )
        .unwrap();
        assert_eq!(crons[0].timezone, "UTC");
        assert_eq!(crons[0].path, "/tasks/weekly");
        assert_eq!(crons[0].missed, Missed::RunOnce);
        assert!(load("").unwrap().is_empty());
    }
}
