//! Cron as a capability of the node. It links no interface and is
//! granted to no component: `[[cron]]` entries call a component's HTTP
//! handler. It opens the scheduler, (re)starts an app's schedules on
//! every change, serves its control-API route and forgets a removed app's
//! runs.

use crate::{Scheduler, api};
use nubo_wasm::{
    BoxFuture, Capability, Deleted, OpenEnv, OpenError, PurgeError, RunningApp, Services,
};
use std::sync::Arc;

pub struct Cron;

impl Capability for Cron {
    fn name(&self) -> &'static str {
        "cron"
    }

    fn section(&self) -> Option<&'static dyn nubo_wasm::Section> {
        Some(&crate::CronSection)
    }

    /// `cron.db` in the state dir, for each entry's last run; in a
    /// cluster, runs are leased so that one node runs each.
    fn open<'a>(
        &'a self,
        env: &'a OpenEnv<'a>,
        services: &'a mut Services,
    ) -> Option<BoxFuture<'a, Result<(), OpenError>>> {
        Some(Box::pin(async move {
            let pauses = services
                .get::<Arc<nubo_wasm::Pauses>>()
                .cloned()
                .unwrap_or_default();
            let cron = Scheduler::open(&env.state.join("cron.db"), pauses)
                .map_err(|e| OpenError::new("cron", e))?;
            if let Some(c) = services.get::<nubo_cluster::ClusterJoin>() {
                cron.share(c.cluster.clone(), c.id.clone());
            }
            services.insert(Arc::new(cron));
            Ok(())
        }))
    }

    fn configure(&self, services: &Services, app: &RunningApp<'_>) {
        let Some(cron) = services.get::<Arc<Scheduler>>() else {
            return;
        };
        match app.def {
            Some(def) => {
                let crons = crate::CronSection::of(&def.sections).unwrap_or_else(|e| {
                    tracing::error!(app = app.name, error = %e, "stored cron entries unreadable");
                    Vec::new()
                });
                cron.set(app.name, &crons, |c| app.component(c))
            }
            None => cron.set(app.name, &[], |_| None),
        }
    }

    fn routes(
        &self,
        services: &Services,
        apps: Arc<dyn nubo_api::Apps>,
    ) -> Option<nubo_api::Routes> {
        let cron = services.get::<Arc<Scheduler>>()?.clone();
        Some(api::routes(cron, apps))
    }

    fn purge_app<'a>(
        &'a self,
        services: &'a Services,
        app: &'a str,
    ) -> Option<BoxFuture<'a, Result<Deleted, PurgeError>>> {
        let cron = services.get::<Arc<Scheduler>>()?;
        Some(Box::pin(async move {
            let count = cron
                .forget(app)
                .await
                .map_err(|e| PurgeError::new("cron_runs", e))?;
            Ok(Deleted {
                what: "cron_runs",
                count,
            })
        }))
    }
}
