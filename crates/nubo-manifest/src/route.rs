//! Route patterns: an exact path, or a prefix written `/prefix/...`.
//!
//! Matching is deliberately simple so a reader of `nubo.toml` can predict it:
//! an exact route wins over any prefix, and among prefixes the longest wins.
//! Two routes that match the same set of paths are rejected at load time, so
//! there is never a tie to break at request time.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "path", rename_all = "snake_case")]
pub enum RoutePattern {
    /// Matches this path only.
    Exact(String),
    /// Matches this path and everything below it. The empty prefix matches
    /// every path.
    Prefix(String),
}

/// Why a route is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("a route must start with `/`")]
    NoLeadingSlash,
    #[error("a route is a path only: no query, fragment or white space")]
    NotAPath,
    #[error("a route may not contain `.` or `..` segments")]
    DotSegment,
    #[error("`...` may only end a route, as in `{example}`")]
    EllipsisInside { example: &'static str },
}

impl RoutePattern {
    /// Parses the `route` of an `[[http]]` entry.
    pub fn parse_http(route: &str) -> Result<Self, RouteError> {
        check_chars(route)?;
        let inside = RouteError::EllipsisInside {
            example: "/api/...",
        };
        if let Some(prefix) = route.strip_suffix("/...") {
            if prefix.contains("...") {
                return Err(inside);
            }
            return Ok(Self::Prefix(prefix.to_string()));
        }
        if route.contains("...") {
            return Err(inside);
        }
        Ok(Self::Exact(route.to_string()))
    }

    /// Parses the `route` of a `[[static]]` entry: always a prefix, written
    /// either `/assets` or `/assets/...`.
    pub fn parse_static(route: &str) -> Result<Self, RouteError> {
        check_chars(route)?;
        let prefix = route.strip_suffix("/...").unwrap_or(route);
        if prefix.contains("...") {
            return Err(RouteError::EllipsisInside {
                example: "/assets/...",
            });
        }
        Ok(Self::Prefix(prefix.trim_end_matches('/').to_string()))
    }

    /// If `path` matches, the part of it below the route (for prefixes), else
    /// `None`. The remainder of a prefix match starts with `/` or is empty.
    pub fn matches<'p>(&self, path: &'p str) -> Option<&'p str> {
        match self {
            Self::Exact(p) => (p == path).then_some(""),
            Self::Prefix(p) => {
                let rest = path.strip_prefix(p.as_str())?;
                (rest.is_empty() || rest.starts_with('/')).then_some(rest)
            }
        }
    }

    /// Whether `text` is this pattern as `nubo.toml` writes it (its
    /// `Display`), without building that text.
    pub fn is_written(&self, text: &str) -> bool {
        match self {
            Self::Exact(p) => p == text,
            Self::Prefix(p) => text.strip_suffix("/...") == Some(p.as_str()),
        }
    }

    /// Higher is more specific; used to order routes for matching.
    pub fn specificity(&self) -> (u8, usize) {
        match self {
            Self::Exact(p) => (1, p.len()),
            Self::Prefix(p) => (0, p.len()),
        }
    }
}

fn check_chars(route: &str) -> Result<(), RouteError> {
    if !route.starts_with('/') {
        return Err(RouteError::NoLeadingSlash);
    }
    if route.contains(['?', '#']) || route.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RouteError::NotAPath);
    }
    if route.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(RouteError::DotSegment);
    }
    Ok(())
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(p) => f.write_str(p),
            Self::Prefix(p) => write!(f, "{p}/..."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RouteError;
    use super::RoutePattern::{self, *};

    #[test]
    fn is_written_as_displayed() {
        for text in ["/", "/a", "/...", "/api/...", "/api/v1"] {
            let p = RoutePattern::parse_http(text).unwrap();
            assert!(p.is_written(&p.to_string()), "{text}");
            assert!(!p.is_written("/other"), "{text}");
        }
        assert!(
            !RoutePattern::parse_http("/api/...")
                .unwrap()
                .is_written("/api")
        );
        assert!(
            !RoutePattern::parse_http("/api")
                .unwrap()
                .is_written("/api/...")
        );
    }

    #[test]
    fn parses_exact_and_prefix() {
        assert_eq!(RoutePattern::parse_http("/a/b"), Ok(Exact("/a/b".into())));
        assert_eq!(
            RoutePattern::parse_http("/api/..."),
            Ok(Prefix("/api".into()))
        );
        assert_eq!(RoutePattern::parse_http("/..."), Ok(Prefix("".into())));
        assert_eq!(RoutePattern::parse_static("/"), Ok(Prefix("".into())));
        assert_eq!(
            RoutePattern::parse_static("/assets/"),
            Ok(Prefix("/assets".into()))
        );
        assert_eq!(
            RoutePattern::parse_static("/assets/..."),
            Ok(Prefix("/assets".into()))
        );
    }

    #[test]
    fn rejects_malformed_routes() {
        let err = |r: &str| RoutePattern::parse_http(r).err();
        assert_eq!(err("api"), Some(RouteError::NoLeadingSlash));
        assert!(matches!(
            err("/a/.../b"),
            Some(RouteError::EllipsisInside { .. })
        ));
        assert_eq!(err("/a?x=1"), Some(RouteError::NotAPath));
        assert_eq!(err("/a/../b"), Some(RouteError::DotSegment));
    }

    #[test]
    fn prefix_matches_whole_segments_only() {
        let p = Prefix("/api".into());
        assert_eq!(p.matches("/api"), Some(""));
        assert_eq!(p.matches("/api/x"), Some("/x"));
        assert_eq!(p.matches("/apix"), None);
        assert_eq!(Prefix("".into()).matches("/anything"), Some("/anything"));
        assert_eq!(Exact("/a".into()).matches("/a/"), None);
    }
}
