//! Loading an app folder: definition file, build, components, routes.

use crate::{CliError, CliResult};
use nubo_gateway::{Router, StaticDir, Target};
use nubo_manifest::{AppSpec, EnvVariables, RouteTarget, Stage};
use nubo_wasm::{ComponentSettings, Runtime};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `DIR` or `DIR/nubo.toml` → the path of the definition file.
pub fn manifest_path(dir: &Path) -> PathBuf {
    if dir.is_file() {
        dir.to_path_buf()
    } else {
        dir.join(nubo_manifest::FILE_NAME)
    }
}

pub fn load_spec(dir: &Path, stage: Stage) -> CliResult<AppSpec> {
    Ok(nubo_manifest::load(
        &manifest_path(dir),
        &EnvVariables,
        stage,
    )?)
}

/// Compiles every component and builds the routing table. Either every
/// component loads or the app does not start: nothing serves half-configured.
pub fn load_router(runtime: &Runtime, app: &AppSpec, verbose: bool) -> CliResult<Router> {
    let mut components = std::collections::BTreeMap::new();
    for (name, spec) in &app.components {
        let started = Instant::now();
        let settings = ComponentSettings {
            app: app.name.clone(),
            component: name.clone(),
            config: spec.config.clone(),
            allowed_outbound_hosts: spec.allowed_outbound_hosts.clone(),
            limits: spec.limits,
        };
        let component = runtime.load_http(&spec.source, settings).map_err(|e| {
            let hint = match e {
                nubo_wasm::LoadError::CoreModule { .. } => {
                    "build it as a component: `cargo build --target wasm32-wasip2`"
                }
                nubo_wasm::LoadError::Imports(_) => {
                    "Nubo provides wasi:http, wasi:config and wasi:cli 0.2; remove the other imports or grant them in nubo.toml"
                }
                _ => "check `source` in nubo.toml and the component's build",
            };
            CliError::new(format!("component `{name}`: {e}")).hint(hint)
        })?;
        if verbose {
            println!("  loaded component `{name}` in {:.0?}", started.elapsed());
        }
        components.insert(name.clone(), component);
    }
    let mut routes = Vec::new();
    for route in &app.routes {
        let target = match &route.target {
            RouteTarget::Component(name) => match components.get(name) {
                Some(c) => Target::Component(c.clone()),
                None => {
                    return Err(CliError::new(format!(
                        "route {} names unknown component `{name}`",
                        route.pattern
                    )));
                }
            },
            RouteTarget::Static(dir) => Target::Static(
                StaticDir::new(dir)
                    .map_err(|e| CliError::new(format!("static dir {}: {e}", dir.display())))?,
            ),
        };
        routes.push((route.pattern.clone(), target));
    }
    Ok(Router::new(app.name.clone(), routes))
}

/// One line per route, for `nubo up`'s banner.
pub fn describe_routes(router: &Router, root: &Path) -> Vec<String> {
    let width = router
        .routes()
        .map(|(p, _)| p.to_string().len())
        .max()
        .unwrap_or(0);
    router
        .routes()
        .map(|(p, t)| {
            let target = match t {
                Target::Component(c) => format!("component `{}`", c.name()),
                Target::Static(dir) => {
                    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
                    let shown = dir.root().strip_prefix(&root).unwrap_or(dir.root());
                    format!("static files in {}/", shown.display())
                }
            };
            format!("  {:width$}  → {target}", p.to_string())
        })
        .collect()
}
