//! `nubo queue`: an app's durable queues on a node.

use crate::client::NodeArgs;
use crate::{CliError, CliResult};
use http::Method;
use std::process::ExitCode;

/// Inspect and clear an app's queues.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  nubo queue ls shop\n  nubo queue peek shop emails -n 5\n  nubo queue dead shop emails\n  nubo queue purge shop emails --dead"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Every queue of the app with its consumer and counts.
    Ls {
        /// The app's name (`nubo ps` lists them).
        app: String,
    },
    /// One queue's counts: ready, in flight, dead.
    Stats {
        /// The app's name (`nubo ps` lists them).
        app: String,
        /// A queue the app declares as `[queue.NAME]`.
        queue: String,
    },
    /// The oldest waiting messages, without taking them.
    Peek {
        /// The app's name (`nubo ps` lists them).
        app: String,
        /// A queue the app declares as `[queue.NAME]`.
        queue: String,
        /// How many messages to show.
        #[arg(short, default_value_t = 10)]
        n: usize,
    },
    /// Messages that failed `max_attempts` times.
    Dead {
        /// The app's name (`nubo ps` lists them).
        app: String,
        /// A queue the app declares as `[queue.NAME]`.
        queue: String,
        /// How many messages to show.
        #[arg(short, default_value_t = 10)]
        n: usize,
    },
    /// Delete the waiting messages (or, with --dead, the dead ones).
    Purge {
        /// The app's name (`nubo ps` lists them).
        app: String,
        /// A queue the app declares as `[queue.NAME]`.
        queue: String,
        /// Delete the dead-letter messages instead of the waiting ones.
        #[arg(long)]
        dead: bool,
    },
}

#[derive(serde::Deserialize)]
struct Queue {
    name: String,
    consumer: String,
    path: String,
    concurrency: u32,
    max_attempts: u32,
    #[serde(default)]
    batch_size: u32,
    ready: u64,
    in_flight: u64,
    dead: u64,
}

#[derive(serde::Deserialize)]
struct Shown {
    id: u64,
    attempts: u32,
    size: usize,
    last_error: Option<String>,
    body: String,
    #[serde(default)]
    by: Option<serde_json::Value>,
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let client = args.node.connect(None)?;
    crate::async_runtime()?.block_on(async move {
        let queues = |app: String| {
            let client = &client;
            async move {
                client
                    .get::<Vec<Queue>>(&format!("/v1/apps/{app}/queues"))
                    .await
            }
        };
        let dead_listing = matches!(args.command, Cmd::Dead { .. });
        match args.command {
            Cmd::Ls { app } => {
                let qs = queues(app.clone()).await?;
                if qs.is_empty() {
                    println!("app `{app}` has no queues ([queue.NAME] in nubo.toml)");
                }
                for q in qs {
                    println!(
                        "{}  → POST {} on {} ({})  ready {}  in flight {}  dead {}",
                        q.name,
                        q.path,
                        q.consumer,
                        settings(q.concurrency, q.max_attempts, q.batch_size),
                        q.ready,
                        q.in_flight,
                        q.dead
                    );
                }
            }
            Cmd::Stats { app, queue } => {
                let q = queues(app.clone())
                    .await?
                    .into_iter()
                    .find(|q| q.name == queue)
                    .ok_or_else(|| CliError::new(format!("app `{app}` has no queue `{queue}`")))?;
                println!(
                    "ready {}\nin flight {}\ndead {}",
                    q.ready, q.in_flight, q.dead
                );
            }
            Cmd::Peek { app, queue, n } | Cmd::Dead { app, queue, n } => {
                let dead = dead_listing;
                let path = format!("/v1/apps/{app}/queues/{queue}/messages?n={n}&dead={dead}");
                let ms: Vec<Shown> = client.get(&path).await?;
                if ms.is_empty() {
                    println!("no {} messages", if dead { "dead" } else { "waiting" });
                }
                for m in ms {
                    let err = m
                        .last_error
                        .map(|e| format!("  last error: {e}"))
                        .unwrap_or_default();
                    let by =
                        m.by.map(|b| format!("  by {}", crate::commands::tasks::who(&b)))
                            .unwrap_or_default();
                    println!(
                        "#{}  attempts {}  {} B  body \"{}\"{by}{err}",
                        m.id,
                        m.attempts,
                        m.size,
                        m.body.escape_debug()
                    );
                }
            }
            Cmd::Purge { app, queue, dead } => {
                #[derive(serde::Deserialize)]
                struct Purged {
                    purged: u64,
                }
                let path = format!("/v1/apps/{app}/queues/{queue}/messages?dead={dead}");
                let p: Purged = client.call(Method::DELETE, &path, None::<&()>).await?;
                println!("purged {} message(s)", p.purged);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// How a queue delivers, as `nubo plan` and `nubo queue ls` show it.
pub fn settings(concurrency: u32, max_attempts: u32, batch_size: u32) -> String {
    let mut s = format!("concurrency {concurrency}, max_attempts {max_attempts}");
    if batch_size > 1 {
        s.push_str(&format!(", batch_size {batch_size}"));
    }
    s
}
