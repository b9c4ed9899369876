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
    after_help = "Examples:\n  nubo node --state /var/lib/nubo --listen 0.0.0.0:8080 --control 127.0.0.1:3001\n  nubo apply examples/hello --node http://127.0.0.1:3001 --state /var/lib/nubo\n\nA cluster (every node alike; apply to any one of them):\n  NUBO_TOKEN=secret nubo node --nats nats://n1:4222,nats://n2:4222,nats://n3:4222"
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
    /// Join a cluster through these NATS servers (JetStream enabled), comma
    /// separated. Without it the node keeps everything in its state dir.
    #[arg(long, env = "NUBO_NATS", value_delimiter = ',', value_name = "URLS")]
    pub nats: Vec<String>,
    /// This node's name in the cluster. Default: HOST-PORT (the host name
    /// and the control API's port).
    #[arg(long, env = "NUBO_NODE_ID")]
    pub node_id: Option<String>,
    /// Copies NATS keeps of Nubo's shared state. Default: 3 when --nats
    /// names several servers, else 1.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: Option<u8>,
    /// The control API's token (every node of a cluster should share one).
    /// Default: the `token` file in the state dir, created if missing.
    #[arg(long, env = "NUBO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub nats_auth: NatsArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// A PEM certificate (the chain, leaf first): apps are served over
    /// TLS (HTTP/2 or HTTP/1.1) with it; the file is read again when it
    /// changes. Needs --tls-key.
    #[arg(long, env = "NUBO_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "NUBO_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// How a node of a cluster proves itself: to the other nodes (the cluster
/// key) and to NATS (its own authentication and TLS).
#[derive(clap::Args)]
pub struct NatsArgs {
    /// The secret every node of the cluster shares (at least 32
    /// characters, e.g. `openssl rand -hex 32`; not the control token):
    /// the records nodes act on are signed with it. Required with --nats.
    #[arg(
        long,
        env = "NUBO_CLUSTER_KEY",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub cluster_key: Option<String>,
    /// A NATS credentials file (user JWT and NKey seed, as `nsc` makes).
    #[arg(long, env = "NUBO_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// A NATS user; the password is read from NUBO_NATS_PASSWORD.
    #[arg(long, env = "NUBO_NATS_USER", value_name = "USER")]
    pub nats_user: Option<String>,
    /// The CA that signed the NATS servers' certificates; turns TLS on.
    #[arg(long, env = "NUBO_NATS_TLS_CA", value_name = "FILE")]
    pub nats_tls_ca: Option<PathBuf>,
    /// A client certificate for NATS servers that verify clients.
    #[arg(
        long,
        env = "NUBO_NATS_TLS_CERT",
        value_name = "FILE",
        requires = "nats_tls_key"
    )]
    pub nats_tls_cert: Option<PathBuf>,
    /// The key of --nats-tls-cert.
    #[arg(
        long,
        env = "NUBO_NATS_TLS_KEY",
        value_name = "FILE",
        requires = "nats_tls_cert"
    )]
    pub nats_tls_key: Option<PathBuf>,
}

impl NatsArgs {
    fn key(&self) -> CliResult<Arc<nubo_node::ClusterKey>> {
        let Some(secret) = &self.cluster_key else {
            return Err(CliError::new(
                "a cluster needs a key: every node signs what it writes to NATS with it",
            )
            .hint("give every node the same --cluster-key (or NUBO_CLUSTER_KEY), e.g. from `openssl rand -hex 32`"));
        };
        nubo_node::ClusterKey::new(secret)
            .map(Arc::new)
            .map_err(|e| CliError::new(e.to_string()))
    }

    fn auth(&self) -> CliResult<nubo_node::NatsAuth> {
        let user = match &self.nats_user {
            Some(u) => {
                let pass = std::env::var("NUBO_NATS_PASSWORD").map_err(|_| {
                    CliError::new(format!("--nats-user {u} needs its password"))
                        .hint("set NUBO_NATS_PASSWORD (it is never taken as a flag, so that `ps` cannot show it)")
                })?;
                Some((u.clone(), pass))
            }
            None => None,
        };
        Ok(nubo_node::NatsAuth {
            creds: self.nats_creds.clone(),
            user,
            tls_ca: self.nats_tls_ca.clone(),
            tls_client: self.nats_tls_cert.clone().zip(self.nats_tls_key.clone()),
        })
    }
}

/// What clients may hold of the node's connections (both listeners), and
/// apps of its memory.
#[derive(clap::Args, Clone)]
pub struct ConnArgs {
    /// Open connections at once per listener; more wait to be accepted.
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub max_connections: usize,
    /// Seconds a connection has to send a complete request head (from
    /// opening it, or from the end of its last request).
    #[arg(long, default_value_t = 10, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Seconds a connection with no request in flight stays open.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// Seconds a request body gets before it must keep up 1 KiB/s.
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,
    /// Megabytes of guest memory all instances may hold at once, shared
    /// fairly between apps; default: three quarters of the machine's.
    #[arg(long, env = "NUBO_MEMORY_BUDGET_MB", value_name = "MB", value_parser = clap::value_parser!(u64).range(16..))]
    pub memory_budget_mb: Option<u64>,
    /// Megabytes kept free on the disk of the state dir: below, writes
    /// that add data (key-value, blobs, queue messages) fail with "the
    /// node's disk is full" and deletes go on; 0 keeps nothing free.
    #[arg(
        long,
        env = "NUBO_DISK_RESERVE_MB",
        default_value_t = 256,
        value_name = "MB"
    )]
    pub disk_reserve_mb: u64,
    /// Addresses or networks of proxies (load balancers) in front of the
    /// node, comma-separated: only a request from one of them has its
    /// client taken from `X-Forwarded-For` (for rate limits, sign-in
    /// throttling and logs).
    #[arg(long, env = "NUBO_TRUSTED_PROXIES", value_name = "CIDR,...", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Count nothing apps use (no `nubo usage` figures): for measuring
    /// what metering costs.
    #[arg(long, env = "NUBO_NO_METERING", hide = true)]
    pub no_metering: bool,
}

