//! `nubo build`: run each component's build command.

use crate::{CliError, CliResult, app, toolchain};
use nubo_manifest::{AppSpec, Stage};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Build every component of an app with the command its nubo.toml declares.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  nubo build examples/hello")]
pub struct Args {
    /// App folder (holding nubo.toml) or the path of the file.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let spec = app::load_spec(&args.dir, Stage::BeforeBuild)?;
    build_all(&spec)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the build commands in name order, streaming their output; stops at
/// the first failure.
pub fn build_all(spec: &AppSpec) -> CliResult<()> {
    let builds: Vec<_> = spec
        .components
        .iter()
        .filter_map(|(name, c)| c.build.as_ref().map(|b| (name, b)))
        .collect();
    for (i, (name, build)) in builds.iter().enumerate() {
        toolchain::ensure_wasm_target(&build.command)?;
        let shown = build
            .workdir
            .strip_prefix(&spec.root)
            .unwrap_or(&build.workdir);
        println!(
            "[{}/{}] building `{name}`: {} (in {})",
            i + 1,
            builds.len(),
            build.command,
            if shown.as_os_str().is_empty() {
                ".".into()
            } else {
                shown.display().to_string()
            }
        );
        let started = Instant::now();
        let status = shell(&build.command)
            .current_dir(&build.workdir)
            .status()
            .map_err(|e| CliError::new(format!("cannot run the build of `{name}`: {e}")))?;
        if !status.success() {
            return Err(
                CliError::new(format!("the build of `{name}` failed ({status})"))
                    .hint("fix the error above, then run `nubo build` again"),
            );
        }
        println!(
            "      built `{name}` in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn shell(command: &str) -> Command {
    if cfg!(windows) {
        let mut c = Command::new("cmd");
        c.args(["/C", command]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", command]);
        c
    }
}
