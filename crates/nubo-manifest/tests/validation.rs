//! Pins the exact messages users see for broken definition files.

use nubo_manifest::{RoutePattern, RouteTarget, Stage, load};
use std::path::Path;

/// Writes `text` as nubo.toml in a temp dir with a `public/` folder and a
/// fake `web.wasm`, and loads it with `api_key` set.
fn check(text: &str) -> Result<nubo_manifest::AppSpec, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("public")).unwrap();
    std::fs::write(dir.path().join("web.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
    let path = dir.path().join("nubo.toml");
    std::fs::write(&path, text).unwrap();
    let vars = |name: &str| (name == "api_key").then(|| "k3y".to_string());
    load(&path, &vars, Stage::Built, &schema()).map_err(|e| {
        // Strip the temp dir so messages can be compared literally.
        e.to_string()
            .replace(&format!("{}/", dir.path().display()), "")
    })
}

/// The app's own tables and the sample grants: this crate sees no
/// capability's section (each capability tests its own).
fn schema() -> nubo_manifest::Schema {
    nubo_manifest::Schema {
        grants: nubo_manifest::SAMPLE_GRANTS.to_vec(),
        sections: Vec::new(),
        target: nubo_manifest::Target::default(),
    }
}

const GOOD: &str = r#"
[app]
name = "hello"

[variables]
greeting = { default = "Hello" }
api_key = { required = true, secret = true }

[component.web]
source = "web.wasm"
config = { greeting = "{{ greeting }}, world", key = "{{api_key}}" }
allowed_outbound_hosts = ["https://api.example.com"]
limits = { memory_mb = 64, timeout_ms = 2000, max_instances = 8 }

[[http]]
route = "/api/..."
component = "web"

[[static]]
route = "/"
dir = "public"
"#;

#[test]
fn valid_file_resolves_everything() {
    let app = check(GOOD).unwrap();
    assert_eq!(app.name, "hello");
    let web = &app.components["web"];
    assert_eq!(web.config["greeting"], "Hello, world");
    assert_eq!(web.config["key"], "k3y");
    assert_eq!(web.limits.memory_mb, 64);
    assert_eq!(web.limits.max_instances, 8);
    assert!(web.reads_variables.contains("api_key"));
    assert!(app.secret_variables.contains("api_key"));
    assert_eq!(app.routes.len(), 2);
    assert_eq!(app.routes[0].pattern, RoutePattern::Prefix("/api".into()));
    assert_eq!(app.routes[0].target, RouteTarget::Component("web".into()));
    assert!(matches!(&app.routes[1].target, RouteTarget::Static(p) if p.ends_with("public")));
    assert!(Path::new(&app.root).is_absolute());
}

#[test]
fn unknown_key_names_line_and_column() {
    let text = GOOD.replace("source = \"web.wasm\"", "source = \"web.wasm\"\nsorce = 1");
    let err = check(&text).unwrap_err();
    assert!(
        err.starts_with("nubo.toml:11:1: unknown key `sorce` in a component"),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `source`?"), "{err}");
}

#[test]
fn wrong_type() {
    let text = GOOD.replace("memory_mb = 64", "memory_mb = \"64\"");
    let err = check(&text).unwrap_err();
    assert!(
        err.starts_with("nubo.toml:13:24: invalid type: string \"64\", expected an integer"),
        "{err}"
    );
}

#[test]
fn a_duplicate_key_is_named() {
    let err = check("[app]\nname = \"a\"\nname = \"b\"\n").unwrap_err();
    assert!(
        err.starts_with("nubo.toml:3:1: duplicate key `name`"),
        "{err}"
    );
    assert!(err.contains("hint: each key may appear once"), "{err}");
}

#[test]
fn syntax_error() {
    let err = check("[app\nname = 1").unwrap_err();
    assert!(err.starts_with("nubo.toml:1:"), "{err}");
}

#[test]
fn missing_app_table() {
    let err = check("[component.web]\nsource = \"web.wasm\"\n").unwrap_err();
    assert!(err.contains("missing field `app`"), "{err}");
}

#[test]
fn unknown_component_suggests_the_closest() {
    let text = GOOD.replace("component = \"web\"", "component = \"wbe\"");
    let err = check(&text).unwrap_err();
    assert_eq!(
        err,
        "nubo.toml:17:13: unknown component `wbe`\n  hint: did you mean `web`?"
    );
}

#[test]
fn duplicate_routes_point_at_both() {
    let text = format!("{GOOD}\n[[http]]\nroute = \"/api/...\"\ncomponent = \"web\"\n");
    let err = check(&text).unwrap_err();
    assert_eq!(
        err,
        "nubo.toml:24:9: route `/api/...` matches the same paths as `/api/...` of component `web` (nubo.toml:16:9)\n  hint: each path must have one owner: remove or change one of the two routes"
    );
}

#[test]
fn static_and_http_on_the_same_prefix_are_ambiguous() {
    let text = format!("{GOOD}\n[[static]]\nroute = \"/api\"\ndir = \"public\"\n");
    let err = check(&text).unwrap_err();
    assert!(
        err.starts_with(
            "nubo.toml:24:9: route `/api` matches the same paths as `/api/...` of component `web`"
        ),
        "{err}"
    );
}

#[test]
fn missing_files_are_errors() {
    let text = GOOD
        .replace("\"web.wasm\"", "\"nope.wasm\"")
        .replace("dir = \"public\"", "dir = \"nowhere\"");
    let err = check(&text).unwrap_err();
    assert!(
        err.contains("nubo.toml:10:10: component source `nope.wasm` does not exist"),
        "{err}"
    );
    assert!(
        err.contains("nubo.toml:21:7: static dir `nowhere` is not a folder"),
        "{err}"
    );
}

#[test]
fn undefined_and_missing_required_variables() {
    let text = GOOD
        .replace("{{ greeting }}", "{{ greting }}")
        .replace("api_key = { required", "token = { required");
    let err = check(&text).unwrap_err();
    assert!(
        err.contains("nubo.toml:7:1: required variable `token` is not set\n  hint: set it in the environment: export NUBO_VAR_TOKEN=..."),
        "{err}"
    );
    assert!(
        err.contains("config `greeting` uses undefined variable `greting`"),
        "{err}"
    );
    assert!(
        err.contains("config `key` uses undefined variable `api_key`"),
        "{err}"
    );
}

#[test]
fn bad_limits_hosts_and_names() {
    let text = GOOD
        .replace("max_instances = 8", "max_instances = 0")
        .replace("https://api.example.com", "api.example.com")
        .replace("name = \"hello\"", "name = \"Hello World\"");
    let err = check(&text).unwrap_err();
    assert!(
        err.contains("nubo.toml:3:8: invalid app name `Hello World`"),
        "{err}"
    );
    assert!(
        err.contains("`max_instances` must be between 1 and 10000, got 0"),
        "{err}"
    );
    assert!(
        err.contains("`api.example.com` is not of the form scheme://host[:port]"),
        "{err}"
    );
}

#[test]
fn unbuilt_source_is_fine_before_build() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nubo.toml");
    std::fs::write(
        &path,
        "[app]\nname = \"a\"\n[component.c]\nsource = \"out.wasm\"\nbuild = { command = \"true\" }\n",
    )
    .unwrap();
    let none = |_: &str| None;
    assert!(load(&path, &none, Stage::BeforeBuild, &schema()).is_ok());
    let err = load(&path, &none, Stage::Built, &schema())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("component source `out.wasm` does not exist"),
        "{err}"
    );
    // Loaded as built without building (`--no-build`, `nubo plan`), the
    // hint must not claim the build ran.
    assert!(err.contains("`nubo build` runs it"), "{err}");
    assert!(!err.contains("ran but"), "{err}");
}

