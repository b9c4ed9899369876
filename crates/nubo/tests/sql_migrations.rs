//! Migrations as part of the plan, on both engines: `nubo plan` shows the
//! pending ones, `nubo apply` runs them before a revision serves, a broken
//! one applies nothing, an applied one is never rewritten, and the nodes
//! of a cluster run each once.

mod common;

use common::cluster::{Join, NatsCluster, eventually};
use common::control::NodeProc;
use common::sql::{Engine, exec, kind, query, run, run_at, sql_app};
use nubo_testkit::postgres::Postgres;
use serde_json::{Value as J, json};

#[tokio::test(flavor = "multi_thread")]
async fn migrations_are_planned_applied_before_serving_and_never_rewritten() {
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let app = sql_app("mig", Engine::Sqlite, "");
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
        json!({ "db": "main", "ops": [
            query("SELECT count(*) FROM tags", json!([])),
        ]}),
    )
    .await;
    assert_eq!(a[0]["ok"]["rows"], json!([[1]]), "{a:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_postgres_migration_applies_nothing() {
    let pg = Postgres::start();
    let url = pg.url("postgres");
    let s = tempfile::tempdir().unwrap();
    let node = NodeProc::start(s.path(), &[]);
    let app = sql_app("pgmig", Engine::Postgres(&url), "");
    let out = node.apply(&app);
    assert!(
        out.contains("migration main/001_notes.sql: CREATE TABLE notes ("),
        "{out}"
    );
    app.write(
        "migrations/002_broken.sql",
        "CREATE TABLE fine (x INT);\n\n-- then\nINSERT INTO nowhere VALUES (1);\n",
    );
    let (code, out, err) = node.cli(
        &["apply", app.path().to_str().unwrap(), "--auto-approve"],
        &[],
    );
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("migration `002_broken.sql`, line 4"), "{err}");
    assert!(err.contains("\"nowhere\" does not exist"), "{err}");
    let a = run(
        &node,
        json!({ "db": "main", "ops": [
            query("SELECT to_regclass('fine') IS NULL", json!([])),
            query("SELECT count(*) FROM notes", json!([])),
        ]}),
    )
    .await;
    assert_eq!(a[0]["ok"]["rows"], json!([[1]]), "{a:?}");
    assert_eq!(a[1]["ok"]["rows"], json!([[0]]), "{a:?}");
    let current: J =
        serde_json::from_str(&node.api("GET", "/v1/apps/pgmig", "").await.text()).unwrap();
    assert_eq!(current["revision"], 1);

    // The app's tables are in a schema of its own, which removing the app
    // drops; another app on the same server database keeps its own.
    let a = run(
        &node,
        json!({ "db": "main", "ops": [query("SELECT current_schema()", json!([]))] }),
    )
    .await;
    assert_eq!(a[0]["ok"]["rows"], json!([["pgmig/main"]]), "{a:?}");
    std::fs::remove_file(app.path().join("migrations/002_broken.sql")).unwrap();
    let other = sql_app("other", Engine::Postgres(&url), "");
    // Both serve `/sql/...`: the other app on its own host.
    let other_toml = std::fs::read_to_string(other.path().join("nubo.toml")).unwrap();
    other.write(
        "nubo.toml",
        other_toml.replace(
            "name = \"other\"",
            "name = \"other\"\nhosts = [\"other.test\"]",
        ),
    );
    node.apply(&other);
    let (code, out, err) = node.cli(&["destroy", "pgmig", "--auto-approve"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 database"), "{out}");
    let r = common::request(
        "POST",
        &node.url("/sql/run"),
        &[("host", "other.test")],
        json!({ "db": "main", "ops": [
            query("SELECT nspname FROM pg_namespace WHERE nspname LIKE '%/main' ORDER BY 1", json!([])),
        ]})
        .to_string()
        .as_bytes(),
    )
    .await;
    let a: J = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(a[0]["ok"]["rows"], json!([["other/main"]]), "{a}");
}

/// Two nodes of a cluster on one PostgreSQL server: a migration applied
/// through either runs once, its data is seen from both, and a SQLite
/// database (a file of one node) is refused.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_of_a_cluster_run_each_migration_once() {
    let pg = Postgres::start();
    let url = pg.url("postgres");
    let nats = NatsCluster::start(1);
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = nats.node(dirs[0].path(), "node-a");
    let b = nats.node(dirs[1].path(), "node-b");

    let refused = sql_app("local", Engine::Sqlite, "");
    let (code, out, err) = a.cli(
        &["apply", refused.path().to_str().unwrap(), "--auto-approve"],
        &[],
    );
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("nubo.toml:5:1: database `main` is a SQLite file on one node, and the node this is applied to is part of a cluster"),
        "{err}"
    );
    assert!(err.contains("engine = \"postgres\""), "{err}");

    let app = sql_app("shared", Engine::Postgres(&url), "");
    // A migration that is not idempotent: run twice, it seeds twice.
    app.write(
        "migrations/002_seed.sql",
        "INSERT INTO notes (title) VALUES ('seeded');\n",
    );
    a.apply(&app);
    let count = |node: &NodeProc| {
        let url = node.url("/sql/run");
        async move {
            let a = run_at(
                &url,
                json!({ "db": "main", "ops": [
                    query("SELECT (SELECT count(*) FROM notes), (SELECT count(*) FROM _nubo_migrations)", json!([])),
                ]}),
            )
            .await;
            a[0]["ok"]["rows"][0].clone()
        }
    };
    eventually(20, "the app on node b", || async {
        (common::get(&b.url("/sql/notes")).await.status == 200).then_some(())
    })
    .await;
    assert_eq!(count(&b).await, json!([1, 2]));

    // The next migration, through the other node.
    app.write(
        "migrations/003_more.sql",
        "INSERT INTO notes (title) VALUES ('more');\n",
    );
    b.apply(&app);
    assert_eq!(count(&a).await, json!([2, 3]));
    assert_eq!(count(&b).await, json!([2, 3]));
    let w = run(
        &a,
        json!({ "db": "main", "ops": [exec("INSERT INTO notes (title) VALUES ('from a')", json!([]))] }),
    )
    .await;
    assert_eq!(kind(&w[0]), "ok", "{w:?}");
    assert_eq!(count(&b).await, json!([3, 3]));

    // The node refuses a SQLite database too, whoever sends it.
    let current: J =
        serde_json::from_str(&a.api("GET", "/v1/apps/shared", "").await.text()).unwrap();
    let mut sql = current["definition"]["sql"].clone();
    sql["local"] = json!({ "engine": "sqlite" });
    let edit = json!({ "steps": [{ "op": "set_section", "key": "sql", "value": sql }] });
    let r = a
        .api("POST", "/v1/apps/shared/changes", &edit.to_string())
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("`local` is a SQLite file of one node, and this node is part of a cluster; a cluster needs engine"),
        "{}",
        r.text()
    );
}
