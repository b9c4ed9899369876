//! `nubo cron ls`: an app's schedules, their next run times and last run.

use crate::CliResult;
use crate::client::NodeArgs;
use std::process::ExitCode;

/// Show an app's scheduled runs.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  nubo cron ls shop")]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// List schedules with their next three run times (UTC) and last run.
    Ls {
        /// The app's name (`nubo ps` lists them).
        app: String,
    },
}

#[derive(serde::Deserialize)]
struct Entry {
    schedule: String,
    timezone: String,
    component: String,
    path: String,
    next: Vec<String>,
    last_run: Option<Last>,
}

#[derive(serde::Deserialize)]
struct Last {
    scheduled_at: String,
    status: String,
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let Cmd::Ls { app } = &args.command;
    let client = args.node.connect(None)?;
    crate::async_runtime()?.block_on(async move {
        let entries: Vec<Entry> = client.get(&format!("/v1/apps/{app}/cron")).await?;
        if entries.is_empty() {
            println!("app `{app}` has no schedules ([[cron]] in nubo.toml)");
        }
        for e in entries {
            println!(
                "\"{}\" ({})  → POST {} on {}",
                e.schedule, e.timezone, e.path, e.component
            );
            println!("  next: {}", e.next.join(", "));
            match e.last_run {
                Some(l) => println!("  last: {} {}", l.scheduled_at, l.status),
                None => println!("  last: never"),
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
