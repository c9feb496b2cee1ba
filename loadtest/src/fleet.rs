//! The crowd: every simulated agent is one task on a single-threaded smol executor (one OS
//! thread for all of them, or `--agent-threads` threads each with its share). Each task connects over WSS with its own JWT, answers pings and
//! commands through [`crate::sim::AgentSim`], emits events at its share of the rate, and
//! reconnects with jittered exponential backoff when its socket drops — like a real agent.
//!
//! The controller (another thread) steers the crowd through [`Control`]: start/stop emitting,
//! a reconnect storm (every agent drops its socket at once and reconnects), and stop. Waking
//! 10,000 idle tasks at once uses a closed channel: closing it wakes every receiver.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message as WsMessage;
use futures_lite::{StreamExt, future};
use futures_util::SinkExt;
use parking_lot::Mutex;

use crate::sim::{AgentSim, EventGen, Incoming};
use crate::stats::{Counter, Errors, Latencies};
use ctrl_io::{Ws, WsOptions};

/// One registered agent as the crowd needs it.
#[derive(Debug, Clone)]
pub struct AgentIdent {
    pub index: usize,
    pub name: String,
    pub id: String,
    pub token: String,
    /// The server loadtest created on this agent, when it emits events.
    pub server_id: Option<String>,
}

/// How the crowd behaves.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// `wss://host:port/ws/agents`.
    pub ws_url: String,
    pub tls: Arc<rustls::ClientConfig>,
    /// Each agent resumes its TLS sessions from a ticket store of its own (as a real agent,
    /// one identity per process, does); false: every connect is a full handshake.
    pub resume: bool,
    /// Run id prefixed to every event id.
    pub run: String,
    /// Events per second for each emitting agent.
    pub events_per_agent: f64,
    pub log_bytes: usize,
    /// New connections per second for the whole crowd (0 = unlimited).
    pub connect_rate: f64,
    /// Per agent index: its server exists on the panel, so its events will be accepted.
    pub ready: Arc<Vec<AtomicBool>>,
    /// Per agent index: events sent (flushed), what its server's filtered subscribers expect.
    pub sent_by_agent: Arc<Vec<AtomicU64>>,
}

/// Counters the crowd keeps.
#[derive(Default)]
pub struct FleetStats {
    /// Agents connected right now.
    pub connected: Counter,
    pub connects: Counter,
    pub connect_failures: Counter,
    pub connect_latency: Latencies,
    /// Connections lost other than by a storm or stop.
    pub disconnects: Counter,
    /// Agents back after the latest storm.
    pub storm_back: Counter,
    pub events_sent: Counter,
    pub events_send_failed: Counter,
    /// Agents in the middle of sending a batch of events: `events_sent` is final only when
    /// this is zero (a batch is counted after its flush, which may already have delivered it).
    pub sending: Counter,
    pub pings: Counter,
    pub commands: Counter,
    /// Error responses the panel sent agents, e.g. `RATE_LIMITED`.
    pub panel_errors: Errors,
    pub errors: Arc<Errors>,
}

/// The controller's levers.
pub struct Control {
    emitting: AtomicBool,
    stopping: AtomicBool,
    /// Closing the current channel wakes every agent; a new one replaces it.
    wake: Mutex<(async_channel::Sender<()>, async_channel::Receiver<()>)>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            emitting: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            wake: Mutex::new(async_channel::bounded(1)),
        }
    }
}

impl Control {
    pub fn set_emitting(&self, on: bool) {
        self.emitting.store(on, Ordering::SeqCst);
    }

    /// Every agent drops its socket at once and reconnects.
    pub fn storm(&self) {
        self.fire();
    }

