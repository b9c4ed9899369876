//! `[sql.NAME]` in `nubo.toml`: an app's databases, their engine, limits
//! and migrations. Stored in the app's definition under `sql`, by name.
//!
//! The migrations are read from the folder when the file is read and kept
//! in the definition with their text and checksum: the node applies them
//! from there, and a plan shows the ones the current definition lacks.

use nubo_manifest::ranges::Range;
use nubo_manifest::{Change, Declarations, Problem, Section, SectionFile, Spanned};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// One database of the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSpec {
    #[serde(default)]
    pub engine: Engine,
    /// For PostgreSQL: the connection URL as written, `{{ variable }}`
    /// references unresolved (a secret variable, usually).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// In the order they apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<Migration>,
    #[serde(default)]
    pub limits: SqlLimits,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// A file in the node's state dir.
    #[default]
    Sqlite,
    /// A PostgreSQL server at `url`.
    Postgres,
}

/// One migration file: `NNN_name.sql`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    pub name: String,
    pub sql: String,
    /// `sha256` of `sql`, hex: how an edit after it was applied is found.
    pub sha256: String,
}

impl Migration {
    pub fn new(name: impl Into<String>, sql: impl Into<String>) -> Self {
        let sql = sql.into();
        Self {
            name: name.into(),
            sha256: hex::encode(Sha256::digest(sql.as_bytes())),
            sql,
        }
    }

    /// Its number: the digits before the first `_`.
    pub fn number(&self) -> Option<u64> {
        migration_number(&self.name)
    }

    /// The first line of SQL that is not a comment, for `nubo plan`.
    pub fn first_line(&self) -> &str {
        self.sql
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("--"))
            .unwrap_or("")
    }
}

/// What one statement may take and give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SqlLimits {
    /// Size of the database file (SQLite's page count times page size).
    pub max_size_mb: u64,
    /// Rows one query may return.
    pub max_rows: u64,
    /// Bytes of values one query may return.
    pub max_result_mb: u64,
    /// Wall-clock time one statement may run before it is stopped.
    pub timeout_ms: u64,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            max_size_mb: 1024,
            max_rows: 10_000,
            max_result_mb: 16,
            timeout_ms: 5_000,
        }
    }
}

pub const MAX_SIZE_MB: Range = Range::new("max_size_mb", 1, 1 << 20);
pub const MAX_ROWS: Range = Range::new("max_rows", 1, 1_000_000);
pub const MAX_RESULT_MB: Range = Range::new("max_result_mb", 1, 1024);
pub const TIMEOUT_MS: Range = Range::new("timeout_ms", 1, 600_000);

/// The app's databases by name: the section's stored value.
pub type SqlSpecs = BTreeMap<String, DatabaseSpec>;

/// `NNN` of `NNN_name.sql`, if the name has that shape.
fn migration_number(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".sql")?;
    let (digits, rest) = stem.split_once('_')?;
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    ok.then(|| digits.parse().ok()).flatten()
}

impl DatabaseSpec {
    /// Every problem of the database `name` of `app`.
    pub fn problems(&self, name: &str, app: &dyn Declarations) -> Vec<Problem> {
        let mut out = Vec::new();
        if !nubo_manifest::is_store_name(name) {
            out.push(
                Problem::new("name", format!("invalid database name `{name}`"))
                    .hint("use lower-case letters, digits, `-` and `_`, starting with a letter"),
            );
        }
        match (self.engine, &self.url) {
            (Engine::Postgres, None) => out.push(
                Problem::new("engine", "engine \"postgres\" needs a `url`")
                    .hint("url = \"{{ database_url }}\", with database_url a secret variable holding postgres://user:password@host/db"),
            ),
            (Engine::Postgres, Some(url)) => out.extend(url_problems(url, app)),
            (Engine::Sqlite, Some(_)) => out.push(
                Problem::new("url", "`url` is for engine = \"postgres\"")
                    .hint("a SQLite database is a file in the node's state dir; remove `url`"),
            ),
            (Engine::Sqlite, None) => {}
        }
        let l = self.limits;
        for (range, v) in [
            (MAX_SIZE_MB, l.max_size_mb),
            (MAX_ROWS, l.max_rows),
            (MAX_RESULT_MB, l.max_result_mb),
            (TIMEOUT_MS, l.timeout_ms),
        ] {
            if range.check(v).is_some() {
                out.push(Problem::range(range, v));
            }
        }
        out.extend(migration_problems(&self.migrations));
        out
    }
}

