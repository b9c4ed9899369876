//! Sections: the top-level tables of `nubo.toml` that a capability owns
//! (`[queue.NAME]`, `[[cron]]`).
//!
//! This crate knows the tables every app has (`[app]`, `[variables]`,
//! `[component.NAME]`, the routes, `[quotas]`) and no capability's. A
//! capability declares its table with a [`Section`]: how to read it from
//! the file with the position of every problem, how to check a value that
//! reaches the control API as JSON, and how to describe a change for
//! `nubo plan`. The value is stored in the app's definition under
//! [`Section::key`] as JSON, so the planner diffs it, the node stores it
//! and the capability reads it back without any crate in between knowing
//! its type.
//!
//! One rule, two inputs: a section writes its rules once over its typed
//! value ([`Problem`]s naming a field) and reports them at the field's
//! span when it reads the file, so `nubo check` and the control API
//! cannot accept different values.

use crate::error::{Reporter, diagnostic};
use crate::grant::{Declarations, GrantKey};
use crate::ranges::Range;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_spanned::Spanned;
use std::collections::{BTreeMap, BTreeSet};

/// What the node's capabilities add to `nubo.toml` and to a definition:
/// the grant keys of a component and the top-level sections, and what is
/// known of the node the file is for.
#[derive(Default, Clone)]
pub struct Schema {
    pub grants: Vec<GrantKey>,
    pub sections: Vec<&'static dyn Section>,
    pub target: Target,
}

/// The node a file is read for, where that is known (`nubo plan` and
/// `nubo apply` ask the node); `nubo check` knows nothing of it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The node is part of a cluster: what a section keeps on one node's
    /// disk (a SQLite database) cannot serve there.
    pub cluster: bool,
}

impl Schema {
    /// The section stored under `key`.
    pub fn section(&self, key: &str) -> Option<&'static dyn Section> {
        self.sections.iter().copied().find(|s| s.key() == key)
    }

    /// The section written as `[table…]` in the file.
    pub fn table(&self, table: &str) -> Option<&'static dyn Section> {
        self.sections.iter().copied().find(|s| s.table() == table)
    }
}

/// One top-level table of `nubo.toml`, owned by a capability.
pub trait Section: Send + Sync {
    /// The table as written: `queue` for `[queue.NAME]`, `cron` for
    /// `[[cron]]`.
    fn table(&self) -> &'static str;

    /// The key of its value in a stored definition and in a plan step:
    /// `queues`.
    fn key(&self) -> &'static str;

    /// Reads the table from the file, reporting every problem at its
    /// position; `None` when the file has no such table. The usual shape
    /// is [`SectionFile::parse`] into spanned raw types, then the typed
    /// value, then [`SectionFile::report`] of the typed rules.
    fn read(&self, file: &mut SectionFile<'_, '_>) -> Option<Value>;

    /// Every problem with a value that did not come from a file (the
    /// control API's), by the same rules as [`Section::read`].
    fn check(&self, value: &Value, app: &dyn Declarations) -> Vec<String>;

    /// Whether `value` declares `name`, which a grant or a route may then
    /// refer to (`queues = ["jobs"]` needs `[queue.jobs]`). Sections keyed
    /// by name are JSON objects, which this default reads.
    fn declares(&self, value: &Value, name: &str) -> bool {
        value.get(name).is_some()
    }

    /// What changes from `old` to `new` (`None`: absent), entry by entry,
    /// for `nubo plan`.
    fn describe(&self, old: Option<&Value>, new: Option<&Value>) -> Vec<Change>;

    /// Why the current value `old` may not become `new`, though `new` is
    /// valid on its own (a migration edited after it was applied). The
    /// node refuses such a change, and `nubo plan` shows why. None by
    /// default.
    fn conflicts(&self, old: Option<&Value>, new: Option<&Value>) -> Vec<String> {
        let _ = (old, new);
        Vec::new()
    }
}

/// One entry of a section that a plan adds, changes or removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// The entry: `queue jobs → POST / on component worker`.
    pub what: String,
    /// For a change, what changed: `concurrency 1 → 4`.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Add,
    Change,
    Remove,
}

impl Change {
    pub fn added(what: impl Into<String>) -> Self {
        Self {
            kind: ChangeKind::Add,
            what: what.into(),
            detail: None,
        }
    }

    pub fn removed(what: impl Into<String>) -> Self {
        Self {
            kind: ChangeKind::Remove,
            what: what.into(),
            detail: None,
        }
    }

    pub fn changed(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: ChangeKind::Change,
            what: what.into(),
            detail: Some(detail.into()),
        }
    }
}

/// A problem with one field of a section's typed value. `field` names the
/// key as written (`consumer`, `path`), so the file reader can point at it
/// and the control API can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: &'static str,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A value out of `range`.
    pub fn range(range: Range, got: impl std::fmt::Display) -> Self {
        Self::new(range.key, range.message(got))
    }
}

