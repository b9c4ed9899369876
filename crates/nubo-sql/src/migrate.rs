//! Which migrations are pending (for both engines), and applying them to
//! a SQLite database: the ones not applied yet, in order, in one
//! transaction, each recorded in `_nubo_migrations` with its checksum and
//! the revision that applied it.

use crate::sqlite::{MIGRATIONS_TABLE, classify, record};
use crate::{MigrateError, Migration, SqlError};
use rusqlite::Connection;
use rusqlite::fallible_iterator::FallibleIterator;
use std::collections::HashMap;

/// Applies the pending `migrations`; the names it applied. An applied one
/// whose text changed, or any statement that fails, applies nothing.
pub(crate) fn run(
    c: &mut Connection,
    migrations: &[Migration],
    revision: u64,
) -> Result<Vec<String>, MigrateError> {
    c.execute_batch(MIGRATIONS_TABLE).map_err(classify)?;
    let applied = applied(c).map_err(classify)?;
    let pending = pending(migrations, &applied)?;
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let tx = c.transaction().map_err(classify)?;
    for m in &pending {
        script(&tx, m)?;
        record(&tx, m, revision)?;
    }
    tx.commit().map_err(classify)?;
    Ok(pending.iter().map(|m| m.name.clone()).collect())
}

/// Name → (sha256, revision) of the applied migrations.
fn applied(c: &Connection) -> rusqlite::Result<HashMap<String, (String, u64)>> {
    let mut stmt = c.prepare("SELECT name, sha256, revision FROM _nubo_migrations")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get(0)?, (r.get(1)?, r.get::<_, i64>(2)? as u64)))
    })?;
    rows.collect()
}

/// The migrations of `migrations` not in `applied`, in order; refuses an
/// applied one whose text has changed. Both engines decide by this.
pub(crate) fn pending<'a>(
    migrations: &'a [Migration],
    applied: &HashMap<String, (String, u64)>,
) -> Result<Vec<&'a Migration>, MigrateError> {
    let mut out = Vec::new();
    for m in migrations {
        match applied.get(&m.name) {
            Some((sha, _)) if *sha == m.sha256 => {}
            Some((_, revision)) => {
                return Err(MigrateError::Changed {
                    name: m.name.clone(),
                    revision: *revision,
                });
            }
            None => out.push(m),
        }
    }
    Ok(out)
}

/// Runs every statement of `m`; a failure names the line it starts on.
fn script(c: &Connection, m: &Migration) -> Result<(), MigrateError> {
    let mut done = 0usize;
    let failed = |done: usize, source: SqlError| MigrateError::Failed {
        name: m.name.clone(),
        line: statement_line(&m.sql, done),
        source,
    };
    let mut batch = rusqlite::Batch::new(c, &m.sql);
    loop {
        let mut stmt = match batch.next() {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(()),
            Err(e) => return Err(failed(done, classify(e))),
        };
        let text = stmt.expanded_sql().unwrap_or_default();
        let mut rows = stmt.raw_query();
        loop {
            match rows.next() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(failed(done, classify(e))),
            }
        }
        if let Some(at) = m.sql.get(done..).and_then(|rest| rest.find(text.trim())) {
            done += at + text.trim().len();
        }
    }
}

/// The line (from 1) of the first statement text at or after byte `from`:
/// past blanks, `;` and `--` comments.
fn statement_line(sql: &str, from: usize) -> usize {
    let before = sql.get(..from).unwrap_or(sql);
    let mut line = before.matches('\n').count() + 1;
    let mut in_comment = false;
    let mut chars = sql.get(from..).unwrap_or("").chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\n' => {
                line += 1;
                in_comment = false;
            }
            _ if in_comment => {}
            '-' if chars.peek() == Some(&'-') => in_comment = true,
            c if c.is_whitespace() || c == ';' => {}
            _ => return line,
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::statement_line;

    #[test]
    fn the_line_of_a_statement_skips_blanks_and_comments() {
        let sql = "CREATE TABLE a (x);\n\n-- tags\nCREATE TABLE b (y);\n";
        assert_eq!(statement_line(sql, 0), 1);
        assert_eq!(statement_line(sql, "CREATE TABLE a (x)".len()), 4);
    }
}
