//! A capability defined outside the runtime, the way a new capability
//! crate defines one: its host interface, its grant key in `nubo.toml`,
//! its own top-level table, its grant and its per-instance state, and one
//! line that registers it. Nothing in `nubo-wasm`, `nubo-manifest` or
//! `nubo-plan` names it.
//!
//! The toy is `nubo:toy/counter`, whose `next` counts up from where the
//! node's counter service says; each instance starts over. A component
//! is granted it with `counters = ["visits"]`; the app may set where
//! counts start with `[counter] start = 7`.

use nubo_manifest::ranges::Range;
use nubo_manifest::{Change, Declarations, Problem, Section, SectionFile, Spanned};
use nubo_wasm::wasmtime::StoreContextMut;
use nubo_wasm::wasmtime::component::Linker;
use nubo_wasm::{
    Capability, Component, ComponentSettings, Grant, GrantError, GrantKey, GrantTo, HandleError,
    Host, Invocation, LoadError, Names, Run, Runtime, RuntimeOptions, Services, States,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

struct Counter;

/// The node's counter service: where every count starts.
struct Start(u32);

/// What one component is granted: where its counts start.
struct CounterGrant {
    start: u32,
}

/// One instance's count.
struct Count(u32);

impl Capability for Counter {
    fn name(&self) -> &'static str {
        "counter"
    }

    fn grant_key(&self) -> Option<GrantKey> {
        Some(GrantKey {
            key: "counters",
            noun: "counter",
            names: Names::Own { example: "visits" },
        })
    }

    fn section(&self) -> Option<&'static dyn Section> {
        Some(&CounterSection)
    }

    fn grant(&self, to: &GrantTo<'_>, _names: &[String]) -> Result<Arc<dyn Grant>, GrantError> {
        let start = to.services.need::<Start>(self.name())?;
        Ok(Arc::new(CounterGrant { start: start.0 }))
    }

    fn link(&self, linker: &mut Linker<Host>) -> nubo_wasm::wasmtime::Result<()> {
        let mut counter = linker.instance("nubo:toy/counter")?;
        counter.func_wrap("next", |mut store: StoreContextMut<'_, Host>, (): ()| {
            let Some(Count(n)) = store.data_mut().state::<Count>() else {
                return Err(nubo_wasm::wasmtime::Error::msg(
                    "access denied: this component has no counter grant",
                ));
            };
            *n += 1;
            Ok((*n - 1,))
        })?;
        Ok(())
    }
}

/// `[counter]`: where the app's counts start.
struct CounterSection;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct CounterSpec {
    start: u64,
}

const START: Range = Range::new("start", 0, 1000);

impl CounterSpec {
    fn problems(&self) -> Vec<Problem> {
        START
            .check(self.start)
            .map(|_| Problem::range(START, self.start))
            .into_iter()
            .collect()
    }
}

impl Section for CounterSection {
    fn table(&self) -> &'static str {
        "counter"
    }

    fn key(&self) -> &'static str {
        "counter"
    }

    fn read(&self, f: &mut SectionFile<'_, '_>) -> Option<Value> {
        #[derive(Deserialize)]
        struct File {
            counter: Option<Spanned<Raw>>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            start: Option<Spanned<i64>>,
        }
        let raw = f.parse::<File>()?.counter?;
        let spec = CounterSpec {
            start: f.ranged(&raw.get_ref().start, START, 0),
        };
        f.report(spec.problems(), raw.span(), |_| None);
        serde_json::to_value(spec).ok()
    }

    fn check(&self, value: &Value, _app: &dyn Declarations) -> Vec<String> {
        match CounterSpec::deserialize(value) {
            Ok(spec) => spec.problems().into_iter().map(|p| p.message).collect(),
            Err(e) => vec![format!("counter: {e}")],
        }
    }

    fn describe(&self, old: Option<&Value>, new: Option<&Value>) -> Vec<Change> {
        let start = |v: Option<&Value>| v.and_then(|v| v.get("start")).cloned();
        vec![Change::changed(
            "counter",
            format!("start {:?} → {:?}", start(old), start(new)),
        )]
    }
}

