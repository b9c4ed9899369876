//! From raw TOML to a trusted [`AppSpec`], collecting every problem.

use crate::error::{Reporter, parse_error};
use crate::ranges;
use crate::raw::{RawComponent, RawManifest, S};
use crate::section::{AppView, Schema, SectionFile, is_empty_value};
use crate::spec::{
    Access, AppSpec, AuthLevel, BuildSpec, ComponentSpec, Limits, RouteSpec, RouteTarget,
};
use crate::template::{self, Part};
use crate::{
    Declarations, ManifestError, OutboundRule, RoutePattern, Stage, VariableSource, is_name,
    is_variable_name,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

pub(crate) fn validate(
    path: &Path,
    text: &str,
    vars: &dyn VariableSource,
    stage: Stage,
    schema: &Schema,
) -> Result<AppSpec, ManifestError> {
    let raw: RawManifest = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => return Err(parse_error(path, text, &e)),
    };
    let root = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let root = std::path::absolute(&root).unwrap_or(root);
    let mut r = Reporter::new(path, text);

    let name = raw.app.get_ref().name.get_ref().clone();
    if !is_name(&name) {
        r.error_hint(
            raw.app.get_ref().name.span(),
            format!("invalid app name `{name}`"),
            "use lower-case letters, digits and `-`, starting with a letter (at most 63)",
        );
    }

    let values = resolve_variables(&raw, vars, &mut r);
    let mut components = BTreeMap::new();
    for (cname, comp) in &raw.component {
        if !is_name(cname.get_ref()) {
            r.error_hint(
                cname.span(),
                format!("invalid component name `{}`", cname.get_ref()),
                "use lower-case letters, digits and `-`, starting with a letter (at most 63)",
            );
        }
        let spec = component(&root, comp.get_ref(), &values, stage, &mut r);
        components.insert(cname.get_ref().clone(), spec);
    }
    top_level(text, schema, &mut r);
    let names = Names {
        components: raw.component.keys().map(|k| k.get_ref().as_str()).collect(),
        variables: raw.variables.keys().map(|k| k.get_ref().as_str()).collect(),
    };
    let sections = read_sections(text, &root, schema, &names, &mut r);
    let view = AppView {
        schema,
        components: names.components.clone(),
        variables: names.variables.clone(),
        sections: &sections,
    };
    for (cname, grants) in crate::grant::from_file(&raw, &schema.grants, &view, &mut r) {
        if let Some(c) = components.get_mut(&cname) {
            c.grants = grants;
        }
    }
    let routes = routes(&raw, &view, &root, &mut r);
    let (hosts, base) = mount(raw.app.get_ref(), &mut r);
    let quotas = crate::quotas::quotas(raw.quotas.as_ref(), &mut r);
    r.finish()?;
    let secret_variables = raw
        .variables
        .iter()
        .filter(|(_, v)| v.get_ref().secret)
        .map(|(k, _)| k.get_ref().clone())
        .collect();
    Ok(AppSpec {
        name,
        description: raw.app.get_ref().description.clone(),
        hosts,
        base,
        variables: values
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect(),
        secret_variables,
        root,
        components,
        routes,
        sections,
        quotas,
    })
}

/// What is wrong with a source file whose first eight bytes already
/// show it is no component, so that `nubo check` points at `source`;
/// anything subtler is left to the runtime's full check when it loads.
fn not_a_component(path: &Path) -> Option<(&'static str, &'static str)> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let mut f = std::fs::File::open(path).ok()?;
    let n = f.read(&mut head).ok()?;
    if n < 8 || &head[..4] != b"\0asm" {
        return Some((
            "is not WebAssembly (it does not start with `\\0asm`)",
            "point `source` at the .wasm file the build writes, such as target/wasm32-wasip2/release/NAME.wasm",
        ));
    }
    if head[4..] == [1, 0, 0, 0] {
        return Some((
            "is a core WebAssembly module, not a component",
            "build for `wasm32-wasip2` (a component), or wrap the module with `wasm-tools component new`",
        ));
    }
    None
}

