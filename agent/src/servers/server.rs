//! One game server: its container, its state, its console and its background tasks.
//!
//! The state only moves through [`Server::apply`], which consults the transition table in
//! `state.rs` and emits exactly one `server_status_changed` per real change.

use super::error::ServerError;
use super::extras::Extras;
use super::history::History;
use super::plan::Meta;
use super::state::{self, Step, Trigger};
use super::tasks::{ConsoleSlot, StatsSlot};
use crate::files::Volume;
use crate::link::outbox::Outbox;
use parking_lot::Mutex;
use proto::{Event, EventKind, ServerLog, ServerState, StatusChanged};
use smol::Task;
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Longest `reason` in a status event (it can quote Docker's error, which can quote
/// anything): events must fit in a frame too.
const MAX_REASON: usize = 1024;

/// Why the next exit of the container is not a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Stop,
    Kill,
    Restart,
    Delete,
    /// The agent stops the server because its files exceed its disk limit.
    DiskLimit,
}

impl Expected {
    pub fn reason(self) -> &'static str {
        match self {
            Expected::Stop => "stopped by operator",
            Expected::Kill => "killed by operator",
            Expected::Restart => "restarting",
            Expected::Delete => "deleted by operator",
            Expected::DiskLimit => "stopped by the agent: disk limit exceeded",
        }
    }
}

/// Extra facts carried by a status change.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub pid: Option<u64>,
    pub exit_code: Option<i64>,
    pub oom_killed: Option<bool>,
    pub reason: Option<String>,
}

pub struct Server {
    pub id: String,
    pub container_id: String,
    pub meta: Meta,
    /// The egg's install script, config files, done strings and environment.
    pub extras: Arc<Extras>,
    pub volume: Arc<Volume>,
    pub volume_path: PathBuf,
    agent_id: Arc<str>,
    outbox: Arc<Outbox>,
    state: Mutex<ServerState>,
    busy: AtomicBool,
    /// A delete command is removing the container: its `destroy` event is expected.
    pub deleting: AtomicBool,
    expected: Mutex<Option<Expected>>,
    /// The current run's console printed one of the egg's done strings.
    done_seen: AtomicBool,
    /// Docker sent an `oom` event for the current run (see `watch::is_sigkill_die`).
    oom_seen: AtomicBool,
    /// The console of the current run (stdin writer + liveness), replaced on each start.
    pub console: Arc<ConsoleSlot>,
    /// The resource sampler of the current run.
    pub stats: Arc<StatsSlot>,
    /// The last console lines, for `get_logs`.
    pub history: History,
    tasks: Mutex<Tasks>,
    /// Serialises "make the run's console and sampler match Docker" with the handling of
    /// the container's exit, so a late start cannot overwrite a crash.
    pub session_lock: smol::lock::Mutex<()>,
}

#[derive(Default)]
struct Tasks {
    console: Option<Task<()>>,
    stats: Option<Task<()>>,
    disk: Option<Task<()>>,
    /// The install script's run, while one is under way.
    install: Option<Task<()>>,
}

/// Held for the duration of one power action; a second one is refused with `BUSY`.
pub struct PowerGuard<'a>(&'a AtomicBool);

