//! `nubo kv`: look into and fix an app's key-value stores on a node.

use crate::client::{NodeArgs, api_error, enc};
use crate::{CliError, CliResult};
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use std::io::{Read, Write};
use std::process::ExitCode;

/// Read and write an app's key-value stores.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  nubo kv ls shop\n  nubo kv get shop visits\n  nubo kv set shop greeting hello --ttl 60\n  echo -n hi | nubo kv set shop greeting -\n  nubo kv del shop greeting --store sessions"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Print a value (raw bytes to stdout).
    Get {
        /// The app's name (`nubo ps` lists them).
        app: String,
        /// The key: 1 to 1024 bytes.
        key: String,
        /// A store the app declares in `key_value_stores`.
        #[arg(long, default_value = "default")]
        store: String,
    },
    /// Set a value; `-` reads it from stdin.
    Set {
        /// The app's name (`nubo ps` lists them).
        app: String,
        /// The key: 1 to 1024 bytes.
        key: String,
        /// The value; `-` reads it from stdin.
        value: String,
        /// A store the app declares in `key_value_stores`.
        #[arg(long, default_value = "default")]
        store: String,
        /// Expire the key after this many seconds.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Delete a key; a missing key is not an error (it says so).
    Del {
        /// The app's name (`nubo ps` lists them).
        app: String,
        /// The key: 1 to 1024 bytes.
        key: String,
        /// A store the app declares in `key_value_stores`.
        #[arg(long, default_value = "default")]
        store: String,
    },
    /// List keys, in byte order.
    Ls {
        /// The app's name (`nubo ps` lists them).
        app: String,
        /// A store the app declares in `key_value_stores`.
        #[arg(long, default_value = "default")]
        store: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let store = match &args.command {
        Cmd::Get { store, .. }
        | Cmd::Set { store, .. }
        | Cmd::Del { store, .. }
        | Cmd::Ls { store, .. } => store,
    };
    if !nubo_manifest::is_store_name(store) {
        return Err(CliError::new(format!("invalid store name `{store}`")).hint(
            "store names are lower-case letters, digits, `-` and `_`, as in key_value_stores",
        ));
    }
    if let Cmd::Get { key, .. } | Cmd::Set { key, .. } | Cmd::Del { key, .. } = &args.command {
        nubo_kv::check_key(key).map_err(|e| CliError::new(e.to_string()))?;
    }
    let client = args.node.connect(None)?;
    crate::async_runtime()?.block_on(async move {
        let (method, path, body) = match &args.command {
            Cmd::Get { app, key, store } => (
                Method::GET,
                format!("/v1/apps/{}/kv/{store}/{}", enc(app), enc(key)),
                Bytes::new(),
            ),
            Cmd::Del { app, key, store } => (
                Method::DELETE,
                format!("/v1/apps/{}/kv/{store}/{}", enc(app), enc(key)),
                Bytes::new(),
            ),
            Cmd::Set {
                app,
                key,
                value,
                store,
                ttl,
            } => {
                let body = if value == "-" {
                    let mut buf = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut buf)
                        .map_err(|e| CliError::new(format!("reading stdin: {e}")))?;
                    Bytes::from(buf)
                } else {
                    Bytes::from(value.clone().into_bytes())
                };
                let q = ttl
                    .map(|t| format!("?ttl_ms={}", t.saturating_mul(1000)))
                    .unwrap_or_default();
                (
                    Method::PUT,
                    format!("/v1/apps/{}/kv/{store}/{}{q}", enc(app), enc(key)),
                    body,
                )
            }
            Cmd::Ls { app, store, prefix } => {
                let mut keys: Vec<String> = Vec::new();
                let mut cursor: Option<String> = None;
                loop {
                    let mut path =
                        format!("/v1/apps/{}/kv/{store}?prefix={}", enc(app), enc(prefix));
                    if let Some(c) = &cursor {
                        path.push_str(&format!("&cursor={}", enc(c)));
                    }
                    #[derive(serde::Deserialize)]
                    struct Page {
                        keys: Vec<String>,
                        cursor: Option<String>,
                    }
                    let page: Page = client.get(&path).await?;
                    keys.extend(page.keys);
                    match page.cursor {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
                for k in &keys {
                    println!("{k}");
                }
                return Ok(ExitCode::SUCCESS);
            }
        };
        let resp = client
            .send(method, &path, "application/octet-stream", body)
            .await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CliError::new(format!("reading the node's answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        if let Cmd::Del { key, store, .. } = &args.command {
            let deleted = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("deleted").and_then(|d| d.as_bool()));
            if deleted == Some(false) {
                eprintln!("no key `{key}` in store `{store}`: nothing to delete");
            } else {
                eprintln!("deleted `{key}` from store `{store}`");
            }
        }
        if let Cmd::Get { .. } = args.command {
            let mut out = std::io::stdout();
            let _ = out.write_all(&bytes);
            if std::io::IsTerminal::is_terminal(&out) && !bytes.ends_with(b"\n") {
                let _ = writeln!(out);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
