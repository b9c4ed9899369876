//! How a plan reads: one line per change, `+` add, `~` change, `-` remove,
//! with the reason for every restart.

use crate::deploy::{Plan, size};
use crate::style::{bold, green, red, yellow};
use nubo_manifest::ChangeKind;
use nubo_plan::{AppDef, RouteTarget, Step, short};

#[derive(Default)]
pub struct Counts {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
}

/// The plan as lines, and how many additions, changes and removals it has.
pub fn render(
    plan: &Plan,
    sources: &std::collections::BTreeMap<String, std::path::PathBuf>,
) -> (Vec<String>, Counts) {
    let mut lines = Vec::new();
    let mut n = Counts::default();
    let des = &plan.desired;
    let cur = plan.current.as_ref();
    let secret = |name: &str| des.variables.get(name).is_some_and(|v| v.secret);
    for step in &plan.steps {
        match step {
            Step::UploadComponent { component, digest } => {
                let sz = sources
                    .get(digest)
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map(|m| size(m.len()))
                    .unwrap_or_default();
                lines.push(format!(
                    "  {} upload component {component} ({}, {sz})",
                    green("+"),
                    short(digest)
                ));
            }
            Step::UploadFiles { route, digests } => {
                let s = if digests.len() == 1 { "" } else { "s" };
                lines.push(format!(
                    "  {} upload {} static file{s} for {route}",
                    green("+"),
                    digests.len()
                ));
            }
            Step::CreateApp { name, settings } => {
                n.add += 1;
                let host = if settings.hosts.is_empty() {
                    "any host".to_string()
                } else {
                    settings.hosts.join(", ")
                };
                lines.push(format!(
                    "  {} app {name} (base {}, {host})",
                    green("+"),
                    settings.base
                ));
            }
            Step::SetSettings { settings } => {
                n.change += 1;
                let host = if settings.hosts.is_empty() {
                    "any host".to_string()
                } else {
                    settings.hosts.join(", ")
                };
                let q = settings.quotas;
                lines.push(format!(
                    "  {} app settings: base {}, {host}; quotas: kv_mb {}, blob_mb {}, queue_messages {}, dead_letters {}",
                    yellow("~"),
                    settings.base,
                    q.kv_mb,
                    q.blob_mb,
                    q.queue_messages,
                    q.dead_letters
                ));
            }
            Step::SetVariable { name, value, .. } => {
                let shown = if secret(name) {
                    "(secret)".to_string()
                } else {
                    format!("{value:?}")
                };
                let readers = des.readers(name);
                let restarts = restarts_note(cur, &readers);
                if cur.is_some_and(|c| c.variables.contains_key(name)) {
                    n.change += 1;
                    lines.push(format!(
                        "  {} variable {name} = {shown}{restarts}",
                        yellow("~")
                    ));
                } else {
                    n.add += 1;
                    lines.push(format!(
                        "  {} variable {name} = {shown}{restarts}",
                        green("+")
                    ));
                }
            }
            Step::RemoveVariable { name } => {
                n.remove += 1;
                lines.push(format!("  {} variable {name}", red("-")));
            }
            Step::AddComponent { name, component } => {
                n.add += 1;
                lines.push(format!(
                    "  {} component {name} ({})",
                    green("+"),
                    short(&component.digest)
                ));
            }
            Step::ReplaceComponent { name, reasons, .. } => {
                n.change += 1;
                lines.push(format!(
                    "  {} component {name}: restart — {}",
                    yellow("~"),
                    reasons.join("; ")
                ));
            }
            Step::SetConfig {
                component,
                key,
                value,
            } => {
                n.change += 1;
                lines.push(format!(
                    "  {} config {component}.{key} = {value:?} (restarts {component})",
                    yellow("~")
                ));
            }
            Step::RemoveConfig { component, key } => {
                n.change += 1;
                lines.push(format!(
                    "  {} config {component}.{key} removed (restarts {component})",
                    yellow("~")
                ));
            }
            Step::StartComponent { name } => {
                n.change += 1;
                lines.push(format!("  {} component {name}: start", yellow("~")));
            }
            Step::StopComponent { name } => {
                n.change += 1;
                lines.push(format!("  {} component {name}: stop", yellow("~")));
            }
            Step::SetRoutes { routes } => {
                let old: &[nubo_plan::Route] = cur.map(|c| c.routes.as_slice()).unwrap_or(&[]);
                let mut any = false;
                for r in routes {
                    match old.iter().find(|o| o.pattern == r.pattern) {
                        None => {
                            n.add += 1;
                            lines.push(format!("  {} route {}", green("+"), route_line(r)));
                        }
                        Some(o) if o.target != r.target => {
                            n.change += 1;
                            let what = match (&o.target, &r.target) {
                                (RouteTarget::Static(_), RouteTarget::Static(_)) => {
                                    " (files changed)"
                                }
                                _ => "",
                            };
                            lines.push(format!("  {} route {}{what}", yellow("~"), route_line(r)));
                        }
                        Some(_) => continue,
                    }
                    any = true;
                }
                for o in old {
                    if !routes.iter().any(|r| r.pattern == o.pattern) {
                        n.remove += 1;
                        any = true;
                        lines.push(format!("  {} route {}", red("-"), route_line(o)));
                    }
                }
                if !any {
                    n.change += 1;
                    lines.push(format!("  {} routes reordered", yellow("~")));
                }
            }
            Step::SetSection { key, value } => {
                let old = cur.and_then(|c| c.sections.get(key));
                let new = Some(value).filter(|v| !nubo_manifest::is_empty_value(v));
                section_lines(key, old, new, &mut lines, &mut n);
            }
            Step::RemoveComponent { name } => {
                n.remove += 1;
                lines.push(format!(
                    "  {} component {name} (drained, then stopped)",
                    red("-")
                ));
            }
            Step::RemoveApp { keep_data } => {
                n.remove += 1;
                lines.push(format!("  {} app {}", red("-"), plan.app));
                lines.push(if *keep_data {
                    "      its data is kept: a new app of this name will see it".to_string()
                } else {
                    format!(
                        "      {} its data: every key, blob, queued and dead message, task, cron run and SQL database",
                        red("deletes")
                    )
                });
            }
        }
    }
    (lines, n)
}