/// The file as a section reads it: its whole text (spans are offsets in
/// it), what the rest of the app declares, and where problems go.
pub struct SectionFile<'a, 'r> {
    pub(crate) text: &'a str,
    pub(crate) root: &'r std::path::Path,
    pub(crate) app: &'r dyn Declarations,
    pub(crate) target: Target,
    pub(crate) reporter: &'r mut Reporter<'a>,
}

impl SectionFile<'_, '_> {
    /// The components, and the sections read before this one.
    pub fn app(&self) -> &dyn Declarations {
        self.app
    }

    /// The node the file is read for.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The folder that holds `nubo.toml`: relative paths in a section
    /// (a folder of migrations) are read from it.
    pub fn root(&self) -> &std::path::Path {
        self.root
    }

    /// The whole file as `T`, a struct with only this section's table
    /// (other tables are ignored). A type error is reported at its
    /// position and gives `None`.
    pub fn parse<T: DeserializeOwned>(&mut self) -> Option<T> {
        match toml::from_str(self.text) {
            Ok(t) => Some(t),
            Err(e) => {
                let d = diagnostic(self.text, &e);
                self.reporter.diagnostics.push(d);
                None
            }
        }
    }

    pub fn error(&mut self, span: std::ops::Range<usize>, message: impl std::fmt::Display) {
        self.reporter.error(span, message);
    }

    pub fn error_hint(
        &mut self,
        span: std::ops::Range<usize>,
        message: impl std::fmt::Display,
        hint: impl Into<String>,
    ) {
        self.reporter.error_hint(span, message, hint);
    }

    /// `v` if it is in `range`, else `default` and an error at `v`.
    pub fn ranged(&mut self, v: &Option<Spanned<i64>>, range: Range, default: u64) -> u64 {
        crate::validate::ranged(self.reporter, v, range, default)
    }

    /// Reports `problems` of one entry at the span `at(field)` gives, or at
    /// `entry` if that field was not written.
    pub fn report(
        &mut self,
        problems: Vec<Problem>,
        entry: std::ops::Range<usize>,
        at: impl Fn(&str) -> Option<std::ops::Range<usize>>,
    ) {
        for p in problems {
            let span = at(p.field).unwrap_or_else(|| entry.clone());
            match p.hint {
                Some(h) => self.reporter.error_hint(span, p.message, h),
                None => self.reporter.error(span, p.message),
            }
        }
    }
}

/// Reads a section's stored value as its typed form; an absent section
/// is `T::default()`.
pub fn section_value<T: DeserializeOwned + Default>(
    value: Option<&Value>,
) -> Result<T, serde_json::Error> {
    match value {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => T::deserialize(v),
    }
}

/// An app as grants and sections check names against it: its components
/// and its sections' values.
pub struct AppView<'a> {
    pub schema: &'a Schema,
    pub components: BTreeSet<&'a str>,
    pub variables: BTreeSet<&'a str>,
    pub sections: &'a BTreeMap<String, Value>,
}

impl Declarations for AppView<'_> {
    fn declares(&self, table: &str, name: &str) -> bool {
        self.schema.table(table).is_some_and(|s| {
            self.sections
                .get(s.key())
                .is_some_and(|v| s.declares(v, name))
        })
    }

    fn has_component(&self, name: &str) -> bool {
        self.components.contains(name)
    }

    fn has_variable(&self, name: &str) -> bool {
        self.variables.contains(name)
    }
}

/// Whether a stored section value says nothing (no table in the file).
pub fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Reads a sample `nubo.toml` with `sections` and the sample grants: lines
/// 1–6 declare the app `a` and its component `web` (built by a command,
/// so its source need not exist), and `extra` starts on line 7. For the
/// tests of each capability's section.
#[doc(hidden)]
pub fn sample_app(
    sections: Vec<&'static dyn Section>,
    extra: &str,
) -> Result<crate::AppSpec, String> {
    let text = format!(
        "[app]\nname = \"a\"\n\n[component.web]\nsource = \"web.wasm\"\nbuild = {{ command = \"true\" }}\n{extra}"
    );
    let schema = Schema {
        grants: crate::SAMPLE_GRANTS.to_vec(),
        sections,
        target: Target::default(),
    };
    let none = |_: &str| None;
    let path = std::path::Path::new(crate::FILE_NAME);
    crate::load_str(path, &text, &none, crate::Stage::BeforeBuild, &schema)
        .map_err(|e| e.to_string())
}

/// The app of [`sample_app`] as a stored definition's checks see it: the
/// one component `web`, nothing declared.
#[doc(hidden)]
pub struct SampleApp;

impl Declarations for SampleApp {
    fn declares(&self, _table: &str, _name: &str) -> bool {
        false
    }

    fn has_component(&self, name: &str) -> bool {
        name == "web"
    }

    fn has_variable(&self, _name: &str) -> bool {
        false
    }
}
