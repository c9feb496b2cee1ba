//! The node agent: runs game servers as Docker containers for the panel.
//!
//! Layout: `config` (agent.json, run options), `node` (the operator's node policy),
//! `register` (capabilities, registration),
//! `token` (JWT expiry), `link` (the WebSocket to the panel, token refresh), `logs` (console
//! lines and their throttle), `memory` (malloc settings), `query` (player counts), plus the Docker client (`docker`),
//! confined file access (`files`) and cgroup statistics (`stats`), the game servers
//! themselves (`servers`), and the program (`cli`, `run`; `main.rs` only calls `cli::main`).
//! The HTTPS/WSS client, the atomic config write and the logger are `ctrl-io`'s.
pub mod cli;
pub mod conditions;
pub mod config;
pub mod docker;
pub mod files;
pub mod link;
pub mod logs;
pub mod memory;
pub mod node;
pub mod query;
pub mod register;
pub mod run;
pub mod servers;
pub mod stats;
pub mod token;
