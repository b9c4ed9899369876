//! Applied revisions, in SQLite.
//!
//! One table holds the current definition of every app, another every
//! revision ever made. A change writes both in one transaction, so after a
//! crash at any instant the node comes back with the old revision or the
//! new one, never a mix. WAL mode with `synchronous = FULL`: a revision the
//! API has acknowledged survives a power cut.

use nubo_plan::{AppDef, Step};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::Path;

pub struct Store {
    db: Connection,
    secrets: crate::secrets::Secrets,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "app `{app}` is at revision {current}, but the change was planned against revision {expected}; run `nubo plan` again"
    )]
    Conflict {
        app: String,
        current: u64,
        expected: u64,
    },
    #[error("state database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("state database: {0}")]
    Open(#[from] nubo_sqlite::DbError),
    #[error("state database holds a definition that does not parse: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SealError),
}

/// One entry of an app's history.
#[derive(Debug, Clone, Serialize)]
pub struct RevisionInfo {
    pub revision: u64,
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// What the change did, secrets redacted.
    pub steps: serde_json::Value,
    /// False for the revision that removed the app.
    pub exists: bool,
}

impl Store {
    /// `secrets` seals secret variable values in every stored definition.
    pub fn open(path: &Path, secrets: crate::secrets::Secrets) -> Result<Self, StoreError> {
        // The control plane's record: every commit is synced.
        let db = nubo_sqlite::open(path, nubo_sqlite::Synchronous::Full)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS apps (
                 name TEXT PRIMARY KEY,
                 revision INTEGER NOT NULL,
                 def TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS revisions (
                 app TEXT NOT NULL,
                 revision INTEGER NOT NULL,
                 at INTEGER NOT NULL,
                 steps TEXT NOT NULL,
                 def TEXT,
                 PRIMARY KEY (app, revision)
             );",
        )?;
        Ok(Self { db, secrets })
    }

    /// Every app's current revision and definition.
    pub fn apps(&self) -> Result<Vec<(u64, AppDef)>, StoreError> {
        let mut stmt = self
            .db
            .prepare("SELECT revision, def FROM apps ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (rev, def) = row?;
            out.push((
                rev as u64,
                self.secrets
                    .open(AppDef::from_stored(serde_json::from_str(&def)?)?)?,
            ));
        }
        Ok(out)
    }

    /// Records `def` (`None`: the app was removed) as the revision after
    /// `expected`, checking that nobody got there first.
    pub fn commit(
        &mut self,
        app: &str,
        expected: u64,
        def: Option<&AppDef>,
        steps: &[Step],
    ) -> Result<u64, StoreError> {
        let tx = self.db.transaction()?;
        let current: u64 = tx
            .query_row("SELECT revision FROM apps WHERE name = ?1", [app], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .unwrap_or(0) as u64;
        if current != expected {
            return Err(StoreError::Conflict {
                app: app.to_string(),
                current,
                expected,
            });
        }
        let revision = last_revision(&tx, app)? + 1;
        let steps = serde_json::to_value(redact_steps(app, steps))?;
        let sealed = def.map(|d| self.secrets.seal(d)).transpose()?;
        write(
            &tx,
            app,
            revision,
            nubo_sqlite::now_ms() as u64 / 1000,
            sealed.as_ref(),
            &steps,
        )?;
        tx.commit()?;
        Ok(revision)
    }

    /// The newest revision ever made of `app` (0: none), whether or not it
    /// removed the app.
    pub fn last_revision(&self, app: &str) -> Result<u64, StoreError> {
        last_revision(&self.db, app)
    }

    /// Records a revision made elsewhere (another node of the cluster), as
    /// it was made there.
    pub fn adopt(
        &mut self,
        app: &str,
        revision: u64,
        at: u64,
        def: Option<&AppDef>,
        steps: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let sealed = def.map(|d| self.secrets.seal(d)).transpose()?;
        let tx = self.db.transaction()?;
        write(&tx, app, revision, at, sealed.as_ref(), steps)?;
        tx.commit()?;
        Ok(())
    }

    /// The app's history, oldest first.
    pub fn history(&self, app: &str) -> Result<Vec<RevisionInfo>, StoreError> {
        let mut stmt = self.db.prepare(
            "SELECT revision, at, steps, def IS NOT NULL FROM revisions WHERE app = ?1 ORDER BY revision",
        )?;
        let rows = stmt.query_map([app], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (revision, at, steps, exists) = row?;
            out.push(RevisionInfo {
                revision: revision as u64,
                at: at as u64,
                steps: serde_json::from_str(&steps)?,
                exists,
            });
        }
        Ok(out)
    }

    /// The definition stored with one revision (`None` if there is no such
    /// revision, `Some(None)` if it removed the app).
    pub fn revision(&self, app: &str, revision: u64) -> Result<Option<Option<AppDef>>, StoreError> {
        let row: Option<Option<String>> = self
            .db
            .query_row(
                "SELECT def FROM revisions WHERE app = ?1 AND revision = ?2",
                params![app, revision as i64],
                |r| r.get(0),
            )
            .optional()?;
        match row {
            None => Ok(None),
            Some(None) => Ok(Some(None)),
            Some(Some(json)) => Ok(Some(Some(
                self.secrets
                    .open(AppDef::from_stored(serde_json::from_str(&json)?)?)?,
            ))),
        }
    }
}

fn last_revision(db: &Connection, app: &str) -> Result<u64, StoreError> {
    let last: i64 = db.query_row(
        "SELECT COALESCE(MAX(revision), 0) FROM revisions WHERE app = ?1",
        [app],
        |r| r.get(0),
    )?;
    Ok(last as u64)
}

/// One revision row, and the app's current definition with it.
fn write(
    db: &Connection,
    app: &str,
    revision: u64,
    at: u64,
    def: Option<&AppDef>,
    steps: &serde_json::Value,
) -> Result<(), StoreError> {
    let def_json = def.map(serde_json::to_string).transpose()?;
    db.execute(
        "INSERT OR REPLACE INTO revisions (app, revision, at, steps, def) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![app, revision as i64, at as i64, steps.to_string(), def_json],
    )?;
    match &def_json {
        Some(json) => db.execute(
            "INSERT INTO apps (name, revision, def) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET revision = ?2, def = ?3",
            params![app, revision as i64, json],
        )?,
        None => db.execute("DELETE FROM apps WHERE name = ?1", [app])?,
    };
    Ok(())
}

/// Steps as history shows them: secret values replaced by their digest.
pub fn redact_steps(app: &str, steps: &[Step]) -> Vec<Step> {
    steps
        .iter()
        .map(|s| match s {
            Step::SetVariable {
                name,
                value,
                secret: true,
            } => Step::SetVariable {
                name: name.clone(),
                value: nubo_plan::redact(app, name, value),
                secret: true,
            },
            other => other.clone(),
        })
        .collect()
}