/// A PostgreSQL URL: a well-formed template of declared variables.
fn url_problems(url: &str, app: &dyn Declarations) -> Vec<Problem> {
    let vars = match nubo_manifest::template_variables(url) {
        Ok(v) => v,
        Err(e) => return vec![Problem::new("url", format!("`url`: {e}"))],
    };
    let mut out: Vec<Problem> = vars
        .iter()
        .filter(|v| !app.has_variable(v))
        .map(|v| {
            Problem::new(
                "url",
                format!("`url` uses variable `{v}`, which is not declared"),
            )
            .hint(format!("declare it: [variables] {v} = {{ secret = true }}"))
        })
        .collect();
    if vars.is_empty() && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        out.push(
            Problem::new("url", "`url` is not a postgres:// URL")
                .hint("postgres://user:password@host:5432/db, best kept in a secret variable: url = \"{{ database_url }}\""),
        );
    }
    out
}

/// Names of the shape `NNN_name.sql`, each number once, in order, and
/// each checksum true to its text.
fn migration_problems(migrations: &[Migration]) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut last: Option<(u64, &str)> = None;
    for m in migrations {
        let Some(n) = m.number() else {
            out.push(
                Problem::new("migrations", format!("migration file `{}` is not named NNN_name.sql", m.name))
                    .hint("name migrations like 001_create_notes.sql; they apply in the order of their numbers"),
            );
            continue;
        };
        match last {
            Some((p, other)) if p == n => out.push(Problem::new(
                "migrations",
                format!("migrations `{other}` and `{}` have the same number", m.name),
            )),
            Some((p, other)) if p > n => out.push(Problem::new(
                "migrations",
                format!(
                    "migration `{}` comes after `{other}` but has a lower number",
                    m.name
                ),
            )),
            _ => {}
        }
        if Migration::new(&m.name, &m.sql).sha256 != m.sha256 {
            out.push(Problem::new(
                "migrations",
                format!("migration `{}`: its sha256 is not that of its text", m.name),
            ));
        }
        last = Some((n, &m.name));
    }
    out
}

/// `[sql.NAME]` as written.
#[derive(Deserialize)]
struct File {
    #[serde(default)]
    sql: BTreeMap<Spanned<String>, Spanned<RawDatabase>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    engine: Option<Spanned<Engine>>,
    url: Option<Spanned<String>>,
    migrations: Option<Spanned<String>>,
    max_size_mb: Option<Spanned<i64>>,
    max_rows: Option<Spanned<i64>>,
    max_result_mb: Option<Spanned<i64>>,
    timeout_ms: Option<Spanned<i64>>,
}

impl RawDatabase {
    fn span(&self, field: &str) -> Option<std::ops::Range<usize>> {
        match field {
            "engine" => self.engine.as_ref().map(Spanned::span),
            "url" => self.url.as_ref().map(Spanned::span),
            "migrations" => self.migrations.as_ref().map(Spanned::span),
            _ => None,
        }
    }

    fn spec(&self, f: &mut SectionFile<'_, '_>) -> DatabaseSpec {
        let d = SqlLimits::default();
        let limits = SqlLimits {
            max_size_mb: f.ranged(&self.max_size_mb, MAX_SIZE_MB, d.max_size_mb),
            max_rows: f.ranged(&self.max_rows, MAX_ROWS, d.max_rows),
            max_result_mb: f.ranged(&self.max_result_mb, MAX_RESULT_MB, d.max_result_mb),
            timeout_ms: f.ranged(&self.timeout_ms, TIMEOUT_MS, d.timeout_ms),
        };
        let migrations = match &self.migrations {
            None => Vec::new(),
            Some(dir) => match read_migrations(&f.root().join(dir.get_ref())) {
                Ok(m) => m,
                Err(e) => {
                    f.error_hint(
                        dir.span(),
                        format!("cannot read migrations folder `{}`: {e}", dir.get_ref()),
                        "point `migrations` at a folder of NNN_name.sql files, relative to nubo.toml",
                    );
                    Vec::new()
                }
            },
        };
        DatabaseSpec {
            engine: self
                .engine
                .as_ref()
                .map_or_else(Engine::default, |e| *e.get_ref()),
            url: self.url.as_ref().map(|u| u.get_ref().clone()),
            migrations,
            limits,
        }
    }
}

