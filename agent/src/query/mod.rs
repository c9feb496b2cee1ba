//! Player queries: asking a running game server who is online, for `get_status`.
//!
//! Only what an egg declares is queried (`"query": {"type": "minecraft", "port": N}`), and a
//! failed or timed-out query yields no `players` at all: the agent never invents numbers.

pub mod minecraft;

pub use minecraft::{QueryError, status as minecraft_status};
