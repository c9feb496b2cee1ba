//! Failover on the node's side: the servers that must not keep running when this agent is
//! cut off from the panel, and what happens to a copy the panel has moved on from.
//!
//! - **The list**: the panel sends the complete list of this agent's failover-enabled
//!   servers (`failover_servers`) after every connection and every change; it is kept in
//!   `DATA/failover.json` so a restarted agent that cannot reach the panel still knows it.
//! - **Self-fencing**: once `--fence-after-secs` pass without a frame from the panel (pings
//!   come every heartbeat; a fresh process counts from its start), every listed server that
//!   runs is stopped — before the panel, after its longer `--dead-after-secs`, starts it on
//!   another node. Stopped, not deleted: if the panel comes back first, it starts them again.
//! - **Quarantine** (`quarantine_servers`): a copy whose epoch is older than the panel's
//!   assignment is stopped, its container removed and its files moved to
//!   `DATA/quarantine/<serverId>-e<epoch>-<unix>`: kept for the operator, never started again.

use parking_lot::Mutex;
use proto::ServerState;
use proto::message::{MAX_FENCE_LIST, QuarantineServers};
use proto::validate::{self, IdKind};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Inner, Outcome, ServerError, power};

/// How often the watchdog looks at the time since the last contact.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// Grace period a fencing stop gives a server (its stop command or signal) before SIGKILL.
const FENCE_STOP_SECS: u64 = 10;

/// The failover list, the last contact with the panel and whether the node is fenced now.
pub(super) struct Fence {
    path: PathBuf,
    enabled: Mutex<BTreeSet<String>>,
    last_contact: Mutex<Instant>,
    fenced: AtomicBool,
}

