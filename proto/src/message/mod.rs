//! Every message of the protocol, as Rust types.
//!
//! Strings are `Cow<'a, str>` so that decoding with simd-json borrows straight from the frame
//! buffer (simd-json unescapes in place), while the same types still work with owned data and
//! with other deserializers.
//!
//! Layout: `command` (commands, **the action table** and the payloads), `response`
//! (responses and their data shapes), `event` (**the event table** and the event data),
//! `heartbeat` (ping/pong), `wire` (the hand-written single-pass serde of [`Message`]), and
//! `table` (the macros that expand the two tables). Adding an action is one line in the
//! action table plus its payload type; adding an event, one line in the event table plus
//! its data type.

#[macro_use]
mod table;
mod command;
mod event;
mod heartbeat;
mod response;
mod wire;

pub use command::*;
pub use event::*;
pub use heartbeat::*;
pub use response::*;

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A string that borrows from the decoded frame when it can.
pub type Str<'a> = Cow<'a, str>;

/// The `type` field of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Command,
    Response,
    Event,
    Ping,
    Pong,
}

impl MessageType {
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageType::Command => "command",
            MessageType::Response => "response",
            MessageType::Event => "event",
            MessageType::Ping => "ping",
            MessageType::Pong => "pong",
        }
    }

    pub fn from_wire(s: &str) -> Option<MessageType> {
        Some(match s {
            "command" => MessageType::Command,
            "response" => MessageType::Response,
            "event" => MessageType::Event,
            "ping" => MessageType::Ping,
            "pong" => MessageType::Pong,
            _ => return None,
        })
    }
}

/// One frame on the agent WebSocket.
#[derive(Debug, Clone, PartialEq)]
pub enum Message<'a> {
    Command(Command<'a>),
    Response(Response<'a>),
    Event(Event<'a>),
    Ping(Ping<'a>),
    Pong(Pong<'a>),
}

impl Message<'_> {
    pub fn kind(&self) -> MessageType {
        match self {
            Message::Command(_) => MessageType::Command,
            Message::Response(_) => MessageType::Response,
            Message::Event(_) => MessageType::Event,
            Message::Ping(_) => MessageType::Ping,
            Message::Pong(_) => MessageType::Pong,
        }
    }

    /// The message id, when the message has one (the spec's events carry none).
    pub fn id(&self) -> Option<&str> {
        match self {
            Message::Command(c) => Some(&c.id),
            Message::Response(r) => Some(&r.id),
            Message::Event(e) => e.id.as_deref(),
            Message::Ping(p) => Some(&p.id),
            Message::Pong(p) => Some(&p.id),
        }
    }

    /// Detaches the message from the frame buffer it was decoded from.
    pub fn into_owned(self) -> Message<'static> {
        match self {
            Message::Command(c) => Message::Command(c.into_owned()),
            Message::Response(r) => Message::Response(r.into_owned()),
            Message::Event(e) => Message::Event(e.into_owned()),
            Message::Ping(p) => Message::Ping(p.into_owned()),
            Message::Pong(p) => Message::Pong(p.into_owned()),
        }
    }
}

pub(crate) fn own(s: Str<'_>) -> Str<'static> {
    Cow::Owned(s.into_owned())
}
