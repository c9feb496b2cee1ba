//! The wire form of [`Message`]: serialization in a fixed field order (id, type, timestamp,
//! agentId, serverId, then the body) and a hand-written, single-pass `Deserialize`: the
//! `type`, `action` and `event` tags are read as they come and the payload is decoded
//! straight into its typed struct, with no intermediate buffering — unless a payload arrives
//! before its tag, which is legal JSON and then costs one `serde_json::Value`.
//!
//! Per-action and per-event decoding comes from the tables (`command.rs`, `event.rs`).

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

use super::{
    Action, ActionName, Command, ErrorBody, Event, EventKind, Message, MessageType, Ping, Pong,
    PongData, Response, Str,
};

impl Serialize for Message<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match self {
            Message::Command(c) => {
                map.serialize_entry("id", &c.id)?;
                map.serialize_entry("type", "command")?;
                map.serialize_entry("timestamp", &c.timestamp)?;
                opt_entry(&mut map, "agentId", &c.agent_id)?;
                opt_entry(&mut map, "serverId", &c.server_id)?;
                if let Some(e) = c.epoch {
                    map.serialize_entry("epoch", &e)?;
                }
                map.serialize_entry("action", c.action.name())?;
                c.action.serialize_payload(&mut map)?;
            }
            Message::Response(r) => {
                map.serialize_entry("id", &r.id)?;
                map.serialize_entry("type", "response")?;
                map.serialize_entry("timestamp", &r.timestamp)?;
                opt_entry(&mut map, "agentId", &r.agent_id)?;
                opt_entry(&mut map, "serverId", &r.server_id)?;
                map.serialize_entry("success", &r.success)?;
                opt_entry(&mut map, "message", &r.message)?;
                opt_entry(&mut map, "data", &r.data)?;
                opt_entry(&mut map, "error", &r.error)?;
            }
            Message::Event(e) => {
                opt_entry(&mut map, "id", &e.id)?;
                map.serialize_entry("type", "event")?;
                map.serialize_entry("timestamp", &e.timestamp)?;
                opt_entry(&mut map, "agentId", &e.agent_id)?;
                opt_entry(&mut map, "serverId", &e.server_id)?;
                map.serialize_entry("event", e.kind.name())?;
                e.kind.serialize_data(&mut map)?;
            }
            Message::Ping(p) => {
                map.serialize_entry("id", &p.id)?;
                map.serialize_entry("type", "ping")?;
                map.serialize_entry("timestamp", &p.timestamp)?;
            }
            Message::Pong(p) => {
                map.serialize_entry("id", &p.id)?;
                map.serialize_entry("type", "pong")?;
                map.serialize_entry("timestamp", &p.timestamp)?;
                opt_entry(&mut map, "agentId", &p.agent_id)?;
                map.serialize_entry("data", &p.data)?;
            }
        }
        map.end()
    }
}

fn opt_entry<M: SerializeMap, T: Serialize>(
    map: &mut M,
    key: &'static str,
    value: &Option<T>,
) -> Result<(), M::Error> {
    match value {
        Some(v) => map.serialize_entry(key, v),
        None => Ok(()),
    }
}

// Deserialization: one pass over the top-level object.

/// Decodes the payload of a known action (or skips the payload of an unknown one).
struct PayloadSeed<'n, 'a>(&'n Str<'a>);

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_, 'de> {
    type Value = Action<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Action<'de>, D::Error> {
        match ActionName::from_wire(self.0) {
            Some(name) => Action::with_payload(name, d),
            None => {
                IgnoredAny::deserialize(d)?;
                Ok(Action::Unknown(self.0.clone()))
            }
        }
    }
}

/// The action when no `payload` key was present.
fn action_without_payload<'a, E: de::Error>(name: Str<'a>) -> Result<Action<'a>, E> {
    match ActionName::from_wire(&name) {
        Some(known) => Action::without_payload(known),
        None => Ok(Action::Unknown(name)),
    }
}

/// Decodes the data of an event, known or not.
struct EventDataSeed<'n, 'a>(&'n Str<'a>);

impl<'de> DeserializeSeed<'de> for EventDataSeed<'_, 'de> {
    type Value = EventKind<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<EventKind<'de>, D::Error> {
        EventKind::with_data(self.0, d)
    }
}

