//! The control API from the CLI side: which node, which token, and JSON
//! over HTTP or HTTPS with the node's errors turned into readable ones.
//!
//! An `https://` node's certificate is checked against the system's trusted
//! CA certificates (`SSL_CERT_FILE` or `SSL_CERT_DIR` point at others), as
//! curl does; there is no switch that skips the check.

use crate::{CliError, CliResult};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;

/// Where the node is and how to authenticate; shared by every command that
/// talks to a node.
#[derive(clap::Args, Clone)]
pub struct NodeArgs {
    /// Control API of the node.
    #[arg(
        long,
        global = true,
        env = "NUBO_NODE",
        default_value = "http://127.0.0.1:3001"
    )]
    pub node: String,
    /// Bearer token; default: the `token` file of the node's state dir.
    #[arg(long, global = true, env = "NUBO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The node's state dir, to read its token from.
    #[arg(long, global = true, env = "NUBO_STATE")]
    pub state: Option<PathBuf>,
}

impl NodeArgs {
    /// The token: `--token`, `NUBO_TOKEN`, else the `token` file in
    /// `--state`, `./.nubo` (a `nubo up` here) or the default node state dir.
    pub fn token(&self, app_dir: Option<&std::path::Path>) -> CliResult<String> {
        if let Some(t) = &self.token {
            return Ok(t.trim().to_string());
        }
        let mut candidates = Vec::new();
        if let Some(s) = &self.state {
            candidates.push(s.clone());
        } else {
            if let Some(dir) = app_dir {
                let dir = if dir.is_file() {
                    dir.parent().map(|p| p.to_path_buf()).unwrap_or_default()
                } else {
                    dir.to_path_buf()
                };
                candidates.push(dir.join(".nubo"));
            }
            candidates.push(PathBuf::from(".nubo"));
            candidates.push(default_state_dir());
        }
        for dir in &candidates {
            if let Ok(t) = std::fs::read_to_string(dir.join(nubo_node::token::FILE_NAME))
                && !t.trim().is_empty()
            {
                return Ok(t.trim().to_string());
            }
        }
        Err(CliError::new(format!(
            "no token for the node at {}: looked in {}",
            self.node,
            candidates
                .iter()
                .map(|c| c.join("token").display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .hint("pass --token, set NUBO_TOKEN, or point --state at the node's state dir"))
    }

    pub fn connect(&self, app_dir: Option<&std::path::Path>) -> CliResult<Client> {
        let base = self.node.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(CliError::new(format!(
                "--node {base}: expected an http:// or https:// URL"
            ))
            .hint("e.g. --node http://127.0.0.1:3001"));
        }
        Client::new(base, self.token(app_dir)?)
    }
}

/// Where `nubo node` keeps its state unless told otherwise.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("nubo");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/nubo"),
        None => PathBuf::from(".nubo-node"),
    }
}

pub struct Client {
    pub base: String,
    token: String,
    http: HyperClient<HttpsConnector<HttpConnector>, UnsyncBoxBody<Bytes, std::io::Error>>,
}

impl Client {
    pub fn new(base: String, token: String) -> CliResult<Self> {
        let connector = connector(base.starts_with("https://"))?;
        Ok(Self {
            base,
            token,
            http: HyperClient::builder(TokioExecutor::new()).build(connector),
        })
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> CliResult<http::Response<hyper::body::Incoming>> {
        let body = Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync();
        self.send_body(method, path, content_type, body).await
    }

    /// Why a request got no answer: the node is not there, or it closed
    /// the connection part-way (then the cause, which hyper keeps in the
    /// error's sources, is what the user needs).
    fn failed(&self, e: &hyper_util::client::legacy::Error) -> CliError {
        let mut cause = String::new();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            cause = s.to_string();
            source = s.source();
        }
        if e.is_connect() {
            return CliError::new(format!("cannot reach the node at {}: {cause}", self.base))
                .hint("is `nubo node` (or `nubo up`) running there? pass --node URL");
        }
        CliError::new(format!(
            "the node at {} closed the connection before answering: {cause}",
            self.base
        ))
    }

