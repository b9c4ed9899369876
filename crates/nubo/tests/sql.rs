//! SQL databases through `nubo:platform/sql`, from a real component on a
//! real node with a real SQLite file: typed values, transactions, typed
//! errors and limits, and migrations that `nubo plan` shows and `nubo
//! apply` runs before a revision serves.

mod common;

use common::control::NodeProc;
use common::{AppDir, request, wasm};
use serde_json::{Value as J, json};

/// An app with the sqlbox at `/sql/...` granted `main`, whose migrations
/// are `migrations/`, and `extra` in its `[sql.main]`.
fn sql_app(name: &str, extra: &str) -> AppDir {
    let app = AppDir::new(&format!(
        r#"
[app]
name = "{name}"
[sql.main]
migrations = "migrations"
{extra}
[component.sqlbox]
source = "{}"
sql = ["main"]
[[http]]
route = "/sql/..."
component = "sqlbox"
"#,
        wasm("sqlbox").display()
    ));
    app.write(
        "migrations/001_notes.sql",
        "-- the notes\nCREATE TABLE notes (\n  id INTEGER PRIMARY KEY,\n  title TEXT NOT NULL UNIQUE,\n  body TEXT,\n  score REAL,\n  data BLOB,\n  CONSTRAINT title_not_empty CHECK (length(title) > 0)\n);\n",
    );
    app
}

