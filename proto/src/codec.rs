//! Decoding and encoding frames.
//!
//! simd-json parses in place: it unescapes strings inside the input buffer so that decoded
//! strings can borrow from it. A receiver that wants to forward the *original* bytes (the
//! panel's event fan-out) therefore decodes a copy. [`Decoder`] owns that copy and simd-json's
//! scratch buffers and reuses both, so steady-state decoding allocates nothing for the buffers.

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::fmt;

use crate::ErrorCode;
use crate::message::{Message, MessageType, Str};

/// Largest frame accepted by default (1 MiB); `write_file` payloads are the big ones.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("frame is not a valid protocol message: {0}")]
    Invalid(String),
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            DecodeError::Invalid(_) => ErrorCode::InvalidMessage,
        }
    }
}

impl From<simd_json::Error> for DecodeError {
    fn from(e: simd_json::Error) -> Self {
        DecodeError::Invalid(e.to_string())
    }
}

/// Just enough of a frame to route it: the fields of the base message, the action or event
/// name, and the server (top-level `serverId`, or `data.serverId` as the spec's events have it).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<'a> {
    pub kind: MessageType,
    pub id: Option<Str<'a>>,
    pub agent_id: Option<Str<'a>>,
    pub server_id: Option<Str<'a>>,
    /// `action` for commands, `event` for events.
    pub name: Option<Str<'a>>,
    pub success: Option<bool>,
}

/// A reusable decoder. It owns scratch buffers and is not `Sync`: keep one per thread (the
/// panel's executors) or per connection (the agent's reader) and reuse it for every frame.
pub struct Decoder {
    scratch: Vec<u8>,
    buffers: simd_json::Buffers,
    max_frame: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder {
    pub fn new(max_frame: usize) -> Self {
        Decoder {
            scratch: Vec::new(),
            buffers: simd_json::Buffers::new(1024),
            max_frame,
        }
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn load(&mut self, frame: &[u8]) -> Result<(), DecodeError> {
        if frame.len() > self.max_frame {
            return Err(DecodeError::TooLarge {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        reject_nul(frame)?;
        self.scratch.clear();
        self.scratch.extend_from_slice(frame);
        Ok(())
    }

    /// Routes a frame without building the whole message; `frame` is left untouched and the
    /// envelope borrows from it. Frames whose routing fields carry escapes take the slower
    /// path through simd-json (into the decoder's scratch copy).
    pub fn envelope<'s>(&'s mut self, frame: &'s [u8]) -> Result<Envelope<'s>, DecodeError> {
        if frame.len() > self.max_frame {
            return Err(DecodeError::TooLarge {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        match crate::skim::envelope(frame)? {
            crate::skim::Skimmed::Routed(env) => Ok(env),
            crate::skim::Skimmed::NeedsDecoder => self.envelope_with_simd_json(frame),
        }
    }

    /// Envelope decode through simd-json's serde path (the fallback, and a bench baseline).
    pub fn envelope_with_simd_json<'s>(
        &'s mut self,
        frame: &[u8],
    ) -> Result<Envelope<'s>, DecodeError> {
        self.load(frame)?;
        let raw: RawEnvelope<'s> =
            simd_json::serde::from_slice_with_buffers(&mut self.scratch, &mut self.buffers)?;
        raw.finish()
    }

    /// Decodes a whole message; `frame` is left untouched.
    pub fn message<'s>(&'s mut self, frame: &[u8]) -> Result<Message<'s>, DecodeError> {
        self.load(frame)?;
        Ok(simd_json::serde::from_slice_with_buffers(
            &mut self.scratch,
            &mut self.buffers,
        )?)
    }

    /// Decodes a whole message from a buffer the caller no longer needs intact (no copy).
    pub fn message_in_place<'b>(&mut self, buf: &'b mut [u8]) -> Result<Message<'b>, DecodeError> {
        if buf.len() > self.max_frame {
            return Err(DecodeError::TooLarge {
                len: buf.len(),
                max: self.max_frame,
            });
        }
        reject_nul(buf)?;
        Ok(simd_json::serde::from_slice_with_buffers(
            buf,
            &mut self.buffers,
        )?)
    }
}

/// A NUL byte is never valid JSON (not whitespace, and not allowed raw inside a string), but
/// simd-json 0.17 silently accepts one after a scalar and drops what follows it (`[1\0 2]`
/// decodes as `[1]`; found by the `decode` fuzz target). Refuse such frames before simd-json
/// sees them; `memchr` over the frame costs next to nothing.
fn reject_nul(frame: &[u8]) -> Result<(), DecodeError> {
    if frame.contains(&0) {
        return Err(DecodeError::Invalid("NUL byte in frame".into()));
    }
    Ok(())
}

/// One-shot convenience: decode an owned message from bytes.
pub fn decode(frame: &[u8]) -> Result<Message<'static>, DecodeError> {
    Decoder::default().message(frame).map(Message::into_owned)
}

/// Encodes a message as a JSON text frame, appending to `out` (reuse it between frames).
pub fn encode_into(msg: &Message<'_>, out: &mut Vec<u8>) {
    // serde_json's writer beats simd-json's serializer for our small frames (see
    // BENCHMARKS.md), and serialising these types cannot fail: keys are strings and every
    // float is finite by construction.
    serde_json::to_writer(&mut *out, msg).expect("messages always serialise");
}

/// The bytes `s` takes as a JSON string as [`encode_into`] writes it, quotes included:
/// a quote, a backslash and the short control escapes take two bytes, other control characters six
/// (`\u001f`), everything else (UTF-8 included) itself. Lets a sender size an answer
/// before building it.
pub fn json_string_len(s: &str) -> usize {
    s.bytes().fold(2usize, |n, b| {
        n.saturating_add(match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
    })
}

/// Encodes a message into a fresh buffer.
pub fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode_into(msg, &mut out);
    out
}

struct RawEnvelope<'a> {
    kind: Option<MessageType>,
    id: Option<Str<'a>>,
    agent_id: Option<Str<'a>>,
    server_id: Option<Str<'a>>,
    name: Option<Str<'a>>,
    success: Option<bool>,
    data_server_id: Option<Str<'a>>,
}

