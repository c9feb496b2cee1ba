//! Thousands of simulated agents against a real panel. The HTTPS/WSS client they use is
//! `ctrl-io`'s (shared with the agent and the tests).

pub mod agents_file;
pub mod commands;
pub mod config;
pub mod fleet;
pub mod logins;
pub mod metrics;
pub mod operators;
pub mod procfs;
pub mod report;
pub mod rlimit;
pub mod run;
pub mod sim;
pub mod stats;
pub mod subscriber;
pub mod threads;
pub mod viewers;
