//! Loading an app folder: definition file, build, components, routes.

use crate::CliResult;
use nubo_manifest::{AppSpec, EnvVariables, RouteTarget, Stage, Target};
use std::path::{Path, PathBuf};

/// `DIR` or `DIR/nubo.toml` → the path of the definition file.
pub fn manifest_path(dir: &Path) -> PathBuf {
    if dir.is_file() {
        dir.to_path_buf()
    } else {
        dir.join(nubo_manifest::FILE_NAME)
    }
}

pub fn load_spec(dir: &Path, stage: Stage) -> CliResult<AppSpec> {
    load_spec_for(dir, stage, Target::default())
}

/// [`load_spec`] for a node known to be `target`: what cannot serve
/// there is an error at its place in the file.
pub fn load_spec_for(dir: &Path, stage: Stage, target: Target) -> CliResult<AppSpec> {
    let schema = nubo_manifest::Schema {
        target,
        ..nubo_node::schema()
    };
    Ok(nubo_manifest::load(
        &manifest_path(dir),
        &EnvVariables,
        stage,
        &schema,
    )?)
}

/// One line per route, for `nubo up`'s banner.
pub fn describe_routes(app: &AppSpec) -> Vec<String> {
    let base = if app.base == "/" {
        ""
    } else {
        app.base.as_str()
    };
    let shown: Vec<String> = app
        .routes
        .iter()
        .map(|r| format!("{base}{}", r.pattern))
        .collect();
    let width = shown.iter().map(|p| p.len()).max().unwrap_or(0);
    let root = app.root.canonicalize().unwrap_or_else(|_| app.root.clone());
    app.routes
        .iter()
        .zip(shown)
        .map(|(r, p)| {
            let target = match &r.target {
                RouteTarget::Component(c) => format!("component `{c}`"),
                RouteTarget::Queue(q) => format!("queue `{q}` (POST publishes the body)"),
                RouteTarget::Sse { topics } => {
                    format!("server-sent events of {}", topics.join(", "))
                }
                RouteTarget::WebSocket { topics, .. } => {
                    format!("websocket on {}", topics.join(", "))
                }
                RouteTarget::Static(dir) => {
                    let dir = dir.canonicalize().unwrap_or_else(|_| dir.clone());
                    let rel = dir.strip_prefix(&root).unwrap_or(&dir);
                    format!("static files in {}/", rel.display())
                }
            };
            format!("  {p:width$}  → {target}")
        })
        .collect()
}
