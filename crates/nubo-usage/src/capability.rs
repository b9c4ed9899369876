//! Metering as a capability of the node: it opens the usage database,
//! stores what the node's meter counted every [`FLUSH_EVERY`], prunes old
//! points every hour, and serves `/v1/apps/{app}/usage`.

use crate::caps::{AppCaps, CapService};
use crate::section::{CapsSection, UsageSection};
use crate::store::UsageDb;
use nubo_wasm::{BoxFuture, Capability, Deleted, Meter, OpenEnv, OpenError, PurgeError, Services};
use std::sync::Arc;
use std::time::Duration;

/// How often counted usage is stored. A node killed without a chance to
/// stop loses at most this much of it.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// The metering service: the meter, and where its points go.
pub(crate) struct Metered {
    pub(crate) meter: Arc<Meter>,
    pub(crate) db: UsageDb,
}

impl Metered {
    /// Stores what the meter counted since the last time; on failure the
    /// points go back to the meter, to be stored with the next.
    pub(crate) async fn flush(&self) {
        let points = self.meter.drain();
        if points.is_empty() {
            return;
        }
        if let Err(e) = self.db.add(points.clone()).await {
            tracing::warn!(error = %e, "storing usage failed; kept to try again");
            self.meter.restore(points);
        }
    }
}

/// Usage metering.
pub struct Metering;

impl Capability for Metering {
    fn name(&self) -> &'static str {
        "usage"
    }

    fn section(&self) -> Option<&'static dyn nubo_wasm::Section> {
        Some(&UsageSection)
    }

    fn open<'a>(
        &'a self,
        env: &'a OpenEnv<'a>,
        services: &'a mut Services,
    ) -> Option<BoxFuture<'a, Result<(), OpenError>>> {
        Some(Box::pin(async move {
            let meter = services.get::<Arc<Meter>>().cloned().unwrap_or_default();
            let db = UsageDb::open(env.state).map_err(|e| OpenError::new("usage", e))?;
            let metered = Arc::new(Metered { meter, db });
            tokio::spawn(flush_loop(Arc::downgrade(&metered)));
            services.insert(metered);
            Ok(())
        }))
    }

    fn routes(
        &self,
        services: &Services,
        apps: Arc<dyn nubo_api::Apps>,
    ) -> Option<nubo_api::Routes> {
        let metered = services.get::<Arc<Metered>>()?.clone();
        Some(crate::api::routes(metered, apps))
    }

    fn purge_app<'a>(
        &'a self,
        services: &'a Services,
        app: &'a str,
    ) -> Option<BoxFuture<'a, Result<Deleted, PurgeError>>> {
        let metered = services.get::<Arc<Metered>>()?.clone();
        Some(Box::pin(async move {
            // What is still in the meter goes in first, so that none of
            // it is stored after the purge.
            metered.flush().await;
            let count = metered
                .db
                .purge(app)
                .await
                .map_err(|e| PurgeError::new("usage_rows", e))?;
            Ok(Deleted {
                what: "usage_rows",
                count,
            })
        }))
    }

    fn close<'a>(&'a self, services: &'a Services) -> Option<BoxFuture<'a, ()>> {
        let metered = services.get::<Arc<Metered>>()?.clone();
        Some(Box::pin(async move { metered.flush().await }))
    }
}

/// Stores the meter's points every [`FLUSH_EVERY`] and prunes every hour,
/// until the service is dropped.
async fn flush_loop(metered: std::sync::Weak<Metered>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruned = 0;
    loop {
        tick.tick().await;
        let Some(m) = metered.upgrade() else { return };
        m.flush().await;
        let now = nubo_wasm::usage::now_minute();
        if now >= pruned + 60 {
            if let Err(e) = m.db.prune(now).await {
                tracing::warn!(error = %e, "pruning old usage failed");
            }
            pruned = now;
        }
    }
}

/// Usage caps: `[caps]`, held against the app's usage every
/// [`FLUSH_EVERY`] and at every apply (`caps.rs`). Opened after
/// [`Metering`], whose service it reads.
pub struct Caps;

impl Capability for Caps {
    fn name(&self) -> &'static str {
        "caps"
    }

    fn section(&self) -> Option<&'static dyn nubo_wasm::Section> {
        Some(&CapsSection)
    }

    fn open<'a>(
        &'a self,
        _env: &'a OpenEnv<'a>,
        services: &'a mut Services,
    ) -> Option<BoxFuture<'a, Result<(), OpenError>>> {
        let metered = services.get::<Arc<Metered>>()?.clone();
        let pauses = services
            .get::<Arc<nubo_wasm::Pauses>>()
            .cloned()
            .unwrap_or_default();
        let events = services.get::<Arc<dyn nubo_wasm::LogSink>>().cloned();
        Some(Box::pin(async move {
            let caps = Arc::new(CapService::new(metered, pauses, events));
            tokio::spawn(check_loop(Arc::downgrade(&caps)));
            services.insert(caps.clone() as Arc<dyn nubo_gateway::Gates>);
            services.insert(caps);
            Ok(())
        }))
    }

    fn routes(
        &self,
        services: &Services,
        apps: Arc<dyn nubo_api::Apps>,
    ) -> Option<nubo_api::Routes> {
        let caps = services.get::<Arc<CapService>>()?.clone();
        Some(crate::caps_api::routes(caps, apps))
    }

    /// Apps whose background work is paused, and whose requests are
    /// refused, at a cap; and each app's use of each of its caps.
    fn readings<'a>(
        &'a self,
        services: &'a Services,
    ) -> nubo_wasm::BoxFuture<'a, Vec<nubo_wasm::metrics::Reading>> {
        Box::pin(async move {
            match services.get::<Arc<CapService>>() {
                Some(caps) => caps.readings().await,
                None => Vec::new(),
            }
        })
    }

    fn configure(&self, services: &Services, app: &nubo_wasm::RunningApp<'_>) {
        let Some(service) = services.get::<Arc<CapService>>() else {
            return;
        };
        let caps = app.section(CapsSection::KEY, CapsSection::of);
        let prices = app
            .section(UsageSection::KEY, UsageSection::of)
            .map(|u| u.prices)
            .unwrap_or_default();
        service
            .apps
            .set(app.name, caps.map(|caps| AppCaps { caps, prices }));
        // A changed cap holds at once, not at the next check.
        let (service, name) = (service.clone(), app.name.to_string());
        tokio::spawn(async move {
            let caps = service.apps.get(&name);
            service.check(&name, caps.as_deref()).await;
        });
    }
}

/// Holds every app against its caps every [`FLUSH_EVERY`], until the
/// service is dropped.
async fn check_loop(caps: std::sync::Weak<CapService>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(c) = caps.upgrade() else { return };
        c.metered.flush().await;
        c.check_all().await;
    }
}
