//! One loadtest run, start to finish: register (or reuse) agents, connect the crowd, create
//! their servers, open subscribers, measure events and commands for `--duration`, drain,
//! optionally storm, stop, and build the [`Report`].
//!
//! Threads: the crowd runs on its own executor thread ([`crate::fleet`]), the command and
//! login drivers on another ([`crate::operators`]); this controller and the subscribers
//! share the calling thread's executor.

use std::future::Future;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::agents_file::{AgentsFile, SavedAgent};
use crate::commands::RequestStats;
use crate::config::Config;
use crate::fleet::{self, AgentIdent, Control, FleetConfig, FleetStats};
use crate::logins::{self, LoginUser};
use crate::metrics::{self, Scrape};
use crate::operators::{self, Operators};
use crate::procfs::{self, ProcSample};
use crate::report::{
    AgentsReport, CommandsReport, EventsReport, FilteredReport, LoginsReport, LossByCause,
    PanelReport, Report, Second, StormReport,
};
use crate::rlimit;
use crate::sim::server_id_for;
use crate::stats::{Errors, LatencySummary};
use crate::subscriber::{self, SubStats};
use crate::threads;
use crate::viewers::{self, SubscriberAuth};
use ctrl_io::{ClientError, Rest, Scheme, Url};

/// Threads reported per process (the busiest, by CPU + waiting for a CPU).
const BUSIEST_THREADS: usize = 3;

/// Why a run could not be carried out (as opposed to what it measured).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Setup(String),
    #[error("{context}: {source}")]
    Client {
        context: String,
        #[source]
        source: ClientError,
    },
}

fn ctx(context: impl Into<String>) -> impl FnOnce(ClientError) -> RunError {
    let context = context.into();
    move |source| RunError::Client { context, source }
}

/// How long the crowd may take to connect before the run goes on without the missing ones.
fn connect_deadline(cfg: &Config) -> Duration {
    let paced = if cfg.connect_rate > 0.0 {
        cfg.agents as f64 / cfg.connect_rate
    } else {
        0.0
    };
    Duration::from_secs_f64(60.0 + paced)
}

/// Longest wait for a storm to recover.
const STORM_WAIT: Duration = Duration::from_secs(120);
/// Registration and server creation requests in flight.
const SETUP_CONCURRENCY: usize = 32;

/// Runs the whole test on the calling thread (plus the crowd's thread).
pub fn run(cfg: Config) -> Result<Report, RunError> {
    let (soft, hard) = rlimit::raise_nofile()
        .map_err(|e| RunError::Setup(format!("cannot raise RLIMIT_NOFILE: {e}")))?;
    let need = cfg.agents as u64 + rlimit::RESERVED_FDS;
    if soft < need {
        return Err(RunError::Setup(format!(
            "{} agents need about {need} open files but the limit is {soft} (hard {hard}); \
             raise the hard limit (e.g. `ulimit -Hn {need}` as root, or LimitNOFILE=) and retry",
            cfg.agents
        )));
    }
    let ex = Rc::new(smol::LocalExecutor::new());
    smol::block_on(ex.run(Run::new(cfg, ex.clone())?.go()))
}

/// Panel process readings.
struct PanelProc {
    pid: u32,
    ticks_per_sec: u64,
    last: Option<(Instant, ProcSample)>,
    peak_rss: u64,
}

impl PanelProc {
    fn sample(&mut self) -> Option<(ProcSample, Option<f64>)> {
        let s = procfs::sample(self.pid).ok()?;
        let now = Instant::now();
        self.peak_rss = self.peak_rss.max(s.rss_bytes);
        let cpu = self.last.and_then(|(t, prev)| {
            let dt = now.duration_since(t).as_secs_f64();
            (dt > 0.0).then(|| {
                (s.cpu_ticks.saturating_sub(prev.cpu_ticks)) as f64 / self.ticks_per_sec as f64 / dt
                    * 100.0
            })
        });
        self.last = Some((now, s));
        Some((s, cpu))
    }
}

struct Run {
    cfg: Config,
    ex: Rc<smol::LocalExecutor<'static>>,
    tls: Arc<rustls::ClientConfig>,
    rest: Arc<Rest>,
    errors: Arc<Errors>,
    started: Instant,
    timeline: Vec<Second>,
    panel: Option<PanelProc>,
    run_id: String,
}

impl Run {
    fn new(cfg: Config, ex: Rc<smol::LocalExecutor<'static>>) -> Result<Run, RunError> {
        let tls = ctrl_io::tls_config(cfg.ca_cert.as_deref()).map_err(ctx("TLS setup"))?;
        let rest = Rest::new(&cfg.panel, tls.clone())
            .map_err(ctx("--panel"))?
            .with_user_agent("ctrl-loadtest")
            .with_timeout(Duration::from_secs(40));
        let port = Url::parse_as(&cfg.panel, Scheme::Https)
            .map_err(ctx("--panel"))?
            .port;
        let pid = cfg.panel_pid.or_else(|| procfs::find_pid_by_port(port));
        let panel = pid.map(|pid| PanelProc {
            pid,
            ticks_per_sec: procfs::ticks_per_sec(),
            last: None,
            peak_rss: 0,
        });
        Ok(Run {
            cfg,
            ex,
            tls,
            rest: Arc::new(rest),
            errors: Arc::new(Errors::default()),
            started: Instant::now(),
            timeline: Vec::new(),
            panel,
            run_id: format!("r{:08x}", fastrand::u32(..)),
        })
    }

