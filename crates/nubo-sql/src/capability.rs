//! SQL as a capability of the node: the section, the grant, the host
//! binding, the engines it opens, migrations before a revision serves,
//! and what a removed app leaves.

use crate::{
    Database, DatabaseSpec, Engine, PostgresBackend, SqlBackend, SqlError, SqlSection, SqlSpecs,
    SqliteBackend, host,
};
use nubo_wasm::{
    BoxFuture, Capability, Deleted, Grant, GrantError, GrantKey, GrantTo, Names, OpenEnv,
    OpenError, PrepareError, PurgeError, RunningApp, Section, Services,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The databases each app declares, as its running revision says: what a
/// grant opens a database with.
#[derive(Default)]
pub struct Declared {
    apps: RwLock<HashMap<String, Arc<SqlSpecs>>>,
    /// What a removed app declared last: where its data is, for purging.
    removed: RwLock<HashMap<String, Arc<SqlSpecs>>>,
}

impl Declared {
    fn set(&self, app: &str, specs: Option<SqlSpecs>) {
        let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
        let mut removed = self.removed.write().unwrap_or_else(|p| p.into_inner());
        match specs {
            Some(s) => {
                removed.remove(app);
                apps.insert(app.to_string(), Arc::new(s));
            }
            None => {
                if let Some(last) = apps.remove(app) {
                    removed.insert(app.to_string(), last);
                }
            }
        };
    }

    /// What the removed `app` declared last, once.
    fn take_removed(&self, app: &str) -> Arc<SqlSpecs> {
        let mut removed = self.removed.write().unwrap_or_else(|p| p.into_inner());
        removed.remove(app).unwrap_or_default()
    }

    fn get(&self, app: &str) -> Option<Arc<SqlSpecs>> {
        let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
        apps.get(app).cloned()
    }
}

/// Both engines, each database going to the one its spec names.
pub struct Engines {
    pub sqlite: SqliteBackend,
    pub postgres: PostgresBackend,
}

#[async_trait::async_trait]
impl SqlBackend for Engines {
    async fn database(
        &self,
        app: &str,
        name: &str,
        spec: &DatabaseSpec,
    ) -> Result<Arc<dyn Database>, SqlError> {
        match spec.engine {
            Engine::Sqlite => self.sqlite.database(app, name, spec).await,
            Engine::Postgres => self.postgres.database(app, name, spec).await,
        }
    }

    async fn purge_app(&self, app: &str, specs: &SqlSpecs) -> Result<u64, SqlError> {
        let files = self.sqlite.purge_app(app, specs).await?;
        Ok(files + self.postgres.purge_app(app, specs).await?)
    }
}

/// The app's databases with each `url` rendered from its variables (a
/// secret one, usually): what the engines connect with.
fn resolved(def: &nubo_plan::AppDef) -> Result<SqlSpecs, String> {
    let mut specs = SqlSection::of(&def.sections).map_err(|e| format!("stored [sql]: {e}"))?;
    for (name, spec) in specs.iter_mut() {
        if let Some(url) = &spec.url {
            let lookup = |v: &str| def.variables.get(v).map(|v| v.value.clone());
            let rendered = nubo_manifest::render_template(url, lookup)
                .map_err(|e| format!("database `{name}`: url: {e}"))?;
            spec.url = Some(rendered);
        }
    }
    Ok(specs)
}

/// The node's SQL service: its backend and what each app declares.
pub struct SqlService {
    pub backend: Arc<dyn SqlBackend>,
    pub declared: Declared,
}

/// What one component may reach: its app's databases that `nubo.toml`
/// grants.
pub struct SqlGrant {
    pub service: Arc<SqlService>,
    pub app: String,
    pub databases: Vec<String>,
}

impl SqlService {
    /// The database `name` of `app`, as the app declares it now.
    pub async fn open(&self, app: &str, name: &str) -> Result<Arc<dyn Database>, SqlError> {
        let specs = self.declared.get(app);
        let Some(spec) = specs.as_ref().and_then(|s| s.get(name)) else {
            return Err(SqlError::NoSuchDatabase(name.to_string()));
        };
        self.backend.database(app, name, spec).await
    }
}

impl SqlGrant {
    /// The granted database `name`, as the app declares it now.
    pub async fn open(&self, name: &str) -> Result<Arc<dyn Database>, SqlError> {
        self.service.open(&self.app, name).await
    }
}

/// SQL as a capability of the runtime: `nubo:platform/sql`.
pub struct Sql;

impl Capability for Sql {
    fn name(&self) -> &'static str {
        "sql"
    }

    fn grant_key(&self) -> Option<GrantKey> {
        Some(GrantKey {
            key: "sql",
            noun: "database",
            names: Names::Declared { section: "sql" },
        })
    }

    fn section(&self) -> Option<&'static dyn Section> {
        Some(&SqlSection)
    }

    fn grant(&self, to: &GrantTo<'_>, names: &[String]) -> Result<Arc<dyn Grant>, GrantError> {
        let grant = SqlGrant {
            service: to.services.need::<Arc<SqlService>>(self.name())?.clone(),
            app: to.app.to_string(),
            databases: names.to_vec(),
        };
        Ok(Arc::new(host::Granted(Arc::new(grant))))
    }

    fn link(
        &self,
        linker: &mut wasmtime::component::Linker<nubo_wasm::Host>,
    ) -> wasmtime::Result<()> {
        host::add_to_linker(linker)
    }

    fn routes(
        &self,
        services: &Services,
        apps: Arc<dyn nubo_api::Apps>,
    ) -> Option<nubo_api::Routes> {
        let service = services.get::<Arc<SqlService>>()?.clone();
        Some(crate::api::routes(service, apps))
    }

    /// One SQLite file per database under `STATE/sql`; PostgreSQL
    /// databases are connected to when first used.
    fn open<'a>(
        &'a self,
        env: &'a OpenEnv<'a>,
        services: &'a mut Services,
    ) -> Option<BoxFuture<'a, Result<(), OpenError>>> {
        Some(Box::pin(async move {
            let sqlite = SqliteBackend::open(&env.state.join("sql"))
                .map_err(|e| OpenError::new("sql", e))?;
            let engines = Engines {
                sqlite,
                postgres: PostgresBackend::default(),
            };
            services.insert(Arc::new(SqlService {
                backend: Arc::new(engines),
                declared: Declared::default(),
            }));
            Ok(())
        }))
    }

    /// Opens the revision's databases and applies their pending
    /// migrations, before its routes switch. A SQLite database is a file
    /// of one node, so a cluster refuses it.
    fn prepare<'a>(
        &'a self,
        services: &'a Services,
        app: &'a str,
        def: &'a nubo_plan::AppDef,
        revision: u64,
    ) -> Option<BoxFuture<'a, Result<(), PrepareError>>> {
        let service = services.get::<Arc<SqlService>>()?.clone();
        if SqlSection::of(&def.sections).ok()?.is_empty() {
            return None;
        }
        let clustered = services.get::<nubo_cluster::ClusterJoin>().is_some();
        Some(Box::pin(async move {
            let failed = |e: String| PrepareError::new("sql", e);
            let specs = resolved(def).map_err(failed)?;
            for (name, spec) in &specs {
                if clustered && spec.engine == crate::Engine::Sqlite {
                    return Err(failed(format!(
                        "database `{name}` is a SQLite file of one node, and this node is part of a cluster; a cluster needs engine = \"postgres\""
                    )));
                }
                let db = service
                    .backend
                    .database(app, name, spec)
                    .await
                    .map_err(|e| failed(format!("database `{name}`: {e}")))?;
                let applied = db
                    .migrate(&spec.migrations, revision)
                    .await
                    .map_err(|e| failed(format!("database `{name}`: {e}")))?;
                for m in applied {
                    tracing::info!(app, database = %name, migration = %m, revision, "migration applied");
                }
            }
            service.declared.set(app, Some(specs.clone()));
            Ok(())
        }))
    }

    fn configure(&self, services: &Services, app: &RunningApp<'_>) {
        let Some(service) = services.get::<Arc<SqlService>>() else {
            return;
        };
        let specs = app.def.map(|d| {
            resolved(d).unwrap_or_else(|e| {
                tracing::error!(app = app.name, error = %e, "the app's databases cannot be opened");
                Default::default()
            })
        });
        service.declared.set(app.name, specs);
    }

    /// Every database file of the app, and the schema of each of its
    /// PostgreSQL databases.
    fn purge_app<'a>(
        &'a self,
        services: &'a Services,
        app: &'a str,
    ) -> Option<BoxFuture<'a, Result<Deleted, PurgeError>>> {
        let service = services.get::<Arc<SqlService>>()?.clone();
        Some(Box::pin(async move {
            let specs = service.declared.take_removed(app);
            let count = service
                .backend
                .purge_app(app, &specs)
                .await
                .map_err(|e| PurgeError::new("databases", e))?;
            Ok(Deleted {
                what: "databases",
                count,
            })
        }))
    }
}
