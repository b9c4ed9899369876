//! Serving one HTTP request with a fresh instance of a component.
//!
//! Each request gets its own store and instance from the pre-instantiated
//! component, so no state leaks between requests and a trap poisons nothing.
//! The guest runs in its own task: after it hands over the response head it
//! keeps running to stream the body, still under its time and memory limits.

use crate::driven::{DrivenBody, GuestFuture};
use crate::engine::EPOCH_TICK;
use crate::error::HandleError;
use crate::host::Host;
use crate::logs::{LogSink, LogTags};
use bytes::Bytes;
use http_body_util::BodyExt;
use nubo_manifest::{Limits, OutboundRule};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use wasmtime::{Store, Trap};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// How long a request waits for a free instance slot before a 503.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(1);

/// A running task yields to the runtime at least every this many epoch
/// ticks, so cancelling it takes effect within that even in a busy loop.
const TASK_YIELD_TICKS: u64 = 5;

/// What a component was granted in `nubo.toml`. The default grants
/// nothing: no config, no outbound hosts, no services, default limits.
#[derive(Clone, Default)]
pub struct ComponentSettings {
    pub app: String,
    pub component: String,
    pub config: BTreeMap<String, String>,
    pub allowed_outbound_hosts: Vec<OutboundRule>,
    pub limits: Limits,
    /// Receives the component's log lines (a node's `nubo logs` buffer).
    pub logs: Option<Arc<dyn LogSink>>,
    /// The key-value stores it may open (`key_value_stores`).
    pub kv: Option<nubo_kv::KvGrant>,
    /// The blob containers it may use (`blob_containers`).
    pub blobs: Option<nubo_blob::BlobGrant>,
    /// The queues it may publish to (`queues`).
    pub queues: Option<nubo_queue::QueueGrant>,
    /// The topics it may publish to (`topics`).
    pub topics: Option<nubo_pubsub::PubSubGrant>,
    /// The components it may start tasks on (`tasks`).
    pub tasks: Option<nubo_tasks::TaskGrant>,
}

/// A component ready to serve: compiled, linked and pre-instantiated.
#[derive(Clone)]
pub struct HttpComponent {
    pre: ProxyPre<Host>,
    app: Arc<str>,
    component: Arc<str>,
    rules: Arc<Vec<OutboundRule>>,
    config: Arc<WasiConfigVariables>,
    limits: Limits,
    slots: Arc<Semaphore>,
    /// The node's pools this component's instances draw from.
    share: Arc<crate::NodeShare>,
    logs: Option<Arc<dyn LogSink>>,
    grants: crate::host::Grants,
    /// Its `task-handler` export, if it has one ([`crate::tasks`]).
    pub(crate) task_export: Option<Arc<crate::tasks::TaskRunnerIndices>>,
    /// Its `queue-handler` export, if it has one ([`crate::queues`]).
    pub(crate) queue_export: Option<Arc<crate::queues::QueueConsumerIndices>>,
}

impl HttpComponent {
    pub(crate) fn new(
        pre: ProxyPre<Host>,
        s: ComponentSettings,
        share: Arc<crate::NodeShare>,
    ) -> Self {
        let config = s.config.into_iter().collect::<WasiConfigVariables>();
        let task_export = crate::tasks::find(pre.instance_pre());
        let queue_export = crate::queues::find(pre.instance_pre());
        Self {
            task_export,
            queue_export,
            pre,
            app: s.app.into(),
            component: s.component.into(),
            rules: Arc::new(s.allowed_outbound_hosts),
            config: Arc::new(config),
            limits: s.limits,
            slots: Arc::new(Semaphore::new(s.limits.max_instances as usize)),
            share,
            logs: s.logs,
            grants: crate::host::Grants {
                kv: s.kv.map(Arc::new),
                blobs: s.blobs.map(Arc::new),
                queues: s.queues.map(Arc::new),
                topics: s.topics.map(Arc::new),
                tasks: s.tasks.map(Arc::new),
            },
        }
    }

    pub(crate) fn instance_pre(&self) -> &wasmtime::component::InstancePre<Host> {
        self.pre.instance_pre()
    }

    /// Why a run of request (or task) `id` failed, logged unless the
    /// instance was unloaded to wait (not a failure).
    pub(crate) fn failed(&self, e: &wasmtime::Error, id: &str) -> HandleError {
        let why = classify(e, &self.limits);
        if e.downcast_ref::<nubo_tasks::Unloaded>().is_none() {
            tracing::warn!(
                target: "nubo::guest",
                app = %self.app, component = %self.component, request_id = %id,
                "request failed: {why}"
            );
        }
        why
    }

