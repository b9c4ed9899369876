//! SQL databases through `nubo:platform/sql`, from a real component on a
//! real node, on a real SQLite file and on a real PostgreSQL server: the
//! same checks on both engines (typed values, transactions, typed errors,
//! limits, `nubo sql`), then what each engine adds (SQLite's guard rails
//! and FTS5, PostgreSQL's types and `tsvector` search).

mod common;

use common::control::NodeProc;
use common::sql::{Engine, exec, kind, query, run, sql_app};
use nubo_testkit::postgres::Postgres;
use serde_json::{Value as J, json};

/// What every engine does alike, on an app `notes` with `max_rows = 5`
/// and `timeout_ms = 300`.
async fn engine_checks(node: &NodeProc, engine: Engine<'_>) {
    let pg = engine.is_postgres();
    // Every value round-trips.
    let a = run(
        node,
        json!({ "db": "main", "ops": [
            exec("INSERT INTO notes (title, body, score, data) VALUES (?, ?, ?, ?)",
                 json!(["first", null, 1.5, { "blob": [0, 255, 7] }])),
            query("SELECT id, title, body, score, data FROM notes", json!([])),
        ]}),
    )
    .await;
    // PostgreSQL has no row id: `RETURNING id` gives the key.
    let last_id = if pg { J::Null } else { json!(1) };
    assert_eq!(
        a[0]["ok"],
        json!({ "changes": 1, "last_insert_id": last_id }),
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
        node,
        json!({ "db": "main", "ops": [
            exec("INSERT INTO notes (title) VALUES (?)", json!(["first"])),
            exec("INSERT INTO notes (title) VALUES ('')", json!([])),
            exec("SELECT ? FRM notes", json!([1])),
            exec("INSERT INTO notes (title) VALUES (?)", json!([])),
        ]}),
    )
    .await;
    assert_eq!(kind(&a[0]), "constraint", "{a:?}");
    let unique = if pg { "notes_title_key" } else { "notes.title" };
    assert_eq!(a[0]["err"]["name"], unique);
    assert_eq!(a[1]["err"]["name"], "title_not_empty", "{a:?}");
    assert_eq!(kind(&a[2]), "syntax", "{a:?}");
    // The offset is in the statement as written, `?` and all.
    assert_eq!(a[2]["err"]["offset"], 13, "{a:?}");
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
            node,
            json!({ "db": "main", "tx": end, "ops": [
                exec("INSERT INTO notes (title) VALUES (?)", json!([title])),
            ]}),
        )
        .await;
        assert_eq!(kind(&a[0]), "ok", "{end}: {a:?}");
        assert_eq!(kind(&a[1]), "ok", "{end}: {a:?}");
    }
    let a = run(
        node,
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
    assert_eq!(notes.as_array().map(Vec::len), Some(2), "{notes}");
    assert_eq!(notes[1]["title"], "kept");
    assert_eq!(notes[1]["body"], J::Null);

    // Limits: a runaway query is stopped, a big result refused, and the
    // node serves on.
    let a = run(node, json!({ "db": "main", "ops": [
        query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", json!([])),
        query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10) SELECT x FROM c", json!([])),
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

    // A transaction is begun through the interface, never as a statement.
    let a = run(
        node,
        json!({ "db": "main", "ops": [exec("BEGIN", json!([]))] }),
    )
    .await;
    assert_ne!(kind(&a[0]), "ok", "{a:?}");

    // Only granted, declared databases.
    let a = run(node, json!({ "db": "other", "ops": [] })).await;
    assert_eq!(kind(&a[0]), "access-denied", "{a:?}");

    // `nubo sql` runs a statement under the same limits and prints a table.
    let sql = |args: &[&str]| {
        let mut all = vec!["sql", "notes"];
        all.extend_from_slice(args);
        node.cli(&all, &[])
    };
    let (code, out, err) = sql(&[
        "main",
        "SELECT count(*) AS n, max(title) AS title FROM notes WHERE title = ?",
        "--param",
        "kept",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("n | title") && out.contains("1 | kept"),
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
async fn sqlite_keeps_types_transactions_limits_and_its_own_file() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    node.apply(&sql_app(
        "notes",
        Engine::Sqlite,
        "max_rows = 5\ntimeout_ms = 300",
    ));
    engine_checks(&node, Engine::Sqlite).await;

    // A guest's SQL reaches only its own file, as Nubo opened it.
    let outside = s.path().join("outside.db");
    let a = run(
        &node,
        json!({ "db": "main", "ops": [
            exec(&format!("ATTACH DATABASE '{}' AS x", outside.display()), json!([])),
            exec(&format!("VACUUM INTO '{}'", outside.display()), json!([])),
            exec("PRAGMA max_page_count = 1", json!([])),
            query("PRAGMA table_info(notes)", json!([])),
        ]}),
    )
    .await;
    for (i, answer) in a[..3].iter().enumerate() {
        assert_ne!(kind(answer), "ok", "statement {i}: {a:?}");
    }
    assert!(!outside.exists());
    assert_eq!(kind(&a[3]), "ok", "{a:?}");

    // Full-text search is built in (FTS5), under the same guard rails.
    let a = run(
        &node,
        json!({ "db": "main", "ops": [
            exec("CREATE VIRTUAL TABLE search USING fts5(title, body)", json!([])),
            exec("INSERT INTO search (title, body) VALUES (?, ?), (?, ?)",
                 json!(["groceries", "buy apples and pears", "work", "write the report"])),
            query("SELECT title FROM search WHERE search MATCH ? ORDER BY rank", json!(["apple*"])),
        ]}),
    )
    .await;
    assert_eq!(a[2]["ok"]["rows"], json!([["groceries"]]), "{a:?}");

    // A dump is SQL text; restored, it brings that state back whole.
    let (code, dump, err) = node.cli(&["sql", "dump", "notes", "main"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("dumped database `main` of app `notes`"),
        "{err}"
    );
    for expected in [
        "CREATE TABLE notes (",
        "INSERT INTO \"notes\" (\"id\", \"title\", \"body\", \"score\", \"data\") VALUES (1, 'first', 'b', 1.5, X'00ff07');",
        "CREATE VIRTUAL TABLE search USING fts5(title, body);",
        "INSERT INTO \"_nubo_migrations\"",
    ] {
        assert!(dump.contains(expected), "{expected}\n{dump}");
    }
    assert!(!dump.contains("search_data"), "{dump}");
    // The copy the dump was read from is gone.
    let files: Vec<String> = std::fs::read_dir(s.path().join("sql/notes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("main.db"))
        .collect();
    assert!(files.is_empty(), "{files:?}");
    let file = s.path().join("notes.sql");
    std::fs::write(&file, &dump).unwrap();
    run(
        &node,
        json!({ "db": "main", "ops": [
            exec("INSERT INTO notes (title) VALUES ('after the dump')", json!([])),
            exec("DROP TABLE search", json!([])),
        ]}),
    )
    .await;
    let restore = |extra: &[&str]| {
        let mut args = vec!["sql", "restore", "notes", "main", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        node.cli(&args, &[])
    };
    let (code, _, err) = restore(&[]);
    assert_ne!(code, 0);
    assert!(err.contains("--replace"), "{err}");
    let (code, _, err) = restore(&["--replace"]);
    assert_eq!(code, 0, "{err}");
    let a = run(
        &node,
        json!({ "db": "main", "ops": [
            query("SELECT title FROM notes ORDER BY id", json!([])),
            query("SELECT title FROM search WHERE search MATCH ?", json!(["report"])),
        ]}),
    )
    .await;
    assert_eq!(a[0]["ok"]["rows"], json!([["first"], ["kept"]]), "{a:?}");
    assert_eq!(a[1]["ok"]["rows"], json!([["work"]]), "{a:?}");
    // A script that fails part-way restores nothing.
    std::fs::write(
        &file,
        "CREATE TABLE x (a);\nINSERT INTO nowhere VALUES (1);\n",
    )
    .unwrap();
    let (code, _, err) = restore(&["--replace"]);
    assert_ne!(code, 0);
    assert!(err.contains("nowhere"), "{err}");
    let a = run(
        &node,
        json!({ "db": "main", "ops": [query("SELECT count(*) FROM notes", json!([]))] }),
    )
    .await;
    assert_eq!(a[0]["ok"]["rows"], json!([[2]]), "{a:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_keeps_types_transactions_limits_and_its_session() {
    let pg = Postgres::start();
    let url = pg.url("postgres");
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let engine = Engine::Postgres(&url);
    let out = node.apply(&sql_app("notes", engine, "max_rows = 5\ntimeout_ms = 300"));
    // The URL is a secret: never printed.
    assert!(!out.contains("postgres://"), "{out}");
    engine_checks(&node, engine).await;

    // PostgreSQL's own types: parameters go to them as text the server
    // parses, and come back as the nearest value.
    let a = run(
        &node,
        json!({ "db": "main", "ops": [
            exec("CREATE TABLE typed (at TIMESTAMPTZ, n NUMERIC(10, 3), id UUID, doc JSONB, yes BOOLEAN, small INT2, tags TEXT[])", json!([])),
            exec("INSERT INTO typed VALUES (?, ?, ?, ?, ?, ?, ?)",
                 json!(["2026-12-07 10:00:00+00", "12345.678", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "{\"k\": [1, 2]}", 1, 7, "{a,b}"])),
            query("SELECT at, n, id, doc, yes, small FROM typed", json!([])),
            query("SELECT tags FROM typed", json!([])),
            query("SELECT tags::text FROM typed", json!([])),
            exec("INSERT INTO typed (small) VALUES (?)", json!([70000])),
        ]}),
    )
    .await;
    assert_eq!(kind(&a[1]), "ok", "{a:?}");
    assert_eq!(
        a[2]["ok"]["rows"],
        json!([[
            "2026-12-07T10:00:00Z",
            "12345.678",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "{\"k\": [1, 2]}",
            1,
            7
        ]]),
        "{a:?}"
    );
    assert!(
        a[3]["err"]["message"]
            .as_str()
            .unwrap()
            .contains("`tags::text`"),
        "{a:?}"
    );
    assert_eq!(a[4]["ok"]["rows"], json!([["{a,b}"]]), "{a:?}");
    assert!(
        a[5]["err"]["message"]
            .as_str()
            .unwrap()
            .contains("out of range"),
        "{a:?}"
    );

    // A statement may not change the session its pooled connection
    // carries to the next caller: the timeout holds after a `SET`.
    let a = run(
        &node,
        json!({ "db": "main", "ops": [
            exec("SET statement_timeout = 0", json!([])),
            query("SELECT pg_sleep(1)", json!([])),
        ]}),
    )
    .await;
    assert_ne!(kind(&a[0]), "ok", "{a:?}");
    assert_eq!(kind(&a[1]), "timeout", "{a:?}");

    // Full-text search: a generated tsvector column, stemmed.
    let a = run(
        &node,
        json!({ "db": "main", "ops": [
            exec("CREATE TABLE docs (title TEXT, body TEXT, tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || body)) STORED)", json!([])),
            exec("INSERT INTO docs (title, body) VALUES (?, ?), (?, ?)",
                 json!(["groceries", "buy apples and pears", "work", "write the report"])),
            query("SELECT title FROM docs WHERE tsv @@ websearch_to_tsquery('english', ?) ORDER BY ts_rank(tsv, websearch_to_tsquery('english', ?)) DESC", json!(["apple", "apple"])),
        ]}),
    )
    .await;
    assert_eq!(a[2]["ok"]["rows"], json!([["groceries"]]), "{a:?}");

    // A statement prepared before its table changed is prepared again.
    let a = run(
        &node,
        json!({ "db": "main", "ops": [
            exec("CREATE TABLE plain (a TEXT)", json!([])),
            exec("INSERT INTO plain VALUES ('x')", json!([])),
            query("SELECT * FROM plain WHERE a = ?", json!(["x"])),
            exec("ALTER TABLE plain ADD COLUMN b INT", json!([])),
            query("SELECT * FROM plain WHERE a = ?", json!(["x"])),
        ]}),
    )
    .await;
    assert_eq!(a[4]["ok"]["rows"], json!([["x", null]]), "{a:?}");

    // PostgreSQL's own tools dump and restore it.
    let (code, _, err) = node.cli(&["sql", "dump", "notes", "main"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("pg_dump"), "{err}");
}

/// Inserts acknowledged to a client survive a SIGKILL of the node in the
/// middle of a stream of them.
#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_insert_survives_sigkill() {
    let s = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(s.path(), &[]);
    node.apply(&sql_app("durable", Engine::Sqlite, ""));
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