    fn progress(&self, line: &str) {
        if !self.cfg.quiet {
            eprintln!("[{:7.1}s] {line}", self.started.elapsed().as_secs_f64());
        }
    }

    /// Runs `f` over `items` with at most `n` in flight on this thread's executor.
    async fn parallel<T, R, F, Fut>(&self, items: Vec<T>, n: usize, f: F) -> Vec<R>
    where
        T: 'static,
        R: 'static,
        F: Fn(T) -> Fut + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let total = items.len();
        let (tx, rx) = async_channel::unbounded();
        for (i, item) in items.into_iter().enumerate() {
            let _ = tx.try_send((i, item));
        }
        drop(tx);
        let f = Rc::new(f);
        let results = Rc::new(std::cell::RefCell::new(Vec::with_capacity(total)));
        let workers: Vec<_> = (0..n.max(1))
            .map(|_| {
                let (rx, f, results) = (rx.clone(), f.clone(), results.clone());
                self.ex.spawn(async move {
                    while let Ok((i, item)) = rx.recv().await {
                        let r = f(item).await;
                        results.borrow_mut().push((i, r));
                    }
                })
            })
            .collect();
        for w in workers {
            w.await;
        }
        let mut results = std::mem::take(&mut *results.borrow_mut());
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, r)| r).collect()
    }

    async fn go(mut self) -> Result<Report, RunError> {
        let cfg = self.cfg.clone();
        let (status, _) = self
            .rest
            .json("GET", "/healthz", None, None)
            .await
            .map_err(ctx(format!("panel {} unreachable", cfg.panel)))?;
        if status != 200 {
            return Err(RunError::Setup(format!(
                "panel {} answered /healthz with HTTP {status}",
                cfg.panel
            )));
        }
        match &self.panel {
            Some(p) => self.progress(&format!("panel pid {}", p.pid)),
            None => self.progress("panel process not found on this host: no RSS/CPU figures"),
        }

        // 1. Agents: reuse the saved set, register the rest.
        let (saved, registered, reused) = self.agents().await?;
        let mut report = Report {
            panel: cfg.panel.clone(),
            run_id: self.run_id.clone(),
            ..Report::default()
        };
        // The filtered subscribers' users, while the panel is idle (two Argon2id hashes per
        // user), and before the baseline RSS (the hashing threads keep their 19 MiB each).
        let (accounts, viewer_users) = self.accounts().await;
        let before_agents = self.panel.as_mut().and_then(|p| p.sample()).map(|s| s.0);

        // 2. The crowd.
        let ready: Arc<Vec<AtomicBool>> =
            Arc::new((0..cfg.agents).map(|_| AtomicBool::new(false)).collect());
        let sent_by_agent: Arc<Vec<AtomicU64>> =
            Arc::new((0..cfg.agents).map(|_| AtomicU64::new(0)).collect());
        let idents: Vec<AgentIdent> = saved
            .iter()
            .enumerate()
            .map(|(index, a)| AgentIdent {
                index,
                name: a.name.clone(),
                id: a.id.clone(),
                token: a.token.clone(),
                server_id: (index < cfg.servers).then(|| server_id_for(&a.name)),
            })
            .collect();
        let fleet_stats = Arc::new(FleetStats {
            errors: self.errors.clone(),
            ..FleetStats::default()
        });
        let control = Arc::new(Control::default());
        let fleet_cfg = FleetConfig {
            ws_url: self.rest.wss_url("/ws/agents"),
            tls: if cfg.no_resumption {
                let mut full = (*self.tls).clone();
                full.resumption = rustls::client::Resumption::disabled();
                Arc::new(full)
            } else {
                self.tls.clone()
            },
            resume: !cfg.no_resumption,
            run: self.run_id.clone(),
            events_per_agent: if cfg.servers > 0 {
                cfg.events_per_sec / cfg.servers as f64
            } else {
                0.0
            },
            log_bytes: cfg.log_bytes,
            connect_rate: cfg.connect_rate,
            ready: ready.clone(),
            sent_by_agent: sent_by_agent.clone(),
        };
        let fleet_thread = fleet::spawn(
            idents.clone(),
            fleet_cfg,
            cfg.agent_threads,
            fleet_stats.clone(),
            control.clone(),
        )
        .map_err(|e| RunError::Setup(format!("cannot start the agents thread: {e}")))?;
        let connect_started = Instant::now();
        let deadline = connect_deadline(&cfg);
        let mut last_print = Instant::now();
        while fleet_stats.connected.get() < cfg.agents as u64
            && connect_started.elapsed() < deadline
        {
            async_io::Timer::after(Duration::from_millis(100)).await;
            if last_print.elapsed() >= Duration::from_secs(1) {
                last_print = Instant::now();
                self.tick("connect", &fleet_stats, &[], None);
                self.progress(&format!(
                    "connecting: {}/{} connected, {} failed attempts",
                    fleet_stats.connected.get(),
                    cfg.agents,
                    fleet_stats.connect_failures.get()
                ));
            }
        }
        let connected = fleet_stats.connected.get();
        report.agents = AgentsReport {
            requested: cfg.agents,
            registered,
            reused,
            connected,
            failed: cfg.agents as u64 - connected.min(cfg.agents as u64),
            connect_phase_secs: connect_started.elapsed().as_secs_f64(),
            connect_ms: fleet_stats.connect_latency.summary(),
            with_server: 0,
            ..AgentsReport::default()
        };
        self.progress(&format!(
            "{connected}/{} agents connected in {:.1} s",
            cfg.agents, report.agents.connect_phase_secs
        ));

        // RSS with the crowd connected and idle (after a moment to settle).
        async_io::Timer::after(Duration::from_secs(2)).await;
        let connected_sample = self.panel.as_mut().and_then(|p| p.sample()).map(|s| s.0);
        let me = std::process::id();
        let self_connected = procfs::sample(me).ok();

        // 3. Servers for the first `servers` agents (their events name them).
        let with_server = self.create_servers(&idents[..cfg.servers], &ready).await;
        report.agents.with_server = with_server.len();
        self.progress(&format!("{} servers ready", with_server.len()));

        // 4. Subscribers.
        let (sub_stop_tx, sub_stop) = async_channel::bounded::<()>(1);
        let sub_stats: Vec<Arc<SubStats>> = (0..cfg.subscribers)
            .map(|_| Arc::new(SubStats::default()))
            .collect();
        let mut sub_tasks: Vec<_> = sub_stats
            .iter()
            .map(|s| {
                self.ex.spawn(subscriber::run(
                    self.rest.wss_url("/api/events"),
                    self.tls.clone(),
                    subscriber::admin_headers(&cfg.admin_token),
                    subscriber::Tracker::new(&self.run_id, cfg.agents),
                    s.clone(),
                    self.errors.clone(),
                    sub_stop.clone(),
                ))
            })
            .collect();
        // Filtered subscribers: the emitting agents' servers in turn, one subscriber each,
        // each (unless `--subscriber-auth admin`) a user of its own.
        let emitting: Vec<&AgentIdent> = idents[..cfg.servers]
            .iter()
            .filter(|a| ready[a.index].load(Ordering::SeqCst))
            .collect();
        let watched: Vec<usize> = if emitting.is_empty() {
            Vec::new()
        } else {
            (0..cfg.filtered_subscribers)
                .map(|k| emitting[k % emitting.len()].index)
                .collect()
        };
        let (credentials, setup_failed) = self.grants(accounts, &idents, &watched).await;
        let filtered: Vec<(usize, Arc<SubStats>)> = watched
            .iter()
            .zip(&credentials)
            .filter(|(_, c)| c.is_some())
            .map(|(i, _)| (*i, Arc::default()))
            .collect();
        for ((index, stats), headers) in filtered.iter().zip(credentials.into_iter().flatten()) {
            let server = idents[*index].server_id.as_deref().unwrap_or_default();
            sub_tasks.push(self.ex.spawn(subscriber::run(
                self.rest.wss_url(&if cfg.rights_only {
                    "/api/events".to_owned()
                } else {
                    format!("/api/events?serverId={server}")
                }),
                self.tls.clone(),
                headers,
                subscriber::Tracker::only(&self.run_id, cfg.agents, *index),
                stats.clone(),
                self.errors.clone(),
                sub_stop.clone(),
            )));
        }
        let sub_wait = Instant::now();
        while !(sub_stats.iter().all(|s| s.connected.load(Ordering::SeqCst))
            && filtered
                .iter()
                .all(|(_, s)| s.connected.load(Ordering::SeqCst)))
            && sub_wait.elapsed() < Duration::from_secs(60)
        {
            async_io::Timer::after(Duration::from_millis(50)).await;
        }
        // Give the panel a moment to register the subscriptions behind the 101.
        async_io::Timer::after(Duration::from_millis(200)).await;

        // Users to log in with (`--login-rate`).
        let login_users = if cfg.login_rate > 0.0 {
            match logins::create_users(
                &self.rest,
                &cfg.admin_token,
                &self.run_id,
                logins::LOGIN_USERS,
            )
            .await
            {
                Ok(users) => users,
                Err(logins::Unavailable::NoUsersRoutes) => {
                    self.errors.add("login.no_users_routes");
                    Vec::new()
                }
                Err(logins::Unavailable::Failed(kind)) => {
                    self.errors.add(kind);
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };

        // 5. Measured phase.
        let scrape_before = self.scrape().await;
        let measured_sample = self.panel.as_mut().and_then(|p| p.sample()).map(|s| s.0);
        let self_measured = procfs::sample(me).ok();
        let panel_pid = self.panel.as_ref().map(|p| p.pid);
        let threads_measured = (
            panel_pid.and_then(|p| threads::sample(p).ok()),
            threads::sample(me).ok(),
        );
        let (cmd_stop_tx, cmd_stop) = async_channel::bounded::<()>(1);
        let cmd_stats = Arc::new(RequestStats::default());
        let login_stats = Arc::new(RequestStats::default());
        let operators_thread = operators::spawn(Operators {
            rest: self.rest.clone(),
            admin_token: cfg.admin_token.clone(),
            servers: with_server,
            command_rate: cfg.command_rate,
            users: login_users.clone(),
            login_rate: cfg.login_rate,
            commands: cmd_stats.clone(),
            logins: login_stats.clone(),
            errors: self.errors.clone(),
            stop: cmd_stop,
        })
        .map_err(|e| RunError::Setup(format!("cannot start the operators thread: {e}")))?;
        control.set_emitting(true);
        let measure_start = Instant::now();
        while measure_start.elapsed() < cfg.duration {
            let left = cfg.duration.saturating_sub(measure_start.elapsed());
            async_io::Timer::after(left.min(Duration::from_secs(1))).await;
            self.tick("measure", &fleet_stats, &sub_stats, Some(&cmd_stats));
            let s = self.timeline.last().cloned().unwrap_or_default();
            self.progress(&format!(
                "connected {} | events sent {} delivered {} | commands ok {} failed {} | panel {}",
                s.connected,
                s.events_sent,
                s.events_delivered,
                cmd_stats.ok.get(),
                cmd_stats.failed.get(),
                s.panel_cpu_percent
                    .map(|c| format!(
                        "CPU {c:.0}% RSS {:.1} MiB",
                        s.panel_rss_bytes.unwrap_or(0) as f64 / 1048576.0
                    ))
                    .unwrap_or_else(|| "n/a".into())
            ));
        }
        control.set_emitting(false);
        // Never zero: rates are divided by it (`--duration 0` only registers and connects).
        let measured_secs = measure_start.elapsed().as_secs_f64().max(1e-3);
        let after_measure = self.panel.as_mut().and_then(|p| p.sample()).map(|s| s.0);
        let self_after = procfs::sample(me).ok();
        let threads_after = (
            panel_pid.and_then(|p| threads::sample(p).ok()),
            threads::sample(me).ok(),
        );
        let busiest = |before: &Option<Vec<_>>, after: &Option<Vec<_>>| match (before, after) {
            (Some(b), Some(a)) => threads::busiest(b, a, measured_secs, BUSIEST_THREADS),
            _ => Vec::new(),
        };
        let panel_threads = busiest(&threads_measured.0, &threads_after.0);
        let self_threads = busiest(&threads_measured.1, &threads_after.1);
        drop(cmd_stop_tx);

        // 6. Drain: wait for the last events and the commands in flight.
        let drain_start = Instant::now();
        let mut last_progress = (Instant::now(), 0u64);
        loop {
            if fleet_stats.sending.get() > 0 && drain_start.elapsed() < Duration::from_secs(10) {
                async_io::Timer::after(Duration::from_millis(10)).await;
                continue;
            }
            let sent = fleet_stats.events_sent.get();
            // Progress counts the filtered subscribers too (they may be the only ones).
            let delivered: u64 = sub_stats
                .iter()
                .chain(filtered.iter().map(|(_, s)| s))
                .map(|s| s.delivered.get())
                .sum();
            let done_events = sub_stats.iter().all(|s| s.delivered.get() >= sent)
                && filtered
                    .iter()
                    .all(|(i, s)| s.delivered.get() >= sent_by_agent[*i].load(Ordering::Relaxed));
            let done_cmds = cmd_stats.in_flight.get() == 0 && login_stats.in_flight.get() == 0;
            if done_events && done_cmds {
                break;
            }
            if delivered != last_progress.1 {
                last_progress = (Instant::now(), delivered);
            }
            let stalled = last_progress.0.elapsed() > Duration::from_secs(3);
            if (stalled && done_cmds) || drain_start.elapsed() > Duration::from_secs(45) {
                break;
            }
            async_io::Timer::after(Duration::from_millis(100)).await;
        }
        // The drain saw the requests answered (or gave up); the thread follows at once, or
        // after its own cap.
        if !smol::unblock(move || operators_thread.join().is_ok()).await {
            self.errors.add("stop.operators_thread_panicked");
        }
        let scrape_after = self.scrape().await;

        // Events and commands.
        let sent = fleet_stats.events_sent.get();
        let delivered: Vec<u64> = sub_stats.iter().map(|s| s.delivered.get()).collect();
        let lost: u64 = delivered.iter().map(|d| sent.saturating_sub(*d)).sum();
        let delta = |f: fn(&Scrape) -> f64| match (&scrape_before, &scrape_after) {
            (Some(a), Some(b)) => (f(b) - f(a)).max(0.0) as u64,
            _ => 0,
        };
        let rate_limited = (delta(metrics::agent_rate_limited) * cfg.subscribers as u64).min(lost);
        let slow = delta(metrics::subscriber_drops).min(lost - rate_limited);
        report.events = EventsReport {
            rate: cfg.events_per_sec,
            log_bytes: cfg.log_bytes,
            subscribers: cfg.subscribers,
            sent,
            delivered: delivered.clone(),
            lost,
            duplicates: sub_stats.iter().map(|s| s.duplicates.get()).sum(),
            send_failed: fleet_stats.events_send_failed.get(),
            sent_per_sec: sent as f64 / measured_secs,
            delivered_per_sec: delivered.iter().copied().min().unwrap_or(0) as f64 / measured_secs,
            lost_per_sec: lost as f64 / measured_secs,
            loss_by_cause: LossByCause {
                rate_limited,
                slow_subscriber: slow,
                error: lost - rate_limited - slow,
            },
        };
        report.filtered = (!watched.is_empty()).then(|| {
            let expected: Vec<u64> = filtered
                .iter()
                .map(|(i, _)| sent_by_agent[*i].load(Ordering::Relaxed))
                .collect();
            let delivered: Vec<u64> = filtered.iter().map(|(_, s)| s.delivered.get()).collect();
            FilteredReport {
                subscribers: filtered.len(),
                expected: expected.iter().sum(),
                delivered: delivered.iter().sum(),
                lost: expected
                    .iter()
                    .zip(&delivered)
                    .map(|(e, d)| e.saturating_sub(*d))
                    .sum(),
                misrouted: filtered.iter().map(|(_, s)| s.misrouted.get()).sum(),
                foreign: filtered.iter().map(|(_, s)| s.foreign.get()).sum(),
                panel_dropped: delta(metrics::subscriber_drops),
                duplicates: filtered.iter().map(|(_, s)| s.duplicates.get()).sum(),
                auth: cfg.subscriber_auth.as_str(),
                rights_only: cfg.rights_only,
                users_created: viewer_users.len(),
                setup_failed,
                users_deleted: 0,
            }
        });
        report.commands = CommandsReport {
            rate: cfg.command_rate,
            issued: cmd_stats.issued.get(),
            ok: cmd_stats.ok.get(),
            failed: cmd_stats.failed.get(),
            skipped: cmd_stats.skipped.get(),
            rtt_ms: cmd_stats.rtt.summary(),
        };
        report.logins = (cfg.login_rate > 0.0).then(|| LoginsReport {
            rate: cfg.login_rate,
            users: login_users.len(),
            issued: login_stats.issued.get(),
            ok: login_stats.ok.get(),
            failed: login_stats.failed.get(),
            skipped: login_stats.skipped.get(),
            rtt_ms: login_stats.rtt.summary(),
        });
        logins::delete_users(&self.rest, &cfg.admin_token, &login_users, &self.errors).await;
        report.measured_secs = measured_secs;
        if let (Some(conn), Some(a), Some(b)) = (self_connected, self_measured, self_after) {
            let cpu =
                b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / procfs::ticks_per_sec() as f64;
            report.loadtest_process = Some(crate::report::SelfReport {
                rss_connected_bytes: conn.rss_bytes,
                cpu_percent_measured: cpu / measured_secs * 100.0,
                threads: self_threads,
            });
        }
        if let (Some(p), Some(base), Some(conn)) = (&self.panel, before_agents, connected_sample) {
            let n = connected.max(1);
            let cpu_secs = match (measured_sample, after_measure) {
                (Some(a), Some(b)) => {
                    b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / p.ticks_per_sec as f64
                }
                _ => 0.0,
            };
            report.panel_process = Some(PanelReport {
                pid: p.pid,
                rss_before_agents_bytes: base.rss_bytes,
                rss_connected_bytes: conn.rss_bytes,
                rss_per_agent_bytes: conn.rss_bytes / n,
                rss_per_agent_above_baseline_bytes: conn.rss_bytes.saturating_sub(base.rss_bytes)
                    / n,
                rss_peak_bytes: p.peak_rss,
                cpu_ms_per_1k_events: (sent > 0)
                    .then(|| cpu_secs * 1000.0 / (sent as f64 / 1000.0)),
                cpu_percent_measured: cpu_secs / measured_secs * 100.0,
                threads: panel_threads,
            });
        }

        // 7. Reconnect storm.
        if cfg.storm {
            report.storm = Some(self.storm(&fleet_stats, &control).await);
        }

        // 8. Stop everything.
        control.stop();
        drop(sub_stop_tx);
        for t in sub_tasks {
            t.await;
        }
        // The viewers' users go once their sockets are closed (deleting a user closes them).
        let deleted =
            logins::delete_users(&self.rest, &cfg.admin_token, &viewer_users, &self.errors).await;
        if let Some(f) = report.filtered.as_mut() {
            f.users_deleted = deleted;
        }
        let joined = smol::unblock(move || fleet_thread.join().is_ok());
        let joined = futures_lite::future::or(async { Some(joined.await) }, async {
            async_io::Timer::after(Duration::from_secs(15)).await;
            None
        })
        .await;
        if joined != Some(true) {
            self.errors.add("stop.agents_thread_not_finished");
        }
        report.agents.connect_attempts_failed = fleet_stats.connect_failures.get();
        report.agents.disconnects = fleet_stats.disconnects.get();
        report.agents.pings_answered = fleet_stats.pings.get();
        report.agents.commands_answered = fleet_stats.commands.get();
        report.agents.panel_errors = fleet_stats.panel_errors.snapshot();
        if let (Some(pp), Some(p)) = (report.panel_process.as_mut(), &self.panel) {
            pp.rss_peak_bytes = pp.rss_peak_bytes.max(p.peak_rss);
        }
        report.errors = self.errors.snapshot();
        report.timeline = std::mem::take(&mut self.timeline);
        if let Some(path) = &cfg.json {
            let json = serde_json::to_vec_pretty(&report).expect("the report serializes");
            std::fs::write(path, json)
                .map_err(|e| RunError::Setup(format!("cannot write {}: {e}", path.display())))?;
        }
        Ok(report)
    }

    /// One timeline sample.
    fn tick(
        &mut self,
        phase: &'static str,
        fleet: &FleetStats,
        subs: &[Arc<SubStats>],
        cmds: Option<&RequestStats>,
    ) {
        let panel = self.panel.as_mut().and_then(|p| p.sample());
        self.timeline.push(Second {
            t: self.started.elapsed().as_secs_f64(),
            phase,
            connected: fleet.connected.get(),
            events_sent: fleet.events_sent.get(),
            events_delivered: subs.iter().map(|s| s.delivered.get()).min().unwrap_or(0),
            commands_ok: cmds.map_or(0, |c| c.ok.get()),
            panel_cpu_percent: panel.and_then(|p| p.1),
            panel_rss_bytes: panel.map(|p| p.0.rss_bytes),
        });
    }

    async fn scrape(&self) -> Option<Scrape> {
        match self
            .rest
            .request("GET", "/metrics", Some(&self.cfg.admin_token), None)
            .await
        {
            Ok((200, body)) => Some(Scrape::parse(&String::from_utf8_lossy(&body))),
            Ok((status, _)) => {
                self.errors.add(format!("metrics.http_{status}"));
                None
            }
            Err(e) => {
                self.errors.add(format!("metrics.{}", e.kind()));
                None
            }
        }
    }

    /// The saved agents (first `agents` of them) plus newly registered ones.
    async fn agents(&mut self) -> Result<(Vec<SavedAgent>, usize, usize), RunError> {
        let cfg = &self.cfg;
        let mut file = match &cfg.agents_file {
            Some(path) => AgentsFile::load(path).map_err(RunError::Setup)?,
            None => None,
        }
        .unwrap_or(AgentsFile {
            panel: cfg.panel.clone(),
            agents: Vec::new(),
        });
        if file.panel.trim_end_matches('/') != cfg.panel.trim_end_matches('/') {
            return Err(RunError::Setup(format!(
                "the agents file was made for panel {}, not {}",
                file.panel, cfg.panel
            )));
        }
        let reused = file.agents.len().min(cfg.agents);
        let missing = cfg.agents - reused;
        if missing > 0 {
            self.progress(&format!("registering {missing} agents"));
            let batch = format!("{:06x}", fastrand::u32(..0x100_0000));
            let names: Vec<String> = (reused..cfg.agents)
                .map(|i| format!("{}-{batch}-{i}", cfg.name_prefix))
                .collect();
            let (rest, token) = (self.rest.clone(), Rc::<str>::from(cfg.admin_token.as_str()));
            let results = self
                .parallel(names, SETUP_CONCURRENCY, move |name| {
                    let (rest, token) = (rest.clone(), token.clone());
                    async move {
                        let r = ctrl_io::register(&rest, &token, &name).await;
                        (name, r)
                    }
                })
                .await;
            for (name, r) in results {
                let agent = r.map_err(ctx(format!("registering agent {name}")))?;
                file.agents.push(SavedAgent {
                    name,
                    id: agent.id,
                    token: agent.token,
                    refresh_token: agent.refresh_token,
                });
            }
            if let Some(path) = &self.cfg.agents_file {
                file.save(path).map_err(RunError::Setup)?;
                self.progress(&format!(
                    "saved {} agents to {}",
                    file.agents.len(),
                    path.display()
                ));
            }
        }
        let mut agents = file.agents;
        agents.truncate(self.cfg.agents);
        Ok((agents, missing, reused))
    }

    fn viewer_setup(&self) -> Rc<viewers::Setup> {
        let url = Url::parse_as(&self.cfg.panel, Scheme::Https).expect("checked in Run::new");
        Rc::new(viewers::Setup {
            rest: self.rest.clone(),
            admin_token: self.cfg.admin_token.clone(),
            auth: self.cfg.subscriber_auth,
            origin: format!("https://{}", url.authority()),
            url,
            errors: self.errors.clone(),
        })
    }

    /// The users of the filtered subscribers, created and logged in ([`viewers`]) before the
    /// crowd connects: `None` for one that could not be set up (counted in `errors`). Also
    /// every user created (to delete afterwards). Nothing with the admin token.
    async fn accounts(&self) -> (Vec<Option<viewers::Viewer>>, Vec<LoginUser>) {
        let n = self.cfg.filtered_subscribers;
        if self.cfg.subscriber_auth == SubscriberAuth::Admin || n == 0 {
            return (Vec::new(), Vec::new());
        }
        self.progress(&format!(
            "creating {n} users for the filtered subscribers ({})",
            self.cfg.subscriber_auth.as_str()
        ));
        let started = Instant::now();
        let (setup, run) = (self.viewer_setup(), Rc::<str>::from(self.run_id.as_str()));
        let results = self
            .parallel((0..n).collect(), viewers::SETUP_CONCURRENCY, move |k| {
                let (setup, run) = (setup.clone(), run.clone());
                async move { setup.account(&run, k).await }
            })
            .await;
        let (mut accounts, mut users) = (Vec::new(), Vec::new());
        for r in results {
            match r {
                Ok(v) => {
                    users.push(v.user.clone());
                    accounts.push(Some(v));
                }
                Err((user, kind)) => {
                    self.errors.add(kind);
                    users.extend(user);
                    accounts.push(None);
                }
            }
        }
        self.progress(&format!(
            "{} users logged in in {:.1} s",
            accounts.iter().flatten().count(),
            started.elapsed().as_secs_f64()
        ));
        (accounts, users)
    }

    /// For each watched agent index, the credential headers of its filtered subscriber: the
    /// admin token's, or its user's once that user is a subuser of exactly that server;
    /// `None` when the user could not be set up. Also how many set-ups failed.
    async fn grants(
        &self,
        accounts: Vec<Option<viewers::Viewer>>,
        idents: &[AgentIdent],
        watched: &[usize],
    ) -> (Vec<Option<Vec<(String, String)>>>, usize) {
        if self.cfg.subscriber_auth == SubscriberAuth::Admin {
            let admin = subscriber::admin_headers(&self.cfg.admin_token);
            return (vec![Some(admin); watched.len()], 0);
        }
        let items: Vec<(Option<viewers::Viewer>, String)> = accounts
            .into_iter()
            .zip(watched)
            .map(|(v, i)| (v, idents[*i].server_id.clone().unwrap_or_default()))
            .collect();
        let setup = self.viewer_setup();
        let credentials = self
            .parallel(
                items,
                viewers::SETUP_CONCURRENCY,
                move |(viewer, server)| {
                    let setup = setup.clone();
                    async move {
                        let viewer = viewer?;
                        match setup.grant(&viewer.user.id, &server).await {
                            Ok(()) => Some(viewer.headers),
                            Err(kind) => {
                                setup.errors.add(kind);
                                None
                            }
                        }
                    }
                },
            )
            .await;
        let failed = credentials.iter().filter(|c| c.is_none()).count();
        (credentials, failed)
    }

    /// Creates (or finds, HTTP 409) each agent's server; returns the ids that exist.
    async fn create_servers(
        &self,
        agents: &[AgentIdent],
        ready: &Arc<Vec<AtomicBool>>,
    ) -> Vec<String> {
        let items: Vec<(usize, String, String)> = agents
            .iter()
            .filter_map(|a| Some((a.index, a.id.clone(), a.server_id.clone()?)))
            .collect();
        let (rest, token, errors) = (
            self.rest.clone(),
            Rc::<str>::from(self.cfg.admin_token.as_str()),
            self.errors.clone(),
        );
        let results = self
            .parallel(
                items,
                SETUP_CONCURRENCY,
                move |(index, agent_id, server_id)| {
                    let (rest, token, errors) = (rest.clone(), token.clone(), errors.clone());
                    async move {
                        let body = egg_request(&agent_id, &server_id);
                        let ok = match rest
                            .json("POST", "/api/servers", Some(&token), Some(&body))
                            .await
                        {
                            Ok((200, v)) if v["success"] == true => true,
                            Ok((409, _)) => true, // created by an earlier run
                            Ok((status, v)) => {
                                let code = v["error"]["code"].as_str().unwrap_or("no_code");
                                errors.add(format!("server_create.http_{status}_{code}"));
                                false
                            }
                            Err(e) => {
                                errors.add(format!("server_create.{}", e.kind()));
                                false
                            }
                        };
                        (index, server_id, ok)
                    }
                },
            )
            .await;
        results
            .into_iter()
            .filter(|(_, _, ok)| *ok)
            .map(|(index, server_id, _)| {
                ready[index].store(true, Ordering::SeqCst);
                server_id
            })
            .collect()
    }

    async fn storm(&mut self, fleet: &Arc<FleetStats>, control: &Control) -> StormReport {
        let agents = fleet.connected.get();
        let base_back = fleet.storm_back.get();
        let base_failed = fleet.connect_failures.get();
        fleet.connect_latency.take();
        self.progress(&format!("storm: dropping {agents} agents at once"));
        if let Some(p) = self.panel.as_mut() {
            p.peak_rss = 0;
            p.sample();
        }
        let mut peak_cpu = 0.0f64;
        let mut last_cpu_sample = Instant::now();
        let me_before = procfs::sample(std::process::id()).ok();
        let panel_before = self.panel.as_ref().and_then(|p| procfs::sample(p.pid).ok());
        control.storm();
        let start = Instant::now();
        let mut last_print = Instant::now();
        let mut recovered_at = None;
        while start.elapsed() < STORM_WAIT {
            async_io::Timer::after(Duration::from_millis(50)).await;
            if last_cpu_sample.elapsed() >= Duration::from_millis(500) {
                last_cpu_sample = Instant::now();
                if let Some((_, Some(cpu))) = self.panel.as_mut().and_then(|p| p.sample()) {
                    peak_cpu = peak_cpu.max(cpu);
                }
            }
            let back = fleet.storm_back.get() - base_back;
            if back >= agents {
                recovered_at = Some(start.elapsed());
                break;
            }
            if last_print.elapsed() >= Duration::from_secs(1) {
                last_print = Instant::now();
                self.tick("storm", fleet, &[], None);
                self.progress(&format!("storm: {back}/{agents} back"));
            }
        }
        if let Some((_, Some(cpu))) = self.panel.as_mut().and_then(|p| p.sample()) {
            peak_cpu = peak_cpu.max(cpu);
        }
        let back = fleet.storm_back.get() - base_back;
        let elapsed = start.elapsed().as_secs_f64().max(1e-3);
        let cpu_secs = |a: Option<procfs::ProcSample>, b: Option<procfs::ProcSample>| {
            Some(b?.cpu_ticks.saturating_sub(a?.cpu_ticks) as f64 / procfs::ticks_per_sec() as f64)
        };
        let me_secs = cpu_secs(me_before, procfs::sample(std::process::id()).ok());
        let panel_secs = cpu_secs(
            panel_before,
            self.panel.as_ref().and_then(|p| procfs::sample(p.pid).ok()),
        );
        let loadtest_cpu_percent = me_secs.map_or(0.0, |s| s / elapsed * 100.0);
        let per_reconnect =
            |secs: Option<f64>| secs.filter(|_| back > 0).map(|s| s * 1000.0 / back as f64);
        let mut samples = fleet.connect_latency.take();
        StormReport {
            agents,
            recovered: back.min(agents),
            not_recovered: agents.saturating_sub(back),
            recovery_secs: recovered_at.unwrap_or(start.elapsed()).as_secs_f64(),
            reconnect_ms: LatencySummary::from_samples(&mut samples),
            connect_attempts_failed: fleet.connect_failures.get() - base_failed,
            peak_cpu_percent: peak_cpu,
            peak_rss_bytes: self.panel.as_ref().map_or(0, |p| p.peak_rss),
            loadtest_cpu_percent,
            panel_cpu_ms_per_reconnect: per_reconnect(panel_secs),
            loadtest_cpu_ms_per_reconnect: per_reconnect(me_secs),
        }
    }
}

/// `POST /api/servers` body for a simulated agent's server.
pub fn egg_request(agent_id: &str, server_id: &str) -> serde_json::Value {
    serde_json::json!({
        "agentId": agent_id,
        "serverId": server_id,
        "eggConfig": {
            "name": "loadtest",
            "image": "ctrl-fakegame:latest",
            "ports": {},
            "environment": {},
            "limits": {"memory": "256m", "cpu": "0.5", "disk": "1g"},
            "startup": "./fakegame"
        }
    })
}

/// Reads `--agents-file` without running (for tools and tests).
pub fn load_agents(path: &Path) -> Result<Option<AgentsFile>, String> {
    AgentsFile::load(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egg_request_is_a_valid_egg() {
        let v = egg_request("a1", "lt-x-1-s0");
        let text = v["eggConfig"].to_string();
        let egg: proto::EggConfig = serde_json::from_str(&text).unwrap();
        proto::validate::egg(&egg).unwrap();
        proto::validate::id(proto::validate::IdKind::Server, "lt-abcdef-123456-s0").unwrap();
    }

    #[test]
    fn connect_deadline_grows_with_pacing() {
        let mut cfg = Config::parse(
            "--panel https://h --admin-token t --agents 1000 --duration 1"
                .split_whitespace()
                .map(String::from),
            None,
        )
        .unwrap();
        assert_eq!(connect_deadline(&cfg), Duration::from_secs(60));
        cfg.connect_rate = 100.0;
        assert_eq!(connect_deadline(&cfg), Duration::from_secs(70));
    }
}
