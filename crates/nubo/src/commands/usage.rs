//! `nubo usage`: what an app used, as a table.

use crate::CliResult;
use crate::client::NodeArgs;
use std::collections::BTreeMap;
use std::process::ExitCode;

/// Show what an app used: requests, guest CPU, memory, bytes sent and
/// calls into each capability, over a span back from now.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  nubo usage shop\n  nubo usage shop --since 7d --by component\n  nubo usage shop --by user --json"
)]
pub struct Args {
    /// App name; may be left out when the node runs exactly one app.
    pub app: Option<String>,
    /// How far back: 30m, 24h, 7d (at most 365d).
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// One row per component, route, user or minute (`time`), or one for
    /// the whole app.
    #[arg(long, value_enum, default_value = "app")]
    pub by: By,
    /// Print the control API's JSON answer.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum By {
    App,
    Component,
    Route,
    User,
    Time,
}

impl By {
    fn as_str(self) -> &'static str {
        match self {
            By::App => "app",
            By::Component => "component",
            By::Route => "route",
            By::User => "user",
            By::Time => "time",
        }
    }
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Answer {
    app: String,
    since_minute: u64,
    until_minute: u64,
    by: String,
    rows: Vec<Row>,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Row {
    key: String,
    usage: BTreeMap<String, u64>,
}

/// A row's figures, by metric.
type Figures = BTreeMap<String, u64>;

/// A column every table has: its heading and how a row shows it.
type Column = (&'static str, fn(&Figures) -> String);

const COLUMNS: &[Column] = &[
    ("REQUESTS", |u| count(requests(u))),
    ("5XX", |u| count(get(u, "requests_5xx"))),
    ("RUNS", |u| count(get(u, "runs"))),
    ("CPU", |u| seconds(get(u, "cpu_us"))),
    ("MEMORY", |u| mb_seconds(get(u, "memory_mb_ms"))),
    ("PEAK", |u| bytes(get(u, "memory_peak_bytes"))),
    ("OUT", |u| bytes(get(u, "bytes_out"))),
];

/// Metrics the fixed columns show; any other gets a column of its own.
const SHOWN: &[&str] = &[
    "requests_2xx",
    "requests_3xx",
    "requests_4xx",
    "requests_5xx",
    "runs",
    "cpu_us",
    "memory_mb_ms",
    "memory_peak_bytes",
    "bytes_out",
];

pub fn run(args: Args) -> CliResult<ExitCode> {
    let client = args.node.connect(None)?;
    crate::async_runtime()?.block_on(async move {
        let app = client.app_or_only(args.app.clone()).await?;
        let path = format!(
            "/v1/apps/{app}/usage?since={}&by={}",
            args.since,
            args.by.as_str()
        );
        let answer: Answer = client.get(&path).await?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
            return Ok(ExitCode::SUCCESS);
        }
        print!("{}", table(&answer, args.by, &args.since));
        Ok(ExitCode::SUCCESS)
    })
}

fn table(a: &Answer, by: By, since: &str) -> String {
    let mut out = format!("{} over the last {since}\n", a.app);
    if a.rows.is_empty() {
        out.push_str("nothing used\n");
        return out;
    }
    let extra: Vec<&str> = {
        let mut names: Vec<&str> = a
            .rows
            .iter()
            .flat_map(|r| r.usage.keys())
            .map(String::as_str)
            .filter(|m| !SHOWN.contains(m))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    };
    let mut head = vec![by.as_str().to_uppercase()];
    head.extend(COLUMNS.iter().map(|(h, _)| h.to_string()));
    head.extend(extra.iter().map(|m| m.to_uppercase()));
    let mut lines = vec![head];
    for r in &a.rows {
        let key = match by {
            By::App => a.app.clone(),
            By::Time => minute_text(&r.key),
            _ if r.key.is_empty() => "-".into(),
            _ => r.key.clone(),
        };
        let mut line = vec![key];
        line.extend(COLUMNS.iter().map(|(_, show)| show(&r.usage)));
        line.extend(extra.iter().map(|m| count(get(&r.usage, m))));
        lines.push(line);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn get(u: &BTreeMap<String, u64>, name: &str) -> u64 {
    u.get(name).copied().unwrap_or(0)
}

fn requests(u: &BTreeMap<String, u64>) -> u64 {
    [
        "requests_2xx",
        "requests_3xx",
        "requests_4xx",
        "requests_5xx",
    ]
    .iter()
    .map(|m| get(u, m))
    .sum()
}

fn count(n: u64) -> String {
    n.to_string()
}

fn seconds(us: u64) -> String {
    if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

fn mb_seconds(mb_ms: u64) -> String {
    format!("{:.1} MB·s", mb_ms as f64 / 1000.0)
}

fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.2} GiB", n as f64 / 1_073_741_824.0),
    }
}

/// A minute since the Unix epoch as `YYYY-MM-DD HH:MM` (UTC).
fn minute_text(key: &str) -> String {
    key.parse::<i64>()
        .ok()
        .and_then(|m| chrono::DateTime::from_timestamp(m.saturating_mul(60), 0))
        .map_or_else(
            || key.to_string(),
            |t| t.format("%Y-%m-%d %H:%M").to_string(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_read_as_utc_times() {
        assert_eq!(minute_text("0"), "1970-01-01 00:00");
        // 2024-02-29 12:34 UTC is 1709210040 s.
        assert_eq!(
            minute_text(&(1_709_210_040 / 60).to_string()),
            "2024-02-29 12:34"
        );
    }

    #[test]
    fn a_table_has_a_column_per_extra_metric() {
        let a = Answer {
            app: "shop".into(),
            since_minute: 0,
            until_minute: 1,
            by: "component".into(),
            rows: vec![Row {
                key: "api".into(),
                usage: BTreeMap::from([
                    ("requests_2xx".into(), 9),
                    ("requests_5xx".into(), 1),
                    ("cpu_us".into(), 2_500),
                    ("kv_calls".into(), 4),
                ]),
            }],
        };
        let t = table(&a, By::Component, "24h");
        assert!(t.contains("KV_CALLS"), "{t}");
        let row = t.lines().nth(2).unwrap();
        assert!(row.starts_with("api"), "{t}");
        assert!(row.contains(" 10 ") && row.contains("2.5 ms"), "{t}");
    }
}