impl Grant for CounterGrant {
    fn instantiate(&self, _run: &Run<'_>, states: &mut States) {
        states.insert(Count(self.start));
    }
}

/// A component that imports the toy and exports `run`, which calls `next`
/// twice and returns the sum. It has no HTTP export.
const GUEST: &str = r#"
(component
  (import "nubo:toy/counter" (instance $counter
    (export "next" (func (result u32)))))
  (core func $next (canon lower (func $counter "next")))
  (core module $m
    (import "toy" "next" (func $next (result i32)))
    (func (export "run") (result i32)
      call $next
      call $next
      i32.add))
  (core instance $toy (export "next" (func $next)))
  (core instance $i (instantiate $m (with "toy" (instance $toy))))
  (func (export "run") (result u32) (canon lift (core func $i "run"))))
"#;

fn load(runtime: &Runtime, grants: Vec<Arc<dyn Grant>>) -> Result<Component, LoadError> {
    let wasm = wat::parse_str(GUEST).expect("the guest's text is valid");
    let settings = ComponentSettings {
        app: "toy".into(),
        component: "guest".into(),
        grants,
        ..Default::default()
    };
    runtime.load_bytes(Path::new("guest.wasm"), &wasm, settings)
}

async fn call_run(component: &Component, id: &str) -> Result<u32, HandleError> {
    let run = Invocation::request(id);
    component
        .invoke(run, |mut store, instance| async move {
            let f = instance.get_typed_func::<(), (u32,)>(&mut store, "run")?;
            let (sum,) = f.call_async(&mut store, ()).await?;
            Ok(sum)
        })
        .await
}

#[tokio::test]
async fn a_capability_from_outside_the_runtime_serves_only_granted_components() {
    // The one registration line.
    let caps: [Arc<dyn Capability>; 1] = [Arc::new(Counter)];
    let runtime = Runtime::new(RuntimeOptions::default(), &caps).expect("runtime");

    let granted = load(&runtime, vec![Arc::new(CounterGrant { start: 40 })]).expect("load");
    assert_eq!(call_run(&granted, "r1").await.expect("run"), 40 + 41);
    // A fresh instance per run: the count starts over.
    assert_eq!(call_run(&granted, "r2").await.expect("run"), 40 + 41);

    // The same component without the grant links, but its call is refused:
    // the host function's error ends the instance.
    let ungranted = load(&runtime, Vec::new()).expect("load");
    let refused = call_run(&ungranted, "r3").await;
    assert!(
        matches!(refused, Err(HandleError::Trapped(_))),
        "{refused:?}"
    );

    // It has no HTTP export: it can be invoked, not served.
    let wasm = wat::parse_str(GUEST).expect("valid");
    let served = runtime.load_http_bytes(Path::new("guest.wasm"), &wasm, Default::default());
    assert!(matches!(served, Err(LoadError::NotHttp(_))));
}

#[tokio::test]
async fn a_runtime_without_the_capability_refuses_its_components() {
    let runtime = Runtime::new(RuntimeOptions::default(), &[]).expect("runtime");
    let refused = load(&runtime, Vec::new());
    assert!(
        matches!(refused, Err(LoadError::Imports(_))),
        "{:?}",
        refused.err()
    );
}

/// `nubo.toml` with component `guest` (the toy's wasm) and `grant`.
fn manifest(grant: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let wasm = wat::parse_str(GUEST).expect("valid");
    std::fs::write(dir.path().join("guest.wasm"), wasm).expect("write wasm");
    let path = dir.path().join("nubo.toml");
    let text =
        format!("[app]\nname = \"toy\"\n\n[component.guest]\nsource = \"guest.wasm\"\n{grant}\n");
    std::fs::write(&path, text).expect("write nubo.toml");
    (dir, path)
}

