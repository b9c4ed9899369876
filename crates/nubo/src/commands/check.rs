//! `nubo check`: validate an app without serving it.

use crate::{CliError, CliResult, app};
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
    let cache_dir = std::env::var_os("NUBO_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| spec.root.join(".nubo").join("cache"));
    let runtime = nubo_wasm::Runtime::new(
        nubo_wasm::RuntimeOptions {
            cache_dir: Some(cache_dir),
            ..Default::default()
        },
        &nubo_node::capabilities(),
    )
    .map_err(|e| CliError::new(e.to_string()))?;
    // Components not built yet are checked by `nubo up` after its build.
    let mut built = spec.clone();
    built.components.retain(|_, c| c.source.is_file());
    let unbuilt = spec.components.len() - built.components.len();
    for (name, c) in &built.components {
        let settings = nubo_wasm::ComponentSettings {
            app: spec.name.clone(),
            component: name.clone(),
            config: c.config.clone(),
            allowed_outbound_hosts: c.allowed_outbound_hosts.clone(),
            limits: c.limits,
            ..Default::default()
        };
        runtime
            .load_http(&c.source, settings)
            .map_err(|e| component_error(name, e))?;
    }
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

/// A load failure with what to do about it.
pub fn component_error(name: &str, e: nubo_wasm::LoadError) -> CliError {
    let hint = match e {
        nubo_wasm::LoadError::CoreModule { .. } => {
            "build it as a component: `cargo build --target wasm32-wasip2`"
        }
        nubo_wasm::LoadError::Imports(_) => {
            "Nubo provides wasi:http, wasi:config, wasi:keyvalue, wasi:blobstore, wasi:cli 0.2 and nubo:platform (see docs/runtime.md); remove the other imports or grant them in nubo.toml"
        }
        _ => "check `source` in nubo.toml and the component's build",
    };
    CliError::new(format!("component `{name}`: {e}")).hint(hint)
}
