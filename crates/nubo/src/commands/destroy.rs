//! `nubo destroy APP`: remove an app from a node and, unless told to keep
//! it, everything the app stored, so that a new app of the same name
//! starts empty.

use crate::client::NodeArgs;
use crate::style::red;
use crate::{CliError, CliResult};
use http::Method;
use std::process::ExitCode;

/// Remove an app and delete its data (keys, blobs, messages, tasks).
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  nubo destroy hello                  asks, then removes `hello` and deletes its data\n  nubo destroy hello --keep-data      removes it; a new `hello` will see the old data\n  nubo destroy hello --auto-approve   without asking (scripts, CI)"
)]
pub struct Args {
    /// App name, as in its nubo.toml.
    pub app: String,
    /// Keep the app's keys, blobs, queued and dead messages and tasks.
    #[arg(long)]
    pub keep_data: bool,
    /// Do it without asking (required when not on a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(serde::Deserialize)]
struct Removed {
    revision: u64,
    #[serde(default)]
    purged: Option<Purged>,
}

#[derive(serde::Deserialize)]
struct Purged {
    keys: u64,
    blobs: u64,
    messages: u64,
    tasks: u64,
    #[serde(default)]
    databases: u64,
    #[serde(default)]
    failed: Vec<String>,
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let client = args.node.connect(None)?;
    crate::async_runtime()?.block_on(async move {
        // Show what will happen before asking, as `plan` does.
        let _: serde_json::Value = client
            .get(&format!("/v1/apps/{}", args.app))
            .await
            .map_err(|e| e.hint("`nubo ps` lists the apps on a node"))?;
        println!("  {} app {}", red("-"), args.app);
        if args.keep_data {
            println!("      its data is kept: a new app of this name will see it");
        } else {
            println!(
                "      {} its data: every key, blob, queued and dead message, task, cron run and SQL database",
                red("deletes")
            );
        }
        if !args.auto_approve {
            super::confirm(
                &format!("Remove `{}`? Type the app's name to go on:", args.app),
                &args.app,
                "destroy",
            )?;
        }
        let path = if args.keep_data {
            format!("/v1/apps/{}?keep_data=true", args.app)
        } else {
            format!("/v1/apps/{}", args.app)
        };
        let done: Removed = client.call(Method::DELETE, &path, None::<&()>).await?;
        match done.purged {
            Some(p) => {
                println!(
                    "app `{}` removed (revision {}); deleted {} key{}, {} blob{}, {} message{}, {} task record{}, {} database{}",
                    args.app,
                    done.revision,
                    p.keys,
                    plural(p.keys),
                    p.blobs,
                    plural(p.blobs),
                    p.messages,
                    plural(p.messages),
                    p.tasks,
                    plural(p.tasks),
                    p.databases,
                    plural(p.databases)
                );
                if !p.failed.is_empty() {
                    return Err(CliError::new(format!(
                        "could not delete the app's {}; see the node's log",
                        // The answer's keys (`cron_runs`), as words.
                        p.failed.join(", ").replace('_', " ")
                    )));
                }
            }
            None => println!(
                "app `{}` removed (revision {}); its data is kept",
                args.app, done.revision
            ),
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