/// Values of declared variables: from the source if set, else the default.
/// `None` for a required variable that is not set (already reported).
fn resolve_variables(
    raw: &RawManifest,
    vars: &dyn VariableSource,
    r: &mut Reporter<'_>,
) -> BTreeMap<String, Option<String>> {
    let mut values = BTreeMap::new();
    for (name, var) in &raw.variables {
        let n = name.get_ref();
        if !is_variable_name(n) {
            r.error_hint(
                name.span(),
                format!("invalid variable name `{n}`"),
                "use lower-case letters, digits and `_`, starting with a letter",
            );
            continue;
        }
        let v = var.get_ref();
        let required = v.required.as_ref().is_some_and(|s| *s.get_ref());
        let value = match (&v.default, required) {
            (Some(d), true) => {
                r.error_hint(
                    d.span(),
                    format!("variable `{n}` is required and also has a default"),
                    "remove `default`, or remove `required = true`",
                );
                None
            }
            (None, false) => {
                r.error_hint(
                    var.span(),
                    format!("variable `{n}` has neither a default nor `required = true`"),
                    format!(
                        "write `{n} = {{ default = \"...\" }}` or `{n} = {{ required = true }}`"
                    ),
                );
                None
            }
            (Some(d), false) => Some(vars.get(n).unwrap_or_else(|| d.get_ref().clone())),
            (None, true) => {
                let value = vars.get(n);
                if value.is_none() {
                    r.error_hint(
                        name.span(),
                        format!("required variable `{n}` is not set"),
                        format!(
                            "set it in the environment: export {}=...",
                            crate::EnvVariables::env_name(n)
                        ),
                    );
                }
                value
            }
        };
        values.insert(n.clone(), value);
    }
    values
}

fn component(
    root: &Path,
    comp: &RawComponent,
    values: &BTreeMap<String, Option<String>>,
    stage: Stage,
    r: &mut Reporter<'_>,
) -> ComponentSpec {
    let source = root.join(comp.source.get_ref());
    let build = comp.build.as_ref().map(|b| {
        let b = b.get_ref();
        let workdir = b
            .workdir
            .as_ref()
            .map(|w| root.join(w.get_ref()))
            .unwrap_or_else(|| root.to_path_buf());
        if let Some(w) = &b.workdir
            && !workdir.is_dir()
        {
            r.error(
                w.span(),
                format!("build workdir `{}` is not a folder", w.get_ref()),
            );
        }
        if b.command.get_ref().trim().is_empty() {
            r.error(b.command.span(), "build command is empty");
        }
        BuildSpec {
            command: b.command.get_ref().clone(),
            workdir,
            watch: b.watch.iter().map(|w| w.get_ref().clone()).collect(),
        }
    });
    let must_exist = stage == Stage::Built || build.is_none();
    if must_exist && !source.is_file() {
        let hint = if build.is_some() {
            "its build command makes it: `nubo build` runs it (`nubo up` and `nubo apply` do too, \
             unless --no-build); if it ran, check `source` against where it writes the .wasm"
                .to_string()
        } else {
            "build the component first, or add `build = { command = \"...\" }` so `nubo build` does"
                .to_string()
        };
        r.error_hint(
            comp.source.span(),
            format!(
                "component source `{}` does not exist",
                comp.source.get_ref()
            ),
            hint,
        );
    } else if must_exist && let Some((problem, hint)) = not_a_component(&source) {
        r.error_hint(
            comp.source.span(),
            format!("component source `{}` {problem}", comp.source.get_ref()),
            hint,
        );
    }

    let mut config = BTreeMap::new();
    let mut config_templates = BTreeMap::new();
    let mut reads_variables = BTreeSet::new();
    for (key, value) in &comp.config {
        config_templates.insert(key.get_ref().clone(), value.get_ref().clone());
        let parts = match template::parse(value.get_ref()) {
            Ok(parts) => parts,
            Err(e) => {
                r.error(value.span(), e);
                continue;
            }
        };
        for part in &parts {
            if let Part::Var(v) = part {
                reads_variables.insert(v.clone());
                if !values.contains_key(v) {
                    r.error_hint(
                        value.span(),
                        format!("config `{}` uses undefined variable `{v}`", key.get_ref()),
                        format!("declare it: [variables] {v} = {{ default = \"...\" }}"),
                    );
                }
            }
        }
        let rendered = template::render(&parts, |v| values.get(v).cloned().flatten());
        config.insert(key.get_ref().clone(), rendered.unwrap_or_default());
    }

    let mut allowed_outbound_hosts = Vec::new();
    for host in &comp.allowed_outbound_hosts {
        match OutboundRule::parse(host.get_ref()) {
            Ok(rule) => allowed_outbound_hosts.push(rule),
            Err(e) => r.error_hint(
                host.span(),
                e.to_string(),
                "write scheme://host[:port], e.g. \"https://api.example.com\" or \"http://localhost:8080\"",
            ),
        }
    }

    ComponentSpec {
        description: comp.description.clone(),
        source,
        build,
        config,
        config_templates,
        reads_variables,
        allowed_outbound_hosts,
        limits: limits(comp, r),
        grants: BTreeMap::new(),
    }
}

