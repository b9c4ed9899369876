//! The file as written: serde types that keep the span of every value so
//! that validation can point at it. Nothing outside this crate sees them.

use serde::Deserialize;
use serde::de::{self, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_spanned::Spanned;
use std::collections::BTreeMap;
use std::fmt;

pub(crate) type S<T> = Spanned<T>;

/// The tables every app has. A capability's table (see
/// [`crate::Section`]) is read by the capability; any other is refused by
/// [`TOP_LEVEL`]'s check, since serde's `deny_unknown_fields` would refuse
/// the capabilities' tables too.
#[derive(Debug, Deserialize)]
pub(crate) struct RawManifest {
    pub app: S<RawApp>,
    #[serde(default)]
    pub variables: BTreeMap<S<String>, S<RawVariable>>,
    #[serde(default)]
    pub component: BTreeMap<S<String>, S<RawComponent>>,
    #[serde(default)]
    pub http: Vec<S<RawHttp>>,
    #[serde(default, rename = "static")]
    pub statics: Vec<S<RawStatic>>,
    #[serde(default)]
    pub websocket: Vec<S<RawSocket>>,
    #[serde(default)]
    pub sse: Vec<S<RawSocket>>,
    pub quotas: Option<S<RawQuotas>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuotas {
    pub kv_mb: Option<S<i64>>,
    pub blob_mb: Option<S<i64>>,
    pub queue_messages: Option<S<i64>>,
    pub dead_letters: Option<S<i64>>,
}

/// `[[websocket]]` and `[[sse]]` (the latter without `component`/`path`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSocket {
    pub route: S<String>,
    pub topics: Vec<S<String>>,
    pub component: Option<S<String>>,
    pub path: Option<S<String>>,
    /// Browser origins allowed to open a WebSocket besides the page's own.
    #[serde(default)]
    pub origins: Vec<S<String>>,
    pub auth: Option<S<String>>,
    #[serde(default)]
    pub roles: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApp {
    pub name: S<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub hosts: Vec<S<String>>,
    pub base: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVariable {
    pub default: Option<S<String>>,
    #[serde(default)]
    pub required: Option<S<bool>>,
    #[serde(default)]
    pub secret: bool,
}

/// `[component.NAME]`: the keys every component has, and grants, which
/// are every other key (see [`crate::grant`]). serde's derive cannot both
/// keep spans and collect unknown keys, so this table is read by hand.
#[derive(Debug)]
pub(crate) struct RawComponent {
    pub source: S<String>,
    pub build: Option<S<RawBuild>>,
    pub config: BTreeMap<S<String>, S<String>>,
    pub allowed_outbound_hosts: Vec<S<String>>,
    pub limits: Option<S<RawLimits>>,
    pub description: Option<String>,
    /// Every other key, as written; the validator knows the grant keys.
    pub grants: Vec<(S<String>, S<RawGrant>)>,
}

/// The value of a key that is not one of a component's own: a grant's
/// list of names, or something else, refused with the key's position.
#[derive(Debug)]
pub(crate) enum RawGrant {
    Names(Vec<S<String>>),
    NotAList,
}

impl<'de> Deserialize<'de> for RawComponent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ComponentVisitor)
    }
}

struct ComponentVisitor;

impl<'de> Visitor<'de> for ComponentVisitor {
    type Value = RawComponent;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a component table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawComponent, A::Error> {
        let mut source = None;
        let mut c = RawComponent {
            source: S::new(0..0, String::new()),
            build: None,
            config: BTreeMap::new(),
            allowed_outbound_hosts: Vec::new(),
            limits: None,
            description: None,
            grants: Vec::new(),
        };
        while let Some(key) = map.next_key::<S<String>>()? {
            match key.get_ref().as_str() {
                "source" => source = Some(map.next_value()?),
                "build" => c.build = Some(map.next_value()?),
                "config" => c.config = map.next_value()?,
                "allowed_outbound_hosts" => c.allowed_outbound_hosts = map.next_value()?,
                "limits" => c.limits = Some(map.next_value()?),
                "description" => c.description = Some(map.next_value()?),
                _ => c.grants.push((key, map.next_value()?)),
            }
        }
        c.source = source.ok_or_else(|| A::Error::missing_field("source"))?;
        Ok(c)
    }
}

/// The keys [`RawComponent`] reads itself; any other is a grant.
pub(crate) const COMPONENT_KEYS: [&str; 6] = [
    "source",
    "build",
    "config",
    "allowed_outbound_hosts",
    "limits",
    "description",
];

impl<'de> Deserialize<'de> for RawGrant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(GrantVisitor)
    }
}

struct GrantVisitor;

impl<'de> Visitor<'de> for GrantVisitor {
    type Value = RawGrant;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of names")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawGrant, A::Error> {
        let mut names = Vec::new();
        while let Some(n) = seq.next_element()? {
            names.push(n);
        }
        Ok(RawGrant::Names(names))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawGrant, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(RawGrant::NotAList)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawGrant, E> {
        Ok(RawGrant::NotAList)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawGrant, E> {
        Ok(RawGrant::NotAList)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawGrant, E> {
        Ok(RawGrant::NotAList)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawGrant, E> {
        Ok(RawGrant::NotAList)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<RawGrant, E> {
        Ok(RawGrant::NotAList)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBuild {
    pub command: S<String>,
    pub workdir: Option<S<String>>,
    #[serde(default)]
    pub watch: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub memory_mb: Option<S<i64>>,
    pub timeout_ms: Option<S<i64>>,
    pub max_instances: Option<S<i64>>,
    pub cpu_ms: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub route: S<String>,
    pub component: Option<S<String>>,
    /// Instead of a component: the request body is published to this queue.
    pub queue: Option<S<String>>,
    pub auth: Option<S<String>>,
    #[serde(default)]
    pub roles: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStatic {
    pub route: S<String>,
    pub dir: S<String>,
}

/// The top-level tables [`RawManifest`] reads.
pub(crate) const TOP_LEVEL: [&str; 8] = [
    "app",
    "variables",
    "component",
    "http",
    "static",
    "websocket",
    "sse",
    "quotas",
];

/// Every top-level key of the file with its position, for the check that
/// each belongs to the app or to a capability.
#[derive(Debug, Deserialize)]
pub(crate) struct RawTopLevel(pub BTreeMap<S<String>, IgnoredAny>);
