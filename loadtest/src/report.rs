//! The run's results: printed as a summary and written as JSON (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::LatencySummary;
use crate::threads::{self, ThreadBusy};

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub panel: String,
    pub run_id: String,
    /// Seconds of the measured phase (events and commands).
    pub measured_secs: f64,
    pub agents: AgentsReport,
    pub commands: CommandsReport,
    pub events: EventsReport,
    /// `--filtered-subscribers`: each receives its one server's events.
    pub filtered: Option<FilteredReport>,
    /// `--login-rate`.
    pub logins: Option<LoginsReport>,
    pub panel_process: Option<PanelReport>,
    /// loadtest's own footprint: it shares the machine with the panel.
    pub loadtest_process: Option<SelfReport>,
    pub storm: Option<StormReport>,
    /// Every error, by kind (`connect.rejected_401`, `command.http_504_TIMEOUT`, ...).
    pub errors: BTreeMap<String, u64>,
    /// One sample per second of the whole run.
    pub timeline: Vec<Second>,
}

/// Browser logins during the measured phase.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginsReport {
    pub rate: f64,
    /// Users created to log in with (0: the panel has no users routes, see `errors`).
    pub users: usize,
    pub issued: u64,
    pub ok: u64,
    pub failed: u64,
    pub skipped: u64,
    pub rtt_ms: LatencySummary,
}

