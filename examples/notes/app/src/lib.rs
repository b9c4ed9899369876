//! Private notes: each signed-in person sees and changes only their own.
//!
//! GET    /api/notes       → [{"id", "text", "created_ms"}], newest first
//! POST   /api/notes       {"text"} → 201 {"id"}
//! DELETE /api/notes/{id}  → 204 (404 for someone else's note)
//! GET    /api/me          → {"id", "email"}
//!
//! The route is `auth = "required"`, so every request here carries the
//! identity the gateway proved; `identity::require` reads it.

use nubo_sdk::identity::{self, User};
use nubo_sdk::sql::Db;
use nubo_sdk::{Error, Json, Request, Response, Router, StatusCode, param};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Note {
    id: i64,
    text: String,
    created_ms: i64,
}

#[derive(Deserialize)]
struct NewNote {
    text: String,
}

fn db() -> Result<Db, Error> {
    Ok(Db::open("main")?)
}

fn me(req: Request) -> Result<Json<serde_json::Value>, Error> {
    let User { id, email, .. } = identity::require(&req)?;
    Ok(Json(serde_json::json!({ "id": id, "email": email })))
}

fn list(req: Request) -> Result<Json<Vec<Note>>, Error> {
    let user = identity::require(&req)?;
    let notes = db()?.query(
        "SELECT id, text, created_ms FROM notes WHERE user_id = ? \
         ORDER BY created_ms DESC, id DESC LIMIT 200",
        (user.id,),
    )?;
    Ok(Json(notes))
}

fn create(req: Request) -> Result<(StatusCode, Json<serde_json::Value>), Error> {
    let user = identity::require(&req)?;
    let Json(new) = Json::<NewNote>::from_request(&req)?;
    let text = new.text.trim();
    if text.is_empty() || text.len() > 10_000 {
        return Err(Error::bad_request("a note is 1 to 10,000 bytes"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let id = db()?
        .execute(
            "INSERT INTO notes (user_id, text, created_ms) VALUES (?, ?, ?)",
            (user.id, text, now),
        )?
        .last_insert_id
        .unwrap_or_default();
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))))
}

fn delete(req: Request) -> Result<Response, Error> {
    let user = identity::require(&req)?;
    let id: i64 = param(&req, "id")
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| Error::bad_request("the id is a number"))?;
    // Someone else's note is as absent as one that never was.
    let done = db()?.execute(
        "DELETE FROM notes WHERE id = ? AND user_id = ?",
        (id, user.id),
    )?;
    if done.changes == 0 {
        return Err(Error::not_found(format!("no note {id}")));
    }
    Ok(nubo_sdk::response(204, "text/plain", Vec::new()))
}

fn handle(req: Request) -> Response {
    Router::new()
        .get("/api/me", me)
        .get("/api/notes", list)
        .post("/api/notes", create)
        .delete("/api/notes/:id", delete)
        .handle(req)
}

nubo_sdk::http_handler!(handle);