fn restarts_note(cur: Option<&AppDef>, readers: &[String]) -> String {
    let running: Vec<&String> = readers
        .iter()
        .filter(|r| cur.is_some_and(|c| c.components.contains_key(*r)))
        .collect();
    if running.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = running.iter().map(|s| s.as_str()).collect();
        format!(" (restarts {}: reads it)", names.join(", "))
    }
}

/// A section's changes as its capability describes them; a section this
/// CLI does not know (a newer node's) as one line.
fn section_lines(
    key: &str,
    old: Option<&serde_json::Value>,
    new: Option<&serde_json::Value>,
    lines: &mut Vec<String>,
    n: &mut Counts,
) {
    let Some(section) = nubo_node::schema().section(key) else {
        n.change += 1;
        lines.push(format!("  {} {key} changed", yellow("~")));
        return;
    };
    for c in section.describe(old, new) {
        let mark = match c.kind {
            ChangeKind::Add => {
                n.add += 1;
                green("+")
            }
            ChangeKind::Change => {
                n.change += 1;
                yellow("~")
            }
            ChangeKind::Remove => {
                n.remove += 1;
                red("-")
            }
        };
        lines.push(format!("  {mark} {}", c.what));
        if let Some(d) = c.detail {
            lines.push(format!("      {d}"));
        }
    }
}

fn route_line(r: &nubo_plan::Route) -> String {
    match &r.target {
        RouteTarget::Component(c) => format!("{} → component {c}", r.pattern),
        RouteTarget::Queue(q) => format!("{} → queue {q}", r.pattern),
        RouteTarget::Sse { topics } => format!("{} → events of {}", r.pattern, topics.join(", ")),
        RouteTarget::WebSocket {
            topics, component, ..
        } => format!(
            "{} → websocket on {}{}",
            r.pattern,
            topics.join(", "),
            component
                .as_ref()
                .map(|c| format!(", messages to component {c}"))
                .unwrap_or_default()
        ),
        RouteTarget::Static(files) => {
            let s = if files.len() == 1 { "" } else { "s" };
            format!("{} → {} static file{s}", r.pattern, files.len())
        }
    }
}

/// `Plan: 2 to add, 1 to change, 0 to remove.`
pub fn summary(n: &Counts) -> String {
    bold(&format!(
        "Plan: {} to add, {} to change, {} to remove.",
        n.add, n.change, n.remove
    ))
}

/// Prints the plan against `node` (or that there is nothing to do);
/// whether it has changes.
pub fn print(
    plan: &Plan,
    node: &str,
    sources: &std::collections::BTreeMap<String, std::path::PathBuf>,
) -> (bool, Counts) {
    let (lines, counts) = render(plan, sources);
    if lines.is_empty() {
        println!(
            "app `{}` on {node} is up to date (revision {})",
            plan.app, plan.revision
        );
        return (false, counts);
    }
    println!("app `{}` on {node} (revision {}):", plan.app, plan.revision);
    for l in &lines {
        println!("{l}");
    }
    println!("{}", summary(&counts));
    (true, counts)
}