    /// Every agent closes its socket (with a close frame) and its task ends.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.fire();
    }

    fn fire(&self) {
        let mut wake = self.wake.lock();
        let old = std::mem::replace(&mut *wake, async_channel::bounded(1));
        old.0.close();
    }

    fn receiver(&self) -> async_channel::Receiver<()> {
        self.wake.lock().1.clone()
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// Starts the crowd on `threads` executor threads (agent `i` on thread `i % threads`, so the
/// emitting agents — the first ones — spread evenly), each with its share of the connect
/// rate. The handle is the first thread's (`agents`, or `agents-0` when there are several):
/// it returns when every agent task of every thread ended (after [`Control::stop`]).
pub fn spawn(
    agents: Vec<AgentIdent>,
    config: FleetConfig,
    threads: usize,
    stats: Arc<FleetStats>,
    control: Arc<Control>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let threads = threads.clamp(1, agents.len().max(1));
    let mut shares: Vec<Vec<AgentIdent>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, a) in agents.into_iter().enumerate() {
        shares[i % threads].push(a);
    }
    let name = |k: usize| {
        if threads == 1 {
            "agents".to_owned()
        } else {
            format!("agents-{k}")
        }
    };
    let mut config = config;
    config.connect_rate /= threads as f64;
    let mut others = Vec::with_capacity(threads - 1);
    let first = shares.remove(0);
    for (k, share) in shares.into_iter().enumerate() {
        let (config, stats, control) = (config.clone(), stats.clone(), control.clone());
        others.push(
            std::thread::Builder::new()
                .name(name(k + 1))
                .spawn(move || run_crowd(share, config, stats, control))?,
        );
    }
    std::thread::Builder::new().name(name(0)).spawn(move || {
        run_crowd(first, config, stats, control);
        for t in others {
            let _ = t.join();
        }
    })
}

/// One thread's share of the crowd, on a single-threaded executor, until every task ended.
fn run_crowd(
    agents: Vec<AgentIdent>,
    config: FleetConfig,
    stats: Arc<FleetStats>,
    control: Arc<Control>,
) {
    let ex = smol::LocalExecutor::new();
    let pacer = Rc::new(Pacer::new(config.connect_rate));
    let config = Rc::new(config);
    let tasks: Vec<_> = agents
        .into_iter()
        .map(|ident| {
            ex.spawn(run_agent(
                ident,
                config.clone(),
                stats.clone(),
                control.clone(),
                pacer.clone(),
            ))
        })
        .collect();
    smol::block_on(ex.run(async {
        for t in tasks {
            t.await;
        }
    }));
}

/// Spaces connection attempts `1/rate` apart across the crowd (single thread, so a Cell).
struct Pacer {
    interval: Option<Duration>,
    next: Cell<Instant>,
}

impl Pacer {
    fn new(rate: f64) -> Pacer {
        Pacer {
            interval: (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate)),
            next: Cell::new(Instant::now()),
        }
    }

    async fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        let slot = self.next.get().max(now);
        self.next.set(slot + interval);
        if slot > now {
            async_io::Timer::at(slot).await;
        }
    }
}

/// Why a connection ended.
enum End {
    Stop,
    Storm,
    Lost(String),
}

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