fn limits(comp: &RawComponent, r: &mut Reporter<'_>) -> Limits {
    let mut limits = Limits::default();
    let Some(raw) = &comp.limits else {
        return limits;
    };
    let raw = raw.get_ref();
    limits.memory_mb = ranged(r, &raw.memory_mb, ranges::MEMORY_MB, limits.memory_mb);
    limits.timeout_ms = ranged(r, &raw.timeout_ms, ranges::TIMEOUT_MS, limits.timeout_ms);
    limits.max_instances = ranged(
        r,
        &raw.max_instances,
        ranges::MAX_INSTANCES,
        limits.max_instances.into(),
    ) as u32;
    limits.cpu_ms = raw
        .cpu_ms
        .as_ref()
        .map(|_| ranged(r, &raw.cpu_ms, ranges::CPU_MS, 1));
    limits
}

/// `v` if it is in `range`, else `default` and an error at `v`.
pub(crate) fn ranged(
    r: &mut Reporter<'_>,
    v: &Option<S<i64>>,
    range: ranges::Range,
    default: u64,
) -> u64 {
    match v {
        None => default,
        Some(v) if range.contains(*v.get_ref()) => *v.get_ref() as u64,
        Some(v) => {
            r.error(v.span(), range.message(v.get_ref()));
            default
        }
    }
}

/// Refuses a top-level table that neither the app nor a capability owns,
/// with the closest name that exists.
fn top_level(text: &str, schema: &Schema, r: &mut Reporter<'_>) {
    let Ok(top) = toml::from_str::<crate::raw::RawTopLevel>(text) else {
        return;
    };
    let mut known: Vec<&str> = crate::raw::TOP_LEVEL.to_vec();
    known.extend(schema.sections.iter().map(|s| s.table()));
    for key in top.0.keys() {
        let k = key.get_ref().as_str();
        if known.contains(&k) {
            continue;
        }
        let hint = match closest(k, &known) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!("a definition has the tables {}", known.join(", ")),
        };
        r.error_hint(key.span(), format!("unknown table `{k}`"), hint);
    }
}

/// A route's `auth` and `roles`. Roles alone mean `auth = "required"`.
fn access(r: &mut Reporter<'_>, auth: &Option<S<String>>, roles: &[S<String>]) -> Access {
    let level = match auth.as_ref().map(|a| (a, a.get_ref().as_str())) {
        None => None,
        Some((_, "public")) => Some(AuthLevel::Public),
        Some((_, "optional")) => Some(AuthLevel::Optional),
        Some((_, "required")) => Some(AuthLevel::Required),
        Some((a, other)) => {
            r.error_hint(
                a.span(),
                format!("invalid auth `{other}`"),
                "auth is \"public\" (the default), \"optional\" or \"required\"",
            );
            None
        }
    };
    let mut names = Vec::new();
    for role in roles {
        let name = role.get_ref();
        if crate::is_store_name(name) {
            names.push(name.clone());
        } else {
            r.error_hint(
                role.span(),
                format!("invalid role `{name}`"),
                "roles are lower-case letters, digits, `-` and `_`, starting with a letter",
            );
        }
    }
    if let (Some(a), false) = (auth, roles.is_empty())
        && level != Some(AuthLevel::Required)
    {
        r.error_hint(
            a.span(),
            "`roles` need a signed-in identity",
            "write auth = \"required\", or leave `auth` out: roles imply it",
        );
    }
    let level = match level {
        None if !names.is_empty() => AuthLevel::Required,
        other => other.unwrap_or_default(),
    };
    Access {
        auth: level,
        roles: names,
    }
}

