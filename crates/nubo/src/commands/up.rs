//! `nubo up`: a node in this process, and an apply of the local app to it.
//! With `--watch`, every change to the app's sources or nubo.toml is
//! rebuilt and applied again, while the last good version keeps serving.

use crate::client::Client;
use crate::commands::node::{Running, open};
use crate::{CliError, CliResult, app, deploy};
use nubo_manifest::{AppSpec, Stage};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Build an app's components and serve it until Ctrl-C.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  nubo up examples/hello\n  nubo up . --listen 0.0.0.0:8080\n  nubo up . --watch                 rebuild and re-apply on every change"
)]
pub struct Args {
    /// App folder (holding nubo.toml) or the path of the file.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Address to serve HTTP on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Address of the control API; default: loopback, at the --listen
    /// port + 1 (or a free port when --listen has port 0). The control API
    /// can change every app: give another address only on a trusted network.
    #[arg(long)]
    pub control: Option<SocketAddr>,
    /// State directory (applied revisions, uploads, compile cache, token);
    /// default DIR/.nubo.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Serve what is built without running the build commands.
    #[arg(long)]
    pub no_build: bool,
    /// Rebuild and re-apply when sources or nubo.toml change.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub conn: crate::commands::node::ConnArgs,
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let spec = app::load_spec(&args.dir, Stage::BeforeBuild)?;
    if !args.no_build {
        crate::commands::build::build_all(&spec)?;
    }
    // Again, now that every source must exist.
    let spec = app::load_spec(&args.dir, Stage::Built)?;
    let desired = deploy::desired(&spec)?;
    let state = args
        .state
        .clone()
        .unwrap_or_else(|| spec.root.join(".nubo"));
    let control = args.control.unwrap_or_else(|| default_control(args.listen));
    crate::async_runtime()?.block_on(async move {
        let node = open(
            state.clone(),
            nubo_node::DEFAULT_MAX_UPLOAD,
            None,
            None,
            &args.conn,
        )
        .await?;
        let running =
            Running::start(node.clone(), args.listen, control, args.conn.limits(), None).await?;
        // Until the app below is applied the gateway answers 503, not 404.
        node.restore()
            .await
            .map_err(|e| CliError::new(e.to_string()))?;
        node.started(running.http, running.control)
            .await
            .map_err(|e| CliError::new(e.to_string()))?;
        let client = Client::new(
            format!("http://{}", running.control),
            node.token().to_string(),
        )?;
        if args.state.is_none() {
            // DIR/.nubo belongs to this folder: an app it no longer defines
            // (renamed, say) would otherwise keep serving and clash.
            forget_other_apps(&client, &spec.name).await?;
        }
        apply(&client, &desired).await?;
        node.serving();
        let base = if spec.base == "/" {
            ""
        } else {
            spec.base.as_str()
        };
        println!(
            "serving app `{}` on http://{}{base}",
            spec.name, running.http
        );
        for line in app::describe_routes(&spec) {
            println!("{line}");
        }
        println!(
            "control API: http://{} (token in {})",
            running.control,
            state.join(nubo_node::token::FILE_NAME).display()
        );
        if args.watch {
            let dir = args.dir.clone();
            let no_build = args.no_build;
            tokio::spawn(watch(dir, spec, no_build, client));
            println!("watching for changes");
        }
        println!("press Ctrl-C to stop");
        running.until_signal().await
    })
}

/// The control API's address when `--control` is not given: always on
/// loopback, whatever interface apps are served on, next to their port.
fn default_control(listen: SocketAddr) -> SocketAddr {
    let ip: std::net::IpAddr = if listen.is_ipv6() {
        std::net::Ipv6Addr::LOCALHOST.into()
    } else {
        std::net::Ipv4Addr::LOCALHOST.into()
    };
    let port = match listen.port() {
        0 => 0,
        p => p.wrapping_add(1),
    };
    SocketAddr::new(ip, port)
}

