//! The `nubo` command: a thin layer over Nubo's library crates.

mod app;
mod client;
mod commands;
mod deploy;
mod plan_view;
mod style;
mod toolchain;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// A request allocates and frees a few dozen small objects (headers, the
/// store, the guest's resources), often on another thread than the one
/// that made them; glibc's malloc spent 13% of the node's CPU on that
/// (its arena locks, and consolidation). mimalloc, with its transparent
/// huge pages off (`no_thp`), which had doubled the resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "nubo",
    version,
    about = "Run a whole backend of sandboxed WebAssembly components from one nubo.toml",
    after_help = "Examples:\n  nubo up examples/hello          build and serve an app on http://127.0.0.1:3000\n  nubo check examples/json-api    validate an app's nubo.toml\n  nubo plan examples/hello        what `nubo apply` would change on a node\n  nubo ps                         apps and components on a node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Up(commands::up::Args),
    Build(commands::build::Args),
    Check(commands::check::Args),
    Node(commands::node::Args),
    Plan(commands::plan::Args),
    Apply(commands::apply::Args),
    Rollback(commands::rollback::Args),
    Destroy(commands::destroy::Args),
    Ps(commands::ps::Args),
    Logs(commands::logs::Args),
    Kv(commands::kv::Args),
    Blob(commands::blob::Args),
    Cron(commands::cron::Args),
    Queue(commands::queue::Args),
    Tasks(commands::tasks::Args),
    Sql(commands::sql::Args),
    Auth(commands::auth::Args),
    Usage(commands::usage::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `nubo ps | head` should end quietly, as other Unix tools do, not
    // panic on the closed pipe. Servers keep SIGPIPE ignored: a client
    // that hangs up must not kill them.
    #[cfg(unix)]
    if !matches!(cli.command, Command::Up(_) | Command::Node(_)) {
        // SAFETY: restores the default action of one signal at start,
        // before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    init_tracing();
    let result = match cli.command {
        Command::Up(args) => commands::up::run(args),
        Command::Build(args) => commands::build::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Node(args) => commands::node::run(args),
        Command::Plan(args) => commands::plan::run(args),
        Command::Apply(args) => commands::apply::run(args),
        Command::Rollback(args) => commands::rollback::run(args),
        Command::Destroy(args) => commands::destroy::run(args),
        Command::Ps(args) => commands::ps::run(args),
        Command::Logs(args) => commands::logs::run(args),
        Command::Kv(args) => commands::kv::run(args),
        Command::Blob(args) => commands::blob::run(args),
        Command::Cron(args) => commands::cron::run(args),
        Command::Queue(args) => commands::queue::run(args),
        Command::Tasks(args) => commands::tasks::run(args),
        Command::Sql(args) => commands::sql::run(args),
        Command::Auth(args) => commands::auth::run(args),
        Command::Usage(args) => commands::usage::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", e.render());
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `NUBO_LOG` takes a tracing filter (default `info`).
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("NUBO_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    use std::io::IsTerminal;
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color)
        .with_writer(std::io::stderr)
        .with_target(false)
        .compact()
        .init();
}

/// An error for the user: what went wrong, and optionally what to do.
#[derive(Debug)]
pub struct CliError {
    message: String,
    hint: Option<String>,
    /// The node's stable name for the error, when it came from the
    /// control API (its `code` field).
    code: Option<String>,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
            code: None,
        }
    }

    /// The control API's `code` of this error, if it had one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn render(&self) -> String {
        match &self.hint {
            Some(h) => format!("error: {}\n  hint: {h}", self.message),
            None => format!("error: {}", self.message),
        }
    }
}

impl From<nubo_manifest::ManifestError> for CliError {
    fn from(e: nubo_manifest::ManifestError) -> Self {
        let n = e.diagnostics.len();
        let s = if n == 1 { "" } else { "s" };
        Self::new(format!("{n} problem{s} in the definition file:\n{e}"))
    }
}

pub type CliResult<T> = Result<T, CliError>;

/// The runtime's threads write to the node's sockets, and hyper writes
/// with `writev`, which raises SIGPIPE when the node has closed the
/// connection: a node that refuses an upload before reading it all
/// (a typo in a container name, a bad token) would kill the CLI with the
/// default action set in `main` and print nothing. Blocked on these
/// threads, the signal stays pending and the write fails with EPIPE, so
/// the node's answer is read and shown; the main thread, which prints,
/// still ends quietly on a closed stdout.
fn block_sigpipe() {
    #[cfg(unix)]
    // SAFETY: changes only the calling thread's signal mask, on a set
    // built here.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

pub fn async_runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(block_sigpipe)
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))
}
