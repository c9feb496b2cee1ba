//! Thousands of simulated agents against a real panel, and the client library the tests
//! share ([`client`]).

pub mod agents_file;
pub mod client;
pub mod commands;
pub mod config;
pub mod fleet;
pub mod metrics;
pub mod procfs;
pub mod report;
pub mod rlimit;
pub mod run;
pub mod sim;
pub mod stats;
pub mod subscriber;