#[test]
fn hosts_and_base_say_where_a_node_mounts_the_app() {
    let text = GOOD.replace(
        "name = \"hello\"",
        "name = \"hello\"\nhosts = [\"Shop.Example.com.\"]\nbase = \"/shop/\"",
    );
    let app = check(&text).unwrap();
    assert_eq!(app.hosts, vec!["shop.example.com".to_string()]);
    assert_eq!(app.base, "/shop");
    assert_eq!(app.variables["greeting"], "Hello");
    assert_eq!(
        app.components["web"].config_templates["greeting"],
        "{{ greeting }}, world"
    );
    assert_eq!(check(GOOD).unwrap().base, "/");
}

#[test]
fn bad_hosts_and_base_are_pointed_at() {
    let text = GOOD.replace(
        "name = \"hello\"",
        "name = \"hello\"\nhosts = [\"https://x.com\"]\nbase = \"shop\"",
    );
    let err = check(&text).unwrap_err();
    assert!(
        err.contains("nubo.toml:4:10: invalid host `https://x.com`"),
        "{err}"
    );
    assert!(
        err.contains("nubo.toml:5:8: invalid base `shop`: a route must start with `/`"),
        "{err}"
    );
}

#[test]
fn an_http_route_serves_a_component_or_publishes_to_a_queue() {
    let text = format!(
        "{GOOD}\n[[http]]\nroute = \"/both\"\ncomponent = \"web\"\nqueue = \"jobs\"\n\n[[http]]\nroute = \"/nowhere\"\nqueue = \"nope\"\n"
    );
    let err = check(&text).unwrap_err();
    assert!(
        err.contains("needs exactly one of `component` and `queue`"),
        "{err}"
    );
    assert!(err.contains("queue `nope` is not declared"), "{err}");
}

