//! Sign-in as a capability of the node: the `[auth]` section, and each
//! app's guard, which the gateway asks for by app name.

use crate::guard::AppGuard;
use crate::jwt::Issuers;
use crate::section::AuthSection;
use crate::store::Accounts;
use crate::throttle::Throttle;
use nubo_gateway::{Guard, Guards};
use nubo_kv::KvBackend;
use nubo_wasm::{BoxFuture, Capability, OpenEnv, OpenError, PerApp, RunningApp, Section, Services};
use std::sync::Arc;

/// The node's sign-in: the guard of each app that has `[auth]`.
pub(crate) struct AuthService {
    kv: Arc<dyn KvBackend>,
    throttle: Arc<Throttle>,
    apps: PerApp<AppGuard>,
}

impl AuthService {
    /// App `app`'s guard, if it has `[auth]`.
    pub(crate) fn app(&self, app: &str) -> Option<Arc<AppGuard>> {
        self.apps.get(app)
    }
}

impl Guards for AuthService {
    fn guard(&self, app: &str) -> Option<Arc<dyn Guard>> {
        self.apps.get(app).map(|g| g as Arc<dyn Guard>)
    }
}

/// Sign-in as a capability of the runtime. It links nothing: components
/// see its work as `nubo-user-*` headers, and as the identity of the runs
/// a signed-in request starts (`nubo:platform/identity`, which the
/// runtime serves).
pub struct Auth;

impl Capability for Auth {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn section(&self) -> Option<&'static dyn Section> {
        Some(&AuthSection)
    }

    fn routes(
        &self,
        services: &Services,
        apps: Arc<dyn nubo_api::Apps>,
    ) -> Option<nubo_api::Routes> {
        let service = services.get::<Arc<AuthService>>()?.clone();
        Some(crate::api::routes(service, apps))
    }

    /// Accounts and sessions go in the key-value store the node opened.
    fn open<'a>(
        &'a self,
        _env: &'a OpenEnv<'a>,
        services: &'a mut Services,
    ) -> Option<BoxFuture<'a, Result<(), OpenError>>> {
        Some(Box::pin(async move {
            let kv = services
                .need::<Arc<dyn KvBackend>>("auth")
                .map_err(|e| OpenError::new("auth", e))?
                .clone();
            let service = Arc::new(AuthService {
                kv,
                throttle: Arc::default(),
                apps: PerApp::default(),
            });
            services.insert(service.clone() as Arc<dyn Guards>);
            services.insert(service);
            Ok(())
        }))
    }

    /// The app's guard, as its running revision declares `[auth]`.
    fn configure(&self, services: &Services, app: &RunningApp<'_>) {
        let Some(service) = services.get::<Arc<AuthService>>() else {
            return;
        };
        let guard = app.section(AuthSection::KEY, AuthSection::of).map(|spec| {
            let lookup = |v: &str| {
                app.def
                    .and_then(|d| d.variables.get(v))
                    .map(|v| v.value.clone())
            };
            let issuers = Issuers::new(&spec.jwt, lookup).unwrap_or_else(|e| {
                tracing::error!(app = app.name, error = %e, "no JWT is taken");
                Issuers::none()
            });
            AppGuard {
                issuers,
                spec,
                base: app
                    .def
                    .map_or_else(|| "/".into(), |d| d.settings.base.clone()),
                accounts: Accounts::new(service.kv.clone(), app.name),
                throttle: service.throttle.clone(),
            }
        });
        service.apps.set(app.name, guard);
    }
}
