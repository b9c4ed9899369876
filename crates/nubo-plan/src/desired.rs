//! From a checked `nubo.toml` to the definition a node stores: every path
//! becomes the sha256 digest of the bytes it names, so that the definition
//! means the same on any machine, and the bytes are found by digest.

use crate::{AppDef, AppSettings, ComponentDef, Route, RouteTarget, Variable};
use nubo_manifest::{AppSpec, RouteTarget as SpecTarget};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A file or folder of the app that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl ReadError {
    fn new(path: &Path, source: std::io::Error) -> Self {
        Self {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The definition a folder describes, and where each digest's bytes are.
pub struct Desired {
    pub def: AppDef,
    pub sources: BTreeMap<String, PathBuf>,
}

pub fn desired(spec: &AppSpec) -> Result<Desired, ReadError> {
    let mut sources = BTreeMap::new();
    let mut def = AppDef::new(spec.name.clone());
    def.settings = AppSettings {
        description: spec.description.clone(),
        hosts: spec.hosts.clone(),
        base: spec.base.clone(),
        quotas: spec.quotas,
    };
    for (name, value) in &spec.variables {
        def.variables.insert(
            name.clone(),
            Variable {
                value: value.clone(),
                secret: spec.secret_variables.contains(name),
            },
        );
    }
    for (name, c) in &spec.components {
        let digest = file_digest(&c.source)?;
        sources.insert(digest.clone(), c.source.clone());
        def.components.insert(
            name.clone(),
            ComponentDef {
                digest,
                config: c.config_templates.clone(),
                allowed_outbound_hosts: c
                    .allowed_outbound_hosts
                    .iter()
                    .map(|r| r.to_string())
                    .collect(),
                limits: c.limits,
                grants: c
                    .grants
                    .iter()
                    .filter(|(_, names)| !names.is_empty())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                started: true,
            },
        );
    }
    for r in &spec.routes {
        let target = match &r.target {
            SpecTarget::Component(c) => RouteTarget::Component(c.clone()),
            SpecTarget::Queue(q) => RouteTarget::Queue(q.clone()),
            SpecTarget::Sse { topics } => RouteTarget::Sse {
                topics: topics.clone(),
            },
            SpecTarget::WebSocket {
                topics,
                component,
                path,
                origins,
            } => RouteTarget::WebSocket {
                topics: topics.clone(),
                component: component.clone(),
                path: path.clone(),
                origins: origins.clone(),
            },
            SpecTarget::Static(dir) => {
                let mut files = BTreeMap::new();
                walk(dir, dir, &mut files, &mut sources)?;
                RouteTarget::Static(files)
            }
        };
        def.routes.push(Route {
            pattern: r.pattern.clone(),
            target,
            access: r.access.clone(),
        });
    }
    def.sections = spec.sections.clone();
    Ok(Desired { def, sources })
}

fn file_digest(path: &Path) -> Result<String, ReadError> {
    let bytes = std::fs::read(path).map_err(|e| ReadError::new(path, e))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Every regular file under `dir` (symlinks followed only when they stay
/// inside the site; hidden files skipped).
fn walk(
    root: &Path,
    dir: &Path,
    files: &mut BTreeMap<String, String>,
    sources: &mut BTreeMap<String, PathBuf>,
) -> Result<(), ReadError> {
    let read = std::fs::read_dir(dir).map_err(|e| ReadError::new(dir, e))?;
    for entry in read {
        let entry = entry.map_err(|e| ReadError::new(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(real) = path.canonicalize() else {
            continue;
        };
        let Ok(root_real) = root.canonicalize() else {
            continue;
        };
        if !real.starts_with(&root_real) {
            continue;
        }
        if real.is_dir() {
            walk(root, &path, files, sources)?;
        } else if real.is_file() {
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let digest = file_digest(&real)?;
            sources.insert(digest.clone(), real);
            files.insert(rel.join("/"), digest);
        }
    }
    Ok(())
}
