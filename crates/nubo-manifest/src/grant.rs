//! Grants: what a component may reach, written in its `[component.NAME]`
//! table as `key = ["name", …]`.
//!
//! The keys are not fixed here. Each capability declares its own
//! [`GrantKey`] (the key, what a name denotes, which names are valid), and
//! the file parser and the control API's validator both check grants with
//! [`GrantKey::check`], so the two cannot disagree on what a grant may say.

use crate::error::Reporter;
use crate::raw::{COMPONENT_KEYS, RawGrant, RawManifest};
use std::collections::BTreeMap;

/// How one capability's grant is written and what its names must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantKey {
    /// The key in `[component.NAME]` and in the stored definition:
    /// `key_value_stores`.
    pub key: &'static str,
    /// What one name denotes, for messages: "key-value store".
    pub noun: &'static str,
    /// Which names are valid.
    pub names: Names,
}

/// What the names of a grant refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Namespaces the grant itself brings into being (a store, a topic):
    /// any [`crate::is_store_name`]. `example` is shown in the hint.
    Own { example: &'static str },
    /// Entries declared elsewhere in the file, in `[SECTION.NAME]` tables.
    Declared { section: &'static str },
    /// Components of the same app.
    Components,
}

/// What an app declares, as grants see it.
pub trait Declarations {
    /// Whether `[section.name]` is declared.
    fn declares(&self, section: &str, name: &str) -> bool;
    /// Whether the app has a component `name`.
    fn has_component(&self, name: &str) -> bool;
    /// Whether the app declares the variable `name` (`[variables]`).
    fn has_variable(&self, name: &str) -> bool;
}

/// One problem with one name of a grant: `index` is its position in the
/// list, so the file parser can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantProblem {
    pub index: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl GrantKey {
    /// Every problem with `names`, a grant written under this key.
    pub fn check(&self, names: &[String], app: &dyn Declarations) -> Vec<GrantProblem> {
        let mut out = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let problem = |message: String, hint: Option<String>| GrantProblem {
                index,
                message,
                hint,
            };
            if names[..index].contains(name) {
                out.push(problem(
                    format!("{} `{name}` is listed twice", self.noun),
                    None,
                ));
                continue;
            }
            match self.names {
                Names::Own { example } if !crate::is_store_name(name) => out.push(problem(
                    format!("invalid {} name `{name}`", self.noun),
                    Some(format!(
                        "use lower-case letters, digits, `-` and `_`, starting with a letter, e.g. \"{example}\""
                    )),
                )),
                Names::Declared { section } if !app.declares(section, name) => {
                    out.push(problem(
                        format!("{} `{name}` is not declared", self.noun),
                        Some(format!("declare it: [{section}.{name}]")),
                    ))
                }
                Names::Components if !app.has_component(name) => out.push(problem(
                    format!("`{}` names unknown component `{name}`", self.key),
                    Some(format!(
                        "list components of this app; a {} is one of them",
                        self.noun
                    )),
                )),
                _ => {}
            }
        }
        out
    }
}

/// One grant key of each kind of name, shaped like the capabilities' own:
/// for tests and the fuzzer of this crate, which sees no capability.
#[doc(hidden)]
pub const SAMPLE_GRANTS: [GrantKey; 4] = [
    GrantKey {
        key: "key_value_stores",
        noun: "key-value store",
        names: Names::Own { example: "default" },
    },
    GrantKey {
        key: "blob_containers",
        noun: "blob container",
        names: Names::Own { example: "uploads" },
    },
    GrantKey {
        key: "queues",
        noun: "queue",
        names: Names::Declared { section: "queue" },
    },
    GrantKey {
        key: "tasks",
        noun: "task target",
        names: Names::Components,
    },
];

/// The message and hint for `key`, which no capability claims.
pub fn unknown_key(key: &str, grants: &[GrantKey], fixed: &[&str]) -> (String, String) {
    let mut known: Vec<&str> = fixed.to_vec();
    known.extend(grants.iter().map(|g| g.key));
    let hint = match crate::validate::closest(key, &known) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("a component takes {}", known.join(", ")),
    };
    (format!("unknown key `{key}` in a component"), hint)
}

/// The grants of every component in the file, checked against `keys`;
/// each problem is reported where it is written.
pub(crate) fn from_file(
    raw: &RawManifest,
    keys: &[GrantKey],
    app: &dyn Declarations,
    r: &mut Reporter<'_>,
) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    for (cname, comp) in &raw.component {
        let mut grants = BTreeMap::new();
        for (key, value) in &comp.get_ref().grants {
            let Some(grant) = keys.iter().find(|g| g.key == key.get_ref()) else {
                let (message, hint) = unknown_key(key.get_ref(), keys, &COMPONENT_KEYS);
                r.error_hint(key.span(), message, hint);
                continue;
            };
            let RawGrant::Names(items) = value.get_ref() else {
                r.error_hint(
                    value.span(),
                    format!("`{}` must be an array of {} names", grant.key, grant.noun),
                    format!("write {} = [\"name\", …]", grant.key),
                );
                continue;
            };
            let names: Vec<String> = items.iter().map(|i| i.get_ref().clone()).collect();
            for p in grant.check(&names, app) {
                let span = items.get(p.index).map_or(value.span(), |i| i.span());
                match p.hint {
                    Some(h) => r.error_hint(span, p.message, h),
                    None => r.error(span, p.message),
                }
            }
            grants.insert(grant.key.to_string(), names);
        }
        out.insert(cname.get_ref().clone(), grants);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct App;
    impl Declarations for App {
        fn declares(&self, section: &str, name: &str) -> bool {
            section == "queue" && name == "jobs"
        }
        fn has_component(&self, name: &str) -> bool {
            name == "api"
        }
        fn has_variable(&self, _name: &str) -> bool {
            false
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_kind_of_name_is_checked_by_its_rule() {
        let own = GrantKey {
            key: "stores",
            noun: "store",
            names: Names::Own { example: "default" },
        };
        let p = own.check(&names(&["a", "Bad", "a"]), &App);
        assert_eq!(p.iter().map(|p| p.index).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(p[0].message, "invalid store name `Bad`");
        assert_eq!(p[1].message, "store `a` is listed twice");

        let declared = GrantKey {
            key: "queues",
            noun: "queue",
            names: Names::Declared { section: "queue" },
        };
        assert!(declared.check(&names(&["jobs"]), &App).is_empty());
        let p = declared.check(&names(&["mail"]), &App);
        assert_eq!(p[0].message, "queue `mail` is not declared");
        assert_eq!(p[0].hint.as_deref(), Some("declare it: [queue.mail]"));

        let comps = GrantKey {
            key: "tasks",
            noun: "task target",
            names: Names::Components,
        };
        assert!(comps.check(&names(&["api"]), &App).is_empty());
        let p = comps.check(&names(&["web"]), &App);
        assert_eq!(p[0].message, "`tasks` names unknown component `web`");
    }
}