#[test]
fn a_table_no_capability_owns_is_refused_with_the_closest_name() {
    let err = check(&format!("{GOOD}\n[componnet.api]\nsource = \"web.wasm\"\n")).unwrap_err();
    assert!(
        err.contains("nubo.toml:23:2: unknown table `componnet`"),
        "{err}"
    );
    assert!(err.contains("did you mean `component`?"), "{err}");
    // A capability's table is unknown to a node without that capability.
    let err = check(&format!("{GOOD}\n[queue.jobs]\nconsumer = \"web\"\n")).unwrap_err();
    assert!(err.contains("unknown table `queue`"), "{err}");
}

#[test]
fn grants_of_stores_and_containers_are_checked() {
    let text = GOOD.replace(
        "limits = { memory_mb = 64",
        "key_value_stores = [\"default\", \"default\"]\nblob_containers = [\"photos\", \"My Files\"]\nlimits = { memory_mb = 64",
    );
    let err = check(&text).unwrap_err();
    assert!(
        err.contains("nubo.toml:13:32: key-value store `default` is listed twice"),
        "{err}"
    );
    assert!(
        err.contains("nubo.toml:14:30: invalid blob container name `My Files`"),
        "{err}"
    );
    let ok = GOOD.replace(
        "limits = { memory_mb = 64",
        "blob_containers = [\"photos\", \"exports\"]\nlimits = { memory_mb = 64",
    );
    let spec = check(&ok).unwrap();
    assert_eq!(
        spec.components["web"].grants["blob_containers"],
        ["photos", "exports"]
    );
}

#[test]
fn a_grant_is_checked_by_its_capability_key() {
    let with = |line: &str| {
        GOOD.replace(
            "limits = { memory_mb = 64",
            &format!("{line}\nlimits = {{ memory_mb = 64"),
        )
    };
    let err = check(&with("key_value_store = [\"default\"]")).unwrap_err();
    assert!(
        err.contains("nubo.toml:13:1: unknown key `key_value_store` in a component"),
        "{err}"
    );
    assert!(err.contains("did you mean `key_value_stores`?"), "{err}");
    let err = check(&with("blob_containers = \"photos\"")).unwrap_err();
    assert!(
        err.contains("nubo.toml:13:19: `blob_containers` must be an array of blob container names"),
        "{err}"
    );
    let err = check(&with("queues = [\"mail\"]")).unwrap_err();
    assert!(
        err.contains("nubo.toml:13:11: queue `mail` is not declared"),
        "{err}"
    );
    assert!(err.contains("hint: declare it: [queue.mail]"), "{err}");
}

#[test]
fn quotas_have_defaults_and_ranges() {
    let app = check(GOOD).unwrap();
    assert_eq!(app.quotas, nubo_manifest::QuotasSpec::default());
    assert_eq!((app.quotas.kv_mb, app.quotas.dead_letters), (1024, 10_000));
    let text = format!("{GOOD}\n[quotas]\nkv_mb = 0\nqueue_messages = 10\n");
    let line = text.lines().position(|l| l.starts_with("kv_mb")).unwrap() + 1;
    let err = check(&text).unwrap_err();
    assert!(
        err.contains(&format!(
            "nubo.toml:{line}:9: `kv_mb` must be between 1 and 1048576, got 0"
        )),
        "{err}"
    );
    let err = check(&format!("{GOOD}\n[quotas]\ndisk_mb = 8\n")).unwrap_err();
    assert!(err.contains("unknown field `disk_mb`"), "{err}");
    let app = check(&format!(
        "{GOOD}\n[quotas]\nblob_mb = 5\ndead_letters = 0\n"
    ))
    .unwrap();
    assert_eq!((app.quotas.blob_mb, app.quotas.dead_letters), (5, 0));
    assert_eq!(app.quotas.blob_bytes(), 5 << 20);
}

#[test]
fn a_route_says_who_may_reach_it() {
    let text = GOOD.replace(
        "component = \"web\"\n",
        "component = \"web\"\nroles = [\"admin\"]\n",
    );
    let spec = check(&text).unwrap();
    // Roles alone mean a signed-in identity is required.
    assert_eq!(
        spec.routes[0].access.auth,
        nubo_manifest::AuthLevel::Required
    );
    assert_eq!(spec.routes[0].access.roles, ["admin"]);
    let text = GOOD.replace(
        "component = \"web\"\n",
        "component = \"web\"\nauth = \"sometimes\"\n",
    );
    let err = check(&text).unwrap_err();
    assert!(
        err.contains("nubo.toml:18:8: invalid auth `sometimes`"),
        "{err}"
    );
    let text = GOOD.replace(
        "component = \"web\"\n",
        "component = \"web\"\nauth = \"public\"\nroles = [\"Admin\"]\n",
    );
    let err = check(&text).unwrap_err();
    assert!(
        err.contains("nubo.toml:18:8: `roles` need a signed-in identity"),
        "{err}"
    );
    assert!(
        err.contains("nubo.toml:19:10: invalid role `Admin`"),
        "{err}"
    );
}
