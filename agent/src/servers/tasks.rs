//! A running server's two background tasks and the slots they share with commands:
//!
//! - the console: the hijacked attach's output, split into lines, throttled, sent as
//!   `server_log`; its stdin half serves `send_command` and egg stop commands;
//! - the sampler: every interval, one `pread` per cgroup/net file, sent as `resource_update`
//!   (disk from the volume's cached walk).

use super::done::DoneWatch;
use super::server::Server;
use crate::docker::{AttachWriter, OutputStream, StreamKind};
use crate::logs::{Console, LogLine, Stream};
use crate::stats::{ContainerSampler, Sample, StatsError, cpu_percent};
use futures_lite::{AsyncWriteExt, StreamExt};
use parking_lot::Mutex;
use proto::quantity::Bytes;
use proto::{EventKind, Network, ResourceUpdate, ServerLog, UsedPercent};
use std::borrow::Cow;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// After a whole period of this without output (so 1-2 s of silence), drops not yet
/// announced are announced.
const QUIET: Duration = Duration::from_secs(1);

/// The stdin half of the current run's attach.
#[derive(Default)]
pub struct ConsoleSlot {
    writer: smol::lock::Mutex<Option<AttachWriter>>,
    live: AtomicBool,
}

impl ConsoleSlot {
    pub async fn install(&self, writer: AttachWriter) {
        *self.writer.lock().await = Some(writer);
        self.live.store(true, Ordering::Release);
    }

    /// True while the attach of the current run is open.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    pub fn mark_dead(&self) {
        self.live.store(false, Ordering::Release);
        if let Some(mut w) = self.writer.try_lock() {
            w.take();
        }
    }

    /// Writes one line (a newline is added). `false` when there is no live console.
    pub async fn send_line(&self, line: &str) -> std::io::Result<bool> {
        if !self.is_live() {
            return Ok(false);
        }
        let mut guard = self.writer.lock().await;
        let Some(w) = guard.as_mut() else {
            return Ok(false);
        };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        w.write_all(&bytes).await?;
        w.flush().await?;
        Ok(true)
    }
}

/// Reads a run's output until the container's streams close.
pub async fn pump_console(
    mut reader: OutputStream,
    server: Weak<Server>,
    slot: std::sync::Arc<super::tasks::ConsoleSlot>,
    rate: f64,
    burst: f64,
    node: std::sync::Arc<crate::logs::Budget>,
) {
    let mut console = Console::new(rate, burst, node);
    let mut done = server
        .upgrade()
        .and_then(|s| DoneWatch::new(s.extras.done.clone()));
    let mut out = Vec::new();
    let mut up = false;
    // One ticking timer for the run, not a fresh timer per chunk of output (each one a
    // reactor insertion and removal, thousands a second from a chatty server): the output
    // counts as quiet after a whole tick without a chunk.
    let mut tick = smol::Timer::interval(QUIET);
    let mut heard = false;
    loop {
        let next = futures_lite::future::or(async { Some(reader.next().await) }, async {
            tick.next().await;
            None
        })
        .await;
        match next {
            None => {
                if !std::mem::take(&mut heard) {
                    console.flush_dropped(&mut out);
                }
            }
            Some(None) => break,
            Some(Some(Ok((kind, bytes)))) => {
                heard = true;
                let stream = match kind {
                    StreamKind::Stdout => Stream::Stdout,
                    StreamKind::Stderr => Stream::Stderr,
                    _ => continue,
                };
                up = done
                    .as_mut()
                    .is_some_and(|w| w.push(stream == Stream::Stderr, &bytes));
                console.push(stream, &bytes, Instant::now(), &mut out);
            }
            Some(Some(Err(e))) => {
                log::debug!("console stream ended: {e}");
                break;
            }
        }
        if !out.is_empty() && !emit_lines(&server, &mut out) {
            return;
        }
        // After the line itself, so the console shows what made the server `running`.
        if std::mem::take(&mut up)
            && let Some(s) = server.upgrade()
        {
            s.mark_done();
        }
    }
    console.finish(Instant::now(), &mut out);
    emit_lines(&server, &mut out);
    slot.mark_dead();
}

/// Sends the lines as `server_log` events; `false` when the server is gone.
fn emit_lines(server: &Weak<Server>, out: &mut Vec<LogLine>) -> bool {
    let Some(server) = server.upgrade() else {
        out.clear();
        return false;
    };
    for line in out.drain(..) {
        server.emit(EventKind::ServerLog(ServerLog {
            server_id: Cow::Owned(server.id.clone()),
            log_level: Cow::Borrowed(line.level),
            message: Cow::Owned(line.message),
            stream: line.stream.map(|s| Cow::Borrowed(s.as_str())),
            dropped: line.dropped.filter(|&n| n > 0),
        }));
    }
    true
}

