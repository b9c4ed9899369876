//! The interface a capability implements to plug into the runtime.
//!
//! The runtime knows no capability by name. A capability (key-value,
//! blobs, queues, tasks, …) is a crate that implements [`Capability`] to
//! add its host interfaces to the node's linker once, and [`Grant`] to
//! give each new instance of a component the state its `nubo.toml` grant
//! allows. That state lives in the instance's [`Host`] beside everyone
//! else's, found by its type: a host function reaches its own with
//! [`Host::state`] and can see no other capability's.
//!
//! Why by type and not a field per capability: wasmtime's generated
//! `add_to_linker` takes a plain function pointer from the store's data to
//! the binding's view, so the lookup cannot capture a slot index; a type is
//! known at compile time by the capability's crate alone. An instance
//! holds one entry per capability its component is granted, so the lookup
//! is a scan of a handful of `TypeId`s.
//!
//! [`Host`]: crate::Host
//! [`Host::state`]: crate::Host::state

use crate::Host;
use crate::waits::WaitClock;
use std::any::{Any, TypeId};
use std::sync::Arc;
use wasmtime::component::Linker;

/// A capability's part of the runtime: the host interfaces it links.
pub trait Capability: Send + Sync + 'static {
    /// Its name in logs and errors (`key-value`, `tasks`).
    fn name(&self) -> &'static str;

    /// Adds its host interfaces to the node's linker. Every component is
    /// linked against all of them; what an instance may do is decided by
    /// the state its [`Grant`] put in it.
    fn link(&self, linker: &mut Linker<Host>) -> wasmtime::Result<()>;
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
