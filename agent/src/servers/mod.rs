//! The game servers of this node: one state machine per server, driven by the panel's
//! commands and by Docker's events, and the [`Dispatch`] the link hands commands to.
//!
//! - Commands validate with `proto`, act through the Docker client and the confined files,
//!   and answer with the spec's shapes. `dispatch` maps each action to its handler in
//!   `create`, `power`, `status` or `files`. One power action per server at a time (`BUSY`).
//! - A server's state moves only through the transition table in `state` (illegal moves are
//!   a typed error).
//! - Docker's `/events` (`watch`) is the source of truth for a run ending: crash vs clean
//!   stop, exit code, OOM kill. On every (re)connection to Docker the containers labelled
//!   `ctrl.agent=<id>` are (re-)adopted: consoles and samplers resume, nothing is restarted.
//! - Each running server has a console task, a sampler task (`tasks`) and a disk watch
//!   (`disk`: the disk limit enforced where no quota does it). Every server keeps its last
//!   console lines (`history`, for `get_logs`); abandoned uploads are swept (`files`).
//! - What the node allows comes from the operator's [`NodePolicy`], never from the panel:
//!   caps (`create`), pull sources (`registry`), the servers' network (`network`), command
//!   rates (`rate`, checked in `dispatch`).
//!
//! Layout: `plan` (egg → container), `server` (one server), `state`, `tasks`, `history`,
//! `dispatch`, the handlers (`create`, `power`, `status`, `files`), `disk`, `registry`, `network`,
//! `rate`, `watch`, `error`. `Inner` is the shared state; its methods here are only
//! accessors, the handlers are functions of the modules above.

mod backup;
mod configs;
mod create;
mod disk;
mod dispatch;
mod done;
mod error;
pub mod extras;
mod fence;
mod files;
mod history;
mod install;
mod network;
pub mod plan;
mod power;
mod pull;
mod rate;
mod registry;
mod server;
mod state;
mod status;
mod tasks;
mod watch;

pub use error::{PortHolder, ServerError};
pub use plan::{
    DEFAULT_NAME_PREFIX, LABEL_AGENT, LABEL_META, LABEL_SERVER, Meta, check_prefix, container_name,
};
pub use server::Expected;

use crate::docker::DockerClient;
use crate::files::{FileError, Volume};
use crate::link::Dispatch;
use crate::link::outbox::Outbox;
use crate::node::NodePolicy;
use parking_lot::Mutex;
use proto::{Command, PongData, Response, ServerState, SystemLoad};
use rate::RateLimiter;
use serde_json::{Value, json};
use server::Server;
use smol::Task;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How much this node offers to its servers, summed over their limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Bytes.
    pub memory: u64,
    pub cpu_millis: u32,
}

impl Capacity {
    /// The host's memory and CPU count.
    pub fn detect() -> Capacity {
        let memory = crate::register::memory_total().unwrap_or(0);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Capacity {
            memory,
            cpu_millis: cpus * 1000,
        }
    }
}

/// What the servers layer needs to run.
#[derive(Debug, Clone)]
pub struct ServersConfig {
    pub agent_id: String,
    pub docker_socket: PathBuf,
    /// `DATA`: volumes live in `DATA/volumes/<serverId>`.
    pub data_dir: PathBuf,
    /// What this node allows its servers (address, caps, registries, network, rates, ...).
    pub policy: NodePolicy,
    pub resource_interval: Duration,
    /// `None`: the host's memory and CPUs.
    pub capacity: Option<Capacity>,
    /// Console lines per second and burst per server (see `logs`).
    pub log_rate: f64,
    pub log_burst: f64,
    /// Grace period of a stop when the command names none.
    pub stop_timeout: Duration,
    /// Interval of the host load sampling reported in pongs.
    pub load_interval: Duration,
    /// Containers are named `<prefix><serverId>` (`agent run --name-prefix`).
    pub name_prefix: String,
    /// Self-fencing after this long without the panel (`--fence-after-secs`); zero: off.
    pub fence_after: Duration,
}

