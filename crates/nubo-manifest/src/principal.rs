//! Who started some work: the identity a signed-in request carried, kept
//! with the queue messages it published and the tasks it spawned.

use serde::{Deserialize, Serialize};

/// A verified identity, as work carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// How the request that began it proved it: `session`, `jwt`,
    /// `api-key`.
    pub how: String,
}

impl Principal {
    /// As stored beside a message or a task: compact JSON, one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// What [`Principal::to_json`] stored; `None` for nothing or garbage.
    pub fn from_json(s: Option<&str>) -> Option<Self> {
        s.and_then(|s| serde_json::from_str(s).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_carries_it_whole() {
        let p = Principal {
            id: "u1".into(),
            email: Some("ada@example.com".into()),
            roles: vec!["admin".into()],
            how: "session".into(),
        };
        assert!(!p.to_json().contains('\n'));
        assert_eq!(Principal::from_json(Some(&p.to_json())), Some(p));
        assert_eq!(Principal::from_json(Some("nonsense")), None);
        assert_eq!(Principal::from_json(None), None);
    }
}