async fn forget_other_apps(client: &Client, keep: &str) -> CliResult<()> {
    #[derive(serde::Deserialize)]
    struct App {
        name: String,
    }
    let apps: Vec<App> = client.get("/v1/apps").await?;
    for app in apps.into_iter().filter(|a| a.name != keep) {
        let _: serde_json::Value = client
            .call(
                http::Method::DELETE,
                &format!("/v1/apps/{}?keep_data=true", app.name),
                None::<&()>,
            )
            .await?;
        println!(
            "removed app `{}`: this folder's nubo.toml no longer defines it (its data is kept; `nubo destroy` deletes it)",
            app.name
        );
    }
    Ok(())
}

/// Plans and performs without asking: `up` is the developer's own node.
async fn apply(client: &Client, desired: &deploy::Desired) -> CliResult<u64> {
    let plan = deploy::make_plan(client, &desired.def).await?;
    deploy::perform(client, &plan, &desired.sources).await
}

/// Polls the app's inputs twice a second; after a change (and 300 ms of
/// quiet, so an editor's save-all is one change) rebuilds and re-applies.
/// Polling works the same on every OS and in containers, and an app's
/// source tree is small.
async fn watch(dir: PathBuf, mut spec: AppSpec, no_build: bool, client: Client) {
    let mut last = fingerprint(&dir, &spec);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let now = fingerprint(&dir, &spec);
        if now == last {
            continue;
        }
        // Debounce: wait until the files stop changing.
        let mut settled = now;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let again = fingerprint(&dir, &spec);
            if again == settled {
                break;
            }
            settled = again;
        }
        println!("change detected: rebuilding");
        let d = dir.clone();
        let rebuilt =
            tokio::task::spawn_blocking(move || -> CliResult<(AppSpec, deploy::Desired)> {
                let s = app::load_spec(&d, Stage::BeforeBuild)?;
                if !no_build {
                    crate::commands::build::build_all(&s)?;
                }
                let s = app::load_spec(&d, Stage::Built)?;
                let desired = deploy::desired(&s)?;
                Ok((s, desired))
            })
            .await
            .unwrap_or_else(|e| Err(CliError::new(format!("rebuild stopped: {e}"))));
        match rebuilt {
            Ok((s, desired)) => match apply(&client, &desired).await {
                Ok(rev) => println!("applied: app `{}` is at revision {rev}", s.name),
                Err(e) => eprintln!("{}\nthe previous version keeps serving", e.render()),
            },
            Err(e) => eprintln!("{}\nthe previous version keeps serving", e.render()),
        }
        // Re-read the spec so new components' folders are watched too.
        if let Ok(s) = app::load_spec(&dir, Stage::BeforeBuild) {
            spec = s;
        }
        last = fingerprint(&dir, &spec);
    }
}

/// Modification times and sizes of everything a rebuild depends on.
fn fingerprint(dir: &Path, spec: &AppSpec) -> Vec<(PathBuf, std::time::SystemTime, u64)> {
    let mut out = Vec::new();
    let mut add = |p: &Path| {
        if let Ok(m) = std::fs::metadata(p) {
            out.push((
                p.to_path_buf(),
                m.modified().unwrap_or(std::time::UNIX_EPOCH),
                m.len(),
            ));
        }
    };
    add(&app::manifest_path(dir));
    let mut roots = Vec::new();
    for c in spec.components.values() {
        match &c.build {
            Some(b) => roots.push(b.workdir.clone()),
            None => add(&c.source),
        }
    }
    for r in &spec.routes {
        if let nubo_manifest::RouteTarget::Static(d) = &r.target {
            roots.push(d.clone());
        }
    }
    let mut files = Vec::new();
    for root in roots {
        tree(&root, &mut files);
    }
    for f in files {
        add(&f);
    }
    out.sort();
    out.dedup();
    out
}

/// Files under `dir`, skipping build output and hidden folders.
fn tree(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in read.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => tree(&path, out),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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

#[cfg(test)]
mod tests {
    use super::default_control;

    #[test]
    fn control_stays_on_loopback() {
        let at = |s: &str| default_control(s.parse().unwrap()).to_string();
        assert_eq!(at("0.0.0.0:8080"), "127.0.0.1:8081");
        assert_eq!(at("192.0.2.7:3000"), "127.0.0.1:3001");
        assert_eq!(at("[::]:8080"), "[::1]:8081");
        assert_eq!(at("127.0.0.1:0"), "127.0.0.1:0");
    }
}