    pub fn name(&self) -> &str {
        &self.component
    }

    /// Instances running right now.
    pub fn active(&self) -> usize {
        (self.limits.max_instances as usize).saturating_sub(self.slots.available_permits())
    }

    /// Runs the component on `req`. Errors say why no response came; the
    /// caller maps them to 503, 504 and 500.
    pub async fn handle<B>(
        &self,
        req: hyper::Request<B>,
        request_id: &str,
    ) -> Result<hyper::Response<HyperOutgoingBody>, HandleError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        self.run(req, request_id, None).await
    }

    /// Runs task `caller.task` of this component: like [`handle`](Self::handle),
    /// but time spent waiting on other tasks does not count against
    /// `timeout_ms`, and `hooks` hear when the instance waits.
    pub async fn handle_task<B>(
        &self,
        req: hyper::Request<B>,
        caller: nubo_tasks::Caller,
        hooks: Arc<dyn nubo_tasks::WaitHooks>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, HandleError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let id = caller.task.clone().unwrap_or_default();
        self.run(req, &id, Some((caller, hooks))).await
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

    /// A fresh store for one request or task run, with the component's
    /// grants, memory limit and CPU limit, and the run's wall-clock limit
    /// (started now) to [`bound`](crate::waits::WallLimit::bound) it with.
    /// `charge` is the instance's slot of the node ([`Self::node_slot`]).
    pub(crate) fn store(
        &self,
        request_id: &str,
        task: Option<(nubo_tasks::Caller, Arc<dyn nubo_tasks::WaitHooks>)>,
        charge: crate::share::Charge,
    ) -> (Store<Host>, crate::waits::WallLimit) {
        let limits = self.limits;
        let memory = usize::try_from(limits.memory_mb << 20).unwrap_or(usize::MAX);
        let tags = LogTags {
            app: self.app.clone(),
            component: self.component.clone(),
            request_id: request_id.into(),
        };
        let mut host = Host::new(
            tags,
            self.rules.clone(),
            self.config.clone(),
            crate::limiter::Limiter::new(memory, charge),
            self.logs.clone(),
            &self.grants,
        );
        let is_task = task.is_some();
        let clock = Arc::new(crate::waits::WaitClock::new(
            task.as_ref().map(|t| t.1.clone()),
        ));
        if let Some(grant) = &self.grants.tasks {
            host.tasks = Some(nubo_tasks::TaskCtx {
                grant: grant.clone(),
                caller: match task {
                    Some((caller, _)) => caller,
                    None => nubo_tasks::Caller {
                        app: self.app.to_string(),
                        task: None,
                        depth: 0,
                    },
                },
                spawned: 0,
                hooks: Some(clock.clone()),
            });
        }
        let mut store = Store::new(self.pre.engine(), host);
        store.limiter(|h| &mut h.limits);
        let ticks = limits.timeout_ms.div_ceil(EPOCH_TICK.as_millis() as u64) + 1;
        store.set_epoch_deadline(ticks);
        if is_task {
            store.set_epoch_deadline(ticks.min(TASK_YIELD_TICKS));
            // A task's limit is on the time it runs, not the time it waits
            // for other tasks: when the deadline passes, extend it by the
            // waiting so far.
            let clock = clock.clone();
            let started = std::time::Instant::now();
            store.epoch_deadline_callback(move |_| {
                let budget = Duration::from_millis(limits.timeout_ms) + clock.waited();
                match budget.checked_sub(started.elapsed()) {
                    // Yield rather than continue: a cancelled task's
                    // future is dropped at its next yield, even if it
                    // never calls the host.
                    Some(left) if !left.is_zero() => Ok(wasmtime::UpdateDeadline::Yield(
                        ((left.as_millis() as u64).div_ceil(EPOCH_TICK.as_millis() as u64) + 1)
                            .min(TASK_YIELD_TICKS),
                    )),
                    _ => Err(Trap::Interrupt.into()),
                }
            });
        } else {
            store.epoch_deadline_trap();
        }
        let wall = crate::waits::WallLimit::new(
            Duration::from_millis(limits.timeout_ms),
            is_task.then_some(clock),
        );
        (store, wall)
    }

    /// One of the node's instance slots for a request or a queue delivery:
    /// [`HandleError::Busy`] (503) when the app may not take one now
    /// ([`crate::share`]).
    pub(crate) fn node_slot(&self, request_id: &str) -> Result<crate::share::Charge, HandleError> {
        crate::share::Charge::instance(&self.share, &self.app).ok_or_else(|| {
            self.no_node_slot(request_id);
            HandleError::Busy
        })
    }

    /// One of the node's instance slots for a task, which waits for it: a
    /// task is queued work already.
    pub(crate) async fn node_slot_waiting(&self, task: &str) -> crate::share::Charge {
        let mut said = false;
        loop {
            if let Some(c) = crate::share::Charge::instance(&self.share, &self.app) {
                return c;
            }
            if !said {
                self.no_node_slot(task);
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn no_node_slot(&self, request_id: &str) {
        tracing::warn!(
            target: "nubo::guest",
            app = %self.app, component = %self.component, request_id = %request_id,
            "no instance slot: the app holds more than its share of the node's {} while other apps need theirs",
            self.share.instances.total()
        );
    }

    async fn run<B>(
        &self,
        req: hyper::Request<B>,
        request_id: &str,
        task: Option<(nubo_tasks::Caller, Arc<dyn nubo_tasks::WaitHooks>)>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, HandleError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let is_task = task.is_some();
        let permit = self.slot(is_task).await?;
        let limits = self.limits;
        let charge = if is_task {
            self.node_slot_waiting(request_id).await
        } else {
            self.node_slot(request_id)?
        };
        let (mut store, wall) = self.store(request_id, task, charge);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (req, out) = {
            let mut http = store.data_mut().http();
            let req = http
                .new_incoming_request(Scheme::Http, req)
                .map_err(|e| HandleError::Failed(format!("{e:#}")))?;
            let out = http
                .new_response_outparam(tx)
                .map_err(|e| HandleError::Failed(format!("{e:#}")))?;
            (req, out)
        };
        let pre = self.pre.clone();
        let app = self.app.clone();
        let component = self.component.clone();
        let rid: Arc<str> = request_id.into();
        let body_rid = rid.clone();
        // CPU is cut by the epoch deadline, everything else (waits on the
        // host included) by the wall-clock limit.
        let guest: GuestFuture = Box::pin(async move {
            let _permit = permit;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            let result = wall.bound(run).await;
            if let Err(e) = &result
                && e.downcast_ref::<nubo_tasks::Unloaded>().is_none()
            {
                tracing::warn!(
                    target: "nubo::guest",
                    app = %app, component = %component, request_id = %rid,
                    "request failed: {}", classify(e, &limits)
                );
            }
            result
        });

        // The guest runs on this task, not a spawned one: a hand-off to
        // another worker thread costs more than a small request itself.
        // Once the response head is out, the response body drives the rest.
        let mut guest = guest;
        let mut rx = rx;
        let first = tokio::select! {
            biased;
            head = &mut rx => First::Head(head),
            done = &mut guest => First::Done(done),
        };
        match first {
            First::Head(Ok(Ok(response))) => {
                Ok(response.map(|body| DrivenBody::new(body, guest, body_rid).boxed_unsync()))
            }
            First::Head(Ok(Err(code))) => Err(HandleError::Failed(format!(
                "guest returned error {code:?}"
            ))),
            First::Head(Err(_)) => match guest.await {
                Ok(()) => Err(HandleError::Failed(
                    "the guest returned without a response".into(),
                )),
                Err(e) => Err(classify(&e, &limits)),
            },
            First::Done(done) => match (rx.await, done) {
                // The guest failed after setting its response but before
                // the client saw any of it: answer with the failure.
                (Ok(Ok(_)), Err(e)) => Err(classify(&e, &limits)),
                (Ok(Ok(response)), Ok(())) => Ok(response),
                (Ok(Err(code)), _) => Err(HandleError::Failed(format!(
                    "guest returned error {code:?}"
                ))),
                (Err(_), Ok(())) => Err(HandleError::Failed(
                    "the guest returned without a response".into(),
                )),
                (Err(_), Err(e)) => Err(classify(&e, &limits)),
            },
        }
    }
}

enum First {
    Head(
        Result<
            Result<hyper::Response<HyperOutgoingBody>, ErrorCode>,
            tokio::sync::oneshot::error::RecvError,
        >,
    ),
    Done(wasmtime::Result<()>),
}

fn classify(e: &wasmtime::Error, limits: &Limits) -> HandleError {
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return HandleError::Timeout(limits.timeout_ms);
    }
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return HandleError::Busy;
    }
    match e.downcast_ref::<crate::MemoryRefused>() {
        Some(crate::MemoryRefused::OverLimit { .. }) => HandleError::MemoryLimit(limits.memory_mb),
        Some(crate::MemoryRefused::NodeShare) => HandleError::Busy,
        None => HandleError::Failed(format!("{e:#}")),
    }
}
