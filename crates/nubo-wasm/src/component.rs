//! A loaded component and the one way every run of it goes: take an
//! instance slot, build a fresh store with the component's grants and
//! limits, instantiate, call under a wall-clock deadline, and classify
//! what came of it ([`HandleError`]).
//!
//! HTTP requests ([`crate::http`]) and every capability's own exports (a
//! task's `run`, a queue's `handle`, …) go through [`Component::invoke`]
//! or the same store and limits; the runtime knows none of those exports
//! by name. A capability finds its export in the component once
//! ([`Component::export`]) and calls it inside `invoke`.

use crate::capability::{Grant, Run, States};
use crate::error::{HandleError, Unloaded};
use crate::host::Host;
use crate::logs::{LogSink, LogTags};
use crate::usage::{Dims, RunMeter};
use crate::waits::{WaitClock, WallLimit};
use nubo_manifest::{Limits, OutboundRule};
use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use wasmtime::component::{Instance, InstancePre};
use wasmtime::{Store, Trap};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// How long a request waits for a free instance slot before a 503.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a component was granted in `nubo.toml`. The default grants
/// nothing: no config, no outbound hosts, no capabilities, default limits.
#[derive(Clone, Default)]
pub struct ComponentSettings {
    pub app: String,
    pub component: String,
    pub config: BTreeMap<String, String>,
    pub allowed_outbound_hosts: Vec<OutboundRule>,
    pub limits: Limits,
    /// Receives the component's log lines (a node's `nubo logs` buffer).
    pub logs: Option<Arc<dyn LogSink>>,
    /// Its grant of each capability it may use.
    pub grants: Vec<Arc<dyn Grant>>,
}

/// One run of a component: a request, a task, a delivery.
pub struct Invocation {
    /// The request's id, or the task's: it tags the run's log lines.
    pub id: String,
    /// A task waits for its instance slot rather than being turned away,
    /// yields to the runtime often (so cancelling it is quick), and its
    /// time limit leaves out the time it waits on other tasks.
    pub task: bool,
    /// Passed to the component's grants ([`Run::context`]).
    pub context: Option<Arc<dyn Any + Send + Sync>>,
    /// Who started it, if someone signed in did; in the instance's
    /// states (as an `Arc<Principal>`) for its capabilities.
    pub principal: Option<Arc<crate::Principal>>,
}

impl Invocation {
    /// A run that answers someone waiting now: an HTTP request, a queue
    /// delivery, a cron run.
    pub fn request(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            task: false,
            context: None,
            principal: None,
        }
    }

    /// A durable task's run, with what its capability needs to know.
    pub fn task(id: impl Into<String>, context: Arc<dyn Any + Send + Sync>) -> Self {
        Self {
            id: id.into(),
            task: true,
            context: Some(context),
            principal: None,
        }
    }

    /// The run, started by `principal`.
    pub fn by<P: Into<Arc<crate::Principal>>>(mut self, principal: Option<P>) -> Self {
        self.principal = principal.map(Into::into);
        self
    }
}

/// An export a capability looked for: `None` when the component lacks it.
type Found = Option<Arc<dyn Any + Send + Sync>>;

/// A component ready to run: compiled, linked and pre-instantiated.
#[derive(Clone)]
pub struct Component {
    pub(crate) pre: InstancePre<Host>,
    /// Its `wasi:http/incoming-handler` export, if it has one.
    pub(crate) proxy: Option<ProxyPre<Host>>,
    pub(crate) app: Arc<str>,
    pub(crate) component: Arc<str>,
    rules: Arc<Vec<OutboundRule>>,
    config: Arc<WasiConfigVariables>,
    pub(crate) limits: Limits,
    slots: Arc<Semaphore>,
    /// The node's pools this component's instances draw from.
    share: Arc<crate::NodeShare>,
    /// Where its runs' usage is counted.
    meter: Arc<crate::Meter>,
    logs: Option<Arc<dyn LogSink>>,
    grants: Arc<[Arc<dyn Grant>]>,
    /// Capabilities' exports found in it, by the type that finds them.
    exports: Arc<Mutex<Vec<(TypeId, Found)>>>,
}

/// The name an HTTP-serving component goes by in the gateway.
pub type HttpComponent = Component;

