//! The interface a capability implements to plug into the runtime and the
//! node.
//!
//! The runtime and the node know no capability by name. A capability
//! (key-value, blobs, queues, tasks, cron, …) is a crate that implements
//! [`Capability`] to add its host interfaces to the node's linker once,
//! and [`Grant`] to give each new instance of a component the state its
//! `nubo.toml` grant allows. That state lives in the instance's [`Host`]
//! beside everyone else's, found by its type: a host function reaches its
//! own with [`Host::state`] and can see no other capability's.
//!
//! Why by type and not a field per capability: wasmtime's generated
//! `add_to_linker` takes a plain function pointer from the store's data to
//! the binding's view, so the lookup cannot capture a slot index; a type is
//! known at compile time by the capability's crate alone. An instance
//! holds one entry per capability its component is granted, so the lookup
//! is a scan of a handful of `TypeId`s.
//!
//! The same trait's hooks (their types are in `lifecycle.rs`) let it open
//! its service into the node's [`Services`], follow each app as it is
//! loaded, changed and removed, serve its control-API routes and delete a
//! removed app's data; every hook has a default that does nothing.
//!
//! [`Host`]: crate::Host
//! [`Host::state`]: crate::Host::state

use crate::Host;
pub use crate::lifecycle::{
    BoxFuture, Deleted, OpenEnv, OpenError, PerApp, PrepareError, PurgeError, RunningApp,
};
use crate::waits::WaitClock;
use nubo_manifest::{GrantKey, Section};
use std::any::{Any, TypeId};
use std::collections::HashSet;
use std::sync::Arc;
use wasmtime::component::Linker;

