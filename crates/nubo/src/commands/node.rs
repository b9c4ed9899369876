//! `nubo node`: a long-lived node that hosts many apps, changed through its
//! control API.

use crate::{CliError, CliResult};
use nubo_node::{Node, NodeOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Run a node: serve every applied app and the control API until Ctrl-C.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  nubo node --state /var/lib/nubo --listen 0.0.0.0:8080 --control 127.0.0.1:3001\n  nubo apply examples/hello --node http://127.0.0.1:3001 --state /var/lib/nubo"
)]
pub struct Args {
    /// State dir: applied revisions, uploads, compile cache, the API token.
    /// Default: $XDG_DATA_HOME/nubo or ~/.local/share/nubo.
    #[arg(long, env = "NUBO_STATE")]
    pub state: Option<PathBuf>,
    /// Address apps are served on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Address of the control API (keep it private: it can change every app).
    #[arg(long, default_value = "127.0.0.1:3001")]
    pub control: SocketAddr,
    /// Largest component or file upload accepted, in MiB.
    #[arg(long, default_value_t = 64)]
    pub max_upload_mb: usize,
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let state = args
        .state
        .clone()
        .unwrap_or_else(crate::client::default_state_dir);
    crate::async_runtime()?.block_on(async move {
        let node = open(state.clone(), args.max_upload_mb << 20).await?;
        let running = Running::start(node, args.listen, args.control).await?;
        println!(
            "node ready: apps on http://{}, control API on http://{}",
            running.http, running.control
        );
        println!(
            "token in {}",
            state.join(nubo_node::token::FILE_NAME).display()
        );
        println!("press Ctrl-C to stop");
        running.until_signal().await
    })
}

/// A node holds a descriptor per connected client (WebSockets, SSE):
/// raise the soft limit to the hard one, as servers do.
fn raise_fd_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                tracing::warn!("cannot raise the open-file limit; many clients may be refused");
            }
        }
    }
}

pub async fn open(state: PathBuf, max_upload: usize) -> CliResult<Arc<Node>> {
    raise_fd_limit();
    Node::open(NodeOptions {
        state,
        cache_dir: std::env::var_os("NUBO_CACHE_DIR").map(PathBuf::from),
        max_upload,
    })
    .await
    .map_err(|e| CliError::new(e.to_string()))
}

async fn bind(addr: SocketAddr, what: &str, flag: &str) -> CliResult<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        CliError::new(format!("cannot listen for {what} on {addr}: {e}"))
            .hint(format!("pick another address with {flag}"))
    })
}

/// A node's two servers, running.
pub struct Running {
    pub http: SocketAddr,
    pub control: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    servers: tokio::task::JoinSet<std::io::Result<()>>,
}

impl Running {
    pub async fn start(
        node: Arc<Node>,
        listen: SocketAddr,
        control: SocketAddr,
    ) -> CliResult<Self> {
        let http = bind(listen, "HTTP", "--listen").await?;
        let ctl = bind(control, "the control API", "--control").await?;
        let local = |l: &TcpListener| {
            l.local_addr()
                .map_err(|e| CliError::new(format!("listener has no address: {e}")))
        };
        let (http_addr, control_addr) = (local(&http)?, local(&ctl)?);
        let (stop, rx) = tokio::sync::watch::channel(false);
        let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut servers = tokio::task::JoinSet::new();
        servers.spawn(nubo_gateway::serve(
            http,
            node.gateway(),
            stopped(rx.clone()),
        ));
        servers.spawn(nubo_node::serve_control(ctl, node, stopped(rx)));
        Ok(Self {
            http: http_addr,
            control: control_addr,
            stop,
            servers,
        })
    }

    /// Serves until Ctrl-C or SIGTERM, then lets in-flight requests finish.
    pub async fn until_signal(mut self) -> CliResult<ExitCode> {
        tokio::select! {
            () = crate::commands::up::shutdown_signal() => {}
            Some(ended) = self.servers.join_next() => {
                let why = match ended {
                    Ok(Ok(())) => "stopped".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                return Err(CliError::new(format!("a server stopped unexpectedly: {why}")));
            }
        }
        let _ = self.stop.send(true);
        while self.servers.join_next().await.is_some() {}
        println!("stopped");
        Ok(ExitCode::SUCCESS)
    }
}