async fn run_agent(
    ident: AgentIdent,
    config: Rc<FleetConfig>,
    stats: Arc<FleetStats>,
    control: Arc<Control>,
    pacer: Rc<Pacer>,
) {
    let mut sim = AgentSim::new(ident.name.clone(), ident.id.clone());
    let mut events = ident
        .server_id
        .as_deref()
        .filter(|_| config.events_per_agent > 0.0)
        .map(|server| {
            EventGen::new(
                &config.run,
                ident.index,
                &ident.id,
                server,
                config.log_bytes,
            )
        });
    // Its own ticket store: a store shared by the crowd keeps only 8 tickets.
    let tls = if config.resume {
        ctrl_io::with_own_sessions(&config.tls)
    } else {
        config.tls.clone()
    };
    let mut backoff = BACKOFF_START;
    let mut after_storm = false;
    while !control.stopping() {
        pacer.wait().await;
        let wake = control.receiver();
        let started = Instant::now();
        let connect = ctrl_io::connect_agent_with(
            &config.ws_url,
            tls.clone(),
            &ident.id,
            &ident.token,
            WsOptions::default(),
        );
        let outcome = future::or(async { Some(connect.await) }, async {
            let _ = wake.recv().await;
            None
        })
        .await;
        let mut ws = match outcome {
            None => continue, // storm or stop while connecting: start over (or leave)
            Some(Err(e)) => {
                stats.connect_failures.inc();
                stats.errors.add(connect_error_kind(&e));
                sleep_jittered(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_CAP);
                continue;
            }
            Some(Ok(ws)) => ws,
        };
        stats.connect_latency.record(started.elapsed());
        stats.connects.inc();
        stats.connected.inc();
        if std::mem::take(&mut after_storm) {
            stats.storm_back.inc();
        }
        backoff = BACKOFF_START;
        let end = session(
            &mut ws,
            ident.index,
            &mut sim,
            events.as_mut(),
            &config,
            &stats,
            &control,
            &wake,
        )
        .await;
        stats.connected.dec();
        match end {
            End::Stop => {
                let close = ws.close(None);
                let _ = future::or(async { close.await.ok() }, async {
                    async_io::Timer::after(Duration::from_secs(2)).await;
                    None
                })
                .await;
                return;
            }
            // Dropping the socket without a close frame, like a network blip.
            End::Storm => {
                drop(ws);
                after_storm = true;
            }
            End::Lost(kind) => {
                drop(ws);
                stats.disconnects.inc();
                stats.errors.add(kind);
                sleep_jittered(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_CAP);
            }
        }
    }
}

/// `connect.rejected_401`, `connect.io`, ...
pub fn connect_error_kind(e: &ctrl_io::ClientError) -> String {
    match e {
        ctrl_io::ClientError::Rejected { status, .. } => format!("connect.rejected_{status}"),
        other => format!("connect.{}", other.kind()),
    }
}

/// Full jitter: a uniformly random wait in [d/2, d].
async fn sleep_jittered(d: Duration) {
    let ms = d.as_millis() as u64;
    let wait = ms / 2 + fastrand::u64(0..=ms / 2);
    async_io::Timer::after(Duration::from_millis(wait)).await;
}

enum Ev {
    Frame(Option<Result<WsMessage, async_tungstenite::tungstenite::Error>>),
    Tick,
    Wake,
}