/// The body (`payload` or `data`) of a message, decoded as soon as its tag is known.
enum Body<'a> {
    None,
    Action(Action<'a>),
    Event(EventKind<'a>),
    Pong(PongData<'a>),
    Data(serde_json::Value),
}

/// Top-level keys; unknown keys are skipped (extensions are allowed).
enum Key {
    Id,
    Type,
    Timestamp,
    AgentId,
    ServerId,
    Epoch,
    Action,
    Event,
    Payload,
    Data,
    Success,
    Message,
    Error,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "id" => Key::Id,
                    "type" => Key::Type,
                    "timestamp" => Key::Timestamp,
                    "agentId" => Key::AgentId,
                    "serverId" => Key::ServerId,
                    "epoch" => Key::Epoch,
                    "action" => Key::Action,
                    "event" => Key::Event,
                    "payload" => Key::Payload,
                    "data" => Key::Data,
                    "success" => Key::Success,
                    "message" => Key::Message,
                    "error" => Key::Error,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// A borrowed-when-possible string, for top-level fields.
struct CowStr<'a>(Str<'a>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

struct MessageVisitor;

#[derive(Default)]
struct Fields<'a> {
    id: Option<Str<'a>>,
    kind: Option<MessageType>,
    timestamp: Option<Str<'a>>,
    agent_id: Option<Str<'a>>,
    server_id: Option<Str<'a>>,
    epoch: Option<u64>,
    tag: Option<Str<'a>>,
    success: Option<bool>,
    message: Option<Str<'a>>,
    error: Option<ErrorBody<'a>>,
}

fn set_once<T, E: de::Error>(slot: &mut Option<T>, value: T, key: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(key));
    }
    *slot = Some(value);
    Ok(())
}

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a protocol message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message<'de>, A::Error> {
        let mut f = Fields::default();
        let mut body = Body::None;
        let mut early_body: Option<serde_json::Value> = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id => set_once(&mut f.id, map.next_value::<CowStr>()?.0, "id")?,
                Key::Type => {
                    let t: CowStr = map.next_value()?;
                    let kind = MessageType::from_wire(&t.0).ok_or_else(|| {
                        de::Error::custom(format_args!("unknown message type `{}`", t.0))
                    })?;
                    set_once(&mut f.kind, kind, "type")?;
                }
                Key::Timestamp => {
                    set_once(&mut f.timestamp, map.next_value::<CowStr>()?.0, "timestamp")?
                }
                Key::AgentId => {
                    set_once(&mut f.agent_id, map.next_value::<CowStr>()?.0, "agentId")?
                }
                Key::ServerId => {
                    set_once(&mut f.server_id, map.next_value::<CowStr>()?.0, "serverId")?
                }
                Key::Epoch => set_once(&mut f.epoch, map.next_value::<u64>()?, "epoch")?,
                Key::Action | Key::Event => {
                    let name = if matches!(key, Key::Action) {
                        "action"
                    } else {
                        "event"
                    };
                    set_once(&mut f.tag, map.next_value::<CowStr>()?.0, name)?
                }
                Key::Success => set_once(&mut f.success, map.next_value()?, "success")?,
                Key::Message => set_once(&mut f.message, map.next_value::<CowStr>()?.0, "message")?,
                Key::Error => set_once(&mut f.error, map.next_value()?, "error")?,
                Key::Payload | Key::Data => {
                    if !matches!(body, Body::None) || early_body.is_some() {
                        return Err(de::Error::custom("duplicate payload/data"));
                    }
                    match (f.kind, &f.tag) {
                        (Some(MessageType::Command), Some(tag)) => {
                            body = Body::Action(map.next_value_seed(PayloadSeed(tag))?)
                        }
                        (Some(MessageType::Event), Some(tag)) => {
                            body = Body::Event(map.next_value_seed(EventDataSeed(tag))?)
                        }
                        (Some(MessageType::Pong), _) => body = Body::Pong(map.next_value()?),
                        (Some(MessageType::Response), _) => body = Body::Data(map.next_value()?),
                        // The tag has not been seen yet: keep the value and decode it at the end.
                        _ => early_body = Some(map.next_value()?),
                    }
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        finish(f, body, early_body)
    }
}