/// Runs `ops` on database `db` (in a transaction ended by `tx`, if set);
/// one answer per statement (and one for the end of the transaction).
async fn run(node: &NodeProc, app: &str, body: J) -> Vec<J> {
    let _ = app;
    let url = node.url("/sql/run");
    let r = request(
        "POST",
        &url,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_str::<Vec<J>>(&r.text()).unwrap()
}

fn exec(sql: &str, params: J) -> J {
    json!({ "sql": sql, "params": params })
}

fn query(sql: &str, params: J) -> J {
    json!({ "query": true, "sql": sql, "params": params })
}

fn kind(answer: &J) -> &str {
    answer["err"]["kind"].as_str().unwrap_or("ok")
}

#[tokio::test(flavor = "multi_thread")]
async fn statements_keep_their_types_transactions_and_errors_are_typed() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let app = sql_app("notes", "max_rows = 5\ntimeout_ms = 300");
    node.apply(&app);

    // Every storage class round-trips.
    let a = run(
        &node,
        "notes",
        json!({ "db": "main", "ops": [
            exec("INSERT INTO notes (title, body, score, data) VALUES (?, ?, ?, ?)",
                 json!(["first", null, 1.5, { "blob": [0, 255, 7] }])),
            query("SELECT id, title, body, score, data FROM notes", json!([])),
        ]}),
    )
    .await;
    assert_eq!(
        a[0]["ok"],
        json!({ "changes": 1, "last_insert_id": 1 }),
        "{a:?}"
    );
    assert_eq!(
        a[1]["ok"]["columns"],
        json!(["id", "title", "body", "score", "data"])
    );
    assert_eq!(
        a[1]["ok"]["rows"],
        json!([[1, "first", null, { "real": 1.5 }, { "blob": [0, 255, 7] }]])
    );

    // Constraints are named; a bad statement says where.
    let a = run(
        &node,
        "notes",
        json!({ "db": "main", "ops": [
            exec("INSERT INTO notes (title) VALUES (?)", json!(["first"])),
            exec("INSERT INTO notes (title) VALUES ('')", json!([])),
            exec("SELEC 1", json!([])),
            exec("INSERT INTO notes (title) VALUES (?)", json!([])),
        ]}),
    )
    .await;
    assert_eq!(kind(&a[0]), "constraint", "{a:?}");
    assert_eq!(a[0]["err"]["name"], "notes.title");
    assert_eq!(a[1]["err"]["name"], "title_not_empty", "{a:?}");
    assert_eq!(kind(&a[2]), "syntax", "{a:?}");
    assert_eq!(a[2]["err"]["offset"], 0);
    assert!(
        a[3]["err"]["message"]
            .as_str()
            .unwrap()
            .contains("takes 1 parameters"),
        "{a:?}"
    );

    // A transaction commits, rolls back, or is rolled back when dropped.
    for (end, title) in [
        ("commit", "kept"),
        ("rollback", "undone"),
        ("drop", "dropped"),
    ] {
        let a = run(
            &node,
            "notes",
            json!({ "db": "main", "tx": end, "ops": [
                exec("INSERT INTO notes (title) VALUES (?)", json!([title])),
            ]}),
        )
        .await;
        assert_eq!(kind(&a[0]), "ok", "{end}: {a:?}");
        assert_eq!(kind(&a[1]), "ok", "{end}: {a:?}");
    }
    let a = run(
        &node,
        "notes",
        json!({ "db": "main", "ops": [
            query("SELECT title FROM notes ORDER BY id", json!([])),
        ]}),
    )
    .await;
    assert_eq!(a[0]["ok"]["rows"], json!([["first"], ["kept"]]), "{a:?}");

    // Rows map onto the SDK's structs.
    let r = common::get(&node.url("/sql/notes")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let notes: J = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(notes[1], json!({ "id": 2, "title": "kept", "body": null }));

    // Limits: a runaway query is stopped, a big result refused, and the
    // node serves on.
    let a = run(&node, "notes", json!({ "db": "main", "ops": [
        query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", json!([])),
        query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 10) SELECT x FROM c", json!([])),
        query("SELECT count(*) FROM notes", json!([])),
    ]})).await;
    assert_eq!(kind(&a[0]), "timeout", "{a:?}");
    assert_eq!(kind(&a[1]), "too-large", "{a:?}");
    assert!(
        a[1]["err"]["message"]
            .as_str()
            .unwrap()
            .contains("max_rows")
    );
    assert_eq!(a[2]["ok"]["rows"], json!([[2]]));

    // A guest's SQL reaches only its own file, as Nubo opened it.
    let outside = s.path().join("outside.db");
    let a = run(
        &node,
        "notes",
        json!({ "db": "main", "ops": [
            exec(&format!("ATTACH DATABASE '{}' AS x", outside.display()), json!([])),
            exec(&format!("VACUUM INTO '{}'", outside.display()), json!([])),
            exec("PRAGMA max_page_count = 1", json!([])),
            exec("BEGIN", json!([])),
            query("PRAGMA table_info(notes)", json!([])),
        ]}),
    )
    .await;
    for (i, answer) in a[..4].iter().enumerate() {
        assert_ne!(kind(answer), "ok", "statement {i}: {a:?}");
    }
    assert!(!outside.exists());
    assert_eq!(kind(&a[4]), "ok", "{a:?}");

    // Full-text search is built in (FTS5), under the same guard rails.
    let a = run(
        &node,
        "notes",
        json!({ "db": "main", "ops": [
            exec("CREATE VIRTUAL TABLE search USING fts5(title, body)", json!([])),
            exec("INSERT INTO search (title, body) VALUES (?, ?), (?, ?)",
                 json!(["groceries", "buy apples and pears", "work", "write the report"])),
            query("SELECT title FROM search WHERE search MATCH ? ORDER BY rank", json!(["apple*"])),
        ]}),
    )
    .await;
    assert_eq!(a[2]["ok"]["rows"], json!([["groceries"]]), "{a:?}");

    // Only granted, declared databases.
    let a = run(&node, "notes", json!({ "db": "other", "ops": [] })).await;
    assert_eq!(kind(&a[0]), "access-denied", "{a:?}");

    // `nubo sql` runs a statement under the same limits and prints a table.
    let sql = |args: &[&str]| {
        let mut all = vec!["sql", "notes"];
        all.extend_from_slice(args);
        node.cli(&all, &[])
    };
    let (code, out, err) = sql(&[
        "main",
        "SELECT id, title FROM notes WHERE id = ?",
        "--param",
        "2",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("id | title") && out.contains("2  | kept"),
        "{out}"
    );
    assert!(out.contains("(1 row)"), "{out}");
    let (code, out, err) = sql(&["main", "--json", "UPDATE notes SET body = 'b'"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        serde_json::from_str::<J>(&out).unwrap()["changes"],
        2,
        "{out}"
    );
    let (code, _, err) = sql(&["mian", "SELECT 1"]);
    assert_ne!(code, 0);
    assert!(err.contains("`main`"), "{err}");
    let (code, _, err) = sql(&["main", "SELEC 1"]);
    assert_ne!(code, 0);
    assert!(err.contains("syntax error"), "{err}");
    let (code, _, err) = sql(&[
        "main",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("stopped after 300 ms"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_are_planned_applied_before_serving_and_never_rewritten() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let app = sql_app("mig", "");
    let out = node.apply(&app);
    assert!(
        out.contains("migration main/001_notes.sql: CREATE TABLE notes ("),
        "{out}"
    );

    // A new migration is shown by plan and applied by apply.
    app.write(
        "migrations/002_tags.sql",
        "CREATE TABLE tags (note INTEGER REFERENCES notes(id), tag TEXT);\n",
    );
    let (code, out, err) = node.cli(&["plan", app.path().to_str().unwrap()], &[]);
    assert_eq!(code, 2, "changes pending: {out}{err}");
    assert!(
        out.contains("+ migration main/002_tags.sql: CREATE TABLE tags"),
        "{out}"
    );
    assert!(!out.contains("001_notes"), "{out}");
    node.apply(&app);
    let a = run(
        &node,
        "mig",
        json!({ "db": "main", "ops": [
            exec("INSERT INTO notes (title) VALUES ('a')", json!([])),
            exec("INSERT INTO tags VALUES (1, 'x')", json!([])),
            exec("INSERT INTO tags VALUES (99, 'x')", json!([])),
        ]}),
    )
    .await;
    assert_eq!(kind(&a[1]), "ok", "{a:?}");
    // Foreign keys hold.
    assert_eq!(kind(&a[2]), "constraint", "{a:?}");

    // A broken migration: nothing of it applied, the old revision serves.
    app.write(
        "migrations/003_broken.sql",
        "CREATE TABLE fine (x);\n\nINSERT INTO nowhere VALUES (1);\n",
    );
    let (code, out, err) = node.cli(
        &["apply", app.path().to_str().unwrap(), "--auto-approve"],
        &[],
    );
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("migration `003_broken.sql`, line 3"), "{err}");
    assert!(err.contains("no such table: nowhere"), "{err}");
    let a = run(
        &node,
        "mig",
        json!({ "db": "main", "ops": [
            query("SELECT name FROM sqlite_master WHERE name = 'fine'", json!([])),
            query("SELECT count(*) FROM tags", json!([])),
        ]}),
    )
    .await;
    assert_eq!(a[0]["ok"]["rows"], json!([]), "{a:?}");
    assert_eq!(a[1]["ok"]["rows"], json!([[1]]), "{a:?}");
    let current = node.api("GET", "/v1/apps/mig", "").await;
    assert_eq!(
        serde_json::from_str::<J>(&current.text()).unwrap()["revision"],
        2
    );
    std::fs::remove_file(app.path().join("migrations/003_broken.sql")).unwrap();

    // An applied migration edited: refused by plan, and by the node.
    app.write("migrations/002_tags.sql", "CREATE TABLE tags (tag TEXT);\n");
    let (code, out, err) = node.cli(&["plan", app.path().to_str().unwrap()], &[]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains(
            "migration `002_tags.sql` of database `main` was changed after it was applied"
        ),
        "{err}"
    );
    // The node refuses it too, whoever sends it.
    let current: J =
        serde_json::from_str(&node.api("GET", "/v1/apps/mig", "").await.text()).unwrap();
    let mut sql = current["definition"]["sql"].clone();
    let edited = "CREATE TABLE tags (tag TEXT);\n";
    sql["main"]["migrations"][1]["sql"] = json!(edited);
    sql["main"]["migrations"][1]["sha256"] =
        json!(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(edited)));
    let edit = json!({ "steps": [{ "op": "set_section", "key": "sql", "value": sql }] });
    let r = node
        .api("POST", "/v1/apps/mig/changes", &edit.to_string())
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text()
            .contains("`002_tags.sql` of database `main` was changed after it was applied"),
        "{}",
        r.text()
    );

    // A rollback to the revision before `002_tags.sql` serves it on the
    // newer schema: migrations are never undone.
    let (code, out, err) = node.cli(&["rollback", "mig"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let a = run(
        &node,
        "mig",
        json!({ "db": "main", "ops": [
            query("SELECT count(*) FROM tags", json!([])),
        ]}),
    )
    .await;
    assert_eq!(a[0]["ok"]["rows"], json!([[1]]), "{a:?}");
}

/// Inserts acknowledged to a client survive a SIGKILL of the node in the
/// middle of a stream of them.
#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_insert_survives_sigkill() {
    let s = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(s.path(), &[]);
    node.apply(&sql_app("durable", ""));
    let url = node.url("/sql/run");
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (url, acked) = (url.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let title = format!("w{w}-{i}");
                let body = json!({ "db": "main", "ops": [
                    exec("INSERT INTO notes (title) VALUES (?)", json!([title])),
                ]});
                let Ok(r) = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    common::try_request("POST", &url, body.to_string().as_bytes()),
                )
                .await
                else {
                    return;
                };
                let answer = r.and_then(|text| serde_json::from_str::<J>(&text).ok());
                match answer {
                    Some(a) if a[0]["ok"]["changes"] == 1 => acked.lock().unwrap().push(title),
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    node.kill9();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "too few inserts before the kill: {}",
        acked.len()
    );

    let node = NodeProc::start(s.path(), &[]);
    let a = run(
        &node,
        "durable",
        json!({ "db": "main", "ops": [
            query("SELECT title FROM notes", json!([])),
        ]}),
    )
    .await;
    let stored: std::collections::BTreeSet<String> = a[0]["ok"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|t| !stored.contains(*t)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged inserts lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}
