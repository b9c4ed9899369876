//! `nubo up`: build an app and serve it on this machine.

use crate::{CliError, CliResult, app};
use nubo_manifest::Stage;
use nubo_wasm::{Runtime, RuntimeOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Build an app's components and serve it until Ctrl-C.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  nubo up examples/hello\n  nubo up . --listen 0.0.0.0:8080")]
pub struct Args {
    /// App folder (holding nubo.toml) or the path of the file.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Address to serve HTTP on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// State directory (compile cache, later data); default DIR/.nubo.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Serve what is built without running the build commands.
    #[arg(long)]
    pub no_build: bool,
}

/// The node-wide runtime; the compile cache lives in the state dir unless
/// `NUBO_CACHE_DIR` names a shared one.
pub fn runtime(state: &Path) -> CliResult<Runtime> {
    let cache_dir = std::env::var_os("NUBO_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| state.join("cache"));
    Runtime::new(RuntimeOptions {
        cache_dir: Some(cache_dir),
        ..RuntimeOptions::default()
    })
    .map_err(|e| CliError::new(e.to_string()))
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let spec = app::load_spec(&args.dir, Stage::BeforeBuild)?;
    if !args.no_build {
        crate::commands::build::build_all(&spec)?;
    }
    // Again, now that every source must exist.
    let spec = app::load_spec(&args.dir, Stage::Built)?;
    let state = args
        .state
        .clone()
        .unwrap_or_else(|| spec.root.join(".nubo"));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))?;
    tokio.block_on(async move {
        let runtime = runtime(&state)?;
        let router = app::load_router(&runtime, &spec, true)?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| {
                CliError::new(format!("cannot listen on {}: {e}", args.listen))
                    .hint("pick another address with --listen, e.g. --listen 127.0.0.1:3001")
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::new(format!("listener has no address: {e}")))?;
        println!("serving app `{}` on http://{addr}", spec.name);
        for line in app::describe_routes(&router, &spec.root) {
            println!("{line}");
        }
        println!("press Ctrl-C to stop");
        let gateway = nubo_gateway::Gateway::new(router);
        nubo_gateway::serve(listener, gateway, shutdown_signal())
            .await
            .map_err(|e| CliError::new(format!("server failed: {e}")))?;
        println!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    println!("shutting down: finishing in-flight requests");
}