#[tokio::test]
async fn its_grant_is_written_in_nubo_toml_and_built_from_the_nodes_service() {
    let caps: [Arc<dyn Capability>; 1] = [Arc::new(Counter)];
    let runtime = Runtime::new(RuntimeOptions::default(), &caps).expect("runtime");
    let keys = runtime.schema();
    let none = |_: &str| None;
    let stage = nubo_manifest::Stage::Built;

    let (_dir, path) = manifest("counters = [\"visits\"]");
    let spec = nubo_manifest::load(&path, &none, stage, &keys).expect("valid nubo.toml");
    let listed = &spec.components["guest"].grants;
    assert_eq!(listed["counters"], ["visits"]);

    // The capability's own rule checks the names, where they are written.
    let (_dir, bad) = manifest("counters = [\"Visits\"]");
    let err = nubo_manifest::load(&bad, &none, stage, &keys).unwrap_err();
    assert!(
        err.to_string()
            .contains("nubo.toml:6:13: invalid counter name `Visits`"),
        "{err}"
    );
    let (_dir, typo) = manifest("counter = [\"visits\"]");
    let err = nubo_manifest::load(&typo, &none, stage, &keys).unwrap_err();
    assert!(
        err.to_string().contains("did you mean `counters`?"),
        "{err}"
    );

    // The node's services hold the counter service; the grant is built
    // from it by the capability that owns the key.
    fn to(services: &Services) -> GrantTo<'_> {
        GrantTo {
            app: "toy",
            component: "guest",
            services,
        }
    }
    let mut services = Services::default();
    let refused = nubo_wasm::grants(runtime.capabilities(), &to(&services), listed);
    assert!(matches!(refused, Err(GrantError::NoService { .. })));
    services.insert(Start(7));
    let grants = nubo_wasm::grants(runtime.capabilities(), &to(&services), listed).expect("grants");
    let component = load(&runtime, grants).expect("load");
    assert_eq!(call_run(&component, "r1").await.expect("run"), 7 + 8);
}

#[test]
fn its_table_is_read_from_nubo_toml_planned_and_checked_by_the_capability() {
    let caps: [Arc<dyn Capability>; 1] = [Arc::new(Counter)];
    let schema = nubo_wasm::schema(&caps);
    let none = |_: &str| None;
    let stage = nubo_manifest::Stage::Built;

    let (_dir, path) = manifest("\n[counter]\nstart = 7");
    let spec = nubo_manifest::load(&path, &none, stage, &schema).expect("valid nubo.toml");
    assert_eq!(spec.sections["counter"], serde_json::json!({ "start": 7 }));

    // Its rule, where the value is written.
    let (_dir, bad) = manifest("\n[counter]\nstart = 5000");
    let err = nubo_manifest::load(&bad, &none, stage, &schema).unwrap_err();
    assert!(
        err.to_string()
            .contains("nubo.toml:8:9: `start` must be between 0 and 1000, got 5000"),
        "{err}"
    );
    // Without the capability, the table is no one's.
    let err = nubo_manifest::load(&path, &none, stage, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("unknown table `counter`"), "{err}");

    // The planner moves the table as it is, in one step.
    let mut before = nubo_plan::AppDef::new("toy");
    before.set_section("counter", serde_json::json!({ "start": 1 }));
    let mut after = before.clone();
    after.set_section("counter", serde_json::json!({ "start": 2 }));
    let steps = nubo_plan::plan(Some(&before), Some(&after));
    assert_eq!(
        steps,
        [nubo_plan::Step::SetSection {
            key: "counter".into(),
            value: serde_json::json!({ "start": 2 }),
        }]
    );
    let applied = nubo_plan::apply("toy", Some(before), &steps).expect("applies");
    assert_eq!(applied.as_ref(), Some(&after));

    // The control API's validator asks the capability, by the same rule.
    after.set_section("counter", serde_json::json!({ "start": 5000 }));
    let errs = nubo_plan::validate(&after, |_| true, &schema).unwrap_err();
    assert_eq!(errs, ["`start` must be between 0 and 1000, got 5000"]);
    let errs = nubo_plan::validate(&after, |_| true, &Default::default()).unwrap_err();
    assert!(errs[0].starts_with("unknown key `counter`"), "{errs:?}");
}
