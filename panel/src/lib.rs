//! The control-plane panel: TLS HTTP server, agent hub, redb storage, operator API, live
//! events and metrics. `main.rs` only parses flags and calls [`app::run`] or [`up::run`].

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod eggs;
pub mod events;
pub mod exec;
pub mod failover;
pub mod health;
pub mod history;
pub mod http;
pub mod hub;
pub mod last_status;
pub mod metrics;
pub mod node_metrics;
pub mod outbox;
pub mod panel_metrics;
pub mod placement;
pub mod ratelimit;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod tracker;
pub mod ui;
pub mod up;
pub mod users;
