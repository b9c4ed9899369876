//! From a folder to a node: the plan against what the node runs and
//! performing it.

use crate::client::Client;
use crate::{CliError, CliResult, style};
use bytes::Bytes;
use http::Method;
use nubo_manifest::AppSpec;
use nubo_plan::{AppDef, Step, plan};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use nubo_plan::Desired;

/// The definition a folder describes (see [`nubo_plan::desired`]).
pub fn desired(spec: &AppSpec) -> CliResult<Desired> {
    nubo_plan::desired(spec).map_err(|e| CliError::new(e.to_string()))
}

/// What the node runs now.
#[derive(Deserialize)]
pub struct Current {
    pub revision: u64,
    pub definition: AppDef,
}

pub struct Plan {
    pub app: String,
    /// Revision the plan was made against (0: new app).
    pub revision: u64,
    pub current: Option<AppDef>,
    pub desired: AppDef,
    pub steps: Vec<Step>,
}

/// Plans `desired` against the node. Secrets are compared by digest (the
/// node never sends them back) and the real values go in the steps.
/// What the node is: part of a cluster or not. A node that cannot say
/// (its cluster unreachable) is taken as it answers its changes: the
/// node checks again.
pub async fn target(client: &Client) -> nubo_manifest::Target {
    #[derive(serde::Deserialize)]
    struct Nodes {
        cluster: bool,
    }
    match client.get::<Nodes>("/v1/nodes").await {
        Ok(n) => nubo_manifest::Target { cluster: n.cluster },
        Err(_) => nubo_manifest::Target::default(),
    }
}

pub async fn make_plan(client: &Client, desired: &AppDef) -> CliResult<Plan> {
    let current: Option<Current> = client
        .get_opt(&format!("/v1/apps/{}", desired.name))
        .await?;
    let (revision, current) = match current {
        Some(c) => (c.revision, Some(c.definition)),
        None => (0, None),
    };
    let conflicts = nubo_plan::conflicts(current.as_ref(), desired, &nubo_node::schema());
    if !conflicts.is_empty() {
        return Err(CliError::new(format!(
            "the node cannot take this definition:\n  {}",
            conflicts.join("\n  ")
        )));
    }
    let mut steps = plan(current.as_ref(), Some(&desired.redacted()));
    for s in &mut steps {
        if let Step::SetVariable { name, value, .. } = s
            && let Some(v) = desired.variables.get(name)
        {
            *value = v.value.clone();
        }
    }
    Ok(Plan {
        app: desired.name.clone(),
        revision,
        current,
        desired: desired.clone(),
        steps,
    })
}

/// Sends the plan: uploads (with progress), then every other step as one
/// revision. Returns the new revision.
pub async fn perform(
    client: &Client,
    plan: &Plan,
    sources: &BTreeMap<String, PathBuf>,
) -> CliResult<u64> {
    let uploads: Vec<(&str, &str, String)> = plan
        .steps
        .iter()
        .flat_map(|s| match s {
            Step::UploadComponent { digest, component } => {
                vec![(
                    "components",
                    digest.as_str(),
                    format!("component `{component}`"),
                )]
            }
            Step::UploadFiles { digests, route } => digests
                .iter()
                .map(|d| ("files", d.as_str(), format!("static files for {route}")))
                .collect(),
            _ => vec![],
        })
        .collect();
    let total = uploads.len();
    for (i, (kind, digest, what)) in uploads.iter().enumerate() {
        let path = sources
            .get(*digest)
            .ok_or_else(|| CliError::new(format!("no local file for {digest}")))?;
        let bytes = std::fs::read(path)
            .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
        crate::style::progress(&format!(
            "uploading {}/{total}: {} ({})",
            i + 1,
            path.file_name().unwrap_or_default().to_string_lossy(),
            size(bytes.len() as u64)
        ));
        let resp = client
            .send(
                Method::PUT,
                &format!("/v1/{kind}/{digest}"),
                "application/octet-stream",
                Bytes::from(bytes),
            )
            .await?;
        let _: serde_json::Value = client.json(resp).await.map_err(|e| {
            let err = CliError::new(format!("{what}: {}", e.message()));
            if e.code() == Some("core_module") {
                err.hint("build it as a component: `cargo build --target wasm32-wasip2`")
            } else if e.code() == Some("unsupported_import") {
                err.hint("Nubo provides wasi:http, wasi:config, wasi:keyvalue, wasi:blobstore, wasi:cli 0.2 and nubo:platform (see docs/runtime.md); remove the other imports")
            } else {
                err.hint(format!("check `source` in nubo.toml ({})", path.display()))
            }
        })?;
    }
    if total > 0 {
        crate::style::progress_done(&format!(
            "uploaded {total} file{}",
            if total == 1 { "" } else { "s" }
        ));
    }
    let changes: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| s.changes_definition())
        .collect();
    if changes.is_empty() {
        return Ok(plan.revision);
    }
    crate::style::progress("applying: starting new components, then switching routes");
    #[derive(Deserialize)]
    struct Changed {
        revision: u64,
    }
    let body = serde_json::json!({ "expected_revision": plan.revision, "steps": changes });
    let done: Changed = client
        .call(
            Method::POST,
            &format!("/v1/apps/{}/changes", plan.app),
            Some(&body),
        )
        .await?;
    crate::style::progress_done("applied");
    Ok(done.revision)
}

pub fn size(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// Warns, after a plan, of caps that the app's usage already nears or
/// passes: what applying them would do at once. Says nothing when the app
/// has no `[caps]`, is new, or the node cannot tell.
pub async fn warn_of_caps(client: &Client, desired: &AppDef) {
    let Some(caps) = desired.sections.get("caps") else {
        return;
    };
    let prices = desired
        .sections
        .get("usage")
        .and_then(|u| u.get("prices"))
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    let body = serde_json::json!({ "caps": caps, "prices": prices });
    let path = format!("/v1/apps/{}/caps/preview", desired.name);
    let Ok(answer) = client
        .call::<serde_json::Value>(Method::POST, &path, Some(&body))
        .await
    else {
        return;
    };
    let pause_at = caps
        .get("pause_background_at")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.9);
    for s in answer["caps"].as_array().into_iter().flatten() {
        let share = s["share"].as_f64().unwrap_or(0.0);
        let what = if share >= 1.0 {
            "its requests would be refused (503) at once"
        } else if share >= pause_at {
            "its queues, tasks and cron would pause at once"
        } else {
            continue;
        };
        println!(
            "{} caps.{}: {} of {}: {what}, until {}",
            style::yellow("!"),
            s["cap"].as_str().unwrap_or("?"),
            s["used"].as_str().unwrap_or("?"),
            s["limit"].as_str().unwrap_or("?"),
            s["resets"].as_str().unwrap_or("?"),
        );
    }
}