/// What the subscribers filtered to one server each received, summed over them.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilteredReport {
    pub subscribers: usize,
    /// Events their servers' agents sent.
    pub expected: u64,
    pub delivered: u64,
    /// Per subscriber expected − delivered, summed.
    pub lost: u64,
    /// Events of this run from other servers that reached them (the filter, or with users
    /// the rights check, leaked): must be 0.
    pub misrouted: u64,
    /// Frames that are not events of this run (other runs, agent-level events).
    pub foreign: u64,
    /// `session`, `key` or `admin` (`--subscriber-auth`).
    pub auth: &'static str,
    /// `--rights-only`: no `?serverId=` filter, the users' rights alone routed the events.
    pub rights_only: bool,
    /// Users created for the subscribers (one each; 0 with the admin token).
    pub users_created: usize,
    /// Subscribers whose user could not be set up (not started; see `errors`).
    pub setup_failed: usize,
    /// Of `users_created`, deleted after the run.
    pub users_deleted: usize,
    pub duplicates: u64,
    /// Frames the panel dropped for slow subscribers during the run (all subscribers).
    pub panel_dropped: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentsReport {
    pub requested: usize,
    pub registered: usize,
    pub reused: usize,
    /// Connected at the end of the connect phase.
    pub connected: u64,
    /// Requested but not connected at the end of the connect phase.
    pub failed: u64,
    pub connect_phase_secs: f64,
    /// From TCP connect to the 101 answer, every successful connect of the connect phase.
    pub connect_ms: LatencySummary,
    pub connect_attempts_failed: u64,
    /// Connections lost during the run (not counting storm and stop).
    pub disconnects: u64,
    pub pings_answered: u64,
    pub commands_answered: u64,
    /// Agents with a server (they emit the events and receive the commands).
    pub with_server: usize,
    /// Error responses the panel sent to agents, by code.
    pub panel_errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandsReport {
    pub rate: f64,
    pub issued: u64,
    pub ok: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Round trip operator → panel → agent → panel → operator, successful commands.
    pub rtt_ms: LatencySummary,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsReport {
    pub rate: f64,
    pub log_bytes: usize,
    pub subscribers: usize,
    pub sent: u64,
    /// Per subscriber: events of this run received (first copy).
    pub delivered: Vec<u64>,
    /// Summed over subscribers: sent − delivered.
    pub lost: u64,
    pub duplicates: u64,
    pub send_failed: u64,
    pub sent_per_sec: f64,
    /// Lowest over subscribers.
    pub delivered_per_sec: f64,
    pub lost_per_sec: f64,
    pub loss_by_cause: LossByCause,
}

/// Where lost events went, from the panel's counters (deltas over the run).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LossByCause {
    /// Refused by the per-agent rate limit (lost for every subscriber).
    pub rate_limited: u64,
    /// Dropped from a full subscriber queue.
    pub slow_subscriber: u64,
    /// Everything else: refused frames, broken sockets, unexplained.
    pub error: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PanelReport {
    pub pid: u32,
    pub rss_before_agents_bytes: u64,
    pub rss_connected_bytes: u64,
    /// RSS with every agent connected (idle), divided by the agents connected.
    pub rss_per_agent_bytes: u64,
    /// (RSS connected − RSS before any agent connected) / agents connected.
    pub rss_per_agent_above_baseline_bytes: u64,
    pub rss_peak_bytes: u64,
    /// Panel CPU time during the measured phase per 1,000 events sent (includes commands
    /// and heartbeats handled meanwhile).
    pub cpu_ms_per_1k_events: Option<f64>,
    /// Average panel CPU during the measured phase, percent of one core.
    pub cpu_percent_measured: f64,
    /// Its busiest threads in the measured phase: CPU and waiting for a CPU.
    pub threads: Vec<ThreadBusy>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelfReport {
    /// With every agent connected.
    pub rss_connected_bytes: u64,
    /// Average CPU during the measured phase, percent of one core (all threads).
    pub cpu_percent_measured: f64,
    /// Its busiest threads in the measured phase: CPU and waiting for a CPU.
    pub threads: Vec<ThreadBusy>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StormReport {
    pub agents: u64,
    pub recovered: u64,
    /// Not back when the storm wait ended.
    pub not_recovered: u64,
    pub recovery_secs: f64,
    pub reconnect_ms: LatencySummary,
    pub connect_attempts_failed: u64,
    pub peak_cpu_percent: f64,
    pub peak_rss_bytes: u64,
    /// loadtest's own average CPU during the recovery (its one agents thread does every
    /// client TLS handshake, so near 100% means loadtest, not the panel, set the pace).
    pub loadtest_cpu_percent: f64,
    /// Panel CPU (user + system) from the drop to the recovery, per agent back: what one
    /// reconnect (TLS handshake, upgrade, JWT check, attach) costs the panel.
    pub panel_cpu_ms_per_reconnect: Option<f64>,
    /// The same for loadtest (the client side of every handshake).
    pub loadtest_cpu_ms_per_reconnect: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Second {
    pub t: f64,
    pub phase: &'static str,
    pub connected: u64,
    pub events_sent: u64,
    pub events_delivered: u64,
    pub commands_ok: u64,
    pub panel_cpu_percent: Option<f64>,
    pub panel_rss_bytes: Option<u64>,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn lat(l: &LatencySummary) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms (n={})",
        l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
    )
}

impl Report {
    /// The human summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let a = &self.agents;
        let _ = writeln!(s, "== loadtest {} against {}", self.run_id, self.panel);
        let _ = writeln!(
            s,
            "agents: {} requested ({} registered, {} reused), {} connected, {} failed, in {:.1} s",
            a.requested, a.registered, a.reused, a.connected, a.failed, a.connect_phase_secs
        );
        let _ = writeln!(s, "connect: {}", lat(&a.connect_ms));
        let _ = writeln!(
            s,
            "agents answered {} pings and {} commands; {} disconnects; {} failed connect attempts",
            a.pings_answered, a.commands_answered, a.disconnects, a.connect_attempts_failed
        );
        let c = &self.commands;
        if c.issued > 0 {
            let _ = writeln!(
                s,
                "commands: {} issued at {}/s, {} ok, {} failed, {} skipped; rtt {}",
                c.issued,
                c.rate,
                c.ok,
                c.failed,
                c.skipped,
                lat(&c.rtt_ms)
            );
        }
        let e = &self.events;
        if e.sent > 0 || e.rate > 0.0 {
            let _ = writeln!(
                s,
                "events: {} sent ({:.0}/s), delivered {:?} (min {:.0}/s) to {} subscriber(s), \
                 {} lost ({:.1}/s: rate limited {}, slow subscriber {}, error {}), {} duplicates",
                e.sent,
                e.sent_per_sec,
                e.delivered,
                e.delivered_per_sec,
                e.subscribers,
                e.lost,
                e.lost_per_sec,
                e.loss_by_cause.rate_limited,
                e.loss_by_cause.slow_subscriber,
                e.loss_by_cause.error,
                e.duplicates
            );
        }
        if let Some(p) = &self.panel_process {
            let _ = writeln!(
                s,
                "panel pid {}: RSS {:.1} MiB before agents, {:.1} MiB connected, {:.1} KiB per agent \
                 ({:.1} KiB above baseline), peak {:.1} MiB; CPU {:.0}% during the measured phase{}",
                p.pid,
                mib(p.rss_before_agents_bytes),
                mib(p.rss_connected_bytes),
                p.rss_per_agent_bytes as f64 / 1024.0,
                p.rss_per_agent_above_baseline_bytes as f64 / 1024.0,
                mib(p.rss_peak_bytes),
                p.cpu_percent_measured,
                p.cpu_ms_per_1k_events
                    .map(|m| format!(", {m:.2} ms CPU per 1k events"))
                    .unwrap_or_default()
            );
            if !p.threads.is_empty() {
                let _ = writeln!(
                    s,
                    "panel threads (CPU / waiting for a CPU, % of the measured phase): {}",
                    threads::describe(&p.threads)
                );
            }
        }
        if let Some(me) = &self.loadtest_process {
            let _ = writeln!(
                s,
                "loadtest itself: RSS {:.1} MiB with the crowd connected, CPU {:.0}% during the \
                 measured phase",
                mib(me.rss_connected_bytes),
                me.cpu_percent_measured
            );
            if !me.threads.is_empty() {
                let _ = writeln!(
                    s,
                    "loadtest threads (CPU / waiting for a CPU, % of the measured phase): {}",
                    threads::describe(&me.threads)
                );
            }
        }
        if let Some(f) = &self.filtered {
            let _ = writeln!(
                s,
                "filtered subscribers ({}{}): {} expected {} delivered {} lost {} misrouted {} \
                 foreign {} duplicates {}; the panel dropped {} for slow subscribers; \
                 users created {} deleted {}, set-ups failed {}",
                f.auth,
                if f.rights_only { ", rights only" } else { "" },
                f.subscribers,
                f.expected,
                f.delivered,
                f.lost,
                f.misrouted,
                f.foreign,
                f.duplicates,
                f.panel_dropped,
                f.users_created,
                f.users_deleted,
                f.setup_failed
            );
        }
        if let Some(l) = &self.logins {
            let _ = writeln!(
                s,
                "logins: {}/s over {} users: {} issued, {} ok, {} failed, {} skipped; {}",
                l.rate,
                l.users,
                l.issued,
                l.ok,
                l.failed,
                l.skipped,
                lat(&l.rtt_ms)
            );
        }
        if let Some(st) = &self.storm {
            let _ = writeln!(
                s,
                "storm: {}/{} agents back in {:.2} s ({} not recovered); reconnect {}; \
                 peak panel CPU {:.0}%, peak RSS {:.1} MiB; loadtest CPU {:.0}%; \
                 CPU per reconnect: panel {}, loadtest {}",
                st.recovered,
                st.agents,
                st.recovery_secs,
                st.not_recovered,
                lat(&st.reconnect_ms),
                st.peak_cpu_percent,
                mib(st.peak_rss_bytes),
                st.loadtest_cpu_percent,
                ms(st.panel_cpu_ms_per_reconnect),
                ms(st.loadtest_cpu_ms_per_reconnect)
            );
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "errors: {:?}", self.errors);
        }
        s
    }
}

/// `1.23 ms`, or `n/a`.
fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.3} ms"))
}
