//! `nubo:platform/identity` for one guest instance: who started the work
//! it runs. The runtime serves it for every component, since it is the
//! runtime that carries the [`Principal`] of each run; whether anyone can
//! sign in at all is up to the app's `[auth]`.

use crate::Principal;
use wasmtime::component::{HasData, Linker};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "nubo:platform/identity-host",
    });
}

use generated::nubo::platform::identity;

struct IdentityView<'a> {
    principal: Option<&'a Principal>,
}

struct HasIdentity;

impl HasData for HasIdentity {
    type Data<'a> = IdentityView<'a>;
}

fn view(host: &mut crate::Host) -> IdentityView<'_> {
    IdentityView {
        principal: host.state::<std::sync::Arc<Principal>>().map(|p| &**p),
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<crate::Host>) -> wasmtime::Result<()> {
    identity::add_to_linker::<_, HasIdentity>(linker, view)
}

impl identity::Host for IdentityView<'_> {
    fn caller(&mut self) -> Option<identity::Principal> {
        self.principal.map(|p| identity::Principal {
            id: p.id.clone(),
            email: p.email.clone(),
            roles: p.roles.clone(),
            how: p.how.clone(),
        })
    }
}
