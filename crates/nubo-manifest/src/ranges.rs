//! The allowed values of the app's own settings checked on their own (a
//! capability's sections keep theirs beside them, as [`Range`]s too).
//!
//! `nubo check` reads them from `nubo.toml` (with the line and column of a
//! value out of range) and the control API reads them from a definition
//! sent as JSON (`nubo-plan`'s validator); both ask the tables here, so
//! the two can never accept different definitions.

use crate::{Limits, QuotasSpec};

/// One numeric setting: its key and its inclusive bounds.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub key: &'static str,
    pub min: i64,
    pub max: i64,
}

impl Range {
    pub const fn new(key: &'static str, min: i64, max: i64) -> Self {
        Self { key, min, max }
    }

    pub fn contains(&self, v: i64) -> bool {
        (self.min..=self.max).contains(&v)
    }

    /// Why `v` is not allowed, if it is not.
    pub fn check(&self, v: u64) -> Option<String> {
        let ok = i64::try_from(v).is_ok_and(|v| self.contains(v));
        (!ok).then(|| self.message(v))
    }

    pub fn message(&self, got: impl std::fmt::Display) -> String {
        format!(
            "`{}` must be between {} and {}, got {got}",
            self.key, self.min, self.max
        )
    }
}

pub const MEMORY_MB: Range = Range::new("memory_mb", 1, 4096);
pub const TIMEOUT_MS: Range = Range::new("timeout_ms", 1, 24 * 3600 * 1000);
pub const MAX_INSTANCES: Range = Range::new("max_instances", 1, 10_000);
pub const CPU_MS: Range = Range::new("cpu_ms", 1, 24 * 3600 * 1000);

pub const QUOTA_KV_MB: Range = Range::new("kv_mb", 1, 1 << 20);
pub const QUOTA_BLOB_MB: Range = Range::new("blob_mb", 1, 1 << 24);
pub const QUOTA_QUEUE_MESSAGES: Range = Range::new("queue_messages", 1, 1_000_000_000);
pub const QUOTA_DEAD_LETTERS: Range = Range::new("dead_letters", 0, 100_000_000);

fn problems(checks: &[(Range, u64)]) -> Vec<String> {
    checks.iter().filter_map(|(r, v)| r.check(*v)).collect()
}

impl Limits {
    /// Every value out of its range.
    pub fn problems(&self) -> Vec<String> {
        let mut checks = vec![
            (MEMORY_MB, self.memory_mb),
            (TIMEOUT_MS, self.timeout_ms),
            (MAX_INSTANCES, self.max_instances.into()),
        ];
        checks.extend(self.cpu_ms.map(|ms| (CPU_MS, ms)));
        problems(&checks)
    }
}

impl QuotasSpec {
    /// Every value out of its range.
    pub fn problems(&self) -> Vec<String> {
        problems(&[
            (QUOTA_KV_MB, self.kv_mb),
            (QUOTA_BLOB_MB, self.blob_mb),
            (QUOTA_QUEUE_MESSAGES, self.queue_messages),
            (QUOTA_DEAD_LETTERS, self.dead_letters),
        ])
    }
}

/// A path the node sends a request to on its own (a cron run, a queue
/// delivery): absolute, without whitespace or control characters, which
/// would split the request line (a query is allowed).
pub fn is_request_path(path: &str) -> bool {
    path.starts_with('/') && !path.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_path_is_absolute_without_whitespace_or_control_characters() {
        assert!(is_request_path("/tasks/cleanup?all=1"));
        for bad in ["tasks", "/a b", "/a\r\nHost: x", "/a\t"] {
            assert!(!is_request_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn defaults_are_in_range() {
        assert!(Limits::default().problems().is_empty());
        assert!(QuotasSpec::default().problems().is_empty());
    }

    #[test]
    fn out_of_range_values_are_named() {
        let l = Limits {
            memory_mb: 0,
            max_instances: 10_001,
            cpu_ms: Some(0),
            ..Limits::default()
        };
        assert_eq!(
            l.problems(),
            [
                "`memory_mb` must be between 1 and 4096, got 0",
                "`max_instances` must be between 1 and 10000, got 10001",
                "`cpu_ms` must be between 1 and 86400000, got 0"
            ]
        );
    }
}