/// A capability's part of the runtime and the node: the host interfaces
/// it links, how a component is granted it, and the hooks by which the
/// node opens, configures, routes to and purges it.
pub trait Capability: Send + Sync + 'static {
    /// Its name in logs and errors (`key-value`, `tasks`).
    fn name(&self) -> &'static str;

    /// The key that grants it in a `[component.NAME]` table, and the rule
    /// for the names listed there; `None` if it is not granted per
    /// component. `nubo check` and the control API both check grants with
    /// it.
    fn grant_key(&self) -> Option<GrantKey> {
        None
    }

    /// Its top-level table of `nubo.toml` (`[queue.NAME]`), stored in the
    /// app's definition under the section's key; `None` if it has none.
    /// `nubo check`, the control API and `nubo plan` all read, check and
    /// describe the table with it.
    fn section(&self) -> Option<&'static dyn Section> {
        None
    }

    /// Adds its host interfaces to the node's linker. Every component is
    /// linked against all of them; what an instance may do is decided by
    /// the state its [`Grant`] put in it.
    /// The default links nothing: a capability that only calls
    /// components' exports (cron) has no interface of its own.
    fn link(&self, linker: &mut Linker<Host>) -> wasmtime::Result<()> {
        let _ = linker;
        Ok(())
    }

    /// The grant of `names` (the list under [`Capability::grant_key`]) to
    /// one component, built from the node's running services.
    fn grant(&self, to: &GrantTo<'_>, names: &[String]) -> Result<Arc<dyn Grant>, GrantError> {
        let _ = (to, names);
        Err(GrantError::NotGrantable {
            capability: self.name(),
        })
    }

    /// Its control-API routes (`/v1/apps/{app}/…`), served from the
    /// node's running services; `None` if it has none. The node puts
    /// them behind its token check; `apps` tells which apps run and what
    /// they declare.
    fn routes(
        &self,
        services: &Services,
        apps: Arc<dyn nubo_api::Apps>,
    ) -> Option<nubo_api::Routes> {
        let _ = (services, apps);
        None
    }

    /// Deletes everything app `app` stored with this capability (the app
    /// was removed, and one made again under its name must start empty);
    /// `None` if it stores nothing.
    fn purge_app<'a>(
        &'a self,
        services: &'a Services,
        app: &'a str,
    ) -> Option<BoxFuture<'a, Result<Deleted, PurgeError>>> {
        let _ = (services, app);
        None
    }

    /// Opens the service it runs on this node (a backend, a dispatcher)
    /// and adds it to `services`, where its grants, routes and hooks find
    /// it by type; a node in a cluster has put a
    /// `nubo_cluster::ClusterJoin` there first. Called once, in the
    /// order of the node's list.
    fn open<'a>(
        &'a self,
        env: &'a OpenEnv<'a>,
        services: &'a mut Services,
    ) -> Option<BoxFuture<'a, Result<(), OpenError>>> {
        let _ = (env, services);
        None
    }

    /// A new revision of an app is about to be committed: its components
    /// are ready and its routes have not switched. The capability readies
    /// what the revision needs before it serves (a database's migrations);
    /// an error refuses the whole change and the old revision serves on.
    /// `revision` is the number the change will commit as.
    fn prepare<'a>(
        &'a self,
        services: &'a Services,
        app: &'a str,
        def: &'a nubo_plan::AppDef,
        revision: u64,
    ) -> Option<BoxFuture<'a, Result<(), PrepareError>>> {
        let _ = (services, app, def, revision);
        None
    }

    /// The app was loaded, changed or removed (`app.def` is `None`): the
    /// capability (re)starts what it runs for it (schedules, consumers)
    /// against its running components, and sets its limits.
    fn configure(&self, services: &Services, app: &RunningApp<'_>) {
        let _ = (services, app);
    }

    /// Every app was loaded at the node's start.
    fn restored<'a>(&'a self, services: &'a Services) -> Option<BoxFuture<'a, ()>> {
        let _ = services;
        None
    }

    /// This node wrote its heartbeat to the cluster; `members` are the
    /// nodes whose heartbeat has not expired, when the list could be read.
    fn heartbeat<'a>(
        &'a self,
        services: &'a Services,
        members: Option<&'a HashSet<String>>,
    ) -> Option<BoxFuture<'a, ()>> {
        let _ = (services, members);
        None
    }

    /// This node has not reached the cluster for so long that the others
    /// take over its work: it stops what only one node may run, and says
    /// how much it stopped.
    fn fence(&self, services: &Services) -> Option<usize> {
        let _ = services;
        None
    }

    /// The node is stopping and its servers have stopped: the capability
    /// stores what it holds only in memory (counted usage).
    fn close<'a>(&'a self, services: &'a Services) -> Option<BoxFuture<'a, ()>> {
        let _ = services;
        None
    }

    /// Figures for the node's `/metrics`, read when it is scraped
    /// ([`crate::metrics`]). What a capability counts as the work happens
    /// it registers in the node's [`crate::metrics::Metrics`] instead (from
    /// the services, when it opens).
    fn readings<'a>(
        &'a self,
        services: &'a Services,
    ) -> BoxFuture<'a, Vec<crate::metrics::Reading>> {
        let _ = services;
        Box::pin(async { Vec::new() })
    }
}

/// The grants of one component: for each key it lists, the capability
/// that owns the key builds its grant.
pub fn grants(
    capabilities: &[Arc<dyn Capability>],
    to: &GrantTo<'_>,
    listed: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<Vec<Arc<dyn Grant>>, GrantError> {
    let mut out = Vec::new();
    for (key, names) in listed.iter().filter(|(_, n)| !n.is_empty()) {
        let owner = capabilities
            .iter()
            .find(|c| c.grant_key().is_some_and(|g| g.key == key))
            .ok_or_else(|| GrantError::UnknownKey { key: key.clone() })?;
        out.push(owner.grant(to, names)?);
    }
    Ok(out)
}

/// Whom a grant is for, and the services it may draw on.
pub struct GrantTo<'a> {
    pub app: &'a str,
    pub component: &'a str,
    pub services: &'a Services,
}

/// Why a grant could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("capability `{capability}` is not granted per component")]
    NotGrantable { capability: &'static str },
    #[error("capability `{capability}` needs a {service} this node does not run")]
    NoService {
        capability: &'static str,
        service: &'static str,
    },
    #[error("no capability of this node is granted with `{key}`")]
    UnknownKey { key: String },
}

/// The services a node runs for its capabilities (a key-value backend, the
/// task runner), one value per type: a capability finds its own by type
/// when it builds a grant, and the node needs to know nothing about them
/// but how to open them.
#[derive(Default, Clone)]
pub struct Services(Vec<(TypeId, Arc<dyn Any + Send + Sync>)>);

