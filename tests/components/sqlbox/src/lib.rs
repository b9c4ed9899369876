//! `POST /sql/run` with `{"db": "main", "tx": null | "commit" | "rollback" |
//! "drop", "ops": [{"query": false, "sql": "…", "params": [1, "a", null,
//! 1.5, {"blob": [1, 2]}]}]}` runs each statement on the database, inside
//! one transaction if `tx` is set (ended as it says), and answers a JSON
//! list with, per statement, `{"ok": …}` (rows, or what changed) or
//! `{"err": {"kind": …, …}}` with the error's variant. `GET /sql/notes`
//! reads the `notes` table into structs, through `Db::query`.

use nubo_sdk::sql::{Db, Error, Executed, Rows, Tx, Value};
use nubo_sdk::{Json, Request, Router};
use serde::Deserialize;
use serde_json::{Value as J, json};

#[derive(Deserialize)]
struct Run {
    db: String,
    #[serde(default)]
    tx: Option<String>,
    ops: Vec<Op>,
}

#[derive(Deserialize)]
struct Op {
    #[serde(default)]
    query: bool,
    sql: String,
    #[serde(default)]
    params: Vec<J>,
}

fn param(v: &J) -> Value {
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Integer(*b as i64),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::Text(s.clone()),
        J::Object(o) => Value::Blob(
            o.get("blob")
                .and_then(J::as_array)
                .map(|a| a.iter().filter_map(J::as_u64).map(|b| b as u8).collect())
                .unwrap_or_default(),
        ),
        J::Array(_) => Value::Null,
    }
}

fn out(v: Value) -> J {
    match v {
        Value::Null => J::Null,
        Value::Integer(i) => json!(i),
        Value::Real(f) => json!({ "real": f }),
        Value::Text(t) => json!(t),
        Value::Blob(b) => json!({ "blob": b }),
    }
}

fn rows(r: Rows) -> J {
    json!({
        "columns": r.columns,
        "rows": r.rows.into_iter().map(|row| row.values.into_iter().map(out).collect::<Vec<_>>()).collect::<Vec<_>>(),
    })
}

fn executed(e: Executed) -> J {
    json!({ "changes": e.changes, "last_insert_id": e.last_insert_id })
}

fn err(e: Error) -> J {
    let kind = match &e {
        Error::NoSuchDatabase(_) => "no-such-database",
        Error::AccessDenied(_) => "access-denied",
        Error::Constraint { .. } => "constraint",
        Error::Syntax { .. } => "syntax",
        Error::Busy(_) => "busy",
        Error::Timeout(_) => "timeout",
        Error::TooLarge(_) => "too-large",
        Error::Ended => "ended",
        Error::Other(_) => "other",
    };
    let mut v = json!({ "kind": kind, "message": e.to_string() });
    match e {
        Error::Constraint { name, .. } => v["name"] = json!(name),
        Error::Syntax { offset, .. } => v["offset"] = json!(offset),
        _ => {}
    }
    json!({ "err": v })
}

fn result(r: Result<J, Error>) -> J {
    match r {
        Ok(v) => json!({ "ok": v }),
        Err(e) => err(e),
    }
}

fn one(op: &Op, db: Option<&Db>, tx: Option<&Tx>) -> J {
    let params: Vec<Value> = op.params.iter().map(param).collect();
    result(match (tx, db, op.query) {
        (Some(tx), _, true) => tx.rows(&op.sql, params).map(rows),
        (Some(tx), _, false) => tx.execute(&op.sql, params).map(executed),
        (None, Some(db), true) => db.rows(&op.sql, params).map(rows),
        (None, Some(db), false) => db.execute(&op.sql, params).map(executed),
        (None, None, _) => Err(Error::Other("no database".into())),
    })
}

fn run(req: Request) -> Result<Json<J>, nubo_sdk::Error> {
    let Json(run) = Json::<Run>::from_request(&req)?;
    let db = match Db::open(&run.db) {
        Ok(db) => db,
        Err(e) => return Ok(Json(json!([err(e)]))),
    };
    let Some(end) = run.tx.as_deref() else {
        return Ok(Json(J::Array(
            run.ops.iter().map(|op| one(op, Some(&db), None)).collect(),
        )));
    };
    let tx = match db.begin() {
        Ok(tx) => tx,
        Err(e) => return Ok(Json(json!([err(e)]))),
    };
    let mut answers: Vec<J> = run.ops.iter().map(|op| one(op, None, Some(&tx))).collect();
    answers.push(match end {
        "commit" => result(tx.commit().map(|()| json!("committed"))),
        "rollback" => result(tx.rollback().map(|()| json!("rolled back"))),
        _ => {
            drop(tx);
            json!({ "ok": "dropped" })
        }
    });
    Ok(Json(J::Array(answers)))
}

#[derive(Deserialize, serde::Serialize)]
struct Note {
    id: i64,
    title: String,
    body: Option<String>,
}

fn failed(e: Error) -> nubo_sdk::Error {
    nubo_sdk::Error::new(nubo_sdk::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn notes(_: Request) -> Result<Json<Vec<Note>>, nubo_sdk::Error> {
    let db = Db::open("main").map_err(failed)?;
    db.query("SELECT id, title, body FROM notes ORDER BY id", ())
        .map(Json)
        .map_err(failed)
}

fn handle(req: Request) -> nubo_sdk::Response {
    Router::new()
        .post("/sql/run", run)
        .get("/sql/notes", notes)
        .handle(req)
}

nubo_sdk::http_handler!(handle);
