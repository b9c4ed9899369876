//! `nubo logs`: component log lines from a node, and `-f` to follow them.

use crate::client::{NodeArgs, api_error};
use crate::{CliError, CliResult};
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use std::io::Write;
use std::process::ExitCode;

/// Show (and follow) the log lines of an app's components.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  nubo logs hello\n  nubo logs hello --component web -f")]
pub struct Args {
    /// App name; may be left out when the node runs exactly one app.
    pub app: Option<String>,
    /// Only this component's lines.
    #[arg(long, short)]
    pub component: Option<String>,
    /// Keep the stream open and print new lines as they come.
    #[arg(long, short)]
    pub follow: bool,
    /// How many recent lines to show first.
    #[arg(long, default_value_t = 100)]
    pub tail: usize,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(serde::Deserialize)]
struct Line {
    at: u64,
    component: String,
    request_id: String,
    stream: String,
    line: String,
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let client = args.node.connect(None)?;
    crate::async_runtime()?.block_on(async move {
        let app = client.app_or_only(args.app.clone()).await?;
        let mut query = format!("tail={}&follow={}", args.tail, args.follow);
        if let Some(c) = &args.component {
            query.push_str(&format!("&component={c}"));
        }
        let resp = client
            .send(
                Method::GET,
                &format!("/v1/apps/{app}/logs?{query}"),
                "application/json",
                Bytes::new(),
            )
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(api_error(status, &body));
        }
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        let mut out = std::io::stdout();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| CliError::new(format!("log stream broke: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let raw: Vec<u8> = buf.drain(..=i).collect();
                if let Ok(l) = serde_json::from_slice::<Line>(&raw) {
                    let _ = writeln!(
                        out,
                        "{} {} {}{}",
                        clock(l.at),
                        l.component,
                        if l.stream == "stderr" { "! " } else { "" },
                        escaped(&l.line)
                    );
                    let _ = l.request_id;
                } else if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&raw)
                    && let Some(n) = v.get("dropped")
                {
                    let _ = writeln!(out, "… {n} lines dropped (this reader fell behind)");
                }
            }
            let _ = out.flush();
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// A guest's line as text that cannot steer the terminal: control
/// characters (escape sequences, carriage returns, bells) are shown as
/// `\x1b`, `\r` and the like; a tab stays a tab.
fn escaped(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        match c {
            '\t' => out.push('\t'),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `HH:MM:SS.mmm` UTC.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        assert_eq!(super::escaped("plain\tline"), "plain\tline");
        assert_eq!(
            super::escaped("\u{1b}[2J\u{1b}]0;owned\u{7}x\ry"),
            "\\x1b[2J\\x1b]0;owned\\x07x\\ry"
        );
        assert_eq!(super::escaped("\u{9b}31m"), "\\x9b31m");
    }
}