impl ServersConfig {
    pub fn new(agent_id: impl Into<String>, docker_socket: PathBuf, data_dir: PathBuf) -> Self {
        ServersConfig {
            agent_id: agent_id.into(),
            docker_socket,
            data_dir,
            policy: NodePolicy::default(),
            resource_interval: crate::config::DEFAULT_RESOURCE_INTERVAL,
            capacity: None,
            log_rate: crate::logs::DEFAULT_RATE,
            log_burst: crate::logs::DEFAULT_BURST,
            stop_timeout: Duration::from_secs(30),
            load_interval: Duration::from_secs(5),
            name_prefix: plan::DEFAULT_NAME_PREFIX.into(),
            fence_after: crate::config::DEFAULT_FENCE_AFTER,
        }
    }
}

/// A server slot: reserved while its container is being created, then ready.
enum Slot {
    Creating(Reservation),
    Ready(Arc<Server>),
}

/// What a server holds of the node, for capacity and port checks.
#[derive(Debug, Clone)]
struct Reservation {
    memory: u64,
    cpu_millis: u32,
    disk: u64,
    pids: u64,
    ports: Vec<plan::PortMeta>,
}

/// The node-wide ceilings beyond memory and CPU (see `node.rs`), settled at start.
#[derive(Debug, Clone, Copy)]
struct NodeLimits {
    servers: usize,
    /// Sum of the servers' pids limits.
    pids: u64,
    /// Sum of the servers' disk limits, in bytes.
    disk: u64,
}

impl NodeLimits {
    fn settle(policy: &NodePolicy, volumes_dir: &Path) -> NodeLimits {
        let pids = policy.max_total_pids.unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/pid_max")
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .map_or(32768 / 2, |max| max / 2)
        });
        let disk = policy
            .max_disk
            .as_deref()
            .and_then(|d| proto::quantity::Bytes::parse(d).ok())
            .map(|b| b.0)
            .unwrap_or_else(|| {
                nix::sys::statvfs::statvfs(volumes_dir)
                    .map(|st| st.blocks().saturating_mul(st.fragment_size()))
                    .unwrap_or(u64::MAX)
            });
        NodeLimits {
            servers: policy.max_servers,
            pids,
            disk,
        }
    }
}

/// How a server's volume is shared with its container's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VolumeAccess {
    /// The agent runs as root: the volume is given to the container's user.
    Chown,
    /// The agent runs as `agent` (not root): POSIX ACLs share the volume (`files::acl`).
    Acl { agent: u32 },
}

impl Slot {
    fn reservation(&self) -> Reservation {
        match self {
            Slot::Creating(r) => r.clone(),
            Slot::Ready(s) => Reservation {
                memory: s.meta.memory,
                cpu_millis: s.meta.cpu_millis,
                disk: s.meta.disk,
                pids: s.meta.pids,
                ports: s.meta.ports.clone(),
            },
        }
    }
}

struct Inner {
    /// This manager itself, for tasks that must not keep it alive.
    me: Weak<Inner>,
    cfg: ServersConfig,
    volumes_dir: PathBuf,
    agent_id: Arc<str>,
    outbox: Arc<Outbox>,
    docker: Mutex<Option<DockerClient>>,
    docker_ok: AtomicBool,
    /// Why the last connection to (or probe of) Docker failed, for the heartbeat.
    docker_error: Mutex<Option<String>>,
    servers: Mutex<HashMap<String, Slot>>,
    capacity: Capacity,
    limits: NodeLimits,
    rate: RateLimiter,
    /// The node-wide console budget every server's console draws from (`logs::Budget`).
    console_budget: Arc<crate::logs::Budget>,
    access: VolumeAccess,
    load: Mutex<SystemLoad>,
    /// The servers' network gateway, once known (`network::interface`).
    interface: Mutex<Option<String>>,
    /// Backups and restores in progress (`backup`).
    sessions: backup::Sessions,
    /// Failover: the failover-enabled servers, the last contact with the panel (`fence`).
    fence: fence::Fence,
}

/// The servers manager. Dropping it stops its tasks; containers keep running and are
/// re-adopted by the next manager.
pub struct Servers {
    inner: Arc<Inner>,
    _tasks: Vec<Task<()>>,
}

