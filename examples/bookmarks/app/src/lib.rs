//! Bookmarks with tags and a search box, on one SQL database.
//!
//! GET    /api/bookmarks?q=rust&tag=wasm  → the newest 100, or the best
//!                                          matches for `q`, with tag `tag`
//! POST   /api/bookmarks  {"url", "title", "notes", "tags": [..]} → 201 {"id"}
//! DELETE /api/bookmarks/{id}             → 204
//! GET    /api/tags                       → [{"name", "count"}], most used first
//!
//! The schema is in `../migrations`; search reads the FTS5 index that
//! `002_search.sql` keeps in step with the bookmarks.

use nubo_sdk::sql::{Db, Error as SqlError};
use nubo_sdk::{Error, Json, Request, Response, Router, StatusCode, param, query};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct NewBookmark {
    url: String,
    title: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// A row of the list query: tags come joined as `a,b`.
#[derive(Deserialize)]
struct Row {
    id: i64,
    url: String,
    title: String,
    notes: String,
    created_ms: i64,
    tags: String,
}

#[derive(Serialize)]
struct Bookmark {
    id: i64,
    url: String,
    title: String,
    notes: String,
    created_ms: i64,
    tags: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Tag {
    name: String,
    count: i64,
}

fn db() -> Result<Db, Error> {
    Ok(Db::open("main")?)
}

/// Each tag of a bookmark, joined into one column.
const TAGS: &str = "coalesce((SELECT group_concat(t.name, ',') FROM bookmark_tags bt \
     JOIN tags t ON t.id = bt.tag_id WHERE bt.bookmark_id = b.id), '') AS tags";

/// Only the bookmarks with tag `?2` (all when it is empty).
const WITH_TAG: &str = "(?2 = '' OR b.id IN (SELECT bt.bookmark_id FROM bookmark_tags bt \
     JOIN tags t ON t.id = bt.tag_id WHERE t.name = ?2))";

fn list(req: Request) -> Result<Json<Vec<Bookmark>>, Error> {
    let words = search_words(&query(&req, "q").unwrap_or_default());
    let tag = normalize_tag(&query(&req, "tag").unwrap_or_default());
    let rows: Vec<Row> = if words.is_empty() {
        let sql = format!(
            "SELECT b.id, b.url, b.title, b.notes, b.created_ms, {TAGS} FROM bookmarks b \
             WHERE ?1 = '' AND {WITH_TAG} ORDER BY b.created_ms DESC, b.id DESC LIMIT 100"
        );
        db()?.query(&sql, ("", tag))?
    } else {
        let sql = format!(
            "SELECT b.id, b.url, b.title, b.notes, b.created_ms, {TAGS} \
             FROM bookmarks_search s JOIN bookmarks b ON b.id = s.rowid \
             WHERE bookmarks_search MATCH ?1 AND {WITH_TAG} ORDER BY s.rank LIMIT 100"
        );
        db()?.query(&sql, (words, tag))?
    };
    Ok(Json(rows.into_iter().map(bookmark).collect()))
}

fn bookmark(r: Row) -> Bookmark {
    Bookmark {
        id: r.id,
        url: r.url,
        title: r.title,
        notes: r.notes,
        created_ms: r.created_ms,
        tags: r
            .tags
            .split(',')
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
    }
}

/// What a person types, as an FTS5 query: each word a quoted prefix, so
/// `rust was` finds "Rust and WebAssembly" and punctuation is never syntax.
fn search_words(q: &str) -> String {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{w}\"*"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn normalize_tag(t: &str) -> String {
    t.trim().trim_start_matches('#').to_lowercase()
}

fn create(req: Request) -> Result<(StatusCode, Json<serde_json::Value>), Error> {
    let Json(new) = Json::<NewBookmark>::from_request(&req)?;
    let web = new.url.starts_with("https://") || new.url.starts_with("http://");
    if !web || new.url.len() > 2000 {
        return Err(Error::bad_request(
            "the url must start with http:// or https://",
        ));
    }
    let title = new.title.trim();
    if title.is_empty() || title.len() > 300 {
        return Err(Error::bad_request("a title is 1 to 300 characters"));
    }
    let mut tags: Vec<String> = new.tags.iter().map(|t| normalize_tag(t)).collect();
    tags.retain(|t| !t.is_empty() && t.len() <= 40 && !t.contains(','));
    tags.sort();
    tags.dedup();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    // The bookmark and its tags, all or nothing.
    let made = db()?.transaction(|tx| {
        let id = tx
            .execute(
                "INSERT INTO bookmarks (url, title, notes, created_ms) VALUES (?, ?, ?, ?)",
                (&new.url, title, new.notes.trim(), now),
            )?
            .last_insert_id
            .unwrap_or_default();
        for tag in &tags {
            tx.execute("INSERT OR IGNORE INTO tags (name) VALUES (?)", (tag,))?;
            tx.execute(
                "INSERT INTO bookmark_tags (bookmark_id, tag_id) SELECT ?, id FROM tags WHERE name = ?",
                (id, tag),
            )?;
        }
        Ok(id)
    });
    match made {
        Ok(id) => Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id })))),
        Err(SqlError::Constraint { .. }) => Err(Error::new(
            StatusCode::CONFLICT,
            format!("{} is bookmarked already", new.url),
        )),
        Err(e) => Err(e.into()),
    }
}

fn delete(req: Request) -> Result<Response, Error> {
    let id: i64 = param(&req, "id")
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| Error::bad_request("the id is a number"))?;
    let done = db()?.execute("DELETE FROM bookmarks WHERE id = ?", (id,))?;
    if done.changes == 0 {
        return Err(Error::not_found(format!("no bookmark {id}")));
    }
    Ok(nubo_sdk::response(204, "text/plain", Vec::new()))
}

fn tags(_: Request) -> Result<Json<Vec<Tag>>, Error> {
    let tags = db()?.query(
        "SELECT t.name AS name, count(*) AS count FROM tags t \
         JOIN bookmark_tags bt ON bt.tag_id = t.id GROUP BY t.id ORDER BY count DESC, name",
        (),
    )?;
    Ok(Json(tags))
}

fn handle(req: Request) -> Response {
    Router::new()
        .get("/api/bookmarks", list)
        .post("/api/bookmarks", create)
        .delete("/api/bookmarks/:id", delete)
        .get("/api/tags", tags)
        .handle(req)
}

nubo_sdk::http_handler!(handle);
