//! The egg configuration carried by `create_server`: what image to run, with which ports,
//! environment, limits and startup line.
//!
//! `ports` and `environment` keep the order they had on the wire: the first port is
//! `SERVER_PORT`, and duplicates must be detected rather than silently merged, which a hash
//! map would do.

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

use crate::eggs::model::{ConfigFile, InstallScript};
use crate::message::{Str, own};

/// An egg: the spec's fields plus the optional `stop`, `query` and `user` extensions, and
/// the eggs extensions `install`, `configFiles` and `done` (see [`crate::eggs`]; checked by
/// [`crate::validate::egg`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EggConfig<'a> {
    #[serde(borrow)]
    pub name: Str<'a>,
    #[serde(borrow)]
    pub image: Str<'a>,
    #[serde(borrow, default)]
    pub ports: PortMap<'a>,
    #[serde(borrow, default)]
    pub environment: EnvMap<'a>,
    #[serde(borrow)]
    pub limits: Limits<'a>,
    #[serde(borrow)]
    pub startup: Str<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopConfig<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub query: Option<QueryConfig<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Str<'a>>,
    /// Extension (eggs): the installation script, run in its own container on create and
    /// on `reinstall_server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<InstallScript>,
    /// Extension (eggs): config files edited before every start.
    #[serde(rename = "configFiles", default, skip_serializing_if = "Vec::is_empty")]
    pub config_files: Vec<ConfigFile>,
    /// Extension (eggs): console substrings that end `starting` (empty: running at once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<String>,
    /// Extension (backups): console lines sent around a backup of a running server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupHooks>,
}

/// `backup` (extension): console lines sent before a backup of a running server
/// (`save-off`, `save-all`) and after it (`save-on`), at most [`MAX_BACKUP_HOOKS`] each.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BackupHooks {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

/// Console lines at most in each of `backup.before` and `backup.after`.
pub const MAX_BACKUP_HOOKS: usize = 16;

impl EggConfig<'_> {
    pub fn into_owned(self) -> EggConfig<'static> {
        EggConfig {
            name: own(self.name),
            image: own(self.image),
            ports: PortMap(self.ports.0.into_iter().map(|(k, v)| (own(k), v)).collect()),
            environment: EnvMap(
                self.environment
                    .0
                    .into_iter()
                    .map(|(k, v)| (own(k), own(v)))
                    .collect(),
            ),
            limits: Limits {
                memory: own(self.limits.memory),
                cpu: own(self.limits.cpu),
                disk: own(self.limits.disk),
            },
            startup: own(self.startup),
            stop: self.stop.map(|s| StopConfig {
                command: s.command.map(own),
                signal: s.signal.map(own),
            }),
            query: self.query.map(|q| QueryConfig {
                kind: own(q.kind),
                port: q.port,
            }),
            user: self.user.map(own),
            install: self.install,
            config_files: self.config_files,
            done: self.done,
            backup: self.backup,
        }
    }
}

/// `limits`: quantities as strings (`"2048m"`, `"5g"`, `"2"`, `"0.5"`); see
/// [`crate::quantity`]. A bare JSON number for `cpu` is accepted too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits<'a> {
    #[serde(borrow, deserialize_with = "str_or_number")]
    pub memory: Str<'a>,
    #[serde(borrow, deserialize_with = "str_or_number")]
    pub cpu: Str<'a>,
    #[serde(borrow, deserialize_with = "str_or_number")]
    pub disk: Str<'a>,
}

/// Extension: how to stop the server gracefully.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopConfig<'a> {
    /// A console line such as `stop`, written to stdin before any signal.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Str<'a>>,
    /// The signal to send (default `SIGTERM`).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Str<'a>>,
}

/// Extension: how to ask the server for its players.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryConfig<'a> {
    /// Only `"minecraft"` (Server List Ping) today.
    #[serde(borrow, rename = "type")]
    pub kind: Str<'a>,
    /// The container port to query.
    pub port: u16,
}

/// `"containerPort[/tcp|/udp]": hostPort`, in wire order. Values are kept wide so that an
/// out-of-range port is a validation error (`CONFIG_INVALID`) with a precise message rather
/// than a decode failure.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PortMap<'a>(pub Vec<(Str<'a>, i64)>);

/// Environment variables in wire order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EnvMap<'a>(pub Vec<(Str<'a>, Str<'a>)>);

impl<'a> EnvMap<'a> {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }
}

impl Serialize for PortMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Serialize for EnvMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for PortMap<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PortMap<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object mapping container ports to host ports")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    let v: PortNumber = map.next_value().map_err(|_| {
                        de::Error::custom(format_args!("port `{k}`: host port must be an integer"))
                    })?;
                    out.push((k, v.0));
                }
                Ok(PortMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A port number as an integer (accepting a numeric string, as some panels send).
struct PortNumber(i64);

impl<'de> Deserialize<'de> for PortNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortNumber, E> {
                Ok(PortNumber(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortNumber, E> {
                Ok(PortNumber(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortNumber, E> {
                v.parse().map(PortNumber).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for EnvMap<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvMap<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of environment variables")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    let v = map.next_value::<StrOrNumber>().map_err(|_| {
                        de::Error::custom(format_args!(
                            "environment variable `{k}` must be a string or number"
                        ))
                    })?;
                    out.push((k, v.0));
                }
                Ok(EnvMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A string, or a number/bool kept as its JSON text (operators write `"MAX_PLAYERS": 20`).
struct StrOrNumber<'a>(Str<'a>);

impl<'de> Deserialize<'de> for StrOrNumber<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrOrNumber<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StrOrNumber(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrOrNumber(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(StrOrNumber(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(StrOrNumber(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(StrOrNumber(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(StrOrNumber(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(StrOrNumber(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

fn str_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Str<'de>, D::Error> {
    StrOrNumber::deserialize(d).map(|s| s.0)
}
