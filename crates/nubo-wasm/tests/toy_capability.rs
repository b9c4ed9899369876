//! A capability defined outside the runtime, the way a new capability
//! crate defines one: its host interface, its grant key in `nubo.toml`,
//! its grant and its per-instance state, and one line that registers it.
//! Nothing in `nubo-wasm` or `nubo-manifest` names it.
//!
//! The toy is `nubo:toy/counter`, whose `next` counts up from where the
//! node's counter service says; each instance starts over. A component
//! is granted it with `counters = ["visits"]`.

use nubo_wasm::wasmtime::StoreContextMut;
use nubo_wasm::wasmtime::component::Linker;
use nubo_wasm::{
    Capability, Component, ComponentSettings, Grant, GrantError, GrantKey, GrantTo, HandleError,
    Host, Invocation, LoadError, Names, Run, Runtime, RuntimeOptions, Services, States,
};
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
    let keys = runtime.grant_keys();
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
