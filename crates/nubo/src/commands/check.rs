//! `nubo check`: validate an app without serving it.

use crate::{CliResult, app};
use nubo_manifest::Stage;
use std::path::PathBuf;
use std::process::ExitCode;

/// Validate nubo.toml and every component that is already built; exit
/// non-zero on any problem.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  nubo check examples/json-api && echo valid")]
pub struct Args {
    /// App folder (holding nubo.toml) or the path of the file.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let spec = app::load_spec(&args.dir, Stage::BeforeBuild)?;
    let runtime = crate::commands::up::runtime(&spec.root.join(".nubo"))?;
    // Components not built yet are checked by `nubo up` after its build.
    let mut built = spec.clone();
    built.components.retain(|_, c| c.source.is_file());
    let unbuilt = spec.components.len() - built.components.len();
    built.routes.retain(|r| match &r.target {
        nubo_manifest::RouteTarget::Component(c) => built.components.contains_key(c),
        nubo_manifest::RouteTarget::Static(_) => true,
    });
    app::load_router(&runtime, &built, false)?;
    print!(
        "ok: app `{}`: {} component(s), {} route(s)",
        spec.name,
        spec.components.len(),
        spec.routes.len()
    );
    if unbuilt > 0 {
        print!(" ({unbuilt} not built yet: run `nubo build`)");
    }
    println!();
    Ok(ExitCode::SUCCESS)
}