impl Servers {
    /// Prepares `DATA/volumes`, then starts the Docker event watcher (which adopts existing
    /// containers) and the host load sampler. A missing Docker is not fatal: commands answer
    /// `DOCKER_ERROR` (or `PERMISSION_DENIED`) and the watcher keeps retrying.
    pub fn start(cfg: ServersConfig, outbox: Arc<Outbox>) -> Result<Servers, ServerError> {
        let volume_err = |reason: String| ServerError::Volume {
            server_id: "*".into(),
            reason,
        };
        let volumes_dir = cfg.data_dir.join("volumes");
        let data_dir = cfg.data_dir.clone();
        std::fs::create_dir_all(&volumes_dir)
            .map_err(|e| volume_err(format!("cannot create the data directory: {e}")))?;
        // Docker bind mounts need absolute host paths.
        let volumes_dir = std::fs::canonicalize(&volumes_dir)
            .map_err(|e| volume_err(format!("cannot resolve the data directory: {e}")))?;
        let capacity = cfg.capacity.unwrap_or_else(Capacity::detect);
        let limits = NodeLimits::settle(&cfg.policy, &volumes_dir);
        let uid = nix::unistd::Uid::effective();
        let access = if uid.is_root() {
            VolumeAccess::Chown
        } else {
            VolumeAccess::Acl {
                agent: uid.as_raw(),
            }
        };
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            agent_id: Arc::from(cfg.agent_id.as_str()),
            rate: RateLimiter::new(cfg.policy.rate.clone()),
            console_budget: crate::logs::Budget::new(
                cfg.policy.console_rate,
                cfg.policy.console_burst,
            ),
            cfg,
            volumes_dir,
            outbox,
            docker: Mutex::new(None),
            docker_ok: AtomicBool::new(false),
            docker_error: Mutex::new(None),
            servers: Mutex::new(HashMap::new()),
            capacity,
            limits,
            access,
            load: Mutex::new(SystemLoad {
                cpu: 0.0,
                memory: 0.0,
                disk: 0.0,
            }),
            interface: Mutex::new(None),
            sessions: backup::Sessions::default(),
            fence: fence::Fence::load(&data_dir),
        });
        let mut tasks = vec![
            smol::spawn(watch::watch(inner.clone())),
            smol::spawn(watch::sample_load(Arc::downgrade(&inner))),
            smol::spawn(files::sweep(Arc::downgrade(&inner))),
        ];
        if !inner.cfg.fence_after.is_zero() {
            let after = inner.cfg.fence_after;
            tasks.push(smol::spawn(fence::watchdog(Arc::downgrade(&inner), after)));
        }
        Ok(Servers {
            inner,
            _tasks: tasks,
        })
    }

    /// Connects to Docker now: the start-up check whose error `agent run` prints.
    pub async fn check_docker(&self) -> Result<(), ServerError> {
        self.inner.docker().await.map(drop)
    }

    /// Finds this agent's containers and adopts the ones not yet known (idempotent; the
    /// watcher also does this on every connection to Docker). Returns how many servers the
    /// agent now manages.
    pub async fn adopt(&self) -> Result<usize, ServerError> {
        watch::adopt(&self.inner).await
    }

    /// Executes one command (what the link calls).
    pub async fn execute(&self, cmd: Command<'static>) -> Response<'static> {
        dispatch::execute(self.inner.clone(), cmd).await
    }

    /// The current state of a server, if the agent manages it.
    pub fn state(&self, server_id: &str) -> Option<ServerState> {
        match self.inner.servers.lock().get(server_id)? {
            Slot::Ready(s) => Some(s.state()),
            Slot::Creating(_) => None,
        }
    }

    /// Ids of the servers the agent manages.
    pub fn server_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.inner.servers.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn capacity(&self) -> Capacity {
        self.inner.capacity
    }
}

impl Dispatch for Servers {
    fn handle(
        &self,
        cmd: Command<'static>,
    ) -> impl std::future::Future<Output = Response<'static>> + Send {
        self.inner.fence.contact();
        dispatch::execute(self.inner.clone(), cmd)
    }

    fn max_frame(&self) -> usize {
        self.inner.cfg.policy.max_frame_bytes
    }

    fn frame_pace(&self) -> (f64, f64) {
        let p = &self.inner.cfg.policy;
        (p.frame_rate, p.frame_burst)
    }

    fn disconnected(&self) {
        files::cancel_all_uploads(&self.inner);
        let dropped = self.inner.sessions.sweep(Duration::ZERO);
        if dropped > 0 {
            log::info!("dropped {dropped} backup/restore session(s) with the panel's connection");
        }
    }

    fn pong(&self) -> PongData<'static> {
        self.inner.fence.contact();
        let active = self
            .inner
            .servers
            .lock()
            .values()
            .filter(|s| matches!(s, Slot::Ready(s) if s.state() == ServerState::Running))
            .count();
        let load = *self.inner.load.lock();
        let docker_error = (!self.inner.docker_ok.load(Ordering::Relaxed)).then(|| {
            self.inner
                .docker_error
                .lock()
                .clone()
                .unwrap_or_else(|| "not connected yet".into())
        });
        let conditions = crate::conditions::conditions(docker_error.as_deref(), &load);
        PongData {
            agent_status: Cow::Borrowed(if docker_error.is_none() {
                "healthy"
            } else {
                "degraded"
            }),
            active_servers: active as u64,
            system_load: load,
            conditions,
        }
    }
}

