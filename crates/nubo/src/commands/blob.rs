//! `nubo blob`: list, download, upload and delete an app's blobs on a node.
//! Uploads and downloads stream, with progress on a terminal.

use crate::client::{NodeArgs, api_error, enc};
use crate::deploy::size;
use crate::{CliError, CliResult};
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, ReadBuf};

/// List, download, upload and delete an app's blobs.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  nubo blob ls shop\n  nubo blob ls shop photos --prefix 2026/\n  nubo blob put shop photos ./cat.jpg\n  nubo blob put shop photos - --as backups/db.tar < db.tar\n  nubo blob get shop photos cat.jpg -o cat.jpg\n  nubo blob rm shop photos cat.jpg"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Without CONTAINER, the app's containers; with it, its objects.
    Ls {
        /// The app's name (`nubo ps` lists them).
        app: String,
        /// A container the app declares in `blob_containers`.
        container: Option<String>,
        /// Only objects whose names start with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Download an object to stdout, or to a file with -o.
    Get {
        /// The app's name (`nubo ps` lists them).
        app: String,
        /// A container the app declares in `blob_containers`.
        container: String,
        /// The object's name.
        name: String,
        /// Write the object to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Upload a file (`-`: stdin) as an object, replacing any of that name.
    Put {
        /// The app's name (`nubo ps` lists them).
        app: String,
        /// A container the app declares in `blob_containers`.
        container: String,
        /// The file to upload; `-` reads stdin (then --as NAME is needed).
        file: PathBuf,
        /// Object name; default: the file's name.
        #[arg(long = "as")]
        name: Option<String>,
        /// Default: guessed from the name's extension.
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Delete an object.
    Rm {
        /// The app's name (`nubo ps` lists them).
        app: String,
        /// A container the app declares in `blob_containers`.
        container: String,
        /// The object's name.
        name: String,
    },
}

#[derive(serde::Deserialize)]
struct Container {
    name: String,
    objects: u64,
    bytes: u64,
}

#[derive(serde::Deserialize)]
struct Object {
    name: String,
    size: u64,
    content_type: String,
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let container = match &args.command {
        Cmd::Ls { container, .. } => container.clone(),
        Cmd::Get { container, .. } | Cmd::Put { container, .. } | Cmd::Rm { container, .. } => {
            Some(container.clone())
        }
    };
    if let Some(c) = container
        && !nubo_manifest::is_store_name(&c)
    {
        return Err(CliError::new(format!("invalid container name `{c}`")).hint(
            "container names are lower-case letters, digits, `-` and `_`, as in blob_containers",
        ));
    }
    // `put` checks its name once it knows it (it may come from the file).
    if let Cmd::Get { name, .. } | Cmd::Rm { name, .. } = &args.command {
        check_name(name)?;
    }
    let client = args.node.connect(None)?;
    crate::async_runtime()?.block_on(async move {
        match args.command {
            Cmd::Ls {
                app,
                container: None,
                ..
            } => {
                #[derive(serde::Deserialize)]
                struct List {
                    containers: Vec<Container>,
                }
                let list: List = client.get(&format!("/v1/apps/{}/blobs", enc(&app))).await?;
                if list.containers.is_empty() {
                    eprintln!("app `{app}` has no blob containers in use");
                }
                for c in list.containers {
                    println!(
                        "{:<24} {:>8} objects {:>12}",
                        c.name,
                        c.objects,
                        size(c.bytes)
                    );
                }
            }
            Cmd::Ls {
                app,
                container: Some(container),
                prefix,
            } => {
                let mut cursor: Option<String> = None;
                loop {
                    let mut path = format!(
                        "/v1/apps/{}/blobs/{container}?prefix={}",
                        enc(&app),
                        enc(&prefix)
                    );
                    if let Some(c) = &cursor {
                        path.push_str(&format!("&cursor={}", enc(c)));
                    }
                    #[derive(serde::Deserialize)]
                    struct Page {
                        objects: Vec<Object>,
                        cursor: Option<String>,
                    }
                    let page: Page = client.get(&path).await?;
                    for o in &page.objects {
                        println!("{:>12}  {:<28} {}", size(o.size), o.content_type, o.name);
                    }
                    match page.cursor {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
            }
            Cmd::Get {
                app,
                container,
                name,
                output,
            } => {
                let path = format!("/v1/apps/{}/blobs/{container}/{}", enc(&app), enc(&name));
                download(&client, &path, output).await?;
            }
            Cmd::Put {
                app,
                container,
                file,
                name,
                content_type,
            } => {
                let name = match name {
                    Some(n) => n,
                    None if file.as_os_str() == "-" => {
                        return Err(CliError::new("reading stdin needs a name: add --as NAME"));
                    }
                    None => file
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .ok_or_else(|| {
                            CliError::new(format!("{} has no file name", file.display()))
                        })?,
                };
                check_name(&name)?;
                // A node that refuses an upload (an undeclared container,
                // a bad token) answers without reading it and closes the
                // connection; the client's next write then fails and hides
                // that answer. Asking first shows it, before any of a
                // large file is read.
                let _: serde_json::Value = client
                    .get(&format!(
                        "/v1/apps/{}/blobs/{container}?limit=1&prefix={}",
                        enc(&app),
                        enc(&name)
                    ))
                    .await?;
                let path = format!("/v1/apps/{}/blobs/{container}/{}", enc(&app), enc(&name));
                let content_type = content_type.unwrap_or_default();
                let meta = upload(&client, &path, &file, &content_type).await?;
                crate::style::progress_done(&format!(
                    "stored {container}/{} ({}, {})",
                    meta.name,
                    size(meta.size),
                    meta.content_type
                ));
            }
            Cmd::Rm {
                app,
                container,
                name,
            } => {
                let path = format!("/v1/apps/{}/blobs/{container}/{}", enc(&app), enc(&name));
                let resp = client
                    .send(Method::DELETE, &path, "application/json", Bytes::new())
                    .await?;
                let _: serde_json::Value = client.json(resp).await?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn download(
    client: &crate::client::Client,
    path: &str,
    output: Option<PathBuf>,
) -> CliResult<()> {
    let resp = client
        .send(Method::GET, path, "application/json", Bytes::new())
        .await?;
    let status = resp.status();
    let total = resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body
            .collect()
            .await
            .map_err(|e| CliError::new(format!("reading the node's answer: {e}")))?
            .to_bytes();
        return Err(api_error(status, &bytes));
    }
    let mut out: Box<dyn Write> = match &output {
        Some(p) => Box::new(
            std::fs::File::create(p)
                .map_err(|e| CliError::new(format!("cannot create {}: {e}", p.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut meter = Meter::new("downloading", total, output.is_some());
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CliError::new(format!("the download broke off: {e}")))?;
        if let Ok(data) = frame.into_data() {
            out.write_all(&data)
                .map_err(|e| CliError::new(format!("writing the download: {e}")))?;
            meter.add(data.len() as u64);
        }
    }
    out.flush()
        .map_err(|e| CliError::new(format!("writing the download: {e}")))?;
    if let Some(p) = output {
        meter.finish(&format!("saved {}", p.display()));
    }
    Ok(())
}

async fn upload(
    client: &crate::client::Client,
    path: &str,
    file: &std::path::Path,
    content_type: &str,
) -> CliResult<Object> {
    let (reader, total): (Box<dyn AsyncRead + Send + Unpin>, Option<u64>) =
        if file.as_os_str() == "-" {
            (Box::new(tokio::io::stdin()), None)
        } else {
            let f = tokio::fs::File::open(file)
                .await
                .map_err(|e| CliError::new(format!("cannot open {}: {e}", file.display())))?;
            let len = f.metadata().await.ok().map(|m| m.len());
            (Box::new(f), len)
        };
    let body = ReadBody {
        reader,
        buf: vec![0; 256 << 10],
        meter: Meter::new("uploading", total, true),
        total,
    };
    let resp = client
        .send_body(Method::PUT, path, content_type, body.boxed_unsync())
        .await?;
    client.json(resp).await
}

/// The node's own rule, checked before anything is sent.
fn check_name(name: &str) -> CliResult<()> {
    nubo_blob::check_name(name).map_err(|e| CliError::new(e.to_string()))
}

/// Progress of a transfer on stderr, at most a few times a second, and
/// only on a terminal.
struct Meter {
    what: &'static str,
    total: Option<u64>,
    done: u64,
    last: Instant,
    show: bool,
}

impl Meter {
    fn new(what: &'static str, total: Option<u64>, show: bool) -> Self {
        Self {
            what,
            total,
            done: 0,
            last: Instant::now(),
            show: show && std::io::stderr().is_terminal(),
        }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if !self.show || self.last.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.last = Instant::now();
        let of = match self.total {
            Some(t) if t > 0 => format!(" of {} ({}%)", size(t), self.done * 100 / t),
            _ => String::new(),
        };
        eprint!("\r  … {} {}{of}   ", self.what, size(self.done));
    }

    fn finish(&self, msg: &str) {
        if self.show {
            eprint!("\r");
        }
        crate::style::progress_done(msg);
    }
}

/// A request body read from a file or stdin in chunks.
struct ReadBody {
    reader: Box<dyn AsyncRead + Send + Unpin>,
    buf: Vec<u8>,
    meter: Meter,
    total: Option<u64>,
}

impl Body for ReadBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        let mut rb = ReadBuf::new(&mut this.buf);
        match Pin::new(&mut this.reader).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let chunk = Bytes::copy_from_slice(rb.filled());
                if chunk.is_empty() {
                    if this.meter.show {
                        eprint!("\r");
                    }
                    return Poll::Ready(None);
                }
                this.meter.add(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.total {
            Some(t) => SizeHint::with_exact(t),
            None => SizeHint::default(),
        }
    }
}