impl Fence {
    /// Loads `DATA/failover.json` (absent: empty; unreadable: empty, logged — the panel
    /// sends the list again on connection).
    pub(super) fn load(data_dir: &Path) -> Fence {
        let path = data_dir.join("failover.json");
        let enabled = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Vec<String>>(&bytes)
                .map(|v| v.into_iter().collect())
                .unwrap_or_else(|e| {
                    log::error!("{}: {e}; starting with no failover servers", path.display());
                    BTreeSet::new()
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => {
                log::error!("{}: {e}; starting with no failover servers", path.display());
                BTreeSet::new()
            }
        };
        Fence {
            path,
            enabled: Mutex::new(enabled),
            last_contact: Mutex::new(Instant::now()),
            fenced: AtomicBool::new(false),
        }
    }

    /// A frame from the panel arrived.
    pub(super) fn contact(&self) {
        *self.last_contact.lock() = Instant::now();
        if self.fenced.swap(false, Ordering::AcqRel) {
            log::info!("the panel is reachable again; fencing ends");
        }
    }

    #[cfg(test)]
    fn is_enabled(&self, server_id: &str) -> bool {
        self.enabled.lock().contains(server_id)
    }

    fn enabled(&self) -> Vec<String> {
        self.enabled.lock().iter().cloned().collect()
    }

    /// Replaces the list, durably.
    fn set(&self, ids: BTreeSet<String>) -> std::io::Result<()> {
        let list: Vec<&String> = ids.iter().collect();
        let bytes = serde_json::to_vec(&list).map_err(std::io::Error::other)?;
        ctrl_io::atomic_write_mode(&self.path, &bytes, 0o600)?;
        *self.enabled.lock() = ids;
        Ok(())
    }

    fn forget(&self, server_id: &str) {
        let mut ids = self.enabled.lock().clone();
        if ids.remove(server_id)
            && let Err(e) = self.set(ids)
        {
            log::warn!("{}: {e}", self.path.display());
        }
    }

    /// Whether the panel has been out of reach for `after` and fencing should begin now
    /// (true once per outage).
    fn due(&self, after: Duration) -> bool {
        let silent = self.last_contact.lock().elapsed();
        silent >= after && !self.fenced.swap(true, Ordering::AcqRel)
    }
}

/// `failover_servers`: the complete list of this agent's failover-enabled servers.
pub(super) fn set_list(inner: &Inner, ids: Vec<String>) -> Outcome {
    if ids.len() > MAX_FENCE_LIST {
        return Err(ServerError::BadContent(format!(
            "at most {MAX_FENCE_LIST} servers per list"
        )));
    }
    let mut set = BTreeSet::new();
    for id in ids {
        validate::id(IdKind::Server, &id)?;
        set.insert(id);
    }
    let n = set.len();
    inner.fence.set(set).map_err(|e| ServerError::Volume {
        server_id: "*".into(),
        reason: format!("cannot keep the failover list: {e}"),
    })?;
    Ok(json!({"failoverServers": n}))
}

/// Runs until the servers layer goes: fences once per outage longer than `after`.
pub(super) async fn watchdog(inner: Weak<Inner>, after: Duration) {
    loop {
        smol::Timer::after(CHECK_EVERY).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.fence.due(after) {
            fence_now(&inner, after).await;
        }
    }
}

/// Stops every failover-enabled server that runs (or starts).
async fn fence_now(inner: &Inner, after: Duration) {
    let ids = inner.fence.enabled();
    log::warn!(
        "no contact with the panel for {} s: fencing {} failover server(s)",
        after.as_secs(),
        ids.len()
    );
    for sid in ids {
        let Some(server) = inner.known(&sid) else {
            continue;
        };
        if !matches!(
            server.state(),
            ServerState::Running | ServerState::Starting | ServerState::Restarting
        ) {
            continue;
        }
        match power::stop(inner, &sid, None, Some(FENCE_STOP_SECS)).await {
            Ok(_) => log::warn!("server {sid}: stopped (fenced: the panel is out of reach)"),
            Err(e) => {
                log::error!("server {sid}: fencing stop failed: {e}; killing");
                if let Err(e) = power::kill(inner, &sid, None).await {
                    log::error!("server {sid}: fencing kill failed: {e}");
                }
            }
        }
    }
}

/// `quarantine_servers`: each listed copy older than the panel's epoch is stopped, its
/// container removed and its files moved aside; a copy as new as the panel's is left alone.
pub(super) async fn quarantine(inner: &Inner, q: QuarantineServers) -> Outcome {
    if q.servers.len() > MAX_FENCE_LIST {
        return Err(ServerError::BadContent(format!(
            "at most {MAX_FENCE_LIST} servers per list"
        )));
    }
    for s in &q.servers {
        validate::id(IdKind::Server, &s.server_id)?;
    }
    let (mut done, mut current, mut absent, mut failed) = (vec![], vec![], vec![], vec![]);
    for s in q.servers {
        let sid = s.server_id;
        let copy_epoch = inner.known(&sid).map(|srv| srv.meta.epoch);
        if copy_epoch.is_some_and(|e| e >= s.epoch) {
            current.push(json!({"serverId": sid, "epoch": copy_epoch}));
            continue;
        }
        if copy_epoch.is_some()
            && let Err(e) = power::delete(inner, &sid, false).await
        {
            failed.push(json!({"serverId": sid, "error": e.to_string(), "code": e.code()}));
            continue;
        }
        inner.fence.forget(&sid);
        match move_aside(inner, &sid, copy_epoch.unwrap_or(0)).await {
            Ok(Some(to)) => {
                log::warn!("server {sid}: stale copy quarantined in {to}");
                done.push(json!({"serverId": sid, "epoch": copy_epoch, "path": to}));
            }
            Ok(None) if copy_epoch.is_some() => {
                done.push(json!({"serverId": sid, "epoch": copy_epoch, "path": Value::Null}));
            }
            Ok(None) => absent.push(json!(sid)),
            Err(e) => failed.push(json!({"serverId": sid, "error": e, "code": "INTERNAL_ERROR"})),
        }
    }
    Ok(json!({
        "quarantined": done,
        "current": current,
        "absent": absent,
        "failed": failed,
    }))
}

/// Moves `DATA/volumes/<sid>` to `DATA/quarantine/<sid>-e<epoch>-<unix>`; `None` when there
/// are no files. Answers the path as `DATA/quarantine/...`.
async fn move_aside(inner: &Inner, sid: &str, epoch: u64) -> Result<Option<String>, String> {
    let from = inner.volumes_dir().join(sid);
    let Some(data) = inner.volumes_dir().parent().map(Path::to_path_buf) else {
        return Err("the data directory has no parent".into());
    };
    let name = format!("{sid}-e{epoch}-{}", proto::time::unix_now());
    let dir = data.join("quarantine");
    let to = dir.join(&name);
    smol::unblock(move || {
        if !from.exists() {
            return Ok(None);
        }
        std::fs::create_dir_all(&dir)?;
        std::fs::rename(&from, &to)?;
        Ok(Some(format!("DATA/quarantine/{name}")))
    })
    .await
    .map_err(|e: std::io::Error| format!("cannot move the files aside: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "agent-fence-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn fencing_is_due_once_per_outage() {
        let dir = tempdir();
        let f = Fence::load(&dir);
        assert!(
            !f.due(Duration::from_secs(60)),
            "a fresh process counts from its start"
        );
        assert!(f.due(Duration::ZERO));
        assert!(!f.due(Duration::ZERO), "once per outage");
        f.contact();
        assert!(f.due(Duration::ZERO), "a new outage after contact");
    }

    #[test]
    fn the_list_survives_a_restart() {
        let dir = tempdir();
        let f = Fence::load(&dir);
        f.set(["b".to_string(), "a".to_string()].into()).unwrap();
        let again = Fence::load(&dir);
        assert!(again.is_enabled("a") && again.is_enabled("b") && !again.is_enabled("c"));
        again.forget("a");
        assert!(!Fence::load(&dir).is_enabled("a"));
        std::fs::write(dir.join("failover.json"), b"{not json").unwrap();
        assert!(!Fence::load(&dir).is_enabled("b"), "garbage reads as empty");
    }
}
