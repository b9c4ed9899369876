//! Plans a person reads: which steps, in which order, for common changes.

use nubo_plan::{AppDef, ComponentDef, Route, RouteTarget, Step, Variable, plan};

fn base() -> AppDef {
    let mut a = AppDef::new("shop");
    a.variables.insert(
        "greeting".into(),
        Variable {
            value: "Hello".into(),
            secret: false,
        },
    );
    for (name, cfg) in [("web", "{{ greeting }}"), ("api", "fixed")] {
        let mut c = ComponentDef::new("a".repeat(64));
        c.config.insert("text".into(), cfg.into());
        a.components.insert(name.into(), c);
    }
    a.routes.push(Route {
        pattern: nubo_manifest::RoutePattern::Prefix("/api".into()),
        target: RouteTarget::Component("api".into()),
        access: Default::default(),
    });
    a
}

#[test]
fn a_changed_variable_touches_only_that_variable() {
    let a = base();
    let mut b = base();
    b.variables.get_mut("greeting").unwrap().value = "Hi".into();
    let steps = plan(Some(&a), Some(&b));
    assert_eq!(
        steps,
        vec![Step::SetVariable {
            name: "greeting".into(),
            value: "Hi".into(),
            secret: false
        }]
    );
    assert_eq!(b.readers("greeting"), vec!["web".to_string()]);
}

#[test]
fn a_new_build_uploads_then_replaces_with_a_reason() {
    let a = base();
    let mut b = base();
    b.components.get_mut("api").unwrap().digest = "b".repeat(64);
    let steps = plan(Some(&a), Some(&b));
    assert!(matches!(&steps[0], Step::UploadComponent { component, .. } if component == "api"));
    match &steps[1] {
        Step::ReplaceComponent { name, reasons, .. } => {
            assert_eq!(name, "api");
            assert_eq!(
                reasons,
                &vec!["new build (aaaaaaaaaaaa → bbbbbbbbbbbb)".to_string()]
            );
        }
        other => panic!("expected a replace, got {other:?}"),
    }
    assert_eq!(steps.len(), 2);
}

#[test]
fn moving_a_route_starts_the_new_component_before_the_switch_and_removes_the_old_after() {
    let a = base();
    let mut b = base();
    b.components.remove("api");
    let mut v2 = a.components["api"].clone();
    v2.digest = "c".repeat(64);
    b.components.insert("api-v2".into(), v2);
    b.routes[0].target = RouteTarget::Component("api-v2".into());
    let ops: Vec<&str> = plan(Some(&a), Some(&b))
        .iter()
        .map(|s| match s {
            Step::UploadComponent { .. } => "upload",
            Step::AddComponent { .. } => "add",
            Step::SetRoutes { .. } => "routes",
            Step::RemoveComponent { .. } => "remove",
            _ => "other",
        })
        .collect();
    assert_eq!(ops, ["upload", "add", "routes", "remove"]);
}
