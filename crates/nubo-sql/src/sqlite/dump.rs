//! A SQLite database as SQL text, and back: what `nubo sql dump` and
//! `nubo sql restore` move.
//!
//! The dump reads a copy that SQLite's online backup made (the app's
//! statements wait only for the copy, not for the text). It holds the
//! schema and rows of each table (Nubo's
//! `_nubo_migrations` too, so a restored database knows which migrations
//! made it), the rows of each full-text table through the table itself
//! (its index is rebuilt as they go back in), then indexes, triggers and
//! views.

use crate::SqlError;
use crate::sqlite::classify;
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use std::fmt::Write as _;
use std::path::Path;

/// One object of `sqlite_schema`.
struct Object {
    kind: String,
    name: String,
    sql: String,
}

/// The database at `path` (a copy no one else uses) as SQL text.
pub(crate) fn dump(path: &Path) -> Result<String, SqlError> {
    let c = Connection::open(path).map_err(classify)?;
    write(&c).map_err(classify)
}

fn write(c: &Connection) -> rusqlite::Result<String> {
    let shadow = shadow_tables(c)?;
    let objects = objects(c)?;
    let mut out = String::from("-- Nubo dump (SQLite)\n");
    for o in objects.iter().filter(|o| o.kind == "table") {
        if o.name.starts_with("sqlite_") || shadow.contains(&o.name) {
            continue;
        }
        let _ = writeln!(out, "{};", o.sql);
        // A virtual table's rows keep their row ids: an FTS5 index over
        // another table (`content_rowid`) points at that table's rows.
        let virtual_table = o.sql.starts_with("CREATE VIRTUAL TABLE");
        rows(c, &o.name, virtual_table, &mut out)?;
    }
    if objects.iter().any(|o| o.name == "sqlite_sequence") {
        out.push_str("DELETE FROM sqlite_sequence;\n");
        rows(c, "sqlite_sequence", false, &mut out)?;
    }
    for o in objects.iter().filter(|o| o.kind != "table") {
        let _ = writeln!(out, "{};", o.sql);
    }
    Ok(out)
}

/// Tables, then indexes, triggers and views, in the order they were made;
/// the ones SQLite makes itself (no SQL) are left out.
fn objects(c: &Connection) -> rusqlite::Result<Vec<Object>> {
    let mut stmt = c.prepare(
        "SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY type != 'table', rowid",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Object {
            kind: r.get(0)?,
            name: r.get(1)?,
            sql: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// The tables a virtual table keeps its data in (FTS5's `_data`,
/// `_content`…): made again by the virtual table, not dumped.
fn shadow_tables(c: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        c.prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'shadow'")?;
    let names = stmt.query_map([], |r| r.get(0))?;
    names.collect()
}

/// `INSERT` statements for the rows of `table`, naming the columns that
/// can be written (not generated ones, not a virtual table's hidden ones),
/// and the row id first if `rowid`.
fn rows(c: &Connection, table: &str, rowid: bool, out: &mut String) -> rusqlite::Result<()> {
    let mut stmt = c.prepare("SELECT name FROM pragma_table_xinfo(?1) WHERE hidden = 0")?;
    let mut columns: Vec<String> = stmt
        .query_map([table], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if rowid && !columns.is_empty() {
        columns.insert(0, "rowid".into());
    }
    if columns.is_empty() {
        return Ok(());
    }
    let names = columns
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let mut select = c.prepare(&format!("SELECT {names} FROM {}", ident(table)))?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let _ = write!(out, "INSERT INTO {} ({names}) VALUES (", ident(table));
        for i in 0..columns.len() {
            if i > 0 {
                out.push_str(", ");
            }
            literal(row.get_ref(i)?, out);
        }
        out.push_str(");\n");
    }
    Ok(())
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(v: ValueRef<'_>, out: &mut String) {
    match v {
        ValueRef::Null => out.push_str("NULL"),
        ValueRef::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        ValueRef::Real(f) if f.is_infinite() => {
            out.push_str(if f > 0.0 { "9e999" } else { "-9e999" });
        }
        ValueRef::Real(f) => {
            // Debug prints the shortest text that reads back as `f`, and
            // always as a real (`1.0`, not `1`).
            let _ = write!(out, "{f:?}");
        }
        ValueRef::Text(t) => {
            out.push('\'');
            out.push_str(&String::from_utf8_lossy(t).replace('\'', "''"));
            out.push('\'');
        }
        ValueRef::Blob(b) => {
            let _ = write!(out, "X'{}'", hex::encode(b));
        }
    }
}

/// Runs `script` on `c` in one transaction: with `replace`, after
/// dropping every table and view the database has; without, only into a
/// database that has none but Nubo's. Foreign keys are checked at the
/// end, so rows may come in any order.
pub(crate) fn restore(c: &mut Connection, script: &str, replace: bool) -> Result<(), SqlError> {
    let tx = c.transaction().map_err(classify)?;
    let mut user = Vec::new();
    {
        let mut stmt = tx
            .prepare("SELECT type, name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' AND name != '_nubo_migrations' AND name NOT IN (SELECT name FROM pragma_table_list WHERE type = 'shadow')")
            .map_err(classify)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(classify)?;
        for r in rows {
            user.push(r.map_err(classify)?);
        }
    }
    if !user.is_empty() && !replace {
        return Err(SqlError::Other(format!(
            "the database has tables ({}); restore with --replace to drop them first",
            user.iter()
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut drops = String::from("PRAGMA defer_foreign_keys = ON;\n");
    for (kind, name) in &user {
        let _ = writeln!(
            drops,
            "DROP {} IF EXISTS {};",
            kind.to_uppercase(),
            ident(name)
        );
    }
    drops.push_str("DROP TABLE IF EXISTS _nubo_migrations;\n");
    if tx
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_sequence'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(classify)?
        > 0
    {
        drops.push_str("DELETE FROM sqlite_sequence;\n");
    }
    crate::sqlite::unguarded(&tx, |c| c.execute_batch(&drops)).map_err(classify)?;
    tx.execute_batch(script).map_err(classify)?;
    tx.commit().map_err(classify)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An FTS5 index over another table, kept by triggers, comes back
    /// pointing at the same rows.
    #[test]
    fn a_full_text_index_over_a_table_restores_with_its_row_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE doc (id INTEGER PRIMARY KEY, body TEXT);
             CREATE VIRTUAL TABLE doc_search USING fts5(body, content = 'doc', content_rowid = 'id');
             CREATE TRIGGER doc_ai AFTER INSERT ON doc BEGIN
               INSERT INTO doc_search (rowid, body) VALUES (new.id, new.body);
             END;
             INSERT INTO doc (id, body) VALUES (7, 'apples and pears'), (9, 'the report');",
        )
        .unwrap();
        let text = dump(&path).unwrap();
        let mut fresh = Connection::open(dir.path().join("b.db")).unwrap();
        restore(&mut fresh, &text, false).unwrap();
        let found: i64 = fresh
            .query_row(
                "SELECT rowid FROM doc_search WHERE doc_search MATCH 'report'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(found, 9);
        // The trigger came back after the rows: each row is indexed once.
        let hits: i64 = fresh
            .query_row(
                "SELECT count(*) FROM doc_search WHERE doc_search MATCH 'apples'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(hits, 1);
        fresh
            .execute("INSERT INTO doc (body) VALUES ('new apples')", [])
            .unwrap();
        let hits: i64 = fresh
            .query_row(
                "SELECT count(*) FROM doc_search WHERE doc_search MATCH 'apples'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(hits, 2);
    }
}
