//! What a node checks before it stores a definition. `nubo.toml` was checked
//! with line numbers on the user's machine; this is the same law for
//! anything that reaches the control API, which may not come from the CLI.

use crate::model::{AppDef, RouteTarget};
use nubo_manifest::{
    AppView, Declarations, OutboundRule, RoutePattern, Schema, is_name, is_variable_name,
};
use std::collections::BTreeSet;

/// Every problem with `app`, or `Ok`. `has_content(digest)` says whether the
/// node holds that upload; `schema` holds the grant keys and sections of
/// the node's capabilities.
pub fn validate(
    app: &AppDef,
    has_content: impl Fn(&str) -> bool,
    schema: &Schema,
) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    let view = AppView {
        schema,
        components: app.components.keys().map(String::as_str).collect(),
        variables: app.variables.keys().map(String::as_str).collect(),
        sections: &app.sections,
    };
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
            let Some(grant) = schema.grants.iter().find(|g| g.key == key) else {
                let known: Vec<&str> = schema.grants.iter().map(|g| g.key).collect();
                errs.push(format!(
                    "component `{name}`: unknown grant `{key}` (this node knows {})",
                    known.join(", ")
                ));
                continue;
            };
            for p in grant.check(names, &view) {
                errs.push(format!("component `{name}`: {}", p.message));
            }
        }
        for h in &c.allowed_outbound_hosts {
            if let Err(e) = OutboundRule::parse(h) {
                errs.push(format!("component `{name}`: {e}"));
            }
        }
        for p in c.limits.problems() {
            errs.push(format!("component `{name}`: limits: {p}"));
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
            RouteTarget::Queue(q) if !view.declares("queue", q) => {
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
    for (key, value) in &app.sections {
        match schema.section(key) {
            Some(section) => errs.extend(section.check(value, &view)),
            None => {
                let known: Vec<&str> = schema.sections.iter().map(|s| s.key()).collect();
                errs.push(format!(
                    "unknown key `{key}` (this node's sections are {})",
                    known.join(", ")
                ));
            }
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Why `current` may not become `new` though `new` is valid: what each
/// capability's section refuses in the change itself (a migration edited
/// after it was applied).
pub fn conflicts(current: Option<&AppDef>, new: &AppDef, schema: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    for section in &schema.sections {
        let key = section.key();
        let old = current.and_then(|c| c.sections.get(key));
        let want = new.sections.get(key);
        if old.is_some() && old != want {
            out.extend(section.conflicts(old, want));
        }
    }
    out
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

    #[test]
    fn settings_out_of_range_are_named_with_their_table() {
        let mut app = AppDef::new("a".to_string());
        assert_eq!(validate(&app, |_| true, &Schema::default()), Ok(()));
        app.settings.quotas.kv_mb = 0;
        let errs = validate(&app, |_| true, &Schema::default()).unwrap_err();
        assert_eq!(
            errs,
            ["[quotas]: `kv_mb` must be between 1 and 1048576, got 0"]
        );
    }
}
