//! The node agent: runs game servers as Docker containers for the panel.
//!
//! Layout: `config` (agent.json, run options), `node` (the operator's node policy), `net` +
//! `https` (TLS and the tiny REST client), `register` (capabilities, registration, token refresh), `token` (JWT expiry),
//! `link` (the WebSocket to the panel), `logs` (console lines and their throttle), `query`
//! (player counts), plus the Docker client (`docker`), confined file access (`files`) and
//! cgroup statistics (`stats`), the game servers themselves (`servers`), and the program
//! (`cli`, `run`, `logger`; `main.rs` only calls `cli::main`).
pub mod cli;
pub mod config;
pub mod docker;
pub mod files;
pub mod https;
pub mod link;
pub mod logger;
pub mod logs;
pub mod net;
pub mod node;
pub mod query;
pub mod register;
pub mod run;
pub mod servers;
pub mod stats;
pub mod token;
