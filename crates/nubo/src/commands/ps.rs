//! `nubo ps`: the nodes (in a cluster, all of them, with their health),
//! then the apps, their components, state and revision.

use crate::CliResult;
use crate::client::NodeArgs;
use std::process::ExitCode;

/// List the nodes, and the apps and components they run.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  nubo ps --node http://127.0.0.1:3001\n\nA node is `ready` while its heartbeat is fresh, `late` when it missed two;\na node that stopped leaves the list within 10 s."
)]
pub struct Args {
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(serde::Deserialize)]
struct Nodes {
    cluster: bool,
    nodes: Vec<NodeRow>,
}

#[derive(serde::Deserialize)]
struct NodeRow {
    id: String,
    http: String,
    health: String,
    age_ms: u64,
    apps: std::collections::BTreeMap<String, u64>,
    #[serde(default)]
    failing: std::collections::BTreeMap<String, String>,
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
        let nodes: Nodes = client.get("/v1/nodes").await?;
        if nodes.cluster {
            print_nodes(&nodes.nodes);
            println!();
        }
        let apps: Vec<App> = client.get("/v1/apps").await?;
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
        print_table(&rows);
        Ok(ExitCode::SUCCESS)
    })
}

fn print_nodes(nodes: &[NodeRow]) {
    let mut rows = vec![[
        "NODE".to_string(),
        "HEALTH".into(),
        "SEEN".into(),
        "APPS".into(),
        "HTTP".into(),
    ]];
    for n in nodes {
        let mut apps: Vec<String> = n.apps.iter().map(|(a, r)| format!("{a}@{r}")).collect();
        apps.extend(n.failing.keys().map(|a| format!("{a}:FAILING")));
        rows.push([
            n.id.clone(),
            n.health.clone(),
            format!("{:.1}s ago", n.age_ms as f64 / 1000.0),
            if apps.is_empty() {
                "-".into()
            } else {
                apps.join(",")
            },
            n.http.clone(),
        ]);
    }
    print_table(&rows);
    for n in nodes {
        for (app, why) in &n.failing {
            println!("{}: app `{app}` {why}", n.id);
        }
    }
}

fn print_table<const N: usize>(rows: &[[String; N]]) {
    let widths: Vec<usize> = (0..N)
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
}