/// `10.0.0.0/8`, or one address (`10.0.0.5`).
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    s.trim()
        .parse::<ipnet::IpNet>()
        .or_else(|_| s.trim().parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{s}` is not an address or network like 10.0.0.0/8"))
}

impl ConnArgs {
    pub fn limits(&self) -> nubo_gateway::ConnLimits {
        use std::time::Duration;
        nubo_gateway::ConnLimits {
            max_connections: self.max_connections,
            header_timeout: Duration::from_secs(self.header_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            body_timeout: Duration::from_secs(self.body_timeout),
        }
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// Connects to the cluster that `--nats` names, if any.
async fn join(args: &Args) -> CliResult<Option<nubo_node::ClusterJoin>> {
    if args.nats.is_empty() {
        return Ok(None);
    }
    let replicas = args
        .replicas
        .map_or(if args.nats.len() > 1 { 3 } else { 1 }, usize::from);
    println!("joining the cluster at {} …", args.nats.join(","));
    let cluster = nubo_node::Cluster::connect(nubo_node::ClusterOptions {
        urls: args.nats.clone(),
        replicas,
        key: args.nats_auth.key()?,
        auth: args.nats_auth.auth()?,
    })
    .await
    .map_err(|e| {
        CliError::new(e.to_string()).hint(
            "start nats-server with JetStream (`nats-server -js`); give --replicas at most the number of NATS servers; or leave out --nats to run alone",
        )
    })?;
    let id = args
        .node_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", host_name(), args.control.port()));
    Ok(Some(nubo_node::ClusterJoin {
        cluster: std::sync::Arc::new(cluster),
        id,
    }))
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let state = args
        .state
        .clone()
        .unwrap_or_else(crate::client::default_state_dir);
    crate::async_runtime()?.block_on(async move {
        let cluster = join(&args).await?;
        let id = cluster.as_ref().map(|c| c.id.clone());
        let node = open(
            state.clone(),
            args.max_upload_mb << 20,
            cluster,
            args.token.clone(),
            &args.conn,
        )
        .await?;
        let tls = tls(&args)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let running = Running::start(
            node.clone(),
            args.listen,
            args.control,
            args.conn.limits(),
            tls,
        )
        .await?;
        println!("loading apps …");
        node.restore()
            .await
            .map_err(|e| CliError::new(e.to_string()))?;
        node.started(running.http, running.control)
            .await
            .map_err(|e| CliError::new(format!("cannot join the cluster: {e}")))?;
        node.serving();
        println!(
            "node ready: apps on {scheme}://{}, control API on http://{}",
            running.http, running.control
        );
        if let Some(id) = id {
            println!("in the cluster as `{id}` (see `nubo ps`)");
        }
        if args.token.is_none() {
            println!(
                "token in {}",
                state.join(nubo_node::token::FILE_NAME).display()
            );
        }
        println!("press Ctrl-C to stop");
        let stopped = running.until_signal().await;
        node.leave_cluster().await;
        stopped
    })
}

/// The app listener's TLS, from --tls-cert and --tls-key, reloaded when
/// the files change.
fn tls(args: &Args) -> CliResult<Option<tokio_rustls::TlsAcceptor>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let files = nubo_gateway::CertFiles::open(cert, key).map_err(|e| {
        CliError::new(format!("cannot serve TLS: {e}"))
            .hint("--tls-cert takes a PEM certificate chain, --tls-key its PEM private key")
    })?;
    let acceptor = files
        .acceptor()
        .map_err(|e| CliError::new(format!("cannot serve TLS: {e}")))?;
    files.watch();
    Ok(Some(acceptor))
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

pub async fn open(
    state: PathBuf,
    max_upload: usize,
    cluster: Option<nubo_node::ClusterJoin>,
    token: Option<String>,
    conn: &ConnArgs,
) -> CliResult<Arc<Node>> {
    raise_fd_limit();
    Node::open(NodeOptions {
        state,
        cache_dir: std::env::var_os("NUBO_CACHE_DIR").map(PathBuf::from),
        max_upload,
        cluster,
        token,
        memory_budget: conn.memory_budget_mb.map(|mb| mb << 20),
        disk_reserve: conn.disk_reserve_mb.saturating_mul(1 << 20),
        trusted_proxies: nubo_gateway::TrustedProxies::new(conn.trusted_proxies.clone()),
        metering: !conn.no_metering,
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
    node: Arc<Node>,
}

impl Running {
    pub async fn start(
        node: Arc<Node>,
        listen: SocketAddr,
        control: SocketAddr,
        limits: nubo_gateway::ConnLimits,
        tls: Option<tokio_rustls::TlsAcceptor>,
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
            limits,
            tls,
            stopped(rx.clone()),
        ));
        servers.spawn(nubo_node::serve_control(
            ctl,
            node.clone(),
            limits,
            stopped(rx),
        ));
        Ok(Self {
            http: http_addr,
            control: control_addr,
            stop,
            servers,
            node,
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
        self.node.close().await;
        println!("stopped");
        Ok(ExitCode::SUCCESS)
    }
}