/// What a handler answers: the response's `data`, or the error that becomes its code.
type Outcome = Result<Value, ServerError>;

/// The spec's plain acknowledgment.
fn ack(server_id: &str, status: ServerState) -> Value {
    json!({"serverId": server_id, "status": status})
}

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
pub(crate) fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" [...]");
    }
    text
}

impl Inner {
    /// The Docker client, connecting on first use (and again after a failure).
    async fn docker(&self) -> Result<DockerClient, ServerError> {
        if let Some(d) = self.docker.lock().clone() {
            return Ok(d);
        }
        match DockerClient::connect(&self.cfg.docker_socket).await {
            Ok(d) => {
                *self.docker.lock() = Some(d.clone());
                self.docker_ok.store(true, Ordering::Relaxed);
                Ok(d)
            }
            Err(e) => {
                self.docker_unreachable(&e);
                Err(e.into())
            }
        }
    }

    /// Docker failed to connect or to answer a probe: forget the client (the next use
    /// connects again) and report why in the heartbeat.
    fn docker_unreachable(&self, e: &dyn std::fmt::Display) {
        self.docker.lock().take();
        *self.docker_error.lock() = Some(e.to_string());
        self.docker_ok.store(false, Ordering::Relaxed);
    }

    fn get(&self, server_id: &str) -> Result<Arc<Server>, ServerError> {
        match self.servers.lock().get(server_id) {
            Some(Slot::Ready(s)) => Ok(s.clone()),
            Some(Slot::Creating(_)) => Err(ServerError::Busy {
                server_id: server_id.to_owned(),
                action: "create",
            }),
            None => Err(ServerError::NotFound {
                server_id: server_id.to_owned(),
            }),
        }
    }

    /// A ready server, if the agent manages one by that id.
    fn known(&self, server_id: &str) -> Option<Arc<Server>> {
        match self.servers.lock().get(server_id)? {
            Slot::Ready(s) => Some(s.clone()),
            Slot::Creating(_) => None,
        }
    }

    /// Whether one of Docker's names for a container carries this agent's prefix.
    fn named_ours(&self, names: &[String]) -> bool {
        names
            .iter()
            .any(|n| plan::has_prefix(n, &self.cfg.name_prefix))
    }

    fn volume_path(&self, server_id: &str) -> PathBuf {
        self.volumes_dir.join(server_id)
    }

    /// Opens a server's volume, sharing what the agent creates with the container's user.
    fn open_volume(&self, path: &Path, meta: &plan::Meta) -> Result<Volume, FileError> {
        let volume = Volume::open(path)?.with_usage_max_age(self.cfg.policy.disk_check());
        Ok(match self.access {
            VolumeAccess::Chown => volume.with_owner(meta.uid, meta.gid),
            VolumeAccess::Acl { .. } => volume.with_shared_access(),
        })
    }

    fn volumes_dir(&self) -> &Path {
        &self.volumes_dir
    }

    /// Where the servers' egg extensions are kept (`extras.rs`): beside the volumes, out of
    /// every container's reach.
    fn eggs_dir(&self) -> PathBuf {
        self.cfg.data_dir.join("eggs")
    }

    /// The volumes of the ready servers.
    fn volumes(&self) -> Vec<Arc<Volume>> {
        self.servers
            .lock()
            .values()
            .filter_map(|s| match s {
                Slot::Ready(s) => Some(s.volume.clone()),
                Slot::Creating(_) => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(cut("short".into(), 10), "short");
        let long = "é".repeat(100);
        let c = cut(long, 11);
        assert!(c.starts_with("ééééé") && c.ends_with(" [...]"), "{c}");
        assert_eq!(c.len(), 10 + " [...]".len());
    }
}
