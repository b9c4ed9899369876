//! The planner's contract, for every pair of definitions proptest makes up:
//! `apply(a, plan(a, b)) == b`, and `plan(a, a)` is empty.

use nubo_manifest::{Limits, RoutePattern};
use nubo_plan::{
    AppDef, AppSettings, ComponentDef, Route, RouteTarget, Step, Variable, apply, plan,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

fn digest() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a".repeat(64), "b".repeat(64), "c".repeat(64)])
}

fn component() -> impl Strategy<Value = ComponentDef> {
    (
        digest(),
        btree_map(
            prop::sample::select(vec!["k1", "k2", "k3"]).prop_map(String::from),
            prop::sample::select(vec!["v", "{{ x }}", "{{ y }}!"]).prop_map(String::from),
            0..3,
        ),
        vec(
            prop::sample::select(vec!["https://a.example", "http://b:8080"]).prop_map(String::from),
            0..2,
        ),
        prop::sample::select(vec![64u64, 128]),
        any::<bool>(),
        prop::sample::select(vec![vec![], vec!["default".to_string()]]),
    )
        .prop_map(
            |(digest, config, hosts, memory_mb, started, kv)| ComponentDef {
                digest,
                config,
                allowed_outbound_hosts: hosts,
                limits: Limits {
                    memory_mb,
                    ..Limits::default()
                },
                grants: if kv.is_empty() {
                    Default::default()
                } else {
                    [
                        ("key_value_stores", kv.clone()),
                        ("blob_containers", vec!["uploads".to_string()]),
                        ("queues", vec!["jobs".to_string()]),
                        ("topics", kv.clone()),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect()
                },
                started,
            },
        )
}

fn route() -> impl Strategy<Value = Route> {
    (
        prop::sample::select(vec!["/", "/api", "/x"]),
        any::<bool>(),
        prop::sample::select(vec!["web", "api"]),
        btree_map(
            prop::sample::select(vec!["index.html", "a/b.css"]).prop_map(String::from),
            digest(),
            0..2,
        ),
    )
        .prop_map(|(p, exact, c, files)| {
            if exact {
                Route {
                    pattern: RoutePattern::Exact(p.to_string()),
                    target: RouteTarget::Component(c.to_string()),
                    access: Default::default(),
                }
            } else {
                Route {
                    pattern: RoutePattern::Prefix(p.trim_end_matches('/').to_string()),
                    target: RouteTarget::Static(files),
                    access: Default::default(),
                }
            }
        })
}

fn app() -> impl Strategy<Value = AppDef> {
    (
        prop::sample::select(vec!["/", "/shop"]),
        vec(
            prop::sample::select(vec!["a.test", "b.test"]).prop_map(String::from),
            0..2,
        ),
        btree_map(
            prop::sample::select(vec!["x", "y", "z"]).prop_map(String::from),
            (prop::sample::select(vec!["1", "2"]), any::<bool>()).prop_map(|(v, secret)| {
                Variable {
                    value: v.to_string(),
                    secret,
                }
            }),
            0..3,
        ),
        btree_map(
            prop::sample::select(vec!["web", "api", "worker"]).prop_map(String::from),
            component(),
            0..3,
        ),
        vec(route(), 0..3),
        // Capabilities' sections are opaque JSON to the planner: an
        // object keyed by name or a list, never empty (an empty one is
        // no section).
        btree_map(
            prop::sample::select(vec!["queues", "crons", "later"]).prop_map(String::from),
            (any::<bool>(), 0u8..3).prop_map(|(list, n)| {
                if list {
                    serde_json::json!([{ "n": n }])
                } else {
                    serde_json::json!({ "jobs": { "n": n } })
                }
            }),
            0..3,
        ),
    )
        .prop_map(
            |(base, hosts, variables, components, routes, sections)| AppDef {
                name: "app".into(),
                settings: AppSettings {
                    description: None,
                    hosts,
                    base: base.to_string(),
                    quotas: Default::default(),
                },
                variables,
                components,
                routes,
                sections,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn plan_then_apply_reaches_the_desired_definition(a in app(), b in app()) {
        let steps = plan(Some(&a), Some(&b));
        prop_assert_eq!(apply("app", Some(a.clone()), &steps), Ok(Some(b.clone())));
        if a == b {
            prop_assert!(steps.is_empty());
        }
    }

    #[test]
    fn a_definition_plans_to_nothing_against_itself(a in app()) {
        prop_assert_eq!(plan(Some(&a), Some(&a)), Vec::<Step>::new());
    }

    #[test]
    fn creating_and_removing_round_trip(b in app()) {
        let create = plan(None, Some(&b));
        prop_assert_eq!(apply("app", None, &create), Ok(Some(b.clone())));
        let remove = plan(Some(&b), None);
        prop_assert_eq!(&remove, &vec![Step::RemoveApp { keep_data: false }]);
        prop_assert_eq!(apply("app", Some(b), &remove), Ok(None));
    }

    #[test]
    fn uploads_come_first_and_removals_after_the_route_switch(a in app(), b in app()) {
        let steps = plan(Some(&a), Some(&b));
        let pos = |f: &dyn Fn(&Step) -> bool| steps.iter().position(f);
        let last_upload = steps.iter().rposition(|s| !s.changes_definition());
        let first_change = pos(&|s| s.changes_definition());
        if let (Some(u), Some(c)) = (last_upload, first_change) {
            prop_assert!(u < c, "an upload after a change: {:?}", steps);
        }
        if let Some(r) = pos(&|s| matches!(s, Step::SetRoutes { .. })) {
            for (i, s) in steps.iter().enumerate() {
                match s {
                    Step::AddComponent { .. } | Step::ReplaceComponent { .. } | Step::StartComponent { .. } => {
                        prop_assert!(i < r, "started after the switch: {:?}", steps)
                    }
                    Step::StopComponent { .. } | Step::RemoveComponent { .. } => {
                        prop_assert!(i > r, "stopped before the switch: {:?}", steps)
                    }
                    _ => {}
                }
            }
        }
    }
}