impl Drop for PowerGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Server {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        container_id: String,
        meta: Meta,
        volume: Arc<Volume>,
        volume_path: PathBuf,
        agent_id: Arc<str>,
        outbox: Arc<Outbox>,
        state: ServerState,
    ) -> Server {
        Server {
            id,
            container_id,
            meta,
            extras: Arc::new(Extras::default()),
            volume,
            volume_path,
            agent_id,
            outbox,
            state: Mutex::new(state),
            busy: AtomicBool::new(false),
            deleting: AtomicBool::new(false),
            expected: Mutex::new(None),
            done_seen: AtomicBool::new(false),
            oom_seen: AtomicBool::new(false),
            console: Arc::new(ConsoleSlot::default()),
            stats: Arc::new(StatsSlot::default()),
            history: History::default(),
            tasks: Mutex::new(Tasks::default()),
            session_lock: smol::lock::Mutex::new(()),
        }
    }

    /// The server with its egg's extensions (see `extras.rs`).
    pub fn with_extras(mut self, extras: Extras) -> Server {
        self.extras = Arc::new(extras);
        self
    }

    pub fn state(&self) -> ServerState {
        *self.state.lock()
    }

    /// A new run begins: its done line is still to come, no OOM kill seen yet.
    pub fn reset_done(&self) {
        self.done_seen.store(false, Ordering::Release);
        self.oom_seen.store(false, Ordering::Release);
    }

    /// Docker reported an OOM kill in the container.
    pub fn mark_oom(&self) {
        self.oom_seen.store(true, Ordering::Release);
    }

    /// Whether an OOM kill was reported since the run began (and forgets it).
    pub fn take_oom(&self) -> bool {
        self.oom_seen.swap(false, Ordering::AcqRel)
    }

    /// The console printed a done string: the server is up (`starting` → `running`).
    pub fn mark_done(&self) {
        self.done_seen.store(true, Ordering::Release);
        self.observe(Trigger::Done, Change::default());
    }

    /// What Docker showing the container running means for the state: `running`, unless
    /// the egg names done strings and none was printed yet in this run (`starting`).
    pub fn run_trigger(&self) -> Trigger {
        if self.extras.done.is_empty() || self.done_seen.load(Ordering::Acquire) {
            Trigger::Run
        } else {
            Trigger::Boot
        }
    }

    /// Takes the power lock, or `None` when another power action holds it.
    pub fn try_power(&self) -> Option<PowerGuard<'_>> {
        self.busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| PowerGuard(&self.busy))
    }

    pub fn expect_exit(&self, why: Expected) {
        *self.expected.lock() = Some(why);
    }

    pub fn clear_expected(&self) {
        *self.expected.lock() = None;
    }

    /// Whether an exit is expected and its event not yet processed.
    pub fn expecting(&self) -> bool {
        self.expected.lock().is_some()
    }

    pub fn take_expected(&self) -> Option<Expected> {
        self.expected.lock().take()
    }

    /// Applies `trigger` to the state (see `state.rs`), emitting one status event when the
    /// state changes. Returns whether it changed; a trigger the table does not allow from
    /// the current state is an error and changes nothing.
    pub fn apply(&self, trigger: Trigger, change: Change) -> Result<bool, ServerError> {
        let (previous, current) = {
            let mut state = self.state.lock();
            let step = state::next(*state, trigger).map_err(|source| ServerError::Transition {
                server_id: self.id.clone(),
                source,
            })?;
            match step {
                Step::Stay => return Ok(false),
                Step::To(next) => (std::mem::replace(&mut *state, next), next),
            }
        };
        self.emit_status(previous, current, change);
        Ok(true)
    }

    /// [`Server::apply`] for Docker's reports, which nobody waits on: an illegal transition
    /// is logged and otherwise ignored.
    pub fn observe(&self, trigger: Trigger, change: Change) {
        if let Err(e) = self.apply(trigger, change) {
            log::warn!("{e}");
        }
    }

    fn emit_status(&self, previous: ServerState, current: ServerState, change: Change) {
        log::info!(
            "server {}: {} -> {}{}",
            self.id,
            previous.as_str(),
            current.as_str(),
            change
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        self.emit(EventKind::ServerStatusChanged(StatusChanged {
            server_id: Cow::Owned(self.id.clone()),
            previous_status: previous,
            current_status: current,
            pid: change.pid,
            exit_code: change.exit_code,
            oom_killed: change.oom_killed,
            reason: change.reason.map(|r| Cow::Owned(super::cut(r, MAX_REASON))),
        }));
    }

    /// Queues an event for the panel; console lines are also kept in the history.
    pub fn emit(&self, kind: EventKind<'static>) {
        let event = event(&self.agent_id, &self.id, kind);
        if let EventKind::ServerLog(line) = &event.kind {
            self.history
                .push(&event.timestamp, &line.log_level, &line.message);
        }
        self.outbox.push(event);
    }

    /// One line from the agent on the server's console (a `server_log` without a stream),
    /// also written to the agent's log.
    pub fn say(&self, level: &'static str, message: String) {
        log::warn!("server {}: {message}", self.id);
        self.emit(EventKind::ServerLog(ServerLog {
            server_id: Cow::Owned(self.id.clone()),
            log_level: Cow::Borrowed(level),
            message: Cow::Owned(message),
            stream: None,
            dropped: None,
        }));
    }

    pub fn set_install_task(&self, task: Task<()>) {
        self.tasks.lock().install = Some(task);
    }

    /// Abandons the install under way, if any (the server is being deleted).
    pub fn cancel_install(&self) {
        let task = self.tasks.lock().install.take();
        drop(task);
    }

    /// Whether an install task of this agent is under way.
    pub fn has_install_task(&self) -> bool {
        self.tasks
            .lock()
            .install
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    pub fn set_console_task(&self, task: Task<()>) {
        self.tasks.lock().console = Some(task);
    }

    pub fn set_stats_task(&self, task: Task<()>) {
        self.tasks.lock().stats = Some(task);
    }

    pub fn set_disk_task(&self, task: Task<()>) {
        self.tasks.lock().disk = Some(task);
    }

    pub fn has_disk_task(&self) -> bool {
        self.tasks
            .lock()
            .disk
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    pub fn has_stats_task(&self) -> bool {
        self.tasks
            .lock()
            .stats
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Stops resource sampling and the disk watch (the container stopped). The console
    /// task ends by itself when the output stream closes, so the last lines are not lost.
    pub fn stop_stats(&self) {
        let tasks = {
            let mut t = self.tasks.lock();
            (t.stats.take(), t.disk.take())
        };
        drop(tasks);
        self.stats.clear();
    }

    /// Cancels everything (the server is being deleted or the manager dropped).
    pub fn cancel_tasks(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock());
        drop(tasks);
        self.stats.clear();
        self.console.mark_dead();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel_tasks();
    }
}

/// An event stamped now, naming the agent and the server at the top level too.
pub fn event(agent_id: &str, server_id: &str, kind: EventKind<'static>) -> Event<'static> {
    Event {
        id: None,
        timestamp: Cow::Owned(proto::time::now_rfc3339()),
        agent_id: Some(Cow::Owned(agent_id.to_owned())),
        server_id: Some(Cow::Owned(server_id.to_owned())),
        kind,
    }
}
