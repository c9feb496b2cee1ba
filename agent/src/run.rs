//! `agent run`: load the identity, start the servers layer, connect to the panel, serve
//! until SIGTERM or SIGINT.
//!
//! A missing or unreadable Docker socket is reported clearly at start-up, but the agent
//! keeps running: it stays connected to the panel (pongs say `degraded`), answers commands
//! with `DOCKER_ERROR` / `PERMISSION_DENIED`, and picks Docker up as soon as it appears.

use crate::config::{AgentConfig, ConfigError, RunOptions};
use crate::link::Link;
use crate::link::creds::Credentials;
use crate::link::outbox::Outbox;
use crate::node::{NodeConfigError, NodePolicy};
use crate::servers::{ServerError, Servers, ServersConfig};
use nix::sys::signal::{SigSet, Signal};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] ctrl_io::ClientError),
    #[error(transparent)]
    Servers(#[from] ServerError),
    #[error(transparent)]
    Node(#[from] NodeConfigError),
    #[error("cannot set up signal handling: {0}")]
    Signals(nix::errno::Errno),
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread spawned after) and
/// returns a channel that receives them, delivered by a dedicated `sigwait` thread.
fn shutdown_signals() -> Result<async_channel::Receiver<Signal>, RunError> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().map_err(RunError::Signals)?;
    let (tx, rx) = async_channel::bounded(1);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while let Ok(sig) = set.wait() {
                if tx.try_send(sig).is_err() && tx.is_closed() {
                    return;
                }
            }
        })
        .map_err(|e| {
            RunError::Signals(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
        })?;
    Ok(rx)
}

/// Runs the agent until a shutdown signal.
pub fn run(opts: RunOptions) -> Result<(), RunError> {
    // Before any other thread exists, so they all inherit the blocked mask (and share
    // one malloc arena).
    crate::memory::limit_arenas();
    let signals = shutdown_signals()?;
    let config = AgentConfig::load(&opts.config_path)?;
    let policy = NodePolicy::load(opts.node_config.as_deref())?;
    let tls = ctrl_io::tls_config(config.ca_cert.as_deref())?;
    let creds = Arc::new(Credentials::new(
        config.clone(),
        opts.config_path.clone(),
        tls,
    ));
    let outbox = Arc::new(Outbox::default());
    let mut scfg = ServersConfig::new(
        config.id.clone(),
        opts.docker_socket.clone(),
        opts.data_dir.clone(),
    );
    scfg.policy = policy;
    scfg.resource_interval = opts.resource_interval;
    scfg.name_prefix = opts.name_prefix.clone();
    scfg.fence_after = opts.fence_after;
    smol::block_on(async move {
        let servers = Arc::new(Servers::start(scfg, outbox.clone())?);
        match servers.check_docker().await {
            Ok(()) => {
                log::info!("Docker is reachable at {}", opts.docker_socket.display());
                // Adopt this agent's existing containers before connecting, so the first
                // command after a restart already knows them (the watcher adopts too;
                // adoption is idempotent).
                if let Err(e) = servers.adopt().await {
                    log::warn!("adopting existing servers failed: {e}");
                }
            }
            Err(e) => {
                eprintln!(
                    "agent run: error: {e}\n  servers cannot be managed until Docker is reachable; \
                     commands are answered with {} meanwhile",
                    e.code()
                );
                log::error!("{e}");
            }
        }
        let link = Link::new(servers.clone(), outbox.clone(), creds.clone())?;
        let _refresh = smol::spawn(creds.clone().refresh_loop());
        log::info!(
            "agent {} ({}) starting; panel {}",
            config.id,
            config.name,
            config.websocket_url
        );
        let stop = async {
            if let Ok(sig) = signals.recv().await {
                log::info!("{sig} received; shutting down");
            }
        };
        link.run(stop).await;
        outbox.close();
        Ok(())
    })
}
