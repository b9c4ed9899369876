//! `nubo rollback APP`: back to the revision before the current one.

use crate::CliResult;
use crate::client::NodeArgs;
use http::Method;
use std::process::ExitCode;

/// Return an app to its previous revision (as a new revision).
#[derive(clap::Args)]
#[command(after_help = "Example:\n  nubo rollback hello --node http://127.0.0.1:3001")]
pub struct Args {
    /// App name, as in its nubo.toml.
    pub app: String,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(serde::Deserialize)]
struct Changed {
    revision: u64,
    changed: bool,
    steps: Vec<nubo_plan::Step>,
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let client = args.node.connect(None)?;
    crate::async_runtime()?.block_on(async move {
        let done: Changed = client
            .call(Method::POST, &format!("/v1/apps/{}/rollback", args.app), None::<&()>)
            .await?;
        if done.changed {
            println!(
                "app `{}` rolled back: now at revision {} ({} step{})",
                args.app,
                done.revision,
                done.steps.len(),
                if done.steps.len() == 1 { "" } else { "s" }
            );
        } else {
            println!(
                "app `{}`: the previous revision is the same as the current one; nothing changed (revision {})",
                args.app, done.revision
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