fn finish<'a, E: de::Error>(
    f: Fields<'a>,
    mut body: Body<'a>,
    early_body: Option<serde_json::Value>,
) -> Result<Message<'a>, E> {
    let kind = f.kind.ok_or_else(|| E::missing_field("type"))?;
    let timestamp = f.timestamp.ok_or_else(|| E::missing_field("timestamp"))?;
    if let Some(v) = early_body {
        body = late_body(kind, f.tag.as_ref(), v).map_err(E::custom)?;
    }
    let need_id = |id: Option<Str<'a>>| id.ok_or_else(|| E::missing_field("id"));
    Ok(match kind {
        MessageType::Command => {
            let tag = f.tag.ok_or_else(|| E::missing_field("action"))?;
            let action = match body {
                Body::Action(a) => a,
                _ => action_without_payload(tag)?,
            };
            Message::Command(Command {
                id: need_id(f.id)?,
                timestamp,
                agent_id: f.agent_id,
                server_id: f.server_id,
                epoch: f.epoch,
                action,
            })
        }
        MessageType::Response => {
            let success = f.success.ok_or_else(|| E::missing_field("success"))?;
            if !success && f.error.is_none() {
                return Err(E::missing_field("error"));
            }
            Message::Response(Response {
                id: need_id(f.id)?,
                timestamp,
                agent_id: f.agent_id,
                server_id: f.server_id,
                success,
                message: f.message,
                data: match body {
                    Body::Data(v) => Some(v),
                    _ => None,
                },
                error: f.error,
            })
        }
        MessageType::Event => {
            let name = f.tag.ok_or_else(|| E::missing_field("event"))?;
            let kind = match body {
                Body::Event(k) => k,
                _ => return Err(E::missing_field("data")),
            };
            debug_assert_eq!(kind.name(), &*name);
            Message::Event(Event {
                id: f.id,
                timestamp,
                agent_id: f.agent_id,
                server_id: f.server_id,
                kind,
            })
        }
        MessageType::Ping => Message::Ping(Ping {
            id: need_id(f.id)?,
            timestamp,
        }),
        MessageType::Pong => Message::Pong(Pong {
            id: need_id(f.id)?,
            timestamp,
            agent_id: f.agent_id,
            data: match body {
                Body::Pong(d) => d,
                _ => return Err(E::missing_field("data")),
            },
        }),
    })
}

/// Decodes a body that arrived before its tag (owned; this is the rare path).
fn late_body<'a>(
    kind: MessageType,
    tag: Option<&Str<'a>>,
    v: serde_json::Value,
) -> Result<Body<'a>, serde_json::Error> {
    use serde::de::Error as _;
    Ok(match kind {
        MessageType::Command => {
            let tag = tag.ok_or_else(|| serde_json::Error::missing_field("action"))?;
            let owned: Action<'static> = PayloadSeedOwned(tag).deserialize(v)?;
            Body::Action(owned)
        }
        MessageType::Event => {
            let tag = tag.ok_or_else(|| serde_json::Error::missing_field("event"))?;
            Body::Event(EventDataSeedOwned(tag).deserialize(v)?)
        }
        MessageType::Pong => Body::Pong(PongData::<'static>::deserialize(v)?.into_owned()),
        MessageType::Response => Body::Data(v),
        MessageType::Ping => Body::None,
    })
}

/// Seeds for the late path: the value is owned, so every string is owned.
struct PayloadSeedOwned<'n, 'a>(&'n Str<'a>);

impl<'n, 'a> PayloadSeedOwned<'n, 'a> {
    fn deserialize(self, v: serde_json::Value) -> Result<Action<'static>, serde_json::Error> {
        let name: Str<'static> = Cow::Owned(self.0.to_string());
        let action = PayloadSeed(&name).deserialize(&v)?;
        Ok(action.into_owned())
    }
}

struct EventDataSeedOwned<'n, 'a>(&'n Str<'a>);

impl<'n, 'a> EventDataSeedOwned<'n, 'a> {
    fn deserialize(self, v: serde_json::Value) -> Result<EventKind<'static>, serde_json::Error> {
        let name: Str<'static> = Cow::Owned(self.0.to_string());
        Ok(EventDataSeed(&name).deserialize(&v)?.into_owned())
    }
}

impl<'de> Deserialize<'de> for Message<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Message<'de>, D::Error> {
        d.deserialize_map(MessageVisitor)
    }
}
