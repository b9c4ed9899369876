//! `nubo apply`: build, plan against the node, confirm, and perform the
//! plan as one revision.

use crate::client::NodeArgs;
use crate::{CliResult, app, deploy, plan_view};
use nubo_manifest::Stage;
use std::path::PathBuf;
use std::process::ExitCode;

/// Build an app, show the plan, and apply it to a node.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  nubo apply examples/hello --node http://127.0.0.1:3001\n  nubo apply . --auto-approve        in scripts and CI"
)]
pub struct Args {
    /// App folder (holding nubo.toml) or the path of the file.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Apply without asking (required when not on a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// Use the components as built, without running the build commands.
    #[arg(long)]
    pub no_build: bool,
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    if !args.no_build {
        let spec = app::load_spec(&args.dir, Stage::BeforeBuild)?;
        crate::commands::build::build_all(&spec)?;
    }
    let client = args.node.connect(Some(&args.dir))?;
    let runtime = crate::async_runtime()?;
    let target = runtime.block_on(deploy::target(&client));
    let spec = app::load_spec_for(&args.dir, Stage::Built, target)?;
    let desired = deploy::desired(&spec)?;
    runtime.block_on(async move {
        let plan = deploy::make_plan(&client, &desired.def).await?;
        let (changes, counts) = plan_view::print(&plan, &client.base, &desired.sources);
        deploy::warn_of_caps(&client, &desired.def).await;
        if !changes {
            return Ok(ExitCode::SUCCESS);
        }
        if !args.auto_approve {
            super::confirm(
                &format!(
                    "Apply these changes to `{}`? Type `yes` to go on:",
                    plan.app
                ),
                "yes",
                "apply",
            )?;
        }
        let revision = deploy::perform(&client, &plan, &desired.sources).await?;
        println!(
            "app `{}` is at revision {revision}: {} added, {} changed, {} removed",
            plan.app, counts.add, counts.change, counts.remove
        );
        Ok(ExitCode::SUCCESS)
    })
}