impl Component {
    pub(crate) fn new(
        pre: InstancePre<Host>,
        proxy: Option<ProxyPre<Host>>,
        s: ComponentSettings,
        share: Arc<crate::NodeShare>,
        meter: Arc<crate::Meter>,
    ) -> Self {
        let config = s.config.into_iter().collect::<WasiConfigVariables>();
        Self {
            pre,
            proxy,
            app: s.app.into(),
            component: s.component.into(),
            rules: Arc::new(s.allowed_outbound_hosts),
            config: Arc::new(config),
            limits: s.limits,
            slots: Arc::new(Semaphore::new(s.limits.max_instances as usize)),
            share,
            meter,
            logs: s.logs,
            grants: s.grants.into(),
            exports: Arc::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.component
    }

    /// Instances running right now.
    pub fn active(&self) -> usize {
        (self.limits.max_instances as usize).saturating_sub(self.slots.available_permits())
    }

    /// An export of the component, found by `find` (typically a
    /// `bindgen!`-generated `…Indices::new`) the first time and kept.
    /// `None`: the component does not have it.
    pub fn export<T: Any + Send + Sync>(
        &self,
        find: impl FnOnce(&InstancePre<Host>) -> Option<T>,
    ) -> Option<Arc<T>> {
        let id = TypeId::of::<T>();
        let mut found = self.exports.lock().unwrap_or_else(|p| p.into_inner());
        let entry = match found.iter().find(|(t, _)| *t == id) {
            Some((_, e)) => e.clone(),
            None => {
                let e = find(&self.pre).map(|t| Arc::new(t) as Arc<dyn Any + Send + Sync>);
                found.push((id, e.clone()));
                e
            }
        };
        entry.and_then(|e| e.downcast().ok())
    }

    /// Runs `call` on a fresh instance under the component's limits: the
    /// one path of every run that is not an HTTP request. `call` gets the
    /// store and the instance, and is cut off at the wall-clock limit.
    pub async fn invoke<R, F, Fut>(&self, run: Invocation, call: F) -> Result<R, HandleError>
    where
        F: FnOnce(Store<Host>, Instance) -> Fut,
        Fut: Future<Output = wasmtime::Result<R>>,
    {
        let _permit = self.slot(run.task).await?;
        let charge = self.charge(&run).await?;
        let (mut store, wall, metered) = self.store(&run, charge);
        let result = metered
            .polled(wall.bound(async move {
                let instance = self.pre.instantiate_async(&mut store).await?;
                call(store, instance).await
            }))
            .await;
        result.map_err(|e| self.failed(&e, &run.id))
    }

    /// Why run `id` failed, logged unless the instance was unloaded to
    /// wait (not a failure).
    pub(crate) fn failed(&self, e: &wasmtime::Error, id: &str) -> HandleError {
        let why = classify(e, &self.limits);
        if e.downcast_ref::<Unloaded>().is_none() {
            tracing::warn!(
                target: "nubo::guest",
                app = %self.app, component = %self.component, request_id = %id,
                "request failed: {why}"
            );
        }
        why
    }

    /// An instance slot: a request waits briefly for one, then is turned
    /// away; a task is queued work already and waits its turn.
    pub(crate) async fn slot(
        &self,
        is_task: bool,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, HandleError> {
        let slot = self.slots.clone().acquire_owned();
        if is_task {
            slot.await.map_err(|_| HandleError::Busy)
        } else {
            match tokio::time::timeout(QUEUE_TIMEOUT, slot).await {
                Ok(Ok(permit)) => Ok(permit),
                _ => Err(HandleError::Busy),
            }
        }
    }

    /// One of the node's instance slots ([`crate::share`]): a request gets
    /// [`HandleError::Busy`] (503) when its app may not take one now; a
    /// task waits for one.
    pub(crate) async fn charge(
        &self,
        run: &Invocation,
    ) -> Result<crate::share::Charge, HandleError> {
        let mut said = false;
        loop {
            if let Some(c) = crate::share::Charge::instance(&self.share, &self.app) {
                return Ok(c);
            }
            if !said {
                tracing::warn!(
                    target: "nubo::guest",
                    app = %self.app, component = %self.component, request_id = %run.id,
                    "no instance slot: the app holds more than its share of the node's {} while other apps need theirs",
                    self.share.instances.total()
                );
                said = true;
            }
            if !run.task {
                return Err(HandleError::Busy);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A fresh store for one run, with the component's grants, memory
    /// limit and CPU limit, the run's wall-clock limit (started now) to
    /// [`bound`](WallLimit::bound) it with, and the meter that counts its
    /// usage when dropped (poll the run through it). `charge` is the
    /// instance's slot of the node ([`Self::charge`]).
    pub(crate) fn store(
        &self,
        run: &Invocation,
        charge: crate::share::Charge,
    ) -> (Store<Host>, WallLimit, RunMeter) {
        let limits = self.limits;
        let memory = usize::try_from(limits.memory_mb << 20).unwrap_or(usize::MAX);
        let tags = LogTags {
            app: self.app.clone(),
            component: self.component.clone(),
            request_id: run.id.as_str().into(),
        };
        let clock = Arc::new(WaitClock::default());
        let mut states = States::default();
        let granted = Run {
            app: &self.app,
            id: &run.id,
            context: run.context.as_deref(),
            waits: &clock,
        };
        for grant in self.grants.iter() {
            grant.instantiate(&granted, &mut states);
        }
        let dims = Dims {
            app: self.app.clone(),
            component: self.component.clone(),
            route: Arc::from(""),
            user: run
                .principal
                .as_ref()
                .map_or_else(|| Arc::from(""), |p| Arc::from(p.id.as_str())),
        };
        if let Some(p) = &run.principal {
            states.insert(p.clone());
        }
        let metered = RunMeter::new(self.meter.clone(), dims, run.task, limits.cpu_ms.is_some());
        let host = Host::new(
            tags,
            self.rules.clone(),
            self.config.clone(),
            crate::limiter::Limiter::new(memory, charge, metered.tally.clone()),
            self.logs.clone(),
            states,
            metered.tally.clone(),
        );
        let mut store = Store::new(self.pre.engine(), host);
        store.limiter(|h| &mut h.limits);
        crate::deadline::set(
            &mut store,
            limits,
            run.task,
            clock.clone(),
            metered.tally.clone(),
        );
        let wall = WallLimit::new(
            Duration::from_millis(limits.timeout_ms),
            run.task.then_some(clock),
        );
        (store, wall, metered)
    }
}

/// What a failed run came to, from wasmtime's error: typed errors only,
/// never the error's text.
pub(crate) fn classify(e: &wasmtime::Error, limits: &Limits) -> HandleError {
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return HandleError::Timeout(limits.timeout_ms);
    }
    if e.downcast_ref::<crate::deadline::CpuSpent>().is_some() {
        return HandleError::CpuLimit(limits.cpu_ms.unwrap_or_default());
    }
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return HandleError::Busy;
    }
    match e.downcast_ref::<crate::MemoryRefused>() {
        Some(crate::MemoryRefused::OverLimit { .. }) => HandleError::MemoryLimit(limits.memory_mb),
        Some(crate::MemoryRefused::NodeShare) => HandleError::Busy,
        None => HandleError::Trapped(format!("{e:#}")),
    }
}