    /// Like [`Client::send`], with a body that may be streamed.
    pub async fn send_body(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: UnsyncBoxBody<Bytes, std::io::Error>,
    ) -> CliResult<http::Response<hyper::body::Incoming>> {
        let url = format!("{}{path}", self.base);
        let req = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .map_err(|e| CliError::new(format!("bad request to {url}: {e}")))?;
        let resp = self.http.request(req).await.map_err(|e| self.failed(&e))?;
        // An app's port answers too, with its own 404s; without this check
        // a typo'd --node reads as "no such app" or "no such key".
        if !resp.headers().contains_key(nubo_node::API_MARKER) {
            return Err(CliError::new(format!(
                "{} answered {}, but it is not a Nubo control API",
                self.base,
                resp.status()
            ))
            .hint("--node takes the control address (`nubo up` prints it; default http://127.0.0.1:3001), not the app's"));
        }
        Ok(resp)
    }

    /// Sends and parses JSON; any error status, 404 included, is an error
    /// with the node's message.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> CliResult<T> {
        let bytes = match body {
            Some(b) => Bytes::from(
                serde_json::to_vec(b).map_err(|e| CliError::new(format!("cannot encode: {e}")))?,
            ),
            None => Bytes::new(),
        };
        let resp = self.send(method, path, "application/json", bytes).await?;
        self.json(resp).await
    }

    /// `app`, or the node's only app when it is left out.
    pub async fn app_or_only(&self, app: Option<String>) -> CliResult<String> {
        if let Some(a) = app {
            return Ok(a);
        }
        #[derive(serde::Deserialize)]
        struct App {
            name: String,
        }
        let apps: Vec<App> = self.get("/v1/apps").await?;
        match apps.as_slice() {
            [one] => Ok(one.name.clone()),
            [] => Err(CliError::new(format!("no apps on {}", self.base))),
            many => Err(
                CliError::new("the node runs several apps; name one").hint(format!(
                    "apps: {}",
                    many.iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        self.call(Method::GET, path, None::<&()>).await
    }

    /// Like [`Client::get`], for something that may not exist: `Ok(None)`
    /// on 404.
    pub async fn get_opt<T: DeserializeOwned>(&self, path: &str) -> CliResult<Option<T>> {
        let resp = self
            .send(Method::GET, path, "application/json", Bytes::new())
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.json(resp).await.map(Some)
    }

    pub async fn json<T: DeserializeOwned>(
        &self,
        resp: http::Response<hyper::body::Incoming>,
    ) -> CliResult<T> {
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CliError::new(format!("reading the node's answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| CliError::new(format!("unexpected answer from the node: {e}")))
    }
}

/// A connector for `http://` and `https://` URLs. Only an `https://` node
/// needs trusted roots, so a machine without any still reaches `http://`.
fn connector(https: bool) -> CliResult<HttpsConnector<HttpConnector>> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = if https {
        builder
            .with_provider_and_native_roots(provider)
            .map_err(|e| {
                CliError::new(format!("no trusted CA certificates for an https:// node: {e}"))
                    .hint("install the system's CA certificates, or point SSL_CERT_FILE at a PEM file of the ones to trust")
            })?
    } else {
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CliError::new(format!("TLS setup: {e}")))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        builder.with_tls_config(config)
    };
    Ok(builder.https_or_http().enable_http1().build())
}

/// `s` percent-encoded for one path segment or query value.
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The node's `{"error", "code", "details"}` as a CLI error.
pub fn api_error(status: StatusCode, body: &[u8]) -> CliError {
    #[derive(serde::Deserialize)]
    struct E {
        error: String,
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        details: Vec<String>,
    }
    let (mut err, code) = match serde_json::from_slice::<E>(body) {
        Ok(e) if e.details.is_empty() => (CliError::new(e.error), e.code),
        Ok(e) => (
            CliError::new(format!("{}:\n  - {}", e.error, e.details.join("\n  - "))),
            e.code,
        ),
        Err(_) => (
            CliError::new(format!(
                "node answered {status}: {}",
                String::from_utf8_lossy(body).trim()
            )),
            None,
        ),
    };
    if status == StatusCode::UNAUTHORIZED {
        err = err.hint("pass the node's token with --token or NUBO_TOKEN, or --state DIR");
    } else if code.as_deref() == Some("stale") {
        err = err.hint(
            "someone changed the app since this plan was made; run the command again to re-plan",
        );
    } else if code.as_deref() == Some("no_app") {
        err = err.hint("`nubo ps` lists the apps on a node");
    } else if code.as_deref() == Some("cluster_unavailable") {
        err = err.hint("the node cannot reach its cluster's NATS servers; nothing was changed");
    }
    err.code = code;
    err
}
