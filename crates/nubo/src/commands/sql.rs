//! `nubo sql`: run statements on an app's database on a node.

use crate::client::{Client, NodeArgs, api_error, enc};
use crate::{CliError, CliResult};
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value as J, json};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// Run SQL on an app's database, with the limits its components have.
#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  nubo sql notes main \"SELECT id, title FROM notes LIMIT 10\"\n  nubo sql notes main \"DELETE FROM notes WHERE id = ?\" --param 3\n  nubo sql notes main --json \"SELECT count(*) FROM notes\"\n  nubo sql notes main            (a prompt; end each statement with ;)\n  nubo sql notes main < fix.sql  (each statement of the file, in order)\n  nubo sql dump notes main > notes.sql\n  nubo sql restore notes main notes.sql --replace"
)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    /// The app's name (`nubo ps` lists them).
    #[arg(required = true)]
    pub app: Option<String>,
    /// A database the app declares as `[sql.NAME]`.
    #[arg(required = true)]
    pub db: Option<String>,
    /// The statement; without it, statements are read from stdin.
    pub statement: Option<String>,
    /// A positional parameter (`?`), in order: a number is an integer or
    /// a real, `null` is null, anything else is text.
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Write a SQLite database as SQL text (a snapshot; the app keeps
    /// writing meanwhile). For PostgreSQL, use `pg_dump`.
    #[command(after_help = "Example:\n  nubo sql dump notes main > notes.sql")]
    Dump {
        app: String,
        db: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Run a dump's SQL on a SQLite database, in one transaction: all of
    /// it or nothing.
    #[command(after_help = "Example:\n  nubo sql restore notes main notes.sql --replace")]
    Restore {
        app: String,
        db: String,
        /// The dump; stdin without it.
        file: Option<std::path::PathBuf>,
        /// Drop the database's tables first (a database with tables is
        /// refused without it).
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
}

fn database_name(db: &str) -> CliResult<()> {
    if nubo_manifest::is_store_name(db) {
        return Ok(());
    }
    Err(CliError::new(format!("invalid database name `{db}`"))
        .hint("database names are as in [sql.NAME]: lower-case letters, digits, `-` and `_`"))
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    match args.action {
        Some(Action::Dump { app, db, node }) => return dump(&app, &db, &node),
        Some(Action::Restore {
            app,
            db,
            file,
            replace,
            node,
        }) => return restore(&app, &db, file.as_deref(), replace, &node),
        None => {}
    }
    let (Some(app), Some(db)) = (args.app.as_deref(), args.db.as_deref()) else {
        return Err(CliError::new(
            "name the app and the database: nubo sql APP DB",
        ));
    };
    database_name(db)?;
    let client = args.node.connect(None)?;
    let path = format!("/v1/apps/{}/sql/{}", enc(app), enc(db));
    let params: Vec<J> = args.params.iter().map(|p| param(p)).collect();
    crate::async_runtime()?.block_on(async move {
        if let Some(statement) = &args.statement {
            let answer = call(&client, &path, statement, &params).await?;
            print(&answer, args.json);
            return Ok(ExitCode::SUCCESS);
        }
        let stdin = std::io::stdin();
        let prompt = stdin.is_terminal();
        let mut failed = false;
        let mut pending = String::new();
        let mut lines = stdin.lock().lines();
        loop {
            if prompt {
                print!("{}> ", if pending.is_empty() { db } else { "..." });
                let _ = std::io::stdout().flush();
            }
            let Some(line) = lines.next() else { break };
            let line = line.map_err(|e| CliError::new(format!("reading stdin: {e}")))?;
            pending.push_str(&line);
            pending.push('\n');
            if !line.trim_end().ends_with(';') {
                continue;
            }
            let statement = std::mem::take(&mut pending);
            match call(&client, &path, &statement, &[]).await {
                Ok(answer) => print(&answer, args.json),
                Err(e) if prompt => eprintln!("{}", e.render()),
                Err(e) => {
                    eprintln!("{}", e.render());
                    failed = true;
                    break;
                }
            }
        }
        if !pending.trim().is_empty() {
            let answer = call(&client, &path, &pending, &[]).await?;
            print(&answer, args.json);
        }
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// `nubo sql dump`: the SQL text to stdout, a summary to stderr.
fn dump(app: &str, db: &str, node: &NodeArgs) -> CliResult<ExitCode> {
    database_name(db)?;
    let client = node.connect(None)?;
    let path = format!("/v1/apps/{}/sql/{}/dump", enc(app), enc(db));
    crate::async_runtime()?.block_on(async move {
        let resp = client
            .send(Method::GET, &path, "application/json", Bytes::new())
            .await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CliError::new(format!("reading the dump: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        std::io::stdout()
            .write_all(&body)
            .map_err(|e| CliError::new(format!("writing the dump: {e}")))?;
        eprintln!(
            "dumped database `{db}` of app `{app}` ({})",
            size(body.len())
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// `nubo sql restore`: a dump from a file or stdin, in one transaction.
fn restore(
    app: &str,
    db: &str,
    file: Option<&std::path::Path>,
    replace: bool,
    node: &NodeArgs,
) -> CliResult<ExitCode> {
    database_name(db)?;
    let script = match file {
        Some(f) => std::fs::read(f)
            .map_err(|e| CliError::new(format!("cannot read {}: {e}", f.display())))?,
        None => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .map_err(|e| CliError::new(format!("reading stdin: {e}")))?;
            buf
        }
    };
    let client = node.connect(None)?;
    let path = format!(
        "/v1/apps/{}/sql/{}/restore?replace={replace}",
        enc(app),
        enc(db)
    );
    let bytes = script.len();
    eprintln!(
        "restoring {} into database `{db}` of app `{app}`…",
        size(bytes)
    );
    crate::async_runtime()?.block_on(async move {
        let resp = client
            .send(
                Method::POST,
                &path,
                "text/plain; charset=utf-8",
                Bytes::from(script),
            )
            .await?;
        let _: J = client.json(resp).await?;
        eprintln!("restored database `{db}` of app `{app}`");
        Ok(ExitCode::SUCCESS)
    })
}

fn size(bytes: usize) -> String {
    match bytes {
        b if b < 1 << 10 => format!("{b} B"),
        b if b < 1 << 20 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
    }
}

fn param(p: &str) -> J {
    if p == "null" {
        return J::Null;
    }
    if let Ok(i) = p.parse::<i64>() {
        return json!(i);
    }
    if let Ok(f) = p.parse::<f64>()
        && f.is_finite()
    {
        return json!(f);
    }
    json!(p)
}

async fn call(client: &Client, path: &str, statement: &str, params: &[J]) -> CliResult<J> {
    let body = json!({ "statement": statement, "params": params });
    client.call(Method::POST, path, Some(&body)).await
}

/// The rows as a table, or what the statement changed.
fn print(answer: &J, as_json: bool) {
    if as_json {
        println!("{answer}");
        return;
    }
    let columns: Vec<String> = answer["columns"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| c.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = answer["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r.as_array()
                        .map(|v| v.iter().map(cell).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    if columns.is_empty() {
        let n = answer["changes"].as_u64().unwrap_or(0);
        println!("{n} row{} changed", if n == 1 { "" } else { "s" });
        return;
    }
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for r in &rows {
        for (w, v) in widths.iter_mut().zip(r) {
            *w = (*w).max(v.chars().count()).min(60);
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{:w$}", truncate(c, *w), w = *w))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!("{}", line(&columns));
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    );
    for r in &rows {
        println!("{}", line(r));
    }
    println!(
        "({} row{})",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
}

fn cell(v: &J) -> String {
    match v {
        J::Null => "NULL".to_string(),
        J::String(s) => s.clone(),
        J::Object(o) => match o.get("base64").and_then(J::as_str) {
            Some(b) => format!("<blob, base64 {b}>"),
            None => v.to_string(),
        },
        other => other.to_string(),
    }
}

fn truncate(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}
