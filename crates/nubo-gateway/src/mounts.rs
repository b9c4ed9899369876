//! Which app owns a request on a node that hosts many.
//!
//! An app is mounted at a base path, optionally only for some host names.
//! The most specific mount wins: the longest base, and at equal bases an app
//! that names the host over one that takes any host. The node refuses two
//! apps that would tie, so there is never a tie at request time.

use crate::router::Router;
use std::sync::Arc;

#[derive(Clone)]
pub struct Mount {
    /// Lower-case host names; empty means any host.
    pub hosts: Vec<String>,
    /// `/` or `/shop`.
    pub base: String,
    pub router: Arc<Router>,
}

impl Mount {
    /// The path below the base if `path` is inside it.
    fn strip<'p>(&self, path: &'p str) -> Option<&'p str> {
        if self.base == "/" {
            return Some(path);
        }
        let rest = path.strip_prefix(self.base.as_str())?;
        if rest.is_empty() {
            Some("/")
        } else if rest.starts_with('/') {
            Some(rest)
        } else {
            None
        }
    }

    /// Whether two mounts would answer the same request equally specifically.
    pub fn collides_with(&self, other: &Mount) -> bool {
        self.base == other.base
            && (self.hosts.is_empty() && other.hosts.is_empty()
                || self.hosts.iter().any(|h| other.hosts.contains(h)))
    }
}

/// Every mounted app, by name.
#[derive(Clone, Default)]
pub struct Mounts {
    apps: Vec<(String, Mount)>,
}

impl Mounts {
    pub fn with(&self, app: &str, mount: Mount) -> Self {
        let mut out = self.without(app);
        out.apps.push((app.to_string(), mount));
        out
    }

    pub fn without(&self, app: &str) -> Self {
        Self {
            apps: self
                .apps
                .iter()
                .filter(|(n, _)| n != app)
                .cloned()
                .collect(),
        }
    }

    pub fn get(&self, app: &str) -> Option<&Mount> {
        self.apps.iter().find(|(n, _)| n == app).map(|(_, m)| m)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Mount)> {
        self.apps.iter().map(|(n, m)| (n.as_str(), m))
    }

    /// The app that owns `(host, path)` and the path below its base.
    pub fn find<'p>(&self, host: Option<&str>, path: &'p str) -> Option<(&Mount, &'p str)> {
        let host = host.map(normalize_request_host);
        self.apps
            .iter()
            .map(|(_, m)| m)
            .filter(|m| {
                m.hosts.is_empty()
                    || host
                        .as_deref()
                        .is_some_and(|h| m.hosts.iter().any(|x| x == h))
            })
            .filter_map(|m| m.strip(path).map(|rest| (m, rest)))
            .max_by_key(|(m, _)| (m.base.len(), !m.hosts.is_empty()))
    }
}

/// `Shop.Example.com.:8080` → `shop.example.com`.
fn normalize_request_host(h: &str) -> String {
    let no_port = match h.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(']') => {
            name
        }
        _ => h,
    };
    no_port.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(hosts: &[&str], base: &str, app: &str) -> Mount {
        Mount {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            base: base.into(),
            router: Arc::new(Router::new(app, Vec::new())),
        }
    }

    #[test]
    fn most_specific_mount_wins() {
        let m = Mounts::default()
            .with("any", mount(&[], "/", "any"))
            .with("shop", mount(&[], "/shop", "shop"))
            .with("blog", mount(&["blog.test"], "/", "blog"));
        let app = |host: Option<&str>, path: &str| {
            m.find(host, path)
                .map(|(m, rest)| (m.router.app().to_string(), rest.to_string()))
        };
        assert_eq!(app(None, "/x"), Some(("any".into(), "/x".into())));
        assert_eq!(app(None, "/shop/a"), Some(("shop".into(), "/a".into())));
        assert_eq!(app(None, "/shop"), Some(("shop".into(), "/".into())));
        assert_eq!(
            app(None, "/shopping"),
            Some(("any".into(), "/shopping".into()))
        );
        assert_eq!(
            app(Some("Blog.Test:3000"), "/x"),
            Some(("blog".into(), "/x".into()))
        );
        assert_eq!(
            app(Some("blog.test"), "/shop/1"),
            Some(("shop".into(), "/1".into()))
        );
        let only_blog = Mounts::default().with("blog", mount(&["blog.test"], "/", "blog"));
        assert!(only_blog.find(Some("other.test"), "/").is_none());
    }

    #[test]
    fn collisions_need_the_same_base_and_a_shared_host() {
        assert!(mount(&[], "/", "a").collides_with(&mount(&[], "/", "b")));
        assert!(!mount(&[], "/", "a").collides_with(&mount(&["x.test"], "/", "b")));
        assert!(mount(&["x.test"], "/", "a").collides_with(&mount(
            &["x.test", "y.test"],
            "/",
            "b"
        )));
        assert!(!mount(&[], "/a", "a").collides_with(&mount(&[], "/b", "b")));
    }
}