/// The current run's sampler and its previous reading.
#[derive(Default)]
pub struct StatsSlot {
    inner: Mutex<Option<StatsState>>,
}

struct StatsState {
    sampler: ContainerSampler,
    last: Option<Sample>,
    cpu: f64,
}

/// Readings closer together than this give no meaningful CPU rate.
const MIN_RATE_WINDOW: Duration = Duration::from_millis(100);

impl StatsSlot {
    /// Opens the cgroup files of the container's init process.
    pub fn open(&self, pid: u32) -> Result<(), StatsError> {
        let sampler = ContainerSampler::open(pid)?;
        *self.inner.lock() = Some(StatsState {
            sampler,
            last: None,
            cpu: 0.0,
        });
        Ok(())
    }

    pub fn is_open(&self) -> bool {
        self.inner.lock().is_some()
    }

    pub fn clear(&self) {
        self.inner.lock().take();
    }

    /// A periodic reading: samples, updates the CPU rate against the previous reading.
    /// `None` when no sampler is open.
    pub fn tick(&self) -> Option<Result<(Sample, f64), StatsError>> {
        let mut guard = self.inner.lock();
        let state = guard.as_mut()?;
        Some(state.sampler.sample().map(|s| {
            if let Some(prev) = &state.last {
                state.cpu = cpu_percent(prev, &s);
            }
            state.last = Some(s);
            (s, state.cpu)
        }))
    }

    /// A reading for `get_status`: fresh counters, CPU against the last periodic reading
    /// (or the last known rate when that one is too recent). `None` without a sampler or
    /// without any previous reading to compute a rate from.
    pub fn current(&self) -> Option<Result<(Sample, Option<f64>), StatsError>> {
        let mut guard = self.inner.lock();
        let state = guard.as_mut()?;
        Some(state.sampler.sample().map(|s| {
            let cpu = match &state.last {
                Some(prev) if s.at.saturating_duration_since(prev.at) >= MIN_RATE_WINDOW => {
                    Some(cpu_percent(prev, &s))
                }
                Some(_) => Some(state.cpu),
                None => None,
            };
            if state.last.is_none() {
                state.last = Some(s);
            }
            (s, cpu)
        }))
    }
}

/// Samples every `interval` and sends `resource_update` until the sampler is closed or the
/// server is gone.
pub async fn stats_loop(server: Weak<Server>, interval: Duration) {
    loop {
        smol::Timer::after(interval).await;
        let Some(s) = server.upgrade() else { return };
        let (sample, cpu) = match s.stats.tick() {
            None => return,
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                log::debug!("server {}: sampling stopped: {e}", s.id);
                s.stats.clear();
                return;
            }
        };
        let volume = s.volume.clone();
        let disk = smol::unblock(move || volume.cached_disk_usage()).await;
        let disk = match disk {
            Ok(d) => d,
            Err(e) => {
                log::debug!("server {}: disk usage: {e}", s.id);
                0
            }
        };
        s.emit(resource_update(&s, &sample, cpu, disk));
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 / whole as f64 * 1000.0).round() / 10.0
}

/// Formats a byte count the way the spec writes quantities (`"1200m"`).
pub fn quantity(bytes: u64) -> String {
    Bytes(bytes).to_mib_string()
}

fn resource_update(s: &Server, sample: &Sample, cpu: f64, disk: u64) -> EventKind<'static> {
    let mem_limit = sample.memory_limit.unwrap_or(s.meta.memory);
    EventKind::ResourceUpdate(ResourceUpdate {
        server_id: Cow::Owned(s.id.clone()),
        cpu,
        memory: UsedPercent {
            used: Cow::Owned(quantity(sample.memory_used)),
            percentage: percent(sample.memory_used, mem_limit),
        },
        disk: UsedPercent {
            used: Cow::Owned(quantity(disk)),
            percentage: percent(disk, s.meta.disk),
        },
        network: Some(Network {
            tx: sample.net.tx_bytes,
            rx: sample.net.rx_bytes,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_quantities() {
        assert_eq!(percent(1, 4), 25.0);
        assert_eq!(percent(1, 0), 0.0);
        assert_eq!(percent(1, 3), 33.3);
        assert_eq!(quantity(1200 << 20), "1200m");
    }

    #[test]
    fn a_console_without_a_run_refuses_lines() {
        let slot = ConsoleSlot::default();
        assert!(!slot.is_live());
        assert!(!smol::block_on(slot.send_line("say hi")).unwrap());
    }
}