impl<'a> RawEnvelope<'a> {
    fn finish(self) -> Result<Envelope<'a>, DecodeError> {
        let kind = self
            .kind
            .ok_or_else(|| DecodeError::Invalid("missing field `type`".into()))?;
        Ok(Envelope {
            kind,
            id: self.id,
            agent_id: self.agent_id,
            server_id: self.server_id.or(self.data_server_id),
            name: self.name,
            success: self.success,
        })
    }
}

impl<'de> Deserialize<'de> for RawEnvelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawEnvelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a protocol message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut env = RawEnvelope {
                    kind: None,
                    id: None,
                    agent_id: None,
                    server_id: None,
                    name: None,
                    success: None,
                    data_server_id: None,
                };
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match &*key {
                        "type" => {
                            let t: Cow<'de, str> = map.next_value()?;
                            env.kind = Some(MessageType::from_wire(&t).ok_or_else(|| {
                                de::Error::custom(format_args!("unknown message type `{t}`"))
                            })?);
                        }
                        "id" => env.id = Some(map.next_value()?),
                        "agentId" => env.agent_id = Some(map.next_value()?),
                        "serverId" => env.server_id = Some(map.next_value()?),
                        "action" | "event" => env.name = Some(map.next_value()?),
                        "success" => env.success = Some(map.next_value()?),
                        "data" => env.data_server_id = map.next_value::<DataServerId>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(env)
            }
        }
        d.deserialize_map(V)
    }
}

/// `data.serverId` when `data` is an object that has one; anything else is skipped.
struct DataServerId<'a>(Option<Str<'a>>);

impl<'de> Deserialize<'de> for DataServerId<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DataServerId<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "serverId" && found.is_none() {
                        found = map.next_value::<Option<Cow<'de, str>>>()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(DataServerId(found))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(DataServerId(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(DataServerId(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(DataServerId(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(DataServerId(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(DataServerId(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(DataServerId(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(DataServerId(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(DataServerId(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_len_matches_the_encoder() {
        let every_byte: String = (0u8..=0x7f).map(char::from).collect();
        for s in [
            "",
            "plain",
            "quote\"back\\slash",
            "é€😀",
            &every_byte,
            "\u{7f}\u{1f}\n",
        ] {
            let encoded = serde_json::to_string(s).unwrap();
            assert_eq!(json_string_len(s), encoded.len(), "{s:?}");
        }
        assert_eq!(json_string_len(&"\u{1}".repeat(1000)), 6002);
    }

    #[test]
    fn nul_after_a_scalar_is_refused_on_every_path() {
        let frame = b"{\"id\":\"h\",\"type\":\"pong\",\"timestamp\":\"t\",\"data\":{\"agentStatus\":\"healthy\",\"activeServers\":3\0\x007,\"systemLoad\":{\"cpu\":1,\"memory\":1,\"disk\":1}}}";
        let mut dec = Decoder::default();
        assert!(dec.message(frame).is_err());
        assert!(dec.envelope(frame).is_err());
        assert!(dec.envelope_with_simd_json(frame).is_err());
        let mut copy = frame.to_vec();
        assert!(dec.message_in_place(&mut copy).is_err());
        // Without the NUL bytes the frame is fine (so the test exercises the NUL check).
        let clean: Vec<u8> = frame.iter().copied().filter(|&b| b != 0).collect();
        assert!(
            dec.message(&clean).is_ok(),
            "{}",
            String::from_utf8_lossy(&clean)
        );
    }
}