/// The components and variables a file declares.
struct Names<'a> {
    components: BTreeSet<&'a str>,
    variables: BTreeSet<&'a str>,
}

/// Each capability's section, read by the capability in the order the
/// schema lists them; absent and empty ones are left out, so that a file
/// without `[queue…]` and one with no queue are the same definition.
fn read_sections<'a>(
    text: &'a str,
    root: &Path,
    schema: &Schema,
    names: &Names<'_>,
    r: &mut Reporter<'a>,
) -> BTreeMap<String, Value> {
    let mut sections = BTreeMap::new();
    for section in &schema.sections {
        let view = AppView {
            schema,
            components: names.components.clone(),
            variables: names.variables.clone(),
            sections: &sections,
        };
        let mut file = SectionFile {
            text,
            root,
            app: &view,
            target: schema.target,
            reporter: r,
        };
        let value = section.read(&mut file);
        if let Some(v) = value.filter(|v| !is_empty_value(v)) {
            sections.insert(section.key().to_string(), v);
        }
    }
    sections
}

/// `[app] hosts` and `base`: where a node that hosts many apps sends
/// requests to this one.
fn mount(app: &crate::raw::RawApp, r: &mut Reporter<'_>) -> (Vec<String>, String) {
    let mut hosts = Vec::new();
    for h in &app.hosts {
        match crate::normalize_host(h.get_ref()) {
            Ok(host) if !hosts.contains(&host) => hosts.push(host),
            Ok(_) => r.error(h.span(), format!("host `{}` is listed twice", h.get_ref())),
            Err(e) => r.error_hint(
                h.span(),
                e,
                "write a host name like \"shop.example.com\" (no scheme, port or path)",
            ),
        }
    }
    let base = match &app.base {
        None => "/".to_string(),
        Some(b) => crate::normalize_base(b.get_ref()).unwrap_or_else(|e| {
            r.error_hint(b.span(), e, "write a path prefix like \"/shop\"");
            "/".to_string()
        }),
    };
    (hosts, base)
}

