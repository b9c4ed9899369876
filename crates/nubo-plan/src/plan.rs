//! `plan(current, desired)`: the steps between two definitions.
//!
//! The order is what keeps an app from serving a half-applied state:
//! uploads first, then everything that prepares new components (variables,
//! new and replaced components, config, starts), then the one step that
//! switches routes, and only then stops and removals. A node applies the
//! whole list as one revision, so this order is also the order in which it
//! starts, switches and drains.

use crate::model::{AppDef, ComponentDef, RouteTarget};
use crate::step::Step;
use std::collections::BTreeSet;

/// The steps that turn `current` into `desired` (`None`: no app). Empty
/// when they are equal.
pub fn plan(current: Option<&AppDef>, desired: Option<&AppDef>) -> Vec<Step> {
    let (cur, des) = match (current, desired) {
        (None, None) => return Vec::new(),
        (Some(_), None) => return vec![Step::RemoveApp { keep_data: false }],
        (cur, Some(des)) => (cur, des),
    };
    let mut steps = uploads(cur, des);
    // A new app is created with its settings; nothing else to set.
    let mut empty = AppDef::new(des.name.clone());
    empty.settings = des.settings.clone();
    let cur = match cur {
        Some(c) => c,
        None => {
            steps.push(Step::CreateApp {
                name: des.name.clone(),
                settings: des.settings.clone(),
            });
            &empty
        }
    };
    if cur.settings != des.settings {
        steps.push(Step::SetSettings {
            settings: des.settings.clone(),
        });
    }
    for (name, v) in &des.variables {
        if cur.variables.get(name) != Some(v) {
            steps.push(Step::SetVariable {
                name: name.clone(),
                value: v.value.clone(),
                secret: v.secret,
            });
        }
    }
    let mut stops = Vec::new();
    for (name, want) in &des.components {
        match cur.components.get(name) {
            None => steps.push(Step::AddComponent {
                name: name.clone(),
                component: want.clone(),
            }),
            Some(have) if have == want => {}
            Some(have) => {
                let reasons = replace_reasons(have, want);
                if reasons.is_empty() {
                    config_steps(name, have, want, &mut steps);
                    if want.started && !have.started {
                        steps.push(Step::StartComponent { name: name.clone() });
                    } else if !want.started && have.started {
                        stops.push(Step::StopComponent { name: name.clone() });
                    }
                } else {
                    steps.push(Step::ReplaceComponent {
                        name: name.clone(),
                        component: want.clone(),
                        reasons,
                    });
                }
            }
        }
    }
    if cur.routes != des.routes {
        steps.push(Step::SetRoutes {
            routes: des.routes.clone(),
        });
    }
    let keys: BTreeSet<&String> = cur.sections.keys().chain(des.sections.keys()).collect();
    for key in keys {
        let want = des.sections.get(key);
        if cur.sections.get(key) != want {
            steps.push(Step::SetSection {
                key: key.clone(),
                value: want.cloned().unwrap_or(serde_json::Value::Null),
            });
        }
    }
    steps.extend(stops);
    for name in cur.components.keys() {
        if !des.components.contains_key(name) {
            steps.push(Step::RemoveComponent { name: name.clone() });
        }
    }
    for name in cur.variables.keys() {
        if !des.variables.contains_key(name) {
            steps.push(Step::RemoveVariable { name: name.clone() });
        }
    }
    steps
}

/// Why a component needs a new instance rather than a config edit; empty
/// when config and started state are all that differ.
fn replace_reasons(have: &ComponentDef, want: &ComponentDef) -> Vec<String> {
    let mut reasons = Vec::new();
    if have.digest != want.digest {
        reasons.push(format!(
            "new build ({} → {})",
            short(&have.digest),
            short(&want.digest)
        ));
    }
    if have.limits != want.limits {
        let (a, b) = (have.limits, want.limits);
        let mut changed = Vec::new();
        if a.memory_mb != b.memory_mb {
            changed.push(format!("memory_mb {} → {}", a.memory_mb, b.memory_mb));
        }
        if a.timeout_ms != b.timeout_ms {
            changed.push(format!("timeout_ms {} → {}", a.timeout_ms, b.timeout_ms));
        }
        if a.max_instances != b.max_instances {
            changed.push(format!(
                "max_instances {} → {}",
                a.max_instances, b.max_instances
            ));
        }
        if a.cpu_ms != b.cpu_ms {
            let ms = |v: Option<u64>| v.map_or_else(|| "none".to_string(), |v| v.to_string());
            changed.push(format!("cpu_ms {} → {}", ms(a.cpu_ms), ms(b.cpu_ms)));
        }
        reasons.push(format!("limits changed ({})", changed.join(", ")));
    }
    if have.allowed_outbound_hosts != want.allowed_outbound_hosts {
        reasons.push("allowed_outbound_hosts changed".to_string());
    }
    // Grants: a changed list restarts the component with the new one.
    let keys: std::collections::BTreeSet<&String> =
        have.grants.keys().chain(want.grants.keys()).collect();
    for key in keys {
        let (a, b) = (have.granted(key), want.granted(key));
        if a != b {
            reasons.push(format!("{key} [{}] → [{}]", a.join(", "), b.join(", ")));
        }
    }
    reasons
}

fn config_steps(name: &str, have: &ComponentDef, want: &ComponentDef, steps: &mut Vec<Step>) {
    for (key, value) in &want.config {
        if have.config.get(key) != Some(value) {
            steps.push(Step::SetConfig {
                component: name.to_string(),
                key: key.clone(),
                value: value.clone(),
            });
        }
    }
    for key in have.config.keys() {
        if !want.config.contains_key(key) {
            steps.push(Step::RemoveConfig {
                component: name.to_string(),
                key: key.clone(),
            });
        }
    }
}

/// Content the node may not have yet: digests the current definition does
/// not already use.
fn uploads(cur: Option<&AppDef>, des: &AppDef) -> Vec<Step> {
    let have = cur.map(AppDef::digests).unwrap_or_default();
    let mut sent = BTreeSet::new();
    let mut steps = Vec::new();
    for (name, c) in &des.components {
        if !have.contains(&c.digest) && sent.insert(c.digest.clone()) {
            steps.push(Step::UploadComponent {
                component: name.clone(),
                digest: c.digest.clone(),
            });
        }
    }
    for r in &des.routes {
        if let RouteTarget::Static(files) = &r.target {
            let digests: Vec<String> = files
                .values()
                .filter(|d| !have.contains(*d) && sent.insert((*d).clone()))
                .cloned()
                .collect();
            if !digests.is_empty() {
                steps.push(Step::UploadFiles {
                    route: r.pattern.to_string(),
                    digests,
                });
            }
        }
    }
    steps
}

/// The first 12 hex digits of a digest, as shown to people.
pub fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}