impl Services {
    /// Adds `service`, replacing one of the same type.
    pub fn insert<T: Any + Send + Sync>(&mut self, service: T) {
        let id = TypeId::of::<T>();
        self.0.retain(|(t, _)| *t != id);
        self.0.push((id, Arc::new(service)));
    }

    /// The service of type `T`, if the node runs one.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.0
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, s)| s.downcast_ref())
    }

    /// The service of type `T` that `capability` needs to build a grant.
    pub fn need<T: Any + Send + Sync>(&self, capability: &'static str) -> Result<&T, GrantError> {
        self.get().ok_or(GrantError::NoService {
            capability,
            service: std::any::type_name::<T>(),
        })
    }
}

/// One component's grant of one capability, built from its `nubo.toml`
/// entry and shared by all its instances.
pub trait Grant: Send + Sync + 'static {
    /// Puts this capability's state for one new instance of the component
    /// into `states`.
    fn instantiate(&self, run: &Run<'_>, states: &mut States);
}

/// A grant whose instance state is the grant itself, shared by all the
/// instances, for capabilities that keep nothing per instance: a host
/// function finds it as `Arc<T>` with [`Host::state`](crate::Host::state).
pub struct Shared<T>(pub Arc<T>);

impl<T: Send + Sync + 'static> Grant for Shared<T> {
    fn instantiate(&self, _run: &Run<'_>, states: &mut States) {
        states.insert(self.0.clone());
    }
}

/// What a new instance runs: passed to every [`Grant`] of its component.
pub struct Run<'a> {
    /// The app the component belongs to.
    pub app: &'a str,
    /// The request's id, or the task's.
    pub id: &'a str,
    /// What the caller of the run attached for the capabilities (a task's
    /// place in its tree, for the task capability).
    pub context: Option<&'a (dyn Any + Send + Sync)>,
    /// Where the instance's waits are counted: time a task spends waiting
    /// on other tasks does not count against its limit.
    pub waits: &'a Arc<WaitClock>,
}

impl Run<'_> {
    /// The run's context, if the caller attached one of type `T`.
    pub fn context<T: Any>(&self) -> Option<&T> {
        self.context.and_then(|c| c.downcast_ref())
    }
}

/// The per-instance state of each granted capability, one value per type.
#[derive(Default)]
pub struct States(Vec<(TypeId, Box<dyn Any + Send>)>);

impl States {
    /// Sets the instance's state of type `T`, replacing one already there.
    pub fn insert<T: Any + Send>(&mut self, state: T) {
        let id = TypeId::of::<T>();
        match self.0.iter_mut().find(|(t, _)| *t == id) {
            Some(slot) => slot.1 = Box::new(state),
            None => self.0.push((id, Box::new(state))),
        }
    }

    /// The instance's state of type `T`, if one was put in.
    pub fn get_mut<T: Any + Send>(&mut self) -> Option<&mut T> {
        let id = TypeId::of::<T>();
        self.0
            .iter_mut()
            .find(|(t, _)| *t == id)
            .and_then(|(_, s)| s.downcast_mut())
    }
}

/// What `capabilities` add to a definition: the grant keys a component
/// may list and the top-level sections of `nubo.toml`.
pub fn schema(capabilities: &[Arc<dyn Capability>]) -> nubo_manifest::Schema {
    nubo_manifest::Schema {
        grants: capabilities.iter().filter_map(|c| c.grant_key()).collect(),
        sections: capabilities.iter().filter_map(|c| c.section()).collect(),
        target: nubo_manifest::Target::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::States;

    #[derive(Default, Debug, PartialEq)]
    struct A(u32);
    #[derive(Default, Debug, PartialEq)]
    struct B(&'static str);

    #[test]
    fn each_type_has_its_own_state() {
        let mut s = States::default();
        assert!(s.get_mut::<A>().is_none());
        s.insert(A(1));
        s.insert(B("b"));
        s.insert(A(2));
        assert_eq!(s.get_mut::<A>(), Some(&mut A(2)));
        assert_eq!(s.get_mut::<B>(), Some(&mut B("b")));
        if let Some(a) = s.get_mut::<A>() {
            a.0 += 1;
        }
        assert_eq!(s.get_mut::<A>(), Some(&mut A(3)));
        assert_eq!(s.0.len(), 2);
    }
}
