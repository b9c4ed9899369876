//! `nubo plan`: what `nubo apply` would change on a node, without changing
//! it. Exit status 0: nothing to do, 2: changes, 1: error (like
//! `terraform plan -detailed-exitcode`).

use crate::client::NodeArgs;
use crate::{CliResult, app, deploy, plan_view};
use nubo_manifest::Stage;
use std::path::PathBuf;
use std::process::ExitCode;

/// Show what applying an app's nubo.toml to a node would change.
#[derive(clap::Args)]
#[command(
    after_help = "Exit status: 0 no changes, 2 changes, 1 error.\n\nExamples:\n  nubo plan examples/hello --node http://127.0.0.1:3001\n  nubo plan && echo up to date"
)]
pub struct Args {
    /// App folder (holding nubo.toml) or the path of the file. Components
    /// must be built (`nubo build`).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let client = args.node.connect(Some(&args.dir))?;
    let runtime = crate::async_runtime()?;
    let target = runtime.block_on(deploy::target(&client));
    let spec = app::load_spec_for(&args.dir, Stage::Built, target).map_err(|e| {
        e.hint(
            "plan compares built components: run `nubo build` first (`nubo apply` builds for you)",
        )
    })?;
    let desired = deploy::desired(&spec)?;
    runtime.block_on(async move {
        let plan = deploy::make_plan(&client, &desired.def).await?;
        let (changes, _) = plan_view::print(&plan, &client.base, &desired.sources);
        deploy::warn_of_caps(&client, &desired.def).await;
        if !changes {
            return Ok(ExitCode::SUCCESS);
        }
        Ok(ExitCode::from(2))
    })
}