/// The `.sql` files of `dir`, in the order of their numbers (names that
/// have none sort last by name, and are refused by the rules).
fn read_migrations(dir: &Path) -> std::io::Result<Vec<Migration>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".sql") || !path.is_file() {
            continue;
        }
        out.push(Migration::new(name, std::fs::read_to_string(&path)?));
    }
    out.sort_by(|a, b| {
        (a.number().unwrap_or(u64::MAX), &a.name).cmp(&(b.number().unwrap_or(u64::MAX), &b.name))
    });
    Ok(out)
}

/// The `[sql.NAME]` section, stored as `sql`.
pub struct SqlSection;

impl SqlSection {
    pub const KEY: &'static str = "sql";

    /// The app's databases among the sections of a stored definition.
    pub fn of(sections: &BTreeMap<String, Value>) -> Result<SqlSpecs, serde_json::Error> {
        nubo_manifest::section_value(sections.get(Self::KEY))
    }
}

impl Section for SqlSection {
    fn table(&self) -> &'static str {
        "sql"
    }

    fn key(&self) -> &'static str {
        Self::KEY
    }

    fn read(&self, f: &mut SectionFile<'_, '_>) -> Option<Value> {
        let file: File = f.parse()?;
        let mut out = SqlSpecs::new();
        for (name, raw) in &file.sql {
            let spec = raw.get_ref().spec(f);
            let mut problems = spec.problems(name.get_ref(), f.app());
            if f.target().cluster && spec.engine == Engine::Sqlite {
                problems.push(
                    Problem::new(
                        "engine",
                        format!("database `{}` is a SQLite file on one node, and the node this is applied to is part of a cluster", name.get_ref()),
                    )
                    .hint("a cluster's nodes share a PostgreSQL database: engine = \"postgres\", url = \"{{ database_url }}\""),
                );
            }
            f.report(problems, raw.span(), |field| match field {
                "name" => Some(name.span()),
                _ => raw.get_ref().span(field),
            });
            out.insert(name.get_ref().clone(), spec);
        }
        serde_json::to_value(out).ok()
    }

    fn check(&self, value: &Value, app: &dyn Declarations) -> Vec<String> {
        let dbs: SqlSpecs = match SqlSpecs::deserialize(value) {
            Ok(d) => d,
            Err(e) => return vec![format!("sql: {e}")],
        };
        let mut out = Vec::new();
        for (name, db) in &dbs {
            for p in db.problems(name, app) {
                out.push(format!("database `{name}`: {}", p.message));
            }
        }
        out
    }

    fn describe(&self, old: Option<&Value>, new: Option<&Value>) -> Vec<Change> {
        let read = |v| nubo_manifest::section_value::<SqlSpecs>(v).unwrap_or_default();
        let (old, new) = (read(old), read(new));
        let mut out = Vec::new();
        for (name, db) in &new {
            let what = format!("sql database {name} ({})", engine_name(db.engine));
            let applied = old.get(name).map_or(&[][..], |o| o.migrations.as_slice());
            match old.get(name) {
                None => out.push(Change::added(what)),
                Some(o) if o.limits != db.limits || o.url != db.url => {
                    let mut detail = limit_changes(&o.limits, &db.limits);
                    if o.url != db.url {
                        // The URL as written: a template, not the secret.
                        detail = [detail, "url changed".to_string()]
                            .into_iter()
                            .filter(|d| !d.is_empty())
                            .collect::<Vec<_>>()
                            .join(", ");
                    }
                    out.push(Change::changed(what, detail))
                }
                Some(_) => {}
            }
            for m in db
                .migrations
                .iter()
                .filter(|m| !applied.iter().any(|a| a.name == m.name))
            {
                out.push(Change::added(format!(
                    "migration {name}/{}: {}",
                    m.name,
                    m.first_line()
                )));
            }
        }
        for name in old.keys().filter(|k| !new.contains_key(*k)) {
            out.push(Change::removed(format!(
                "sql database {name} (its data is kept until the app is removed)"
            )));
        }
        out
    }

    fn conflicts(&self, old: Option<&Value>, new: Option<&Value>) -> Vec<String> {
        let read = |v| nubo_manifest::section_value::<SqlSpecs>(v).unwrap_or_default();
        let (old, new) = (read(old), read(new));
        let mut out = Vec::new();
        for (name, db) in &new {
            if let Some(o) = old.get(name) {
                if o.engine != db.engine {
                    out.push(format!(
                        "database `{name}` changes engine from {} to {}, and its data does not move; declare a new database and copy the data over",
                        engine_name(o.engine),
                        engine_name(db.engine)
                    ));
                }
                out.extend(migration_conflicts(name, &o.migrations, &db.migrations));
            }
        }
        out
    }
}

