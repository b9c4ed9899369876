//! `nubo apply`: build, plan against the node, confirm, and perform the
//! plan as one revision.

use crate::client::NodeArgs;
use crate::{CliError, CliResult, app, deploy, plan_view};
use nubo_manifest::Stage;
use std::io::{BufRead, IsTerminal, Write};
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
    let spec = app::load_spec(&args.dir, Stage::Built)?;
    let desired = deploy::desired(&spec)?;
    let client = args.node.connect(Some(&args.dir))?;
    crate::async_runtime()?.block_on(async move {
        let plan = deploy::make_plan(&client, &desired.def).await?;
        let (changes, counts) = plan_view::print(&plan, &client.base, &desired.sources);
        if !changes {
            return Ok(ExitCode::SUCCESS);
        }
        if !args.auto_approve {
            confirm(&plan.app)?;
        }
        let revision = deploy::perform(&client, &plan, &desired.sources).await?;
        println!(
            "app `{}` is at revision {revision}: {} added, {} changed, {} removed",
            plan.app, counts.add, counts.change, counts.remove
        );
        Ok(ExitCode::SUCCESS)
    })
}

fn confirm(app: &str) -> CliResult<()> {
    if !std::io::stdin().is_terminal() {
        return Err(
            CliError::new("not applying: there is no terminal to confirm on")
                .hint("pass --auto-approve to apply without confirmation"),
        );
    }
    print!("Apply these changes to `{app}`? Type `yes` to go on: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(CliError::new("apply cancelled; nothing was changed"))
    }
}
