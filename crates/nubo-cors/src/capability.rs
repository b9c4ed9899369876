//! Cross-origin rules as a capability of the node: the `[cors]` section
//! and each app's [`Cors`] for the gateway.

use crate::policy::Policy;
use crate::section::CorsSection;
use nubo_gateway::{Cors, CorsPolicies};
use nubo_wasm::{BoxFuture, Capability, OpenEnv, OpenError, PerApp, RunningApp, Section, Services};
use std::sync::Arc;

#[derive(Default)]
struct CorsService(PerApp<Policy>);

impl CorsPolicies for CorsService {
    fn cors(&self, app: &str) -> Option<Arc<dyn Cors>> {
        self.0.get(app).map(|p| p as Arc<dyn Cors>)
    }
}

/// `[cors]` as a capability of the runtime. It links nothing.
pub struct CrossOrigin;

impl Capability for CrossOrigin {
    fn name(&self) -> &'static str {
        "cors"
    }

    fn section(&self) -> Option<&'static dyn Section> {
        Some(&CorsSection)
    }

    fn open<'a>(
        &'a self,
        _env: &'a OpenEnv<'a>,
        services: &'a mut Services,
    ) -> Option<BoxFuture<'a, Result<(), OpenError>>> {
        Some(Box::pin(async move {
            let service = Arc::new(CorsService::default());
            services.insert(service.clone() as Arc<dyn CorsPolicies>);
            services.insert(service);
            Ok(())
        }))
    }

    fn configure(&self, services: &Services, app: &RunningApp<'_>) {
        let Some(service) = services.get::<Arc<CorsService>>() else {
            return;
        };
        let spec = app.section(CorsSection::KEY, CorsSection::of);
        service.0.set(app.name, spec.map(|spec| Policy { spec }));
    }
}
