//! Enforcing a server's disk limit where the filesystem offers no quota.
//!
//! While a server runs, its volume is measured afresh every `diskCheckSecs` (default 5 s;
//! longer when one walk is slow, so the walk never takes more than 5 % of the time). The
//! measurement also refreshes the figure API writes are checked against, so they are
//! refused as soon as the volume is over its limit, never on a stale figure. Over the
//! limit, the agent:
//! 1. says so on the server's console (a `server_log` line `[agent] disk limit exceeded:
//!    ...`) and in its own log;
//! 2. stops the server once it has stayed over the limit for `diskGraceSecs` (default
//!    30 s), or at once when it reaches twice the limit — a tenant writing fast must not
//!    fill the node in the grace period;
//! 3. refuses to start it again while it is over (`INSUFFICIENT_RESOURCES`).
//!
//! Dropping back under the limit within the grace period cancels the stop.

use super::power;
use super::server::{Expected, Server};
use super::{Inner, ServerError};
use std::sync::{Arc, Weak};
use std::time::Instant;

/// A walk may take at most this share of the time between two walks.
const MAX_WALK_SHARE: u32 = 20;

/// Follows one run of a server until it ends (the task is dropped with the run's sampler).
pub(super) async fn watch(inner: Weak<Inner>, server: Weak<Server>) {
    let mut over_since: Option<Instant> = None;
    let mut pause = match inner.upgrade() {
        Some(i) => i.cfg.policy.disk_check(),
        None => return,
    };
    loop {
        smol::Timer::after(pause).await;
        let (Some(inner), Some(server)) = (inner.upgrade(), server.upgrade()) else {
            return;
        };
        let started = Instant::now();
        let volume = server.volume.clone();
        let used = match smol::unblock(move || volume.measure_now()).await {
            Ok(used) => used,
            Err(e) => {
                log::warn!("server {}: cannot measure its files: {e}", server.id);
                continue;
            }
        };
        let base = inner.cfg.policy.disk_check();
        pause = base.max(started.elapsed() * MAX_WALK_SHARE);
        over_since = check(&inner, &server, used, over_since).await;
    }
}

/// One verdict: warn on the first measurement over the limit, stop after the grace period
/// (or at twice the limit), and note the return under it. Returns when the server went
/// over, while it is.
async fn check(
    inner: &Inner,
    server: &Arc<Server>,
    used: u64,
    over_since: Option<Instant>,
) -> Option<Instant> {
    let limit = server.meta.disk;
    if used <= limit {
        if over_since.is_some() {
            server.say(
                "INFO",
                format!(
                    "[agent] disk usage is back under the limit ({} of {} MiB)",
                    used >> 20,
                    limit >> 20
                ),
            );
        }
        return None;
    }
    let since = over_since.unwrap_or_else(Instant::now);
    let grace = inner.cfg.policy.disk_grace();
    let hard = used >= limit.saturating_mul(2);
    if over_since.is_none() {
        let then = if hard {
            "now".to_owned()
        } else {
            format!("in {} s unless it drops", grace.as_secs())
        };
        server.say(
            "WARN",
            format!(
                "[agent] disk limit exceeded: {} MiB used of {} MiB; writes are refused and \
                 the server will be stopped {then}",
                used >> 20,
                limit >> 20
            ),
        );
    }
    // Boxed: the stop is rare and its future large, and it would otherwise be part of every
    // running server's watch task (4 KiB each).
    if (hard || since.elapsed() >= grace)
        && let Err(e) = Box::pin(stop(inner, server, used)).await
    {
        log::warn!(
            "server {}: stopping it over its disk limit failed: {e}",
            server.id
        );
    }
    Some(since)
}

async fn stop(inner: &Inner, server: &Arc<Server>, used: u64) -> Result<(), ServerError> {
    let Some(_power) = server.try_power() else {
        return Ok(()); // another power action is under way; the next check decides
    };
    let docker = inner.docker().await?;
    if !docker
        .container_inspect(&server.container_id)
        .await?
        .state
        .running
    {
        return Ok(());
    }
    log::warn!(
        "server {}: {} MiB used of {} MiB; stopping it",
        server.id,
        used >> 20,
        server.meta.disk >> 20
    );
    server.say(
        "WARN",
        "[agent] stopping the server: disk limit exceeded".into(),
    );
    power::stop_running(
        server,
        &docker,
        None,
        inner.cfg.stop_timeout,
        Expected::DiskLimit,
    )
    .await
}

/// Refuses to start a server whose files are over its limit (measured afresh: starts are
/// rare, and files may have been removed since the last figure).
pub(super) async fn check_start(server: &Server) -> Result<(), ServerError> {
    let volume = server.volume.clone();
    let used = smol::unblock(move || volume.measure_now()).await?;
    if used > server.meta.disk {
        return Err(ServerError::Insufficient {
            what: "disk",
            detail: format!(
                "server {} uses {} MiB of its {} MiB disk limit; remove files before starting it",
                server.id,
                used >> 20,
                server.meta.disk >> 20
            ),
        });
    }
    Ok(())
}
