//! The verbs of the control API, and what each does to a definition.
//!
//! A plan is a list of these; the node applies a whole list as one
//! revision. [`apply`] is the single definition of their meaning: the node
//! calls it, and the planner's property tests call it to prove that
//! `apply(a, plan(a, b)) == b`.

use crate::model::{AppDef, AppSettings, ComponentDef, Route};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Step {
    /// Send a component's wasm to the node (content-addressed; a no-op on
    /// the definition).
    UploadComponent {
        component: String,
        digest: String,
    },
    /// Send a static site's files to the node (a no-op on the definition).
    UploadFiles {
        route: String,
        digests: Vec<String>,
    },
    CreateApp {
        name: String,
        settings: AppSettings,
    },
    SetSettings {
        settings: AppSettings,
    },
    /// Adds or replaces a variable; restarts the components that read it.
    SetVariable {
        name: String,
        value: String,
        #[serde(default)]
        secret: bool,
    },
    RemoveVariable {
        name: String,
    },
    /// A new component, started and ready before any route points at it.
    AddComponent {
        name: String,
        component: ComponentDef,
    },
    /// A new version (new build, limits or grants): started beside the old
    /// one, which drains once routes switch.
    ReplaceComponent {
        name: String,
        component: ComponentDef,
        reasons: Vec<String>,
    },
    SetConfig {
        component: String,
        key: String,
        value: String,
    },
    RemoveConfig {
        component: String,
        key: String,
    },
    StartComponent {
        name: String,
    },
    StopComponent {
        name: String,
    },
    /// Switches every route of the app at once.
    SetRoutes {
        routes: Vec<Route>,
    },
    /// Replaces one capability's section (`queues`, `crons`): what the
    /// capability does about it is its own (a removed queue keeps its
    /// messages; a cron run in progress finishes). An empty value removes
    /// the section.
    SetSection {
        key: String,
        value: serde_json::Value,
    },
    /// Drained and stopped after routes no longer point at it.
    RemoveComponent {
        name: String,
    },
    /// Removes the app and, unless `keep_data`, deletes what it stored:
    /// keys, blobs, queued and dead messages, tasks and cron history.
    RemoveApp {
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        keep_data: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("app `{0}` already exists")]
    AppExists(String),
    #[error("the app does not exist")]
    NoApp,
    #[error("no component `{0}`")]
    NoComponent(String),
    #[error("component `{0}` already exists")]
    ComponentExists(String),
    #[error("no variable `{0}`")]
    NoVariable(String),
    #[error("component `{0}` has no config key `{1}`")]
    NoConfig(String, String),
    #[error("app name `{0}` does not match the app being changed, `{1}`")]
    WrongName(String, String),
    #[error("`{0}` is not a content digest (64 lower-case hex digits)")]
    BadDigest(String),
}

/// Applies `steps` in order to `app` (`None`: no such app yet). The result
/// still has to pass [`crate::validate`] before a node stores it.
pub fn apply(
    app_name: &str,
    mut app: Option<AppDef>,
    steps: &[Step],
) -> Result<Option<AppDef>, StepError> {
    for step in steps {
        app = apply_one(app_name, app, step)?;
    }
    Ok(app)
}

fn apply_one(name: &str, app: Option<AppDef>, step: &Step) -> Result<Option<AppDef>, StepError> {
    match step {
        Step::UploadComponent { digest, .. } => {
            check_digest(digest)?;
            return Ok(app);
        }
        Step::UploadFiles { digests, .. } => {
            digests.iter().try_for_each(|d| check_digest(d))?;
            return Ok(app);
        }
        Step::CreateApp { name: n, settings } => {
            if app.is_some() {
                return Err(StepError::AppExists(n.clone()));
            }
            if n != name {
                return Err(StepError::WrongName(n.clone(), name.to_string()));
            }
            let mut def = AppDef::new(n.clone());
            def.settings = settings.clone();
            return Ok(Some(def));
        }
        Step::RemoveApp { .. } => {
            return match app {
                Some(_) => Ok(None),
                None => Err(StepError::NoApp),
            };
        }
        _ => {}
    }
    let mut app = app.ok_or(StepError::NoApp)?;
    match step {
        Step::SetSettings { settings } => app.settings = settings.clone(),
        Step::SetVariable {
            name,
            value,
            secret,
        } => {
            app.variables.insert(
                name.clone(),
                crate::Variable {
                    value: value.clone(),
                    secret: *secret,
                },
            );
        }
        Step::RemoveVariable { name } => {
            app.variables
                .remove(name)
                .ok_or_else(|| StepError::NoVariable(name.clone()))?;
        }
        Step::AddComponent { name, component } => {
            if app.components.contains_key(name) {
                return Err(StepError::ComponentExists(name.clone()));
            }
            app.components.insert(name.clone(), component.clone());
        }
        Step::ReplaceComponent {
            name, component, ..
        } => {
            let slot = component_mut(&mut app, name)?;
            *slot = component.clone();
        }
        Step::SetConfig {
            component,
            key,
            value,
        } => {
            component_mut(&mut app, component)?
                .config
                .insert(key.clone(), value.clone());
        }
        Step::RemoveConfig { component, key } => {
            component_mut(&mut app, component)?
                .config
                .remove(key)
                .ok_or_else(|| StepError::NoConfig(component.clone(), key.clone()))?;
        }
        Step::StartComponent { name } => component_mut(&mut app, name)?.started = true,
        Step::StopComponent { name } => component_mut(&mut app, name)?.started = false,
        Step::SetRoutes { routes } => app.routes = routes.clone(),
        Step::SetSection { key, value } => app.set_section(key, value.clone()),
        Step::RemoveComponent { name } => {
            app.components
                .remove(name)
                .ok_or_else(|| StepError::NoComponent(name.clone()))?;
        }
        Step::UploadComponent { .. }
        | Step::UploadFiles { .. }
        | Step::CreateApp { .. }
        | Step::RemoveApp { .. } => {}
    }
    Ok(Some(app))
}

/// Upload steps change nothing stored, but a malformed one is still a
/// malformed request.
fn check_digest(d: &str) -> Result<(), StepError> {
    if crate::validate::is_digest(d) {
        Ok(())
    } else {
        Err(StepError::BadDigest(d.to_string()))
    }
}

fn component_mut<'a>(app: &'a mut AppDef, name: &str) -> Result<&'a mut ComponentDef, StepError> {
    app.components
        .get_mut(name)
        .ok_or_else(|| StepError::NoComponent(name.to_string()))
}

impl Step {
    /// Whether the step changes what is stored (uploads do not).
    pub fn changes_definition(&self) -> bool {
        !matches!(
            self,
            Step::UploadComponent { .. } | Step::UploadFiles { .. }
        )
    }
}
