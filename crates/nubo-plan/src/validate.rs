//! What a node checks before it stores a definition. `nubo.toml` was checked
//! with line numbers on the user's machine; this is the same law for
//! anything that reaches the control API, which may not come from the CLI.

use crate::model::{AppDef, RouteTarget};
use nubo_manifest::{
    Declarations, GrantKey, OutboundRule, RoutePattern, is_name, is_variable_name,
};
use std::collections::BTreeSet;

/// Every problem with `app`, or `Ok`. `has_content(digest)` says whether the
/// node holds that upload; `grants` are the grant keys of the node's
/// capabilities.
pub fn validate(
    app: &AppDef,
    has_content: impl Fn(&str) -> bool,
    grants: &[GrantKey],
) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    if !is_name(&app.name) {
        errs.push(format!(
            "invalid app name `{}`: use lower-case letters, digits and `-`",
            app.name
        ));
    }
    for h in &app.settings.hosts {
        match nubo_manifest::normalize_host(h) {
            Ok(n) if &n == h => {}
            Ok(n) => errs.push(format!("host `{h}` must be written `{n}`")),
            Err(e) => errs.push(e.to_string()),
        }
    }
    match nubo_manifest::normalize_base(&app.settings.base) {
        Ok(b) if b == app.settings.base => {}
        Ok(b) => errs.push(format!(
            "base `{}` must be written `{b}`",
            app.settings.base
        )),
        Err(e) => errs.push(e.to_string()),
    }
    for name in app.variables.keys() {
        if !is_variable_name(name) {
            errs.push(format!("invalid variable name `{name}`"));
        }
    }
    for p in app.settings.tasks.problems() {
        errs.push(format!("[tasks]: {p}"));
    }
    for p in app.settings.quotas.problems() {
        errs.push(format!("[quotas]: {p}"));
    }
    for (name, c) in &app.components {
        for p in c.limits.problems() {
            errs.push(format!("component `{name}`: limits: {p}"));
        }
        if !is_name(name) {
            errs.push(format!("invalid component name `{name}`"));
        }
        if !is_digest(&c.digest) {
            errs.push(format!(
                "component `{name}`: digest `{}` is not a sha256 in hex",
                c.digest
            ));
        } else if !has_content(&c.digest) {
            errs.push(format!(
                "component `{name}`: wasm {} was never uploaded (PUT /v1/components/{})",
                crate::short(&c.digest),
                c.digest
            ));
        }
        for (key, t) in &c.config {
            let lookup = |v: &str| app.variables.get(v).map(|v| v.value.clone());
            if let Err(e) = nubo_manifest::render_template(t, lookup) {
                errs.push(format!("component `{name}`: config `{key}` {e}"));
            }
        }
        for (key, names) in &c.grants {
            let Some(grant) = grants.iter().find(|g| g.key == key) else {
                let known: Vec<&str> = grants.iter().map(|g| g.key).collect();
                errs.push(format!(
                    "component `{name}`: unknown grant `{key}` (this node knows {})",
                    known.join(", ")
                ));
                continue;
            };
            for p in grant.check(names, app) {
                errs.push(format!("component `{name}`: {}", p.message));
            }
        }
        for h in &c.allowed_outbound_hosts {
            if let Err(e) = OutboundRule::parse(h) {
                errs.push(format!("component `{name}`: {e}"));
            }
        }
        let l = c.limits;
        if !(1..=4096).contains(&l.memory_mb)
            || !(1..=24 * 3600 * 1000).contains(&l.timeout_ms)
            || !(1..=10_000).contains(&l.max_instances)
        {
            errs.push(format!(
                "component `{name}`: limits out of range (memory_mb 1..=4096, timeout_ms 1..=86400000, max_instances 1..=10000)"
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for r in &app.routes {
        let text = r.pattern.to_string();
        let reparsed = match &r.target {
            RouteTarget::Component(_)
            | RouteTarget::Queue(_)
            | RouteTarget::Sse { .. }
            | RouteTarget::WebSocket { .. } => RoutePattern::parse_http(&text),
            RouteTarget::Static(_) => RoutePattern::parse_static(&text),
        };
        if let Err(e) = reparsed {
            errs.push(format!("invalid route `{text}`: {e}"));
        }
        if !seen.insert(r.pattern.clone()) {
            errs.push(format!("two routes match the same paths: `{text}`"));
        }
        match &r.target {
            RouteTarget::Component(c) if !app.components.contains_key(c) => {
                errs.push(format!("route `{text}` names unknown component `{c}`"));
            }
            RouteTarget::Component(_) => {}
            RouteTarget::Queue(q) if !app.queues.contains_key(q) => {
                errs.push(format!("route `{text}` names undeclared queue `{q}`"));
            }
            RouteTarget::Queue(_) | RouteTarget::Sse { .. } => {}
            RouteTarget::WebSocket {
                component: Some(c), ..
            } if !app.components.contains_key(c) => {
                errs.push(format!("websocket `{text}` names unknown component `{c}`"));
            }
            RouteTarget::WebSocket { origins, .. } => {
                for o in origins.iter().filter(|o| !nubo_manifest::is_origin(o)) {
                    errs.push(format!("websocket `{text}`: invalid origin `{o}`"));
                }
            }
            RouteTarget::Static(files) => {
                for (path, digest) in files {
                    if !is_safe_relative(path) {
                        errs.push(format!(
                            "route `{text}`: file path `{path}` must be relative, without `..`, `\\` or empty segments"
                        ));
                    }
                    if !is_digest(digest) || !has_content(digest) {
                        errs.push(format!(
                            "route `{text}`: file `{path}` was never uploaded (PUT /v1/files/{digest})"
                        ));
                    }
                }
            }
        }
    }
    for (name, q) in &app.queues {
        if !nubo_manifest::is_store_name(name) {
            errs.push(format!("invalid queue name `{name}`"));
        }
        if !app.components.contains_key(&q.consumer) {
            errs.push(format!(
                "queue `{name}`: unknown consumer component `{}`",
                q.consumer
            ));
        }
        // The same ranges `nubo check` applies ([`nubo_manifest::ranges`]).
        for p in q.problems() {
            errs.push(format!("queue `{name}`: {p}"));
        }
    }
    for (i, c) in app.crons.iter().enumerate() {
        // The same rules `nubo check` applies ([`nubo_manifest::ranges`]).
        for p in c.problems() {
            errs.push(format!("cron `{}`: {p}", c.schedule));
        }
        if !app.components.contains_key(&c.component) {
            errs.push(format!(
                "cron `{}` names unknown component `{}`",
                c.schedule, c.component
            ));
        }
        if app.crons[..i].iter().any(|o| o.same_run(c)) {
            errs.push(format!(
                "cron `{}`: the same schedule, component and path are declared twice",
                c.schedule
            ));
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

impl Declarations for AppDef {
    fn declares(&self, section: &str, name: &str) -> bool {
        match section {
            "queue" => self.queues.contains_key(name),
            _ => false,
        }
    }

    fn has_component(&self, name: &str) -> bool {
        self.components.contains_key(name)
    }
}

/// 64 lower-case hex digits.
pub fn is_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `a/b.txt`: no leading `/`, no `.`/`..`/empty segments, no `\` or NUL.
fn is_safe_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.contains(['\\', '\0'])
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `nubo check` refuses in `[[cron]]`, the control API refuses
    /// too: a path with a space or a line break, and an entry twice.
    #[test]
    fn cron_entries_obey_the_rules_of_nubo_check() {
        let mut app = AppDef::new("a".to_string());
        app.components.insert(
            "web".into(),
            crate::model::ComponentDef::new("0".repeat(64)),
        );
        let entry = |path: &str| nubo_manifest::CronSpec {
            schedule: "*/5 * * * *".into(),
            component: "web".into(),
            path: path.into(),
            timezone: "UTC".into(),
            missed: nubo_manifest::Missed::Skip,
        };
        app.crons = vec![entry("/ok")];
        assert_eq!(validate(&app, |_| true, &[]), Ok(()));
        app.crons = vec![
            entry("/a b"),
            entry("/a\r\nx: y"),
            entry("/ok"),
            entry("/ok"),
        ];
        let errs = validate(&app, |_| true, &[]).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].contains("invalid cron path `/a b`"), "{errs:?}");
        assert!(errs[1].contains("invalid cron path"), "{errs:?}");
        assert!(errs[2].contains("declared twice"), "{errs:?}");
    }

    #[test]
    fn settings_out_of_range_are_named_with_their_table() {
        let mut app = AppDef::new("a".to_string());
        assert_eq!(validate(&app, |_| true, &[]), Ok(()));
        app.settings.quotas.kv_mb = 0;
        app.settings.tasks.max_running = 0;
        let errs = validate(&app, |_| true, &[]).unwrap_err();
        assert_eq!(
            errs,
            [
                "[tasks]: `max_running` must be between 1 and 10000, got 0",
                "[quotas]: `kv_mb` must be between 1 and 1048576, got 0"
            ]
        );
    }
}