/// Serves one connection until it ends.
#[allow(clippy::too_many_arguments)]
async fn session(
    ws: &mut Ws,
    index: usize,
    sim: &mut AgentSim,
    mut events: Option<&mut EventGen>,
    config: &FleetConfig,
    stats: &FleetStats,
    control: &Control,
    wake: &async_channel::Receiver<()>,
) -> End {
    // Emission ticks: at most 50 per second, each sending the events due since the last.
    let rate = config.events_per_agent;
    let mut ticker = events.as_ref().map(|_| {
        let period = Duration::from_secs_f64((1.0 / rate).max(0.02));
        // A random phase spreads the crowd's ticks over the period.
        let phase = period.mul_f64(fastrand::f64());
        async_io::Timer::interval_at(Instant::now() + phase, period)
    });
    let mut credit = 0.0f64;
    let mut last_tick = Instant::now();
    let mut out = Vec::new();
    loop {
        let ev = future::or(
            future::or(async { Ev::Frame(ws.next().await) }, async {
                match ticker.as_mut() {
                    Some(t) => {
                        t.next().await;
                        Ev::Tick
                    }
                    None => future::pending().await,
                }
            }),
            async {
                let _ = wake.recv().await;
                Ev::Wake
            },
        )
        .await;
        match ev {
            Ev::Wake => {
                return if control.stopping() {
                    End::Stop
                } else {
                    End::Storm
                };
            }
            Ev::Tick => {
                let now = Instant::now();
                let elapsed = now.duration_since(last_tick).as_secs_f64();
                last_tick = now;
                let ready = config
                    .ready
                    .get(index)
                    .is_some_and(|r| r.load(Ordering::Relaxed));
                if !ready || !control.emitting.load(Ordering::Relaxed) {
                    credit = 0.0;
                    continue;
                }
                // Catch up after a stall, but never more than one second's worth at once
                // (plus the fraction carried: at one event per tick, a tick a hair early
                // leaves 0.999 and a cap of exactly 1.0 would drop the next tick's event).
                credit = (credit + elapsed * rate).min(rate.max(1.0) + 1.0);
                let due = credit.floor() as u64;
                if due == 0 {
                    continue;
                }
                credit -= due as f64;
                let Some(generator) = events.as_deref_mut() else {
                    continue;
                };
                let ts = proto::time::now_rfc3339();
                let mut result = Ok(());
                stats.sending.inc();
                for _ in 0..due {
                    let frame = generator.next_frame(&ts);
                    result = ws.feed(WsMessage::text(frame)).await;
                    if result.is_err() {
                        break;
                    }
                }
                if result.is_ok() {
                    result = ws.flush().await;
                }
                stats.sending.dec();
                match result {
                    Ok(()) => {
                        stats.events_sent.add(due);
                        if let Some(c) = config.sent_by_agent.get(index) {
                            c.fetch_add(due, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        stats.events_send_failed.add(due);
                        return End::Lost(format!("agent.send_{}", ctrl_io::ws_error(e).kind()));
                    }
                }
            }
            Ev::Frame(None) => return End::Lost("agent.eof".into()),
            Ev::Frame(Some(Err(e))) => {
                return End::Lost(format!("agent.read_{}", ctrl_io::ws_error(e).kind()));
            }
            Ev::Frame(Some(Ok(msg))) => {
                let bytes: &[u8] = match &msg {
                    WsMessage::Text(t) => t.as_bytes(),
                    WsMessage::Binary(b) => b,
                    WsMessage::Close(_) => return End::Lost("agent.closed_by_panel".into()),
                    _ => continue, // WebSocket ping/pong: tungstenite answers pings itself
                };
                let ts = proto::time::now_rfc3339();
                match sim.handle(bytes, &ts, &mut out) {
                    Incoming::Ping => stats.pings.inc(),
                    Incoming::Command(_) => stats.commands.inc(),
                    Incoming::ErrorResponse(code) => stats.panel_errors.add(code),
                    Incoming::Other => {}
                    Incoming::Invalid(_) => stats.errors.add("agent.invalid_frame_from_panel"),
                }
                for frame in out.drain(..) {
                    if let Err(e) = ws.send(WsMessage::text(frame)).await {
                        return End::Lost(format!("agent.send_{}", ctrl_io::ws_error(e).kind()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_wakes_current_receivers_only() {
        let control = Control::default();
        let before = control.receiver();
        assert!(before.try_recv().is_err() && !before.is_closed());
        control.storm();
        assert!(
            before.is_closed(),
            "a storm wakes every agent of the previous generation"
        );
        let after = control.receiver();
        assert!(
            !after.is_closed(),
            "agents that reconnect get a fresh generation"
        );
        assert!(!control.stopping());
        control.stop();
        assert!(after.is_closed() && control.stopping());
    }

    #[test]
    fn pacer_spaces_connects() {
        smol::block_on(async {
            let unpaced = Pacer::new(0.0);
            let start = Instant::now();
            for _ in 0..1000 {
                unpaced.wait().await;
            }
            let paced = Pacer::new(100.0);
            for _ in 0..3 {
                paced.wait().await;
            }
            // Three slots at 100/s: the third starts 20 ms after the first (a lower bound,
            // not a timing assertion on the host's speed).
            assert!(start.elapsed() >= Duration::from_millis(20));
        });
    }

    #[test]
    fn connect_error_kinds() {
        let e = ctrl_io::ClientError::Rejected {
            status: 401,
            body: String::new(),
        };
        assert_eq!(connect_error_kind(&e), "connect.rejected_401");
        let e = ctrl_io::ClientError::Timeout(Duration::from_secs(1));
        assert_eq!(connect_error_kind(&e), "connect.timeout");
    }
}
