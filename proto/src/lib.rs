//! The panel–agent wire contract: message types, error codes, validation and HS256 JWT.
//!
//! This crate does no I/O and needs no async runtime; panel, agent and loadtest all speak
//! only through it.
//!
//! - [`message`]: every message of the protocol as types ([`Message`] and friends), with the
//!   action and event tables and their single-pass serde.
//! - [`codec`]: the reusable [`Decoder`] (zero-copy decoding with simd-json, envelope-only
//!   routing) and encoding.
//! - [`skim`]: the envelope skimmer behind [`Decoder::envelope`]: validates a frame and
//!   picks out its routing fields without building the message.
//! - [`egg`]: the egg configuration carried by `create_server`.
//! - [`eggs`]: Pterodactyl/Pelican egg import, variable rules, config-file edits.
//! - [`validate`]: ids, eggs, paths, signals — precise errors mapped to wire codes.
//! - [`quantity`]: `"2048m"`, `"5g"`, `"0.5"` cores.
//! - [`rest`]: registration and refresh bodies, the operator API error envelope.
//! - [`codes`]: the wire error codes and their HTTP statuses.
//! - [`time`]: RFC 3339 timestamps.
//! - [`jwt`]: hand-written HS256 tokens with scopes and key rotation.

pub mod codec;
pub mod codes;
pub mod egg;
pub mod eggs;
pub mod jwt;
pub mod message;
pub mod quantity;
pub mod rest;
pub mod skim;
pub mod time;
pub mod validate;

pub use codec::{DecodeError, Decoder, Envelope, decode, encode, encode_into};
pub use codes::ErrorCode;
pub use egg::EggConfig;
pub use message::*;
