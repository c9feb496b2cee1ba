//! The two tables' expansion: `actions!` and `events!` turn one line per action (or event)
//! into its enum variant, its name, and the per-variant glue the codec (`wire.rs`) and
//! `into_owned` need. Nothing else in the crate matches on every action or event, so the
//! table line is the only place a new one must be added (plus its payload type).
//!
//! An action line is `Variant => "wire_name"` (no payload), `Variant { payload: T } => ...`
//! (payload required) or `Variant { optional: T } => ...` (payload may be absent: the
//! variant holds `Option<T>`). Payload types implement `Serialize`, `Deserialize` and an
//! inherent `into_owned`.

/// The variant's field type for a payload kind.
macro_rules! slot_type {
    (payload $t:ty) => { $t };
    (optional $t:ty) => { Option<$t> };
}

/// A pattern binding the variant's field to `$p`.
macro_rules! slot_bind {
    ($kind:ident $p:ident) => {
        $p
    };
}

/// `_` for the variant's field.
macro_rules! slot_ignore {
    ($kind:ident) => {
        _
    };
}

/// The owned copy of a bound field.
macro_rules! slot_owned {
    (payload $p:ident) => {
        $p.into_owned()
    };
    (optional $p:ident) => {
        $p.map(|p| p.into_owned())
    };
}

/// Writes `"payload": ...` for a bound field (nothing for an absent optional one).
macro_rules! slot_write {
    (payload $map:ident $p:ident) => {
        $map.serialize_entry("payload", $p)?
    };
    (optional $map:ident $p:ident) => {
        if let Some(p) = $p {
            $map.serialize_entry("payload", p)?
        }
    };
}

/// Decodes a present payload into the variant (an action without one skips it).
macro_rules! slot_read {
    ($d:ident, $variant:ident) => {{
        <::serde::de::IgnoredAny as ::serde::Deserialize>::deserialize($d)?;
        Action::$variant
    }};
    ($d:ident, $variant:ident, $kind:ident $t:ty) => {
        Action::$variant(<slot_type!($kind $t) as ::serde::Deserialize>::deserialize($d)?)
    };
}

/// The variant when the message has no payload; a required payload is an error.
macro_rules! slot_absent {
    ($name:ident, $variant:ident) => {
        Action::$variant
    };
    ($name:ident, $variant:ident, optional) => {
        Action::$variant(None)
    };
    ($name:ident, $variant:ident, payload) => {
        return Err(E::custom(format_args!(
            "action `{}` requires a payload",
            $name.as_str()
        )))
    };
}

/// Expands the action table (see the module docs).
macro_rules! actions {
    ($(
        $(#[$attr:meta])*
        $variant:ident $({ $kind:ident : $t:ty })? => $wire:literal,
    )*) => {
        /// The `action` of a command with its `payload`. Unknown actions decode to
        /// [`Action::Unknown`] so that the receiver can still answer the message id with
        /// `UNKNOWN_ACTION` instead of failing the whole frame.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Action<'a> {
            $( $(#[$attr])* $variant $( (slot_type!($kind $t)) )?, )*
            /// An action this build does not know; its payload is skipped.
            Unknown(Str<'a>),
        }

        /// The name of an action, without its payload.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ActionName { $($variant,)* }

        impl ActionName {
            pub const ALL: &'static [ActionName] = &[$(ActionName::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self { $(ActionName::$variant => $wire,)* }
            }

            pub fn from_wire(s: &str) -> Option<ActionName> {
                match s { $($wire => Some(ActionName::$variant),)* _ => None }
            }
        }

        impl<'a> Action<'a> {
            pub fn known_name(&self) -> Option<ActionName> {
                match self {
                    $( Action::$variant $( (slot_ignore!($kind)) )? => Some(ActionName::$variant), )*
                    Action::Unknown(_) => None,
                }
            }

            pub fn into_owned(self) -> Action<'static> {
                match self {
                    $( Action::$variant $( (slot_bind!($kind p)) )?
                        => Action::$variant $( (slot_owned!($kind p)) )?, )*
                    Action::Unknown(n) => Action::Unknown(own(n)),
                }
            }

            /// Writes the `payload` member, when the action carries one.
            pub(crate) fn serialize_payload<M: ::serde::ser::SerializeMap>(
                &self,
                map: &mut M,
            ) -> Result<(), M::Error> {
                match self {
                    $( Action::$variant $( (slot_bind!($kind p)) )? => { $( slot_write!($kind map p); )? } )*
                    Action::Unknown(_) => {}
                }
                Ok(())
            }

            /// Decodes a present `payload` for a known action.
            pub(crate) fn with_payload<D: ::serde::Deserializer<'a>>(
                name: ActionName,
                d: D,
            ) -> Result<Action<'a>, D::Error> {
                Ok(match name {
                    $( ActionName::$variant => slot_read!(d, $variant $(, $kind $t)?), )*
                })
            }

            /// The action of a command that has no `payload` member.
            pub(crate) fn without_payload<E: ::serde::de::Error>(
                name: ActionName,
            ) -> Result<Action<'a>, E> {
                Ok(match name {
                    $( ActionName::$variant => slot_absent!(name, $variant $(, $kind)?), )*
                })
            }
        }
    };
}

/// Expands the event table: `Variant(DataType) => "wire_name"`. Every event's data names
/// its server (`serverId`), and its type has an inherent `into_owned`.
macro_rules! events {
    ($(
        $(#[$attr:meta])*
        $variant:ident($t:ty) => $wire:literal,
    )*) => {
        /// The `event` name with its `data`.
        #[derive(Debug, Clone, PartialEq)]
        pub enum EventKind<'a> {
            $( $(#[$attr])* $variant($t), )*
            /// An event this build does not know; kept whole so it can be forwarded.
            Other {
                name: Str<'a>,
                data: serde_json::Value,
            },
        }

        impl<'a> EventKind<'a> {
            pub fn name(&self) -> &str {
                match self {
                    $( EventKind::$variant(_) => $wire, )*
                    EventKind::Other { name, .. } => name,
                }
            }

            pub fn into_owned(self) -> EventKind<'static> {
                match self {
                    $( EventKind::$variant(d) => EventKind::$variant(d.into_owned()), )*
                    EventKind::Other { name, data } => EventKind::Other {
                        name: own(name),
                        data,
                    },
                }
            }

            /// `data.serverId`, as the spec's events name their server.
            pub fn data_server_id(&self) -> Option<&str> {
                match self {
                    $( EventKind::$variant(d) => Some(&*d.server_id), )*
                    EventKind::Other { data, .. } => data.get("serverId").and_then(|v| v.as_str()),
                }
            }

            /// Writes the `data` member.
            pub(crate) fn serialize_data<M: ::serde::ser::SerializeMap>(
                &self,
                map: &mut M,
            ) -> Result<(), M::Error> {
                match self {
                    $( EventKind::$variant(d) => map.serialize_entry("data", d), )*
                    EventKind::Other { data, .. } => map.serialize_entry("data", data),
                }
            }

            /// Decodes `data` for the event named `name`.
            pub(crate) fn with_data<D: ::serde::Deserializer<'a>>(
                name: &Str<'a>,
                d: D,
            ) -> Result<EventKind<'a>, D::Error> {
                use ::serde::Deserialize as _;
                Ok(match &**name {
                    $( $wire => EventKind::$variant(<$t>::deserialize(d)?), )*
                    _ => EventKind::Other {
                        name: name.clone(),
                        data: ::serde_json::Value::deserialize(d)?,
                    },
                })
            }
        }
    };
}