fn routes(
    raw: &RawManifest,
    app: &dyn Declarations,
    root: &Path,
    r: &mut Reporter<'_>,
) -> Vec<RouteSpec> {
    let mut seen: BTreeMap<RoutePattern, (Range<usize>, String)> = BTreeMap::new();
    let mut out = Vec::new();
    let mut add = |r: &mut Reporter<'_>, route: &S<String>, pattern: RoutePattern, what: String| {
        if let Some((span, other)) = seen.get(&pattern) {
            let message = format!(
                "route `{}` matches the same paths as `{pattern}` of {other} ({})",
                route.get_ref(),
                r.location(span.clone())
            );
            r.error_hint(
                route.span(),
                message,
                "each path must have one owner: remove or change one of the two routes",
            );
            false
        } else {
            seen.insert(pattern, (route.span(), what));
            true
        }
    };
    for entry in &raw.http {
        let h = entry.get_ref();
        let name = match (&h.component, &h.queue) {
            (Some(c), None) => c,
            (None, Some(q)) => {
                if !app.declares("queue", q.get_ref()) {
                    r.error_hint(
                        q.span(),
                        format!("queue `{}` is not declared", q.get_ref()),
                        format!("declare it: [queue.{}] consumer = \"...\"", q.get_ref()),
                    );
                }
                if let Ok(p) = RoutePattern::parse_http(h.route.get_ref())
                    && add(r, &h.route, p.clone(), format!("queue `{}`", q.get_ref()))
                {
                    out.push(RouteSpec {
                        pattern: p,
                        target: RouteTarget::Queue(q.get_ref().clone()),
                        access: access(r, &h.auth, &h.roles),
                    });
                }
                continue;
            }
            _ => {
                r.error_hint(
                    entry.span(),
                    "an [[http]] route needs exactly one of `component` and `queue`",
                    "component = \"web\" serves the route; queue = \"jobs\" publishes request bodies",
                );
                continue;
            }
        };
        let name = name.get_ref();
        if !raw.component.keys().any(|k| k.get_ref() == name) {
            let names: Vec<&str> = raw.component.keys().map(|k| k.get_ref().as_str()).collect();
            let hint = match closest(name, &names) {
                Some(c) => format!("did you mean `{c}`?"),
                None if names.is_empty() => "declare it: [component.NAME] source = \"...\"".into(),
                None => format!("declared components: {}", names.join(", ")),
            };
            if let Some(c) = &h.component {
                r.error_hint(c.span(), format!("unknown component `{name}`"), hint);
            }
        }
        match RoutePattern::parse_http(h.route.get_ref()) {
            Ok(p) => {
                if add(r, &h.route, p.clone(), format!("component `{name}`")) {
                    out.push(RouteSpec {
                        pattern: p,
                        target: RouteTarget::Component(name.clone()),
                        access: access(r, &h.auth, &h.roles),
                    });
                }
            }
            Err(e) => r.error_hint(
                h.route.span(),
                format!("invalid route `{}`: {e}", h.route.get_ref()),
                "write an exact path like `/hello` or a prefix like `/api/...`",
            ),
        }
    }
    for (kind, list) in [("websocket", &raw.websocket), ("sse", &raw.sse)] {
        for entry in list {
            let s = entry.get_ref();
            let mut topics = Vec::new();
            for t in &s.topics {
                if crate::is_store_name(t.get_ref()) {
                    topics.push(t.get_ref().clone());
                } else {
                    r.error(t.span(), format!("invalid topic name `{}`", t.get_ref()));
                }
            }
            let mut origins = Vec::new();
            for o in &s.origins {
                if crate::is_origin(o.get_ref()) {
                    origins.push(o.get_ref().to_ascii_lowercase());
                } else {
                    r.error_hint(
                        o.span(),
                        format!("invalid origin `{}`", o.get_ref()),
                        "write a scheme and host like `https://app.example.com` (a port may follow), or `*` for any",
                    );
                }
            }
            if kind == "sse" && (s.component.is_some() || s.path.is_some() || !s.origins.is_empty())
            {
                r.error_hint(
                    entry.span(),
                    "an [[sse]] route only sends: it takes no `component`, `path` or `origins`",
                    "use [[websocket]] for a browser that also sends messages",
                );
            }
            if let Some(c) = &s.component
                && !raw.component.keys().any(|k| k.get_ref() == c.get_ref())
            {
                r.error(c.span(), format!("unknown component `{}`", c.get_ref()));
            }
            let path = s
                .path
                .as_ref()
                .map(|p| p.get_ref().clone())
                .unwrap_or_else(|| "/".into());
            let target = if kind == "sse" {
                RouteTarget::Sse { topics }
            } else {
                RouteTarget::WebSocket {
                    topics,
                    component: s.component.as_ref().map(|c| c.get_ref().clone()),
                    path,
                    origins,
                }
            };
            match RoutePattern::parse_http(s.route.get_ref()) {
                Ok(p) => {
                    if add(r, &s.route, p.clone(), format!("[[{kind}]]")) {
                        out.push(RouteSpec {
                            pattern: p,
                            target,
                            access: access(r, &s.auth, &s.roles),
                        });
                    }
                }
                Err(e) => r.error(
                    s.route.span(),
                    format!("invalid route `{}`: {e}", s.route.get_ref()),
                ),
            }
        }
    }
    for s in &raw.statics {
        let s = s.get_ref();
        let dir = root.join(s.dir.get_ref());
        if !dir.is_dir() {
            r.error(
                s.dir.span(),
                format!("static dir `{}` is not a folder", s.dir.get_ref()),
            );
        }
        match RoutePattern::parse_static(s.route.get_ref()) {
            Ok(p) => {
                if add(
                    r,
                    &s.route,
                    p.clone(),
                    format!("static dir `{}`", s.dir.get_ref()),
                ) {
                    out.push(RouteSpec {
                        pattern: p,
                        target: RouteTarget::Static(dir),
                        access: Access::default(),
                    });
                }
            }
            Err(e) => r.error(
                s.route.span(),
                format!("invalid route `{}`: {e}", s.route.get_ref()),
            ),
        }
    }
    out
}

/// The candidate within edit distance 2 of `name`, for "did you mean".
pub(crate) fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
