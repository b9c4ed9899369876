//! `nubo ps`: apps on a node, their components, state and revision.

use crate::CliResult;
use crate::client::NodeArgs;
use std::process::ExitCode;

/// List the apps and components a node runs.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  nubo ps --node http://127.0.0.1:3001")]
pub struct Args {
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(serde::Deserialize)]
struct App {
    name: String,
    revision: u64,
    hosts: Vec<String>,
    base: String,
    components: Vec<Component>,
}

#[derive(serde::Deserialize)]
struct Component {
    name: String,
    state: String,
    instances: usize,
    max_instances: u32,
    digest: String,
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let client = args.node.connect(None)?;
    crate::async_runtime()?.block_on(async move {
        let apps: Vec<App> = client.get("/v1/apps").await?.unwrap_or_default();
        if apps.is_empty() {
            println!(
                "no apps on {} (deploy one with `nubo apply DIR`)",
                client.base
            );
            return Ok(ExitCode::SUCCESS);
        }
        let mut rows = vec![[
            "APP".to_string(),
            "REV".into(),
            "COMPONENT".into(),
            "STATE".into(),
            "INSTANCES".into(),
            "WASM".into(),
            "MOUNT".into(),
        ]];
        for a in &apps {
            let mount = if a.hosts.is_empty() {
                format!("*{}", a.base)
            } else {
                a.hosts
                    .iter()
                    .map(|h| format!("{h}{}", if a.base == "/" { "" } else { &a.base }))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            if a.components.is_empty() {
                rows.push([
                    a.name.clone(),
                    a.revision.to_string(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    mount.clone(),
                ]);
            }
            for c in &a.components {
                rows.push([
                    a.name.clone(),
                    a.revision.to_string(),
                    c.name.clone(),
                    c.state.clone(),
                    format!("{}/{}", c.instances, c.max_instances),
                    nubo_plan::short(&c.digest).to_string(),
                    mount.clone(),
                ]);
            }
        }
        let widths: Vec<usize> = (0..7)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        for r in rows {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:w$}"))
                .collect();
            println!("{}", line.join("  ").trim_end());
        }
        Ok(ExitCode::SUCCESS)
    })
}
