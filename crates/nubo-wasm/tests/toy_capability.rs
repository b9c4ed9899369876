//! A capability defined outside the runtime, the way a new capability
//! crate defines one: its host interface, its grant and its per-instance
//! state, and one line that registers it. Nothing in `nubo-wasm` names it.
//!
//! The toy is `nubo:toy/counter`, whose `next` counts up from where the
//! component's grant says; each instance starts over.

use nubo_wasm::wasmtime::StoreContextMut;
use nubo_wasm::wasmtime::component::Linker;
use nubo_wasm::{
    Capability, Component, ComponentSettings, Grant, HandleError, Host, Invocation, LoadError, Run,
    Runtime, RuntimeOptions, States,
};
use std::path::Path;
use std::sync::Arc;

struct Counter;

/// What `nubo.toml` would grant: where the count starts.
struct CounterGrant {
    start: u32,
}

/// One instance's count.
struct Count(u32);

impl Capability for Counter {
    fn name(&self) -> &'static str {
        "counter"
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
