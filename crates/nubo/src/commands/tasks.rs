//! `nubo tasks`: an app's durable tasks on a node.

use crate::CliResult;
use crate::client::NodeArgs;
use http::Method;
use std::process::ExitCode;

/// List, inspect and cancel an app's durable tasks.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  nubo tasks ls jobs\n  nubo tasks ls jobs --only failed -n 50\n  nubo tasks show jobs t3f2a9c04d1e8b7a6\n  nubo tasks cancel jobs t3f2a9c04d1e8b7a6"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Counts by state, then the most recent tasks, newest first.
    Ls {
        /// The app's name (`nubo ps` lists them).
        app: String,
        /// Only tasks in this state: queued, running, waiting, done,
        /// failed or cancelled.
        #[arg(long, value_name = "STATE")]
        only: Option<String>,
        /// How many tasks to list.
        #[arg(short, default_value_t = 20)]
        n: usize,
    },
    /// One task: its state, attempts, and result or error.
    Show {
        /// The app's name (`nubo ps` lists them).
        app: String,
        /// The task's id (`nubo tasks ls` shows them).
        id: String,
    },
    /// Cancel a task and every unfinished task it started.
    Cancel {
        /// The app's name (`nubo ps` lists them).
        app: String,
        /// The task's id (`nubo tasks ls` shows them).
        id: String,
    },
}

const STATES: [&str; 6] = [
    "queued",
    "running",
    "waiting",
    "done",
    "failed",
    "cancelled",
];

#[derive(serde::Deserialize)]
struct Task {
    id: String,
    component: String,
    function: String,
    state: String,
    attempts: u32,
    depth: u32,
    error: Option<serde_json::Value>,
    created_ms: i64,
    finished_ms: Option<i64>,
    result: Option<String>,
    #[serde(default)]
    cancelled: Option<usize>,
    /// Who started it: `{"id", "email", …}`.
    #[serde(default)]
    by: Option<serde_json::Value>,
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let client = args.node.connect(None)?;
    crate::async_runtime()?.block_on(async move {
        match args.command {
            Cmd::Ls { app, only, n } => {
                let counts: serde_json::Map<String, serde_json::Value> =
                    client.get(&format!("/v1/apps/{app}/tasks/counts")).await?;
                let summary: Vec<String> = STATES
                    .iter()
                    .filter_map(|k| {
                        let v = counts.get(*k)?.as_u64()?;
                        (v > 0).then(|| format!("{v} {k}"))
                    })
                    .collect();
                if summary.is_empty() {
                    println!("app `{app}` has no tasks");
                    return Ok(ExitCode::SUCCESS);
                }
                println!("{}", summary.join(", "));
                let filter = only.map(|s| format!("&state={s}")).unwrap_or_default();
                let tasks: Vec<Task> = client
                    .get(&format!("/v1/apps/{app}/tasks?limit={n}{filter}"))
                    .await?;
                for t in tasks {
                    println!("{}", line(&t));
                }
            }
            Cmd::Show { app, id } => {
                let t: Task = client.get(&format!("/v1/apps/{app}/tasks/{id}")).await?;
                show(&t);
            }
            Cmd::Cancel { app, id } => {
                let path = format!("/v1/apps/{app}/tasks/{id}/cancel");
                let t: Task = client.call(Method::POST, &path, None::<&()>).await?;
                match t.cancelled.unwrap_or(0) {
                    0 => println!("{id} had already finished: {}", t.state),
                    1 => println!("cancelled {id}"),
                    n => println!("cancelled {id} and {} task(s) it started", n - 1),
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn took(t: &Task) -> String {
    match t.finished_ms {
        Some(f) => format!("took {}", ms(f - t.created_ms)),
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            format!("for {}", ms(now - t.created_ms))
        }
    }
}

fn ms(v: i64) -> String {
    match v {
        v if v < 1000 => format!("{v} ms"),
        v if v < 120_000 => format!("{:.1} s", v as f64 / 1000.0),
        v => format!("{} min", v / 60_000),
    }
}

fn error(t: &Task) -> Option<String> {
    let e = t.error.as_ref()?;
    let kind = e["kind"].as_str().unwrap_or("error");
    Some(match e["message"].as_str() {
        Some(m) => format!("{kind}: {m}"),
        None => kind.to_string(),
    })
}

fn line(t: &Task) -> String {
    let mut s = format!(
        "{}  {:<9} {}/{}  attempt {}  {}",
        t.id,
        t.state,
        t.component,
        t.function,
        t.attempts,
        took(t)
    );
    if let Some(e) = error(t) {
        s.push_str(&format!("  {e}"));
    }
    s
}

/// `ID (EMAIL)` of who started some work.
pub(crate) fn who(by: &serde_json::Value) -> String {
    let id = by["id"].as_str().unwrap_or("?");
    match by["email"].as_str() {
        Some(e) => format!("{id} ({e})"),
        None => id.to_string(),
    }
}

fn show(t: &Task) {
    println!("id        {}", t.id);
    println!("state     {}", t.state);
    println!("function  {} of component {}", t.function, t.component);
    println!("attempts  {}", t.attempts);
    println!("depth     {}", t.depth);
    if let Some(by) = &t.by {
        println!("by        {}", who(by));
    }
    println!("time      {}", took(t));
    if let Some(e) = error(t) {
        println!("error     {e}");
    }
    if let Some(r) = &t.result {
        const SHOWN: usize = 2000;
        let cut = r
            .char_indices()
            .nth(SHOWN)
            .map_or(r.as_str(), |(i, _)| &r[..i]);
        let more = if cut.len() < r.len() {
            format!(" … ({} bytes in all)", r.len())
        } else {
            String::new()
        };
        println!("result    {cut}{more}");
    }
}