/// Applied migrations that the new list edits, or puts a new one before.
/// A list without some applied ones is no conflict: a rollback to an
/// older revision keeps the newer schema (migrations are never undone).
fn migration_conflicts(db: &str, applied: &[Migration], new: &[Migration]) -> Vec<String> {
    let mut out = Vec::new();
    for a in applied {
        if new.iter().any(|m| m.name == a.name && m.sha256 != a.sha256) {
            out.push(format!(
                "migration `{}` of database `{db}` was changed after it was applied; undo the edit and add a new migration",
                a.name
            ));
        }
    }
    let last = applied.iter().filter_map(Migration::number).max();
    for m in new
        .iter()
        .filter(|m| !applied.iter().any(|a| a.name == m.name))
    {
        if let (Some(n), Some(last)) = (m.number(), last)
            && n <= last
        {
            out.push(format!(
                "migration `{}` of database `{db}` is new but numbered {n}, not after the applied ones (up to {last})",
                m.name
            ));
        }
    }
    out
}

fn engine_name(e: Engine) -> &'static str {
    match e {
        Engine::Sqlite => "sqlite",
        Engine::Postgres => "postgres",
    }
}

fn limit_changes(a: &SqlLimits, b: &SqlLimits) -> String {
    [
        ("max_size_mb", a.max_size_mb, b.max_size_mb),
        ("max_rows", a.max_rows, b.max_rows),
        ("max_result_mb", a.max_result_mb, b.max_result_mb),
        ("timeout_ms", a.timeout_ms, b.timeout_ms),
    ]
    .into_iter()
    .filter(|(_, x, y)| x != y)
    .map(|(k, x, y)| format!("{k} {x} → {y}"))
    .collect::<Vec<_>>()
    .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str) -> Result<nubo_manifest::AppSpec, String> {
        nubo_manifest::sample_app(vec![&SqlSection], extra)
    }

    #[test]
    fn a_postgres_database_takes_its_url_from_a_declared_variable() {
        let app = load(
            "[variables]\ndb = { default = \"postgres://u@h/d\", secret = true }\n[sql.main]\nengine = \"postgres\"\nurl = \"{{ db }}\"\n",
        )
        .unwrap();
        let dbs = SqlSection::of(&app.sections).unwrap();
        assert_eq!(dbs["main"].engine, Engine::Postgres);
        // Stored as written: the secret stays in the variable.
        assert_eq!(dbs["main"].url.as_deref(), Some("{{ db }}"));
    }

    #[test]
    fn each_problem_is_reported_where_it_is_written() {
        let err = load(
            "[sql.main]\nengine = \"postgres\"\n[sql.other]\nengine = \"postgres\"\nurl = \"{{ nope }}\"\n[sql.third]\nurl = \"postgres://h/d\"\n[sql.fourth]\nmigrations = \"no-such-folder\"\n",
        )
        .unwrap_err();
        for expected in [
            "nubo.toml:8:10: engine \"postgres\" needs a `url`",
            "nubo.toml:11:7: `url` uses variable `nope`, which is not declared",
            "nubo.toml:13:7: `url` is for engine = \"postgres\"",
            "nubo.toml:15:14: cannot read migrations folder `no-such-folder`",
        ] {
            assert!(err.contains(expected), "{expected}\n{err}");
        }
    }

    #[test]
    fn an_engine_is_never_changed_under_its_data() {
        let sqlite = serde_json::json!({ "main": { "engine": "sqlite" } });
        let pg = serde_json::json!({ "main": { "engine": "postgres", "url": "postgres://h/d" } });
        let c = SqlSection.conflicts(Some(&sqlite), Some(&pg));
        assert!(
            c.iter()
                .any(|m| m.contains("changes engine from sqlite to postgres")),
            "{c:?}"
        );
        assert!(SqlSection.conflicts(Some(&pg), Some(&pg)).is_empty());
    }
}
